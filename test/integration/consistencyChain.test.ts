/**
 * The consistency runbook on a three-level chain (primary → replica → replica, ROW binlogs) while
 * the primary writes, and across regions (two instances no replication joins, each read at its own
 * snapshot). Judged by a fingerprint the test computes itself (test/support/reference.ts).
 *
 * The chain's third level is held at the primary's position through the middle one, and repaired
 * on its own: a repair that went "through the primary" as statements would be re-logged as rows
 * by the middle replica and break the third level where the row is missing. Values that do not
 * survive a text round trip (FLOAT, DOUBLE, bytes, BIT, TIMESTAMP) must come back exactly.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getInstance, resolveCredential, type RunbookConfig } from '../../src/config/load';
import { withControl } from '../../src/adapters/control/store';
import { connect, instanceEndpoint } from '../../src/adapters/mysql/connect';
import { probeTopology } from '../../src/adapters/mysql/probe';
import type { Sandbox } from '../../src/adapters/mariadbd/sandbox';
import type { ConsistencyInput } from '../../src/workflows/consistency';
import { onlyOn as onlyOnInstance, replicasCaughtUp, replicating, runConsistency } from '../support/consistency';
import { fingerprintOn } from '../support/reference';
import { eventually, startTestSandbox } from '../support/sandbox';
import { rowsOn, sql, startInProcessWorker, type InProcessWorker } from '../support/stack';

const BASE = 29100;
const taskQueue = `consistency-chain-${process.pid}`;
let config: RunbookConfig;
let sandbox: Sandbox;
let stack: InProcessWorker;

const onlyOn = (instance: string, ...statements: string[]) => onlyOnInstance(config, instance, ...statements);
const run = (over: Partial<ConsistencyInput>) => runConsistency(stack.client, taskQueue, over);
const chainCaughtUp = () => replicasCaughtUp(config);
const running = (instance: string) => replicating(config, instance);

beforeAll(async () => {
  ({ config, sandbox } = await startTestSandbox('consistency-chain', BASE));
  stack = await startInProcessWorker(config, taskQueue);
  // orders-c replicates from orders-b: a three-level chain.
  const b = getInstance(config, 'orders', 'orders-b');
  const repl = resolveCredential(config.clusters.orders!.credentials.replication);
  const c = await connect(instanceEndpoint(config, 'orders', 'orders-c'));
  try {
    await c.query('STOP SLAVE');
    await c.query(`CHANGE MASTER TO MASTER_HOST = ?, MASTER_PORT = ${b.port}, MASTER_USER = ?, MASTER_PASSWORD = ?, MASTER_USE_GTID = slave_pos`, [b.host, repl.user, repl.password]);
    await c.query('START SLAVE');
  } finally {
    c.destroy();
  }
  await eventually('orders-c replicating from orders-b', async () => (await probeTopology(config, 'orders')).instances.find((i) => i.instance === 'orders-c')?.replication?.sourceInstance === 'orders-b');
}, 120_000);

afterAll(async () => {
  await stack?.stop();
  await sandbox?.destroy();
});

describe('a three-level chain with ROW binlogs', () => {
  it('both levels held at the primary\'s position while it writes: the differences of each level found, nothing else; repaired on each; exact values; every copy equals the primary', async () => {
    const topology = await probeTopology(config, 'orders');
    expect(topology.instances.map((i) => [i.instance, i.binlogFormat, i.replication?.sourceInstance ?? null])).toEqual([
      ['orders-a', 'ROW', null],
      ['orders-b', 'ROW', 'orders-a'],
      ['orders-c', 'ROW', 'orders-b'],
    ]);
    await sql(
      config,
      'orders-a',
      'CREATE DATABASE chain',
      `CREATE TABLE chain.kinds (id INT PRIMARY KEY, f FLOAT NOT NULL, d DOUBLE NULL, dec_ DECIMAL(20,6) NOT NULL, ts TIMESTAMP(6) NULL, dt DATETIME NOT NULL,
         b BLOB NULL, bits BIT(8) NOT NULL, e ENUM('x','y','z') NOT NULL, j JSON NULL, s VARCHAR(30) CHARACTER SET utf8mb4 NULL)`,
      `INSERT INTO chain.kinds SELECT seq, seq * 1.0000001 + 0.1234567, seq / 3, seq / 7, TIMESTAMP('2026-03-29 00:00:00') + INTERVAL seq MINUTE, '2026-01-01' + INTERVAL seq SECOND,
         UNHEX(SHA2(seq, 256)), seq % 256, ELT(1 + seq % 3, 'x', 'y', 'z'), JSON_OBJECT('n', seq), CONCAT('名前', seq) FROM mysql.seq_1_to_20000`,
      'CREATE TABLE chain.live (id INT PRIMARY KEY, n INT NOT NULL)',
      'INSERT INTO chain.live SELECT seq, 0 FROM mysql.seq_1_to_5000',
    );
    await chainCaughtUp();
    // Drift on each level, unlogged there (the middle replica's does not reach the third level).
    await onlyOn('orders-b', "UPDATE chain.kinds SET s = 'middle' WHERE id = 42");
    await onlyOn(
      'orders-c',
      'UPDATE chain.kinds SET f = f + 0.0000002 WHERE id = 3', // a FLOAT change its 6-digit text cannot show
      'UPDATE chain.kinds SET b = UNHEX(SHA2(0, 256)) WHERE id = 9000',
      'DELETE FROM chain.kinds WHERE id = 15000',
      "INSERT INTO chain.kinds VALUES (20001, 1.5, NULL, 1, NULL, '2026-01-01', NULL, 1, 'x', NULL, 'rogue')",
    );
    // The primary writes throughout, to a table of its own (chain.kinds must stay as drifted).
    let stop = false;
    let writes = 0;
    const writer = (async () => {
      const conn = await connect(instanceEndpoint(config, 'orders', 'orders-a'));
      try {
        while (!stop) {
          await conn.query('UPDATE chain.live SET n = n + 1 WHERE id = ?', [1 + Math.floor(Math.random() * 5000)]);
          writes++;
        }
      } finally {
        conn.destroy();
      }
    })();
    const { result } = await run({ schema: 'chain', repair: true, policy: 'source-wins', chunkRows: 2500 });
    stop = true;
    await writer;
    expect(writes).toBeGreaterThan(0);
    expect(result.report.paths).toEqual({ 'orders-b': 'orders-a → orders-b', 'orders-c': 'orders-a → orders-b → orders-c' });
    const kinds = result.report.tables.find((t) => t.table === 'chain.kinds')!;
    const live = result.report.tables.find((t) => t.table === 'chain.live')!;
    expect(live).toMatchObject({ rowsCompared: 5000, differences: {} });
    expect(kinds.differences).toEqual({ 'orders-b': { changed: 1, missing: 0, extra: 0 }, 'orders-c': { changed: 2, missing: 1, extra: 1 } });
    expect(kinds.examples.map((d) => [d.instance, d.key[0], d.kind, d.columns]).sort()).toEqual(
      [['orders-b', 42, 'changed', ['s']], ['orders-c', 3, 'changed', ['f']], ['orders-c', 9000, 'changed', ['b']], ['orders-c', 15000, 'missing', []], ['orders-c', 20001, 'extra', []]].sort(),
    );
    expect(result.status).toBe('succeeded');
    expect(result.repairs).toMatchObject([{ table: 'chain.kinds', written: 5, byInstance: { 'orders-b': 1, 'orders-c': 4 }, left: [] }]);
    expect(result.recheck).toMatchObject([{ table: 'chain.kinds', differences: [] }]);
    await chainCaughtUp();
    const truth = await fingerprintOn(config, 'orders-a', 'chain.kinds');
    expect(truth!.rows).toBe(20_000);
    expect(await fingerprintOn(config, 'orders-b', 'chain.kinds')).toEqual(truth);
    expect(await fingerprintOn(config, 'orders-c', 'chain.kinds')).toEqual(truth);
    // The FLOAT came back exactly, not as its 6-digit text.
    const exact = "SELECT HEX(CAST(f AS DOUBLE)) AS f, HEX(b) AS b FROM chain.kinds WHERE id IN (3, 9000) ORDER BY id";
    expect(await rowsOn(config, 'orders-c', exact)).toEqual(await rowsOn(config, 'orders-a', exact));
    expect(await running('orders-b')).toBe(true);
    expect(await running('orders-c')).toBe(true);
    // No replica was written with a GTID of its own.
    const errant = async (i: string) => ((await rowsOn(config, i, 'SELECT @@gtid_binlog_pos AS p')) as { p: string }[])[0]!.p;
    expect(await errant('orders-c')).toBe(await errant('orders-a'));
  }, 300_000);
});

describe('across regions, without a replication path', () => {
  it('two instances given explicitly, each at its own snapshot: the result says it is of two points in time; newest-wins writes the newer row of each site on the other as a logged change, one-sided rows queued', async () => {
    // orders-c becomes a site of its own: it replicates from nobody any more.
    await sql(config, 'orders-c', 'STOP SLAVE', 'RESET SLAVE ALL');
    await sql(config, 'orders-a', 'CREATE DATABASE xr', 'CREATE TABLE xr.t (id INT PRIMARY KEY, v VARCHAR(10) NOT NULL, at DATETIME(6) NOT NULL)');
    await sql(config, 'orders-c', 'CREATE DATABASE xr', 'CREATE TABLE xr.t (id INT PRIMARY KEY, v VARCHAR(10) NOT NULL, at DATETIME(6) NOT NULL)');
    for (const i of ['orders-a', 'orders-c']) await sql(config, i, "INSERT INTO xr.t SELECT seq, CONCAT('v', seq), '2026-01-01' FROM mysql.seq_1_to_3000");
    // Each site took writes the other did not.
    await sql(config, 'orders-a', "UPDATE xr.t SET v = 'east', at = '2026-02-01' WHERE id = 7", "INSERT INTO xr.t VALUES (3001, 'east-only', '2026-02-01')");
    await sql(config, 'orders-c', "UPDATE xr.t SET v = 'west', at = '2026-03-01' WHERE id = 8", 'DELETE FROM xr.t WHERE id = 9');

    const check = await run({ between: { source: 'orders-a', target: 'orders-c' }, schema: 'xr', chunkRows: 1000 });
    expect(check.result.report).toMatchObject({ mode: 'cross', source: 'orders-a', targets: ['orders-c'], comparedAt: expect.stringContaining('TWO DIFFERENT POINTS IN TIME') });
    const t = check.result.report.tables[0]!;
    expect(t.differences).toEqual({ 'orders-c': { changed: 2, missing: 2, extra: 0 } });
    expect(t.examples.map((d) => [d.key[0], d.kind]).sort()).toEqual([[7, 'changed'], [8, 'changed'], [9, 'missing'], [3001, 'missing']].sort());
    // Each chunk names each side's own position.
    const positions = await withControl(config, async (c) => (await c.query('SELECT position, positions FROM consistency_chunk WHERE workflow_id = ? ORDER BY chunk_index', [check.handle.workflowId]))[0] as { position: string | null; positions: unknown }[]);
    expect(positions[0]!.position).toBeNull();
    expect(Object.keys(typeof positions[0]!.positions === 'string' ? JSON.parse(positions[0]!.positions) : positions[0]!.positions as object).sort()).toEqual(['orders-a', 'orders-c']);

    // newest-wins across sites: east's newer row goes west, west's newer row goes east (logged on each); one-sided rows are queued.
    const { result } = await run({ between: { source: 'orders-a', target: 'orders-c' }, schema: 'xr', chunkRows: 1000, repair: true, policy: 'newest-wins:at' });
    expect(result.plan).toMatchObject({ rowsToWrite: 2, queued: 2 });
    expect(result.repairs).toMatchObject([{ table: 'xr.t', written: 2, byInstance: { 'orders-a': 1, 'orders-c': 1 } }]);
    const v = async (i: string, id: number) => ((await rowsOn(config, i, `SELECT v FROM xr.t WHERE id = ${id}`)) as { v: string }[])[0]?.v;
    expect([await v('orders-a', 7), await v('orders-c', 7), await v('orders-a', 8), await v('orders-c', 8)]).toEqual(['east', 'east', 'west', 'west']);
    // Logged on the site written: it has a GTID of its own now (its own replicas would follow).
    expect(result.recheck![0]!.differences.map((d) => Number(d.key[0])).sort((x, y) => x - y)).toEqual([9, 3001]);
    const except = (row: (string | null)[]) => row[0] === '9' || row[0] === '3001';
    expect(await fingerprintOn(config, 'orders-c', 'xr.t', { except })).toEqual(await fingerprintOn(config, 'orders-a', 'xr.t', { except }));
  }, 300_000);
});
