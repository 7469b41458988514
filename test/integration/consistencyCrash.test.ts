/**
 * The consistency runbook's durability with the real worker process: SIGKILLed while it holds the
 * replicas at a position (their replication stopped), another worker resumes after the last chunk
 * stored, starts the held replicas again first, and the report equals an uninterrupted run's; the
 * run continues as new several times on the way (its progress is a checkpoint, not history). A
 * cancelled run, and a run terminated while it held replicas, leave no replica stopped either.
 */
import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { RunbookConfig } from '../../src/config/load';
import { withControl } from '../../src/adapters/control/store';
import type { Sandbox } from '../../src/adapters/mariadbd/sandbox';
import type { ConsistencyInput, ConsistencyResult } from '../../src/workflows/consistency';
import { replicasCaughtUp } from '../support/consistency';
import { activityRuns, stepLog } from '../support/failover';
import { eventually, startTestSandbox } from '../support/sandbox';
import { rowsOn, sql } from '../support/stack';
import { killWorkerProcesses, startWorkerProcess, type WorkerChild } from '../support/workerProcess';

const BASE = 29200;
const taskQueue = `consistency-crash-${process.pid}`;
let config: RunbookConfig;
let sandbox: Sandbox;
let client: Client;
let counter = 0;

// 30 chunks of 2,000 rows, 3 a batch, 4 batches a run: the walk continues as new twice.
const INPUT: Partial<ConsistencyInput> = { schema: 'crash', chunkRows: 2000, batchChunks: 3, batchesPerRun: 4 };

const start = (over: Partial<ConsistencyInput> = {}): Promise<WorkflowHandle> =>
  client.workflow.start('consistency', {
    taskQueue,
    workflowId: `consistency-orders-K${Date.now()}-${++counter}`,
    args: [{ cluster: 'orders', requester: 'alice', reason: 'crash test', ...INPUT, ...over } satisfies ConsistencyInput],
  });

const sqlRunning = async (instance: string) => ((await rowsOn(config, instance, 'SHOW SLAVE STATUS'))[0] as { Slave_SQL_Running: string }).Slave_SQL_Running === 'Yes';
const holds = () => withControl(config, async (c) => (await c.query('SELECT instance, workflow_id FROM consistency_hold ORDER BY instance'))[0] as { instance: string; workflow_id: string }[]);
const storedChunks = (workflowId: string) =>
  withControl(config, async (c) => (await c.query('SELECT chunk_index, checked_at FROM consistency_chunk WHERE workflow_id = ? ORDER BY chunk_index', [workflowId]))[0] as { chunk_index: number; checked_at: string }[]);

/** What must not depend on how the run went: per table the chunks, their bounds, the rows and every difference. */
const essence = (r: ConsistencyResult) =>
  r.report.tables.map((t) => ({ table: t.table, chunks: t.chunks, rows: t.rowsCompared, differingChunks: t.differingChunks, differences: t.differences, examples: t.examples, unverifiable: t.unverifiable ?? null }));

/** Every run of a workflow id (it continues as new). */
async function runIdsOf(workflowId: string): Promise<string[]> {
  const ids: string[] = [];
  for await (const w of client.workflow.list({ query: `WorkflowId = '${workflowId}'` })) ids.push(w.runId);
  return ids;
}

let uninterrupted: ConsistencyResult;

beforeAll(async () => {
  ({ config, sandbox } = await startTestSandbox('consistency-crash', BASE));
  client = new Client({ connection: await Connection.connect({ address: inject('temporalAddress') }) });
  await sql(
    config,
    'orders-a',
    'CREATE DATABASE crash',
    'CREATE TABLE crash.t (id INT PRIMARY KEY, v VARCHAR(20) NOT NULL, n INT NULL)',
    "INSERT INTO crash.t SELECT seq, CONCAT('v', seq), IF(seq % 9 = 0, NULL, seq) FROM mysql.seq_1_to_60000",
    'CREATE TABLE crash.nokey (x INT)',
  );
  await replicasCaughtUp(config);
  // Drift spread over the walk, so the crashed batch's neighbours hold some.
  await sql(config, 'orders-b', 'SET SESSION sql_log_bin = 0', "UPDATE crash.t SET v = 'drift' WHERE id IN (5, 31000, 59999)", 'DELETE FROM crash.t WHERE id = 20001');
  await sql(config, 'orders-c', 'SET SESSION sql_log_bin = 0', 'UPDATE crash.t SET n = NULL WHERE id = 44444');
}, 120_000);

afterAll(async () => {
  killWorkerProcesses();
  await client?.connection.close();
  await sandbox?.destroy();
});

describe('a worker killed mid-run', () => {
  it('uninterrupted, for reference: continues as new on the way, every difference found', async () => {
    const worker = await startWorkerProcess(config, taskQueue);
    const handle = await start();
    uninterrupted = (await handle.result()) as ConsistencyResult;
    worker.proc.kill('SIGTERM');
    await worker.exited;
    const t = uninterrupted.report.tables.find((x) => x.table === 'crash.t')!;
    expect(t).toMatchObject({ chunks: 30, rowsCompared: 60_000, differences: { 'orders-b': { changed: 3, missing: 1, extra: 0 }, 'orders-c': { changed: 1, missing: 0, extra: 0 } } });
    expect(uninterrupted.report.tables.find((x) => x.table === 'crash.nokey')!.unverifiable).toContain('no primary key');
    // It continued as new: each run of the chain ends `continued` in failover_log, the last as the run ends.
    const ends = (await stepLog(config, handle.workflowId)).filter((r) => r.step === 'runbook' && r.status !== 'started').map((r) => r.status);
    expect(ends).toEqual(['continued', 'continued', 'needs_attention']);
  });

  it('SIGKILL while the replicas are held: the next worker starts them again and resumes after the last chunk stored; the report equals the uninterrupted one', async () => {
    const first = await startWorkerProcess(config, taskQueue);
    const handle = await start();
    // Let it store some chunks, then hand over to a worker that dies at its first hold.
    await eventually('chunks stored', async () => (await storedChunks(handle.workflowId)).length >= 7, 60_000);
    first.proc.kill('SIGTERM');
    await first.exited;
    const storedBefore = await storedChunks(handle.workflowId);
    const doomed: WorkerChild = await startWorkerProcess(config, taskQueue, { CRASH_DURING_ACTIVITY: 'compareConsistencyChunks' });
    await doomed.exited;
    expect(doomed.proc.signalCode).toBe('SIGKILL');
    // Killed while holding: the replicas' replication is stopped, the hold recorded.
    expect((await holds()).map((h) => h.instance)).toEqual(['orders-b', 'orders-c']);
    expect([await sqlRunning('orders-b'), await sqlRunning('orders-c')]).toEqual([false, false]);

    await startWorkerProcess(config, taskQueue);
    const result = (await handle.result()) as ConsistencyResult;
    expect(essence(result)).toEqual(essence(uninterrupted));
    expect(await holds()).toEqual([]);
    expect([await sqlRunning('orders-b'), await sqlRunning('orders-c')]).toEqual([true, true]);
    // Resumed after the last chunk stored: those were not compared again, every chunk is stored once.
    const after = await storedChunks(handle.workflowId);
    expect(after.map((c) => c.chunk_index)).toEqual([...Array(30).keys()]);
    for (const c of storedBefore) expect(after.find((x) => x.chunk_index === c.chunk_index)!.checked_at).toEqual(c.checked_at);
    // The killed batch ran again (attempt 2) from where the stored chunks end.
    const runs = (await Promise.all((await runIdsOf(handle.workflowId)).map((runId) => activityRuns(client.workflow.getHandle(handle.workflowId, runId), 'compareConsistencyChunks')))).flat();
    const retried = runs.find((r) => (r.attempt ?? 1) > 1);
    expect(retried).toBeDefined();
    expect(retried!.input.cursor.index).toBeGreaterThanOrEqual(storedBefore.length - 3);
    expect(retried!.input.cursor.index).toBeLessThanOrEqual(storedBefore.length);
  }, 240_000);

  it('cancelled mid-walk: no replica stays held, the check lock is given back', async () => {
    killWorkerProcesses();
    await startWorkerProcess(config, taskQueue);
    const handle = await start({ chunkRows: 500, batchChunks: 2 });
    await eventually('chunks stored', async () => (await storedChunks(handle.workflowId)).length >= 6, 60_000);
    await handle.cancel();
    await expect(handle.result()).rejects.toThrow();
    expect(await holds()).toEqual([]);
    expect([await sqlRunning('orders-b'), await sqlRunning('orders-c')]).toEqual([true, true]);
    const log = await stepLog(config, handle.workflowId);
    expect(log.filter((r) => r.step === 'release held replicas' || r.step === 'release the check lock').map((r) => `${r.step} ${r.status}`)).toEqual([
      'release held replicas started', 'release held replicas succeeded', 'release the check lock started', 'release the check lock succeeded',
    ]);
    expect(await withControl(config, async (c) => (await c.query("SELECT * FROM runbook_lock WHERE cluster = 'orders/consistency'"))[0])).toEqual([]);
  }, 120_000);

  it('terminated while its dead worker held the replicas: the next run starts them again before anything else', async () => {
    killWorkerProcesses();
    const first = await startWorkerProcess(config, taskQueue);
    const handle = await start();
    await eventually('chunks stored', async () => (await storedChunks(handle.workflowId)).length >= 4, 60_000);
    first.proc.kill('SIGTERM');
    await first.exited;
    const doomed = await startWorkerProcess(config, taskQueue, { CRASH_DURING_ACTIVITY: 'compareConsistencyChunks' });
    await doomed.exited;
    expect((await holds()).map((h) => h.instance)).toEqual(['orders-b', 'orders-c']);
    await handle.terminate('abandoned');
    // The terminated run keeps the check lock; the next run takes it over (the holder is over), then releases its holds.
    await startWorkerProcess(config, taskQueue);
    const next = await start({ table: 'crash.t', chunkRows: 30_000 });
    const result = (await next.result()) as ConsistencyResult;
    expect(result.report.tables[0]!.rowsCompared).toBe(60_000);
    const log = await stepLog(config, next.workflowId);
    const released = log.find((r) => r.step === 'release holds left by earlier runs' && r.status === 'succeeded');
    expect(released).toBeDefined();
    expect(await holds()).toEqual([]);
    expect([await sqlRunning('orders-b'), await sqlRunning('orders-c')]).toEqual([true, true]);
  }, 240_000);
});
