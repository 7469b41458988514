/** The built-in traffic switch (writer_endpoint) against a real control database. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTrafficActivities } from '../../src/activities/traffic';
import { readWriterEndpoint } from '../../src/adapters/control/store';
import type { RunbookConfig } from '../../src/config/load';
import { migrateControl, withControl } from '../../src/adapters/control/store';
import type { Sandbox } from '../../src/adapters/mariadbd/sandbox';
import { startTestSandbox } from '../support/sandbox';

describe('writer endpoint', () => {
  let config: RunbookConfig;
  let sandbox: Sandbox | undefined;
  let traffic: ReturnType<typeof createTrafficActivities>;

  beforeAll(async () => {
    ({ config, sandbox } = await startTestSandbox('traffic', 24700));
    expect(await migrateControl(config)).toContain(2);
    traffic = createTrafficActivities({ config });
  });
  afterAll(async () => {
    await sandbox?.destroy();
  });

  it('is empty until first set', async () => {
    expect(await withControl(config, (conn) => readWriterEndpoint(conn, 'orders'))).toBeNull();
  });

  it('sets the row from the config, is idempotent, and bumps generation on every change', async () => {
    const a = config.clusters.orders!.instances.find((i) => i.name === 'orders-a')!;
    const b = config.clusters.orders!.instances.find((i) => i.name === 'orders-b')!;

    const first = await traffic.setWriterEndpoint({ cluster: 'orders', instance: 'orders-a', workflowId: 'wf-1', incidentId: 'INC-1' });
    expect(first).toEqual({ changed: true, generation: 1, previous: null });
    const row1 = await withControl(config, (conn) => readWriterEndpoint(conn, 'orders'));
    expect(row1).toMatchObject({
      cluster: 'orders', instance: 'orders-a', region: 'region-a', host: a.host, port: a.port, generation: 1, workflowId: 'wf-1', incidentId: 'INC-1',
    });
    expect(row1!.updatedAt).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}$/);

    // A retried attempt (another workflow id, even) changes nothing.
    const again = await traffic.setWriterEndpoint({ cluster: 'orders', instance: 'orders-a', workflowId: 'wf-retry' });
    expect(again).toMatchObject({ changed: false, generation: 1 });
    expect(await withControl(config, (conn) => readWriterEndpoint(conn, 'orders'))).toEqual(row1);

    const moved = await traffic.setWriterEndpoint({ cluster: 'orders', instance: 'orders-b', workflowId: 'wf-2' });
    expect(moved).toEqual({ changed: true, generation: 2, previous: 'orders-a' });
    expect(await withControl(config, (conn) => readWriterEndpoint(conn, 'orders'))).toMatchObject({
      instance: 'orders-b', region: 'region-b', host: b.host, port: b.port, generation: 2, workflowId: 'wf-2', incidentId: null,
    });

    const back = await traffic.setWriterEndpoint({ cluster: 'orders', instance: 'orders-a', workflowId: 'wf-3' });
    expect(back).toEqual({ changed: true, generation: 3, previous: 'orders-b' });
  });

  it('concurrent switches to different instances each bump generation once', async () => {
    const results = await Promise.all(
      ['orders-b', 'orders-c'].map((instance) => traffic.setWriterEndpoint({ cluster: 'orders', instance, workflowId: `wf-${instance}` })),
    );
    expect(results.map((r) => r.generation).sort()).toEqual([4, 5]);
    const row = await withControl(config, (conn) => readWriterEndpoint(conn, 'orders'));
    expect(row!.generation).toBe(5);
  });

  it('refuses an instance the config does not know, and leaves the row alone', async () => {
    await expect(traffic.setWriterEndpoint({ cluster: 'orders', instance: 'orders-z', workflowId: 'wf-x' })).rejects.toThrow(/no instance "orders-z"/);
    expect((await withControl(config, (conn) => readWriterEndpoint(conn, 'orders')))!.generation).toBe(5);
  });

  it('runHooks runs the configured hooks of the cluster (none configured: nothing to run)', async () => {
    const env = {
      cluster: 'orders', mode: 'planned' as const, oldPrimary: 'x:1', newPrimary: 'y:2', oldRegion: 'region-a', newRegion: 'region-b',
      oldInstance: 'orders-a', newInstance: 'orders-b', workflowId: 'wf-h',
    };
    expect(await traffic.runHooks({ cluster: 'orders', kind: 'traffic', env })).toEqual([]);
    const withHooks = createTrafficActivities({
      config: {
        ...config,
        clusters: {
          ...config.clusters,
          orders: {
            ...config.clusters.orders!,
            fencing: { hooks: [{ name: 'fence', command: 'echo "fence $RUNBOOK_OLD_INSTANCE"', timeoutSeconds: 5, onFailure: 'abort', env: [] }] },
          },
        },
      },
    });
    const results = await withHooks.runHooks({ cluster: 'orders', kind: 'fencing', env });
    expect(results).toMatchObject([{ name: 'fence', ok: true, stdoutTail: 'fence orders-a\n' }]);
  });
});
