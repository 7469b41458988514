/**
 * A failback whose worker is SIGKILLed inside a side effect (the change made, its completion
 * never reported): fencing the returning member, rejoining it, waiting for its catch-up. A new
 * worker finishes the run: the member replicates from the primary, the consistency child finds 0
 * differences, and each step has exactly one `succeeded` row. And a reseed-logical killed right
 * after it wiped the member: the member stays read-only, replicating from nobody, marked as being
 * reseeded; the new worker's attempt wipes and loads it again. And the undo of errant DML killed
 * after it is done: the retry finds it done (nothing undone twice).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { WorkflowHandle } from '@temporalio/client';
import { describe, expect, it } from 'vitest';
import type { FailbackInput, FailbackResult } from '../../src/workflows/failback';
import { shape, stateOf, stepLog } from '../support/failover';
import { approveWhenAsked, failbackWorkerSuite } from '../support/failbackSuite';
import { rowsOn, sql } from '../support/stack';
import { fingerprintOn } from '../support/reference';
import { startWorkerProcess } from '../support/workerProcess';

const suite = failbackWorkerSuite('failback-crash', 31600);
let round = 0;

/** A failback of orders-b on a worker that crashes as `env` says, approved: returns once the worker is SIGKILLed. */
async function approvedUntilCrash(env: Record<string, string>, prefix: string, reason: string): Promise<WorkflowHandle> {
  const doomed = await startWorkerProcess(suite.config, suite.taskQueue, env);
  const incidentId = `${prefix}${Date.now()}`;
  const handle = await suite.client.workflow.start('failback', {
    taskQueue: suite.taskQueue,
    workflowId: `failback-orders-${incidentId}`,
    args: [{ cluster: 'orders', instance: 'orders-b', reason, requester: 'carol', incidentId } satisfies FailbackInput],
  });
  await approveWhenAsked(handle);
  await Promise.race([doomed.exited, handle.result().then((r) => Promise.reject(new Error(`run ended before the crash: ${JSON.stringify(r)}`)))]);
  expect(doomed.proc.signalCode).toBe('SIGKILL');
  return handle;
}

describe('worker crash during a failback', () => {
  it.each(['fenceReturningInstance', 'repointReplica', 'waitForCatchUp'])('SIGKILL inside %s, restart: the run finishes, the member rejoined with 0 differences', async (activity) => {
    // orders-b leaves the topology and the primary writes on: it must catch up when it rejoins.
    await sql(suite.config, 'orders-b', 'STOP SLAVE', 'RESET SLAVE ALL', 'SET GLOBAL read_only = OFF');
    await sql(suite.config, 'orders-a', 'CREATE TABLE IF NOT EXISTS loadtest.more (id INT PRIMARY KEY, v VARCHAR(64))', `INSERT INTO loadtest.more SELECT seq + ${++round * 10000}, '${activity}' FROM mysql.seq_1_to_2000`);

    const doomed = await startWorkerProcess(suite.config, suite.taskQueue, { CRASH_INSIDE_ACTIVITY: activity });
    const incidentId = `FBC${Date.now()}`;
    const handle = await suite.client.workflow.start('failback', {
      taskQueue: suite.taskQueue,
      workflowId: `failback-orders-${incidentId}`,
      args: [{ cluster: 'orders', instance: 'orders-b', reason: `crash inside ${activity}`, requester: 'carol', incidentId } satisfies FailbackInput],
    });
    if (activity !== 'fenceReturningInstance') await approveWhenAsked(handle);
    await Promise.race([doomed.exited, handle.result().then((r) => Promise.reject(new Error(`run ended before the crash: ${JSON.stringify(r)}`)))]);
    expect(doomed.proc.signalCode).toBe('SIGKILL');

    await startWorkerProcess(suite.config, suite.taskQueue);
    if (activity === 'fenceReturningInstance') await approveWhenAsked(handle);
    const result = (await handle.result()) as FailbackResult;
    expect(result).toMatchObject({ status: 'succeeded', method: 'rejoin', primaryAfter: 'orders-a', consistency: { differences: 0 } });
    expect(await shape(suite.config)).toMatchObject({ primary: 'orders-a', writable: ['orders-a'], sources: { 'orders-b': 'orders-a' } });
    const succeeded = (await stepLog(suite.config, handle.workflowId)).filter((r) => r.status === 'succeeded').map((r) => r.step);
    for (const step of ['fence returning instance', 'rejoin', 'catch up', 'consistency check', 'record']) expect(succeeded.filter((s) => s === step)).toHaveLength(1);
  }, 300_000);

  it('SIGKILL inside reseedLogical right after the wipe: the half-empty instance stays read-only and out of the topology, marked; a new worker reseeds it again and it rejoins with 0 differences', async () => {
    // Errant DDL on an isolated orders-b: auto decides reseed-logical.
    await sql(suite.config, 'orders-b', 'STOP SLAVE', 'RESET SLAVE ALL', 'SET GLOBAL read_only = OFF', 'CREATE TABLE IF NOT EXISTS loadtest.errant_crash (id INT PRIMARY KEY)');
    await sql(suite.config, 'orders-a', 'CREATE TABLE IF NOT EXISTS loadtest.more (id INT PRIMARY KEY, v VARCHAR(64))', `INSERT INTO loadtest.more SELECT seq + ${++round * 10000}, 'reseed' FROM mysql.seq_1_to_2000`);
    const handle = await approvedUntilCrash({ CRASH_AT_SUB_STEP: 'reseedLogical:wipe' }, 'FBR', 'crash inside the reseed');

    // Half-way: wiped, read-only, replicating from nobody, not the writer; marked for any later attempt.
    const marker = join(suite.config.backupDir, 'orders', 'failback', 'reseeding-orders-b.json');
    expect(JSON.parse(readFileSync(marker, 'utf8'))).toMatchObject({ instance: 'orders-b', workflowId: handle.workflowId, method: 'reseed-logical' });
    expect(await shape(suite.config)).toMatchObject({ primary: 'orders-a', writable: ['orders-a'], sources: { 'orders-b': null } });
    expect(await rowsOn(suite.config, 'orders-b', "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'loadtest'")).toEqual([]);

    await startWorkerProcess(suite.config, suite.taskQueue);
    const result = (await handle.result()) as FailbackResult;
    expect(result).toMatchObject({ status: 'succeeded', method: 'reseed-logical', primaryAfter: 'orders-a', consistency: { differences: 0 } });
    expect(existsSync(marker)).toBe(false);
    expect(await shape(suite.config)).toMatchObject({ primary: 'orders-a', writable: ['orders-a'], sources: { 'orders-b': 'orders-a' } });
    const last = String((await rowsOn(suite.config, 'orders-a', 'SELECT @@gtid_binlog_pos AS p'))[0]!.p);
    await rowsOn(suite.config, 'orders-b', `SELECT MASTER_GTID_WAIT('${last}', 60)`);
    for (const table of ['loadtest.acks', 'loadtest.more']) expect(await fingerprintOn(suite.config, 'orders-b', table)).toEqual(await fingerprintOn(suite.config, 'orders-a', table));
    expect(await fingerprintOn(suite.config, 'orders-b', 'loadtest.errant_crash')).toBeNull();
    const succeeded = (await stepLog(suite.config, handle.workflowId)).filter((r) => r.status === 'succeeded').map((r) => r.step);
    for (const step of ['reseed (logical)', 'rejoin', 'catch up', 'consistency check', 'record']) expect(succeeded.filter((s) => s === step)).toHaveLength(1);
  }, 360_000);

  it('SIGKILL inside undoErrantTransactions (undone, binlog started afresh, completion never reported): the retry finds it done, undoes nothing twice, and the member rejoins with 0 differences', async () => {
    // A transaction orders-b replicates into its binlog first: its errant ones then follow a common one
    // (a member whose binlog a reseed started afresh and that took nothing since is reseeded again: see README).
    await sql(suite.config, 'orders-a', 'CREATE TABLE IF NOT EXISTS loadtest.more (id INT PRIMARY KEY, v VARCHAR(64))', `INSERT INTO loadtest.more VALUES (1, 'seed') ON DUPLICATE KEY UPDATE v = 'seed ${Date.now()}'`);
    const primaryPos = String((await rowsOn(suite.config, 'orders-a', 'SELECT @@gtid_binlog_pos AS p'))[0]!.p);
    await rowsOn(suite.config, 'orders-b', `SELECT MASTER_GTID_WAIT('${primaryPos}', 60)`);
    await sql(suite.config, 'orders-b', 'STOP SLAVE', 'RESET SLAVE ALL', 'SET GLOBAL read_only = ON');
    // Only now errant: two row changes on orders-b alone, then the primary writes on past them.
    await sql(suite.config, 'orders-b', "INSERT INTO loadtest.more VALUES (990001, 'errant')", "UPDATE loadtest.more SET v = 'errant-update' WHERE id = (SELECT MIN(id) FROM (SELECT id FROM loadtest.more) x)");
    await sql(suite.config, 'orders-a', `INSERT INTO loadtest.more SELECT seq + ${++round * 10000}, 'after' FROM mysql.seq_1_to_500`);
    const handle = await approvedUntilCrash({ CRASH_INSIDE_ACTIVITY: 'undoErrantTransactions' }, 'FBU', 'crash inside the undo');
    await startWorkerProcess(suite.config, suite.taskQueue);
    const result = (await handle.result()) as FailbackResult;
    expect(result).toMatchObject({ status: 'succeeded', method: 'flashback', primaryAfter: 'orders-a', consistency: { differences: 0 } });
    expect(result.analysis.errant).toHaveLength(2);
    const note = (await stateOf(handle)).steps.find((x) => x.name === 'undo errant transactions')?.note;
    expect(note).toMatch(/2 errant transaction\(s\) undone on orders-b \(2 by an earlier attempt\)/);
    const last = String((await rowsOn(suite.config, 'orders-a', 'SELECT @@gtid_binlog_pos AS p'))[0]!.p);
    await rowsOn(suite.config, 'orders-b', `SELECT MASTER_GTID_WAIT('${last}', 60)`);
    expect(await fingerprintOn(suite.config, 'orders-b', 'loadtest.more')).toEqual(await fingerprintOn(suite.config, 'orders-a', 'loadtest.more'));
    const succeeded = (await stepLog(suite.config, handle.workflowId)).filter((r) => r.status === 'succeeded').map((r) => r.step);
    for (const step of ['undo errant transactions', 'rejoin', 'catch up', 'consistency check', 'record']) expect(succeeded.filter((s) => s === step)).toHaveLength(1);
  }, 360_000);
});
