/**
 * Failback's reseed-physical on the real sandbox and real Temporal workers, through the sandbox's
 * own reseed.physical template (scripts/sandbox-reseed.ts: `mariadb-backup --backup
 * --stream=mbstream` of a healthy replica piped into stop, clear, `mbstream -x`, prepare, start):
 *
 * - errant DDL on an isolated orders-b: `--method reseed-physical` rebuilds it; the export holds
 *   the DDL; it catches up; the consistency check finds 0 differences; the test's own ordered
 *   fingerprint of each table (row count + digest) equals the primary's;
 * - the worker SIGKILLed inside the copy, right after the target command reports its datadir
 *   cleared: orders-b stays read-only (or down) and out of the topology, marked; a new worker's
 *   attempt copies again and the run finishes with 0 differences; SIGKILLed once the copy arrived
 *   whole but before the position is set: the new worker does not copy again, it finishes.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { WorkflowHandle } from '@temporalio/client';
import { describe, expect, it } from 'vitest';
import type { FailbackInput, FailbackResult } from '../../src/workflows/failback';
import { shape, stateOf, stepLog } from '../support/failover';
import { approveWhenAsked, failbackWorkerSuite } from '../support/failbackSuite';
import { fingerprintOn } from '../support/reference';
import { rowsOn, sql } from '../support/stack';
import { startWorkerProcess } from '../support/workerProcess';

const suite = failbackWorkerSuite('failback-physical', 31200);
let round = 0;

/** orders-b isolated with errant DDL (and a row), while the primary writes on. */
async function isolateWithErrantDdl(): Promise<void> {
  const n = ++round;
  await sql(suite.config, 'orders-b', 'STOP SLAVE', 'RESET SLAVE ALL', 'SET GLOBAL read_only = OFF', `CREATE TABLE IF NOT EXISTS loadtest.errant_${n} (id INT PRIMARY KEY)`, `ALTER TABLE loadtest.errant_${n} ADD COLUMN note VARCHAR(20)`, `INSERT INTO loadtest.acks VALUES (${930000 + n}, 'errant', NOW(6))`);
  await sql(suite.config, 'orders-a', 'CREATE TABLE IF NOT EXISTS loadtest.more (id INT PRIMARY KEY, v VARCHAR(64))', `INSERT INTO loadtest.more SELECT seq + ${n * 10000}, 'while b was away' FROM mysql.seq_1_to_3000`, `INSERT INTO loadtest.acks SELECT seq + ${n * 10000}, 'primary', NOW(6) FROM mysql.seq_1_to_500`);
}

function startFailback(prefix: string, reason: string): Promise<WorkflowHandle> {
  const incidentId = `${prefix}${Date.now()}`;
  return suite.client.workflow.start('failback', {
    taskQueue: suite.taskQueue,
    workflowId: `failback-orders-${incidentId}`,
    args: [{ cluster: 'orders', instance: 'orders-b', method: 'reseed-physical', reason, requester: 'carol', incidentId } satisfies FailbackInput],
  });
}

/** Caught up with the primary, replicating from it, read-only, no errant table, fingerprints equal. */
async function expectRebuilt(): Promise<void> {
  const last = String((await rowsOn(suite.config, 'orders-a', 'SELECT @@gtid_binlog_pos AS p'))[0]!.p);
  await rowsOn(suite.config, 'orders-b', `SELECT MASTER_GTID_WAIT('${last}', 60)`);
  expect(await shape(suite.config)).toMatchObject({ primary: 'orders-a', writable: ['orders-a'], sources: { 'orders-b': 'orders-a' } });
  expect(String((await rowsOn(suite.config, 'orders-b', 'SELECT @@gtid_current_pos AS p'))[0]!.p)).toBe(last);
  expect(Number((await rowsOn(suite.config, 'orders-b', "SELECT COUNT(*) AS n FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'loadtest' AND TABLE_NAME LIKE 'errant%'"))[0]!.n)).toBe(0);
  for (const table of ['loadtest.acks', 'loadtest.more']) {
    const truth = await fingerprintOn(suite.config, 'orders-a', table);
    expect(truth!.rows).toBeGreaterThan(0);
    expect(await fingerprintOn(suite.config, 'orders-b', table)).toEqual(truth);
  }
  expect(existsSync(join(suite.config.backupDir, 'orders', 'failback', 'reseeding-orders-b.json'))).toBe(false);
}

describe('failback reseed-physical', () => {
  it('errant DDL: --method reseed-physical rebuilds orders-b from a healthy replica\'s physical copy, the export holds the DDL, 0 differences, fingerprints equal', async () => {
    await isolateWithErrantDdl();
    await startWorkerProcess(suite.config, suite.taskQueue);
    const handle = await startFailback('FBP', 'errant DDL, physical reseed');
    await approveWhenAsked(handle);
    const result = (await handle.result()) as FailbackResult;
    expect(result).toMatchObject({ status: 'succeeded', method: 'reseed-physical', primaryAfter: 'orders-a', consistency: { differences: 0 } });
    expect(result.analysis.errant.map((e) => e.statement)).toContainEqual(expect.stringMatching(/ALTER TABLE loadtest.errant_1 ADD COLUMN note/));
    const exported = readFileSync(result.analysis.export!.sql, 'utf8');
    expect(exported).toMatch(/ALTER TABLE loadtest.errant_1 ADD COLUMN note/);
    expect(exported).toMatch(/930001/);
    const step = (await stateOf(handle)).steps.find((x) => x.name === 'reseed (physical)');
    expect(step?.status).toBe('succeeded');
    const restored = JSON.parse(readFileSync(join(result.analysis.export!.dir, 'reseed-physical', 'restored.json'), 'utf8'));
    expect(restored).toMatchObject({ source: 'orders-c', copyReused: false });
    expect(restored.copyBytes).toBeGreaterThan(1_000_000);
    await expectRebuilt();
  }, 360_000);

  it.each([
    ['cleared', 'the target reported its datadir cleared: a new worker copies again', false],
    ['copy', 'the copy arrived whole (recorded) but the position is not set yet: a new worker does not copy again, it finishes', true],
  ] as const)('SIGKILL inside reseedPhysical once %s (%s); orders-b stays read-only and out of the topology, marked; 0 differences', async (subStep, _why, reused) => {
    await isolateWithErrantDdl();
    const doomed = await startWorkerProcess(suite.config, suite.taskQueue, { CRASH_AT_SUB_STEP: `reseedPhysical:${subStep}` });
    const handle = await startFailback('FBPC', `crash inside the physical reseed at ${subStep}`);
    await approveWhenAsked(handle);
    await Promise.race([doomed.exited, handle.result().then((r) => Promise.reject(new Error(`run ended before the crash: ${JSON.stringify(r)}`)))]);
    expect(doomed.proc.signalCode).toBe('SIGKILL');

    const marker = join(suite.config.backupDir, 'orders', 'failback', 'reseeding-orders-b.json');
    expect(JSON.parse(readFileSync(marker, 'utf8'))).toMatchObject({ instance: 'orders-b', workflowId: handle.workflowId, method: 'reseed-physical' });
    // Down or read-only, replicating from nobody, never writable: out of the topology.
    const half = await shape(suite.config);
    expect(half).toMatchObject({ primary: 'orders-a', writable: ['orders-a'] });
    expect(half.sources['orders-b'] ?? null).toBeNull();

    await startWorkerProcess(suite.config, suite.taskQueue);
    const result = (await handle.result()) as FailbackResult;
    expect(result).toMatchObject({ status: 'succeeded', method: 'reseed-physical', primaryAfter: 'orders-a', consistency: { differences: 0 } });
    const restored = JSON.parse(readFileSync(join(result.analysis.export!.dir, 'reseed-physical', 'restored.json'), 'utf8'));
    expect(restored).toMatchObject({ copyReused: reused });
    await expectRebuilt();
    const succeeded = (await stepLog(suite.config, handle.workflowId)).filter((r) => r.status === 'succeeded').map((r) => r.step);
    for (const s of ['reseed (physical)', 'rejoin', 'catch up', 'consistency check', 'record']) expect(succeeded.filter((x) => x === s)).toHaveLength(1);
  }, 420_000);
});
