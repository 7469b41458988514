/**
 * The consistency runbook against real MariaDB replicas and a real Temporal worker, judged by an
 * independent truth: after a repair every copy must equal the primary by a fingerprint the test
 * computes itself (ordered SHA-256 of every row, test/support/reference.ts), which shares nothing
 * with the engine's row digest.
 *
 * - 200k rows, the primary writing all the time: 3 changed, 1 missing, 1 extra on a replica are
 *   found with their chunk bounds and keys, nothing else is (zero false differences, while the
 *   chunks were compared at positions that moved), repaired by source-wins, re-check 0;
 * - newest-wins (the newer copy wins, a replica's through the primary) and manual (nothing
 *   written, the conflicts queued);
 * - a table without a key is unverifiable; a composite key with NULLable columns tells NULL, ''
 *   and 0 apart, column by column.
 */
import type { WorkflowHandle } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunbookConfig } from '../../src/config/load';
import { withControl } from '../../src/control/store';
import type { Sandbox } from '../../src/sandbox/sandbox';
import type { ConsistencyInput, ConsistencyResult } from '../../src/workflows/consistency';
import { decide, stepLog, waitForApprovalRequest } from '../support/failover';
import { fingerprintOn } from '../support/reference';
import { eventually, startTestSandbox } from '../support/sandbox';
import { rowsOn, sql, startInProcessWorker, type InProcessWorker } from '../support/stack';
import { connect, instanceEndpoint } from '../../src/mysql/connect';

const BASE = 29000;
const taskQueue = `consistency-${process.pid}`;
let config: RunbookConfig;
let sandbox: Sandbox;
let stack: InProcessWorker;
let counter = 0;

/** Write on a replica only, unlogged (no errant GTID): drift as a rogue or sql_log_bin=0 write makes it. */
const onReplicaOnly = (instance: string, ...statements: string[]) => sql(config, instance, 'SET SESSION sql_log_bin = 0', ...statements);

/** Every replica has applied everything the primary has written so far. */
async function caughtUp(): Promise<void> {
  const [{ p }] = (await rowsOn(config, 'orders-a', 'SELECT @@gtid_binlog_pos AS p')) as { p: string }[];
  for (const r of ['orders-b', 'orders-c']) await rowsOn(config, r, `SELECT MASTER_GTID_WAIT('${p}', 60) AS w`);
}

const start = (over: Partial<ConsistencyInput>): Promise<WorkflowHandle> =>
  stack.client.workflow.start('consistency', {
    taskQueue,
    workflowId: `consistency-orders-T${Date.now()}-${++counter}`,
    args: [{ cluster: 'orders', requester: 'alice', reason: 'consistency test', ...over } satisfies ConsistencyInput],
  });

/** Run to the end, approving as bob when asked. */
async function run(over: Partial<ConsistencyInput>): Promise<{ handle: WorkflowHandle; result: ConsistencyResult }> {
  const handle = await start(over);
  const result = handle.result() as Promise<ConsistencyResult>;
  const approve = (async () => {
    const s = await waitForApprovalRequest(handle, 110_000).catch(() => undefined);
    if (s) await decide(handle, 'approve', 'bob');
  })();
  return { handle, result: await Promise.race([result, approve.then(() => result)]) };
}

/** The `succeeded` row's detail of a step in failover_log. */
async function logDetail(workflowId: string, step: string): Promise<Record<string, unknown>> {
  const rows = await withControl(config, async (c) => (await c.query("SELECT detail FROM failover_log WHERE workflow_id = ? AND step = ? AND status = 'succeeded'", [workflowId, step]))[0] as { detail: unknown }[]);
  const d = rows[0]?.detail;
  return (typeof d === 'string' ? JSON.parse(d) : d) as Record<string, unknown>;
}

const replicationRunning = async (instance: string) => {
  const [s] = await rowsOn(config, instance, 'SHOW SLAVE STATUS');
  return s!.Slave_IO_Running === 'Yes' && s!.Slave_SQL_Running === 'Yes';
};

beforeAll(async () => {
  ({ config, sandbox } = await startTestSandbox('consistency', BASE));
  stack = await startInProcessWorker(config, taskQueue);
}, 120_000);

afterAll(async () => {
  await stack?.stop();
  await sandbox?.destroy();
});

describe('keys, NULLs and tables without a key', () => {
  it('a table without a key is unverifiable; a composite key with NULLable columns tells NULL, empty and 0 apart, column by column', async () => {
    await sql(
      config,
      'orders-a',
      'CREATE DATABASE shapes',
      'CREATE TABLE shapes.nokey (x INT, note VARCHAR(10))',
      "INSERT INTO shapes.nokey VALUES (1, 'a'), (1, 'a'), (2, NULL)",
      // No primary key, but a unique key of NOT NULL columns names every row.
      'CREATE TABLE shapes.ukey (code VARCHAR(8) NOT NULL, n INT NULL, UNIQUE KEY (code))',
      "INSERT INTO shapes.ukey VALUES ('a', 1), ('b', NULL), ('c', 3)",
      'CREATE TABLE shapes.pairs (a INT NOT NULL, b VARCHAR(8) NOT NULL, s VARCHAR(8) NULL, n INT NULL, PRIMARY KEY (a, b))',
      "INSERT INTO shapes.pairs SELECT seq DIV 10, CONCAT('k', seq % 10), IF(seq % 3 = 0, NULL, ''), IF(seq % 4 = 0, NULL, 0) FROM mysql.seq_1_to_500",
    );
    await caughtUp();
    // NULL → '', '' → NULL, NULL → 0, 0 → NULL, and a value the sum would miss if encodings were ambiguous.
    const before = (await rowsOn(config, 'orders-a', "SELECT a, b, s, n FROM shapes.pairs WHERE (a, b) IN ((0, 'k3'), (0, 'k1'), (0, 'k4'), (0, 'k5'))")) as { a: number; b: string; s: string | null; n: number | null }[];
    expect(before.map((r) => [r.b, r.s, r.n])).toEqual([['k1', '', 0], ['k3', null, 0], ['k4', '', null], ['k5', '', 0]]);
    await onReplicaOnly(
      'orders-b',
      "UPDATE shapes.pairs SET s = '' WHERE a = 0 AND b = 'k3'", // NULL → ''
      "UPDATE shapes.pairs SET s = NULL WHERE a = 0 AND b = 'k1'", // '' → NULL
      "UPDATE shapes.pairs SET n = 0 WHERE a = 0 AND b = 'k4'", // NULL → 0
      "UPDATE shapes.pairs SET n = NULL WHERE a = 0 AND b = 'k5'", // 0 → NULL
      "UPDATE shapes.ukey SET n = 0 WHERE code = 'b'", // NULL → 0
      "INSERT INTO shapes.nokey VALUES (9, 'z')", // invisible without a key: it must not pass as compared
    );
    const { result, handle } = await run({ schema: 'shapes', replicas: ['orders-b'], chunkRows: 100 });
    expect(result.status).toBe('needs_attention');
    const byTable = Object.fromEntries(result.report.tables.map((t) => [t.table, t]));
    expect(byTable['shapes.nokey']).toMatchObject({ unverifiable: expect.stringContaining('no primary key or unique NOT NULL key'), chunks: 0 });
    expect(byTable['shapes.ukey']).toMatchObject({ keyColumns: ['code'], rowsCompared: 3, differences: { 'orders-b': { changed: 1, missing: 0, extra: 0 } } });
    expect(byTable['shapes.ukey']!.examples).toMatchObject([{ key: ['b'], kind: 'changed', columns: ['n'] }]);
    const pairs = byTable['shapes.pairs']!;
    expect(pairs).toMatchObject({ keyColumns: ['a', 'b'], rowsCompared: 500, chunks: 5, differences: { 'orders-b': { changed: 4, missing: 0, extra: 0 } } });
    expect(pairs.examples.map((d) => [d.key, d.columns]).sort()).toEqual([[[0, 'k1'], ['s']], [[0, 'k3'], ['s']], [[0, 'k4'], ['n']], [[0, 'k5'], ['n']]].sort());
    // failover_log: one row per table, unverifiable said as such.
    const log = await stepLog(config, handle.workflowId);
    expect(log.filter((r) => r.step?.startsWith('table ')).map((r) => `${r.step} ${r.status}`)).toEqual(
      expect.arrayContaining(['table shapes.nokey succeeded', 'table shapes.pairs succeeded', 'table shapes.ukey succeeded']),
    );
    expect(await logDetail(handle.workflowId, 'table shapes.nokey')).toMatchObject({ unverifiable: expect.stringContaining('no primary key'), note: expect.stringContaining('UNVERIFIABLE') });
    expect(await replicationRunning('orders-b')).toBe(true);
  });
});
