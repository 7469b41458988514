/**
 * Restore into the cluster's configured recovery host (a real, separate mariadbd the sandbox
 * starts, reached over TCP with the cluster's credentials, never one of its instances), then the
 * `promote` cut-over: after approval the old primary is fenced, the recovery host catches up from
 * it (writes production took after the archive included, the dropped table's DROP excluded), is
 * promoted, takes the writer endpoint, and the old members are marked for reseed; then failback
 * reseeds each of them from the promoted host and takes it off the lineage's stale list.
 */
import { readdirSync, readFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import type { WorkflowHandle } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunbookConfig } from '../../src/config/load';
import { withControl } from '../../src/adapters/control/store';
import { probeTopology } from '../../src/adapters/mysql/probe';
import type { Sandbox } from '../../src/adapters/mariadbd/sandbox';
import type { RestoreInput, RestoreResult } from '../../src/workflows/restore';
import type { FailbackInput, FailbackResult } from '../../src/workflows/failback';
import { decide, stepLog, waitForApprovalRequest } from '../support/failover';
import { killScratchServers, scratchServerPids, startTestSandbox, testPort } from '../support/sandbox';
import { rowsOn, sql, startInProcessWorker, type InProcessWorker } from '../support/stack';

const taskQueue = `restore-host-${process.pid}`;
let config: RunbookConfig;
let sandbox: Sandbox;
let stack: InProcessWorker;
const backup = (id: string, instance = 'orders-a') =>
  stack.client.workflow.execute('backup', { taskQueue, workflowId: `${id}-${Date.now()}`, args: [{ cluster: 'orders', instance, kind: 'logical', requester: 'alice' }] });

const start = (input: RestoreInput, id: string): Promise<WorkflowHandle> =>
  stack.client.workflow.start('restore', { taskQueue, workflowId: `${id}-${Date.now()}`, args: [input] });
const failureOf = async (input: RestoreInput, id: string) => ((await (await start(input, id)).result().catch((e: unknown) => e)) as { cause: Error }).cause.message;

const input = (over: Partial<RestoreInput> = {}): RestoreInput => ({
  cluster: 'orders',
  target: { kind: 'before-event', event: { table: 'orders', statement: 'DROP TABLE' } },
  skip: true,
  recoverOn: 'orders-recovery',
  compare: ['shop.users'],
  requester: 'alice',
  reason: 'orders table dropped',
  incidentId: 'INC-HOST',
  ...over,
});

const rows = (instance: string, statement: string) => rowsOn(config, instance, statement);

beforeAll(async () => {
  ({ config, sandbox } = await startTestSandbox('restore-host', 26700, (doc) => {
    // What a proxy would be told when the recovery host takes over: printed, so the test can read it.
    doc.clusters.orders.traffic = { hooks: [{ name: 'show-env', command: 'env | grep ^RUNBOOK_ | sort', timeoutSeconds: 10, onFailure: 'abort' }] };
  }));
  stack = await startInProcessWorker(config, taskQueue);
  await sql(config, 'orders-a', 'CREATE DATABASE shop', 'CREATE TABLE shop.orders (id INT PRIMARY KEY, amount INT)', 'INSERT INTO shop.orders VALUES (1, 10), (2, 20)',
    'CREATE TABLE shop.users (id INT PRIMARY KEY, points INT)', 'INSERT INTO shop.users VALUES (1, 100)');
  await backup('backup-logical');
  await stack.client.workflow.execute('backup', { taskQueue, workflowId: `backup-physical-${Date.now()}`, args: [{ cluster: 'orders', instance: 'orders-a', kind: 'physical', requester: 'alice' }] }); // newer than the logical one: a recovery host must skip it
  await sql(config, 'orders-a', 'INSERT INTO shop.orders VALUES (3, 30)', 'DROP TABLE shop.orders', 'INSERT INTO shop.users VALUES (2, 200)');
  await backup('backup-archive'); // archives the binlogs holding the DROP
  // Production moves on past the archive: only the catch-up from the old primary can bring this.
  await sql(config, 'orders-a', 'INSERT INTO shop.users VALUES (3, 300)');
}, 120_000);

afterAll(async () => {
  await stack?.stop();
  await sandbox?.destroy();
  killScratchServers(config);
});

describe('restore on a configured recovery host', () => {
  it('refuses combinations that cannot work, in one line, before anything runs', async () => {
    expect(await failureOf(input({ cutover: 'promote', recoverOn: undefined }), 'host-promote-scratch')).toBe(
      `step "locate target" failed (precondition): promote needs recoverOn (the cluster's recovery host): a scratch instance on the worker's host cannot become the primary`,
    );
    expect(await failureOf(input({ cutover: 'promote', skip: false }), 'host-promote-noskip')).toBe(
      'step "locate target" failed (precondition): promote needs skip: without it, catching up from the old primary would bring the bad event back',
    );
    expect(await failureOf(input({ backupKind: 'physical' }), 'host-physical')).toMatch(/^step "locate target" failed \(precondition\): a physical backup is copied back into a datadir on the worker's host, not into recovery host orders-recovery/);
    expect(await failureOf(input({ recoverOn: 'orders-b' }), 'host-production')).toMatch(/orders has no recovery host "orders-b"; its recovery host is orders-recovery$/);
  });

  it('recovers onto the host, then promotes it after approval: the dropped table back, every write kept, old members marked for reseed', async () => {
    const handle = await start(input({ cutover: 'promote' }), 'host-promote');
    await waitForApprovalRequest(handle);
    // Verified on the host, production untouched so far.
    expect(await rows('orders-recovery', 'SELECT COUNT(*) AS n FROM shop.orders')).toEqual([{ n: '3' }]);
    expect(await rows('orders-a', 'SELECT @@read_only AS ro')).toEqual([{ ro: '0' }]);
    expect(await decide(handle, 'approve', 'bob')).toEqual({ accepted: true, status: 'approved' });
    const result = (await handle.result()) as RestoreResult;

    expect(result.status).toBe('succeeded');
    expect(result.backupId).toMatch(/^logical-/); // the physical one is newer, but cannot go to a host
    expect(result.promotion).toEqual({ promoted: 'orders-recovery', oldPrimary: 'orders-a', needReseed: ['orders-a', 'orders-b', 'orders-c'] });
    // The recovery host is the primary: the table as before the DROP, the write after the archive too.
    expect(await rows('orders-recovery', 'SELECT COUNT(*) AS n, SUM(amount) AS total FROM shop.orders')).toEqual([{ n: '3', total: '60' }]);
    expect(await rows('orders-recovery', 'SELECT id FROM shop.users ORDER BY id')).toEqual([{ id: 1 }, { id: 2 }, { id: 3 }]);
    expect(await rows('orders-recovery', 'SELECT @@read_only AS ro')).toEqual([{ ro: '0' }]);
    expect(await rows('orders-a', 'SELECT @@read_only AS ro')).toEqual([{ ro: '1' }]); // fenced, and it still lacks the table
    const topology = await probeTopology(config, 'orders');
    expect(topology.primary).toBe('orders-recovery');
    const [endpoint, syncStatus] = await withControl(config, async (c) => [
      ((await c.query("SELECT instance FROM writer_endpoint WHERE cluster = 'orders'"))[0] as { instance: string }[])[0]?.instance,
      ((await c.query("SELECT instance, status FROM sync_status WHERE cluster = 'orders' AND status = 'needs_failback' ORDER BY instance"))[0] as { instance: string }[]).map((r) => r.instance),
    ]);
    expect(endpoint).toBe('orders-recovery');
    expect(syncStatus).toEqual(['orders-a', 'orders-b', 'orders-c']);
    const log = await stepLog(config, handle.workflowId);
    expect(log.filter((r) => r.status === 'succeeded').map((r) => r.step)).toEqual(
      expect.arrayContaining(['lock recovery host', 'approval', 'lock cluster', 'fence old primary', 'catch up from the old primary', 'promote recovery host', 'switch traffic', 'mark old members for reseed', 'verify promotion', 'unlock cluster', 'unlock recovery host', 'record']),
    );
    // The traffic hook got the failover's complete environment (it used to get empty addresses and regions).
    const [switched] = await withControl(config, async (c) =>
      ((await c.query("SELECT detail FROM failover_log WHERE workflow_id = ? AND step = 'switch traffic' AND status = 'succeeded'", [handle.workflowId]))[0] as { detail: string | object }[]).map((r) =>
        typeof r.detail === 'string' ? JSON.parse(r.detail) : r.detail,
      ),
    );
    const a = config.clusters.orders!.instances.find((i) => i.name === 'orders-a')!;
    const r = config.clusters.orders!.recovery!;
    expect((switched as { hooks: { name: string; stdoutTail: string }[] }).hooks[0]!.stdoutTail.trim().split('\n')).toEqual([
      'RUNBOOK_CLUSTER=orders',
      'RUNBOOK_HOOK_NAME=show-env',
      `RUNBOOK_INCIDENT_ID=INC-HOST`,
      'RUNBOOK_MODE=restore',
      `RUNBOOK_NEW_INSTANCE=orders-recovery`,
      `RUNBOOK_NEW_PRIMARY=${r.host}:${r.port}`,
      `RUNBOOK_NEW_REGION=${r.region}`,
      'RUNBOOK_OLD_INSTANCE=orders-a',
      `RUNBOOK_OLD_PRIMARY=${a.host}:${a.port}`,
      `RUNBOOK_OLD_REGION=${a.region}`,
      `RUNBOOK_WORKFLOW_ID=${handle.workflowId}`,
    ]);

  });

  it('after the promotion: older backups are of another history, the new primary is archived apart, and a restore reads its binlogs', async () => {
    // Every backup so far holds the DROP the promotion skipped: none may seed a restore now.
    expect(await failureOf(input({ recoverOn: undefined, dryRun: true, incidentId: 'INC-OLD' }), 'host-old-lineage')).toMatch(
      new RegExp(String.raw`^step "choose backup" failed \(precondition\): no backup of orders taken since orders-recovery was promoted \(.*; older backups hold the skipped 0-${testPort(26701)}-\d+\) at or before 0-${testPort(26701)}-\d+$`),
    );
    // The old members hold that DROP too: a backup of one is refused, and nothing is written.
    const backupsBefore = readdirSync(join(config.backupDir, 'orders')).sort();
    const staleBackup = (await backup('backup-stale-member', 'orders-b').catch((e: unknown) => e)) as { cause?: Error };
    expect(staleBackup.cause?.message).toMatch(
      new RegExp(String.raw`^step "take logical backup" failed \(precondition\): orders-b holds 0-${testPort(26701)}-\d+, which restore host-promote-\d+ skipped when it promoted orders-recovery: a backup of it would bring that event back; reseed it from orders-recovery, then take it off "stale" in \S+lineage\.json$`),
    );
    expect(readdirSync(join(config.backupDir, 'orders')).sort()).toEqual(backupsBefore);
    await backup('backup-new-primary', 'orders-recovery');
    await sql(config, 'orders-recovery', 'FLUSH BINARY LOGS'); // what follows is in a file of its own
    await sql(config, 'orders-recovery', 'INSERT INTO shop.users VALUES (4, 400)', 'DROP TABLE shop.users', 'INSERT INTO shop.orders VALUES (4, 40)');
    await backup('backup-new-archive', 'orders-recovery'); // archives the new primary's binlogs holding this DROP
    // Both servers' binlogs are named mysql-bin.000001…: each source is archived apart.
    expect(readdirSync(join(config.backupDir, 'orders', 'binlogs')).sort()).toEqual(['orders-a', 'orders-recovery']);

    // A file wholly before the oldest usable backup is neither searched nor needed: even gone, the
    // restore goes ahead (the archive only grows; a restore reads what it can use).
    const newArchive = join(config.backupDir, 'orders', 'binlogs', 'orders-recovery');
    renameSync(join(newArchive, 'mysql-bin.000001'), join(newArchive, 'aside'));
    let result: RestoreResult;
    try {
      result = (await (await start(input({ target: { kind: 'before-event', event: { table: 'users', statement: 'DROP TABLE' } } as const, recoverOn: undefined, compare: ['shop.orders'], incidentId: 'INC-AFTER' }), 'host-after')).result()) as RestoreResult;
    } finally {
      renameSync(join(newArchive, 'aside'), join(newArchive, 'mysql-bin.000001'));
    }
    expect(result.status).toBe('succeeded');
    expect(result.target.archive).toBe('orders-recovery');
    const users = result.verification!.tables.find((t) => t.table === 'shop.users')!;
    expect(users).toMatchObject({ production: null, recovery: { rows: 4 } });
    expect(result.verification!.tables.find((t) => t.table === 'shop.orders')).toMatchObject({ equal: true, recovery: { rows: 4 } });

    // The promoted recovery host serves production now: a restore must not wipe it.
    const usersDropped = { kind: 'before-event', event: { table: 'users', statement: 'DROP TABLE' } } as const;
    expect(await failureOf(input({ target: usersDropped, cutover: 'none', incidentId: 'INC-WIPE' }), 'host-wipe')).toMatch(
      /^step "prepare recovery instance" failed \(precondition\): orders-recovery is writable: it may be serving production/,
    );
    // The failed run stopped the binlog server it had started: nothing holds its port.
    expect(scratchServerPids(config)).toEqual([]);
    expect(await rows('orders-recovery', 'SELECT COUNT(*) AS n FROM shop.orders')).toEqual([{ n: '4' }]);
  });

  it('failback reseeds each stale member from the promoted host, and the lineage no longer lists it', async () => {
    const lineage = () => JSON.parse(readFileSync(join(config.backupDir, 'orders', 'lineage.json'), 'utf8')) as { stale: string[] };
    expect(lineage().stale).toEqual(['orders-a', 'orders-b', 'orders-c']);
    // The test's own digest of a table, ordered, independent of the engine's.
    const digest = async (instance: string) => rows(instance, "SELECT COUNT(*) AS n, SHA2(GROUP_CONCAT(CONCAT_WS(':', id, amount) ORDER BY id SEPARATOR ','), 256) AS d FROM shop.orders");
    for (const member of ['orders-b', 'orders-c', 'orders-a']) {
      const incidentId = `INC-FB-${member}`;
      const handle = await stack.client.workflow.start('failback', {
        taskQueue,
        workflowId: `failback-orders-${incidentId}-${Date.now()}`,
        args: [{ cluster: 'orders', instance: member, requester: 'carol', reason: 'stale since the promote', incidentId } satisfies FailbackInput],
      });
      await waitForApprovalRequest(handle, 180_000).catch(async (err: Error) => {
        const ended = (await handle.describe()).status.name !== 'RUNNING' ? await handle.result().then(JSON.stringify, (e: { cause?: Error; message: string }) => e.cause?.message ?? e.message) : 'still running';
        throw new Error(`${member}: ${err.message}; ${ended}`);
      });
      expect(await decide(handle, 'approve', 'bob')).toMatchObject({ accepted: true });
      const result = (await handle.result()) as FailbackResult;
      expect(result).toMatchObject({ status: 'succeeded', method: 'reseed-logical', primaryAfter: 'orders-recovery', consistency: { differences: 0 } });
      expect(result.why).toMatch(new RegExp(`${member} is on the backup lineage's stale list`));
      expect(lineage().stale).not.toContain(member);
      // It has the table the promotion brought back, as the new primary has it.
      expect(await digest(member)).toEqual(await digest('orders-recovery'));
      expect(await rows(member, 'SELECT @@read_only AS ro')).toEqual([{ ro: '1' }]);
    }
    expect(lineage().stale).toEqual([]);
    const topology = await probeTopology(config, 'orders');
    expect(topology.primary).toBe('orders-recovery');
    for (const m of ['orders-a', 'orders-b', 'orders-c']) expect(topology.instances.find((i) => i.instance === m)?.replication?.sourceInstance).toBe('orders-recovery');
  }, 600_000);
});
