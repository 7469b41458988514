/** The sandbox from nothing: real mariadbd processes, real GTID replication, nothing left behind. */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, instanceEndpoint } from '../../src/adapters/mysql/connect';
import { probeTopology } from '../../src/adapters/mysql/probe';
import { Sandbox } from '../../src/adapters/mariadbd/sandbox';
import type { RunbookConfig } from '../../src/config/load';
import { eventually, testSandboxConfig, testPort } from '../support/sandbox';

/** Every live mariadbd started from a my.cnf under this sandbox's directory. */
function ourMariadbds(config: RunbookConfig): number[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .filter((pid) => {
      try {
        const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
        const state = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0];
        return cmd.includes('mariadbd') && cmd.includes(config.sandboxDir) && state !== 'Z';
      } catch {
        return false;
      }
    })
    .map(Number);
}

describe('sandbox', () => {
  const config = testSandboxConfig('sandbox', 24100);
  const sandbox = new Sandbox(config);

  beforeAll(async () => {
    expect(ourMariadbds(config)).toEqual([]);
    await sandbox.up();
  });
  afterAll(() => sandbox.destroy());

  it('runs one mariadbd per instance plus the control instance and the recovery host', async () => {
    expect(sandbox.status().map((s) => [s.key, s.running])).toEqual([
      ['control', true],
      ['orders/orders-a', true],
      ['orders/orders-b', true],
      ['orders/orders-c', true],
      ['orders/orders-recovery', true],
    ]);
    expect(ourMariadbds(config)).toHaveLength(5);
    // The recovery host: the cluster's users, read-only, replicating from nobody, not a member.
    const conn = await connect(instanceEndpoint(config, 'orders', 'orders-recovery'));
    expect((await conn.query('SELECT @@read_only AS ro, @@gtid_binlog_pos AS pos'))[0]).toEqual([{ ro: '1', pos: '' }]);
    expect((await conn.query('SHOW SLAVE STATUS'))[0]).toEqual([]);
    conn.destroy();
    expect((await probeTopology(config, 'orders')).instances.map((i) => i.instance)).toEqual(['orders-a', 'orders-b', 'orders-c']);
  });

  it('replicates a row written on the primary to every replica', async () => {
    const primary = await connect(instanceEndpoint(config, 'orders', 'orders-a'));
    await primary.query('CREATE DATABASE IF NOT EXISTS shop');
    await primary.query('CREATE TABLE IF NOT EXISTS shop.orders (id INT PRIMARY KEY, item VARCHAR(20))');
    await primary.query("INSERT INTO shop.orders VALUES (1, 'teapot')");
    primary.destroy();
    for (const replica of ['orders-b', 'orders-c']) {
      const conn = await connect(instanceEndpoint(config, 'orders', replica));
      const rows = await eventually(`row on ${replica}`, async () => {
        const [r] = await conn.query('SELECT item FROM shop.orders WHERE id = 1');
        return (r as unknown[]).length ? r : undefined;
      });
      expect(rows).toEqual([{ item: 'teapot' }]);
      conn.destroy();
    }
  });

  it('probes roles, read_only and GTID positions as the servers report them', async () => {
    const t = await eventually('replicas caught up', async () => {
      const topo = await probeTopology(config, 'orders');
      const positions = new Set(topo.instances.map((i) => i.gtid?.currentPos));
      return positions.size === 1 ? topo : undefined;
    });
    expect(t.primary).toBe('orders-a');
    expect(t.problems).toEqual([]);
    const byName = Object.fromEntries(t.instances.map((i) => [i.instance, i]));
    expect(byName['orders-a']).toMatchObject({ role: 'primary', readOnly: false, flavor: 'mariadb', binlogEnabled: true, gtidStrictMode: true, replication: null });
    for (const r of ['orders-b', 'orders-c']) {
      expect(byName[r]).toMatchObject({
        role: 'replica',
        readOnly: true,
        logReplicaUpdates: true,
        replication: { sourceInstance: 'orders-a', ioRunning: 'Yes', sqlRunning: 'Yes', lagSeconds: 0, usingGtid: 'Slave_Pos' },
      });
      expect(byName[r]!.gtid!.slavePos).toBe(byName['orders-a']!.gtid!.binlogPos);
    }
    // Three transactions on the primary (create database, create table, insert), domain 0.
    expect(byName['orders-a']!.gtid!.binlogPos).toMatch(new RegExp(String.raw`^0-${testPort(24101)}-3$`));
    expect(new Set(t.instances.map((i) => i.serverId)).size).toBe(3);
  });

  it('reports an instance that is down as unreachable instead of failing', async () => {
    await sandbox.stopInstance('orders-c');
    const t = await probeTopology(config, 'orders');
    const c = t.instances.find((i) => i.instance === 'orders-c')!;
    expect(c.reachable).toBe(false);
    expect(c.role).toBe('unreachable');
    expect(t.problems.join('\n')).toMatch(/orders-c unreachable/);
  });

  it('up is idempotent: a second up restarts what is down and rewires nothing', async () => {
    const before = sandbox.status().filter((s) => s.running).map((s) => s.pid);
    await sandbox.up();
    const after = sandbox.status();
    expect(after.every((s) => s.running)).toBe(true);
    expect(after.filter((s) => before.includes(s.pid)).length).toBe(4); // the four already running kept their pid
    const t = await eventually('orders-c back in sync', async () => {
      const topo = await probeTopology(config, 'orders');
      return topo.problems.length === 0 ? topo : undefined;
    });
    expect(t.primary).toBe('orders-a');
  });

  it('down leaves no mariadbd of ours running', async () => {
    await sandbox.down();
    expect(sandbox.status().some((s) => s.running)).toBe(false);
    expect(ourMariadbds(config)).toEqual([]);
  });
});

describe('sandbox on a taken port', () => {
  it('refuses with one line naming the port and the instance, and starts nothing', async () => {
    const { createServer } = await import('node:net');
    const config = testSandboxConfig('sandbox-busy', 24150);
    const squatter = createServer().listen(testPort(24152), '127.0.0.1');
    await new Promise((r, fail) => squatter.once('listening', r).once('error', fail));
    const sandbox = new Sandbox(config);
    try {
      await expect(sandbox.up()).rejects.toThrow(`sandbox: port ${testPort(24152)} for orders/orders-b is already in use by another process`);
      expect(ourMariadbds(config)).toEqual([]);
      expect(existsSync(config.sandboxDir)).toBe(false);
    } finally {
      squatter.close();
      // Should it have started anything after all, the failure above is the report, not stray servers.
      await sandbox.destroy();
    }
  });
});
