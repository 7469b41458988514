/**
 * The real worker process SIGKILLed in the middle of a long SQL-thread replay, then restarted: the
 * restore resumes from the position the recovery instance had applied (the dump is not loaded
 * again), reaches exactly the end of the archive, and its chunked checksums equal production's.
 */
import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { RunbookConfig } from '../../src/config/load';
import { connect, instanceEndpoint } from '../../src/adapters/mysql/connect';
import type { Sandbox } from '../../src/adapters/mariadbd/sandbox';
import type { RestoreInput, RestoreResult } from '../../src/workflows/restore';
import { decide, stepLog, waitForApprovalRequest } from '../support/failover';
import { startTestSandbox } from '../support/sandbox';
import { rowsOn, sql } from '../support/stack';
import { killWorkerProcesses, startWorkerProcess } from '../support/workerProcess';

const taskQueue = `restore-crash-${process.pid}`;
const TRANSACTIONS = 20_000;
let config: RunbookConfig;
let sandbox: Sandbox;
let client: Client;

beforeAll(async () => {
  ({ config, sandbox } = await startTestSandbox('restore-crash', 26500));
  client = new Client({ connection: await Connection.connect({ address: inject('temporalAddress') }) });
  await sql(config, 'orders-a', 'CREATE DATABASE shop', 'CREATE TABLE shop.ledger (id INT PRIMARY KEY, balance BIGINT, note VARCHAR(40))',
    'USE shop', "INSERT INTO shop.ledger SELECT seq, 0, 'opening' FROM seq_1_to_2000",
    'CREATE TABLE shop.prices (id INT PRIMARY KEY, price INT NOT NULL)', 'INSERT INTO shop.prices SELECT seq, seq * 10 FROM seq_1_to_100');
  const worker = await startWorkerProcess(config, taskQueue);
  await client.workflow.execute('backup', { taskQueue, workflowId: `crash-backup-${Date.now()}`, args: [{ cluster: 'orders', instance: 'orders-a', kind: 'logical', requester: 'alice' }] });
  // Many transactions of 50 row changes each, so that replaying them takes seconds.
  const conn = await connect(instanceEndpoint(config, 'orders', 'orders-a'));
  try {
    await conn.query(`CREATE PROCEDURE shop.churn(n INT) BEGIN DECLARE i INT DEFAULT 0; WHILE i < n DO
      UPDATE shop.ledger SET balance = balance + i, note = CONCAT('t', i) WHERE id BETWEEN 1 + (i * 7919) % 1950 AND 50 + (i * 7919) % 1950; SET i = i + 1; END WHILE; END`);
    // Faster to generate; durability of this test data does not matter.
    await conn.query('SET GLOBAL sync_binlog = 0, GLOBAL innodb_flush_log_at_trx_commit = 2');
    await conn.query(`CALL shop.churn(${TRANSACTIONS})`);
    await conn.query('SET GLOBAL sync_binlog = 1, GLOBAL innodb_flush_log_at_trx_commit = 1');
  } finally {
    conn.destroy();
  }
  // The mistake the cut-over test repairs: no later write touches its rows.
  await sql(config, 'orders-a', 'UPDATE shop.prices SET price = 0');
  // A physical backup now archives the binlogs; the restore below starts from the logical one before.
  await client.workflow.execute('backup', { taskQueue, workflowId: `crash-archive-${Date.now()}`, args: [{ cluster: 'orders', instance: 'orders-a', kind: 'physical', requester: 'alice' }] });
  worker.proc.kill('SIGTERM');
  await worker.exited;
}, 180_000);

afterAll(async () => {
  killWorkerProcesses();
  await client?.connection.close();
  await sandbox?.destroy();
});

describe('worker crash during replay', () => {
  it('SIGKILL once the replay has made progress, restart: resumes where the SQL thread was, result identical to production', async () => {
    const conn = await connect(instanceEndpoint(config, 'orders', 'orders-a'));
    const gtid = String(((await conn.query('SELECT @@gtid_binlog_pos AS gtid'))[0] as { gtid: string }[])[0]!.gtid);
    conn.destroy();
    const input: RestoreInput = { cluster: 'orders', target: { kind: 'gtid', gtid }, backupKind: 'logical', compare: ['shop.ledger'], requester: 'alice', reason: 'crash drill', incidentId: 'INC-CRASH' };
    const doomed = await startWorkerProcess(config, taskQueue, { CRASH_DURING_ACTIVITY: 'replayTo' });
    const handle = await client.workflow.start('restore', { taskQueue, workflowId: `restore-crash-${Date.now()}`, args: [input] });
    await Promise.race([doomed.exited, handle.result().then((r) => Promise.reject(new Error(`run ended before the crash: ${JSON.stringify(r)}`)))]);
    expect(doomed.proc.signalCode).toBe('SIGKILL');

    await startWorkerProcess(config, taskQueue);
    const result = (await handle.result()) as RestoreResult;
    expect(result.status).toBe('succeeded');
    expect(result.recoveryPoint).toBe(gtid);
    const ledger = result.verification!.tables[0]!;
    expect(ledger).toMatchObject({ table: 'shop.ledger', equal: true, differingChunks: [] });
    expect(ledger.recovery).toEqual(ledger.production);

    // The replay activity ran twice (the first attempt died with the worker); the dump was loaded once.
    const history = await handle.fetchHistory();
    const attempts = (type: string) =>
      history.events!.filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === type).map((e) => e.eventId!.toString());
    const started = history.events!.filter((e) => e.activityTaskStartedEventAttributes && attempts('replayTo').includes(e.activityTaskStartedEventAttributes.scheduledEventId!.toString()));
    expect(started.at(-1)!.activityTaskStartedEventAttributes!.attempt).toBe(2);
    expect(attempts('prepareRecovery')).toHaveLength(1);
    const log = await stepLog(config, handle.workflowId);
    expect(log.filter((r) => r.step === 'replay to the target').map((r) => r.status)).toEqual(['started', 'succeeded']);
  });

  it('SIGKILL inside the cut-over (rows written back, completion not reported): the retry finds them in place, writes nothing twice', async () => {
    const input: RestoreInput = {
      cluster: 'orders', target: { kind: 'before-event', event: { table: 'shop.prices', statement: '^UPDATE' } }, skip: true, cutover: 'copy-tables', backupKind: 'logical',
      requester: 'alice', reason: 'prices zeroed', incidentId: 'INC-CUTOVER-CRASH',
    };
    // Only the doomed worker may take the cut-over: the one the test before restarted goes first.
    killWorkerProcesses();
    const doomed = await startWorkerProcess(config, taskQueue, { CRASH_INSIDE_ACTIVITY: 'cutOverTables' });
    const handle = await client.workflow.start('restore', { taskQueue, workflowId: `restore-cutover-crash-${Date.now()}`, args: [input] });
    // Recovery, replay and verification come first: on a loaded machine that takes a while.
    await waitForApprovalRequest(handle, 100_000);
    expect(await decide(handle, 'approve', 'bob')).toMatchObject({ accepted: true });
    await doomed.exited;
    expect(doomed.proc.signalCode).toBe('SIGKILL');
    // Killed after the write: production already has the prices back.
    expect(await rowsOn(config, 'orders-a', 'SELECT COUNT(*) AS n FROM shop.prices WHERE price = id * 10')).toEqual([{ n: '100' }]);

    await startWorkerProcess(config, taskQueue);
    const result = (await handle.result()) as RestoreResult;
    expect(result.status).toBe('succeeded');
    expect(result.cutover!.tables).toMatchObject([{ table: 'shop.prices', repaired: 0, alreadyInPlace: 100, leftAsTheyAre: 0 }]);
    expect(await rowsOn(config, 'orders-a', 'SELECT COUNT(*) AS n, SUM(price) AS total FROM shop.prices')).toEqual([{ n: '100', total: '50500' }]);
    const history = await handle.fetchHistory();
    const scheduled = history.events!.filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'cutOverTables').map((e) => e.eventId!.toString());
    const attempts = history.events!.filter((e) => e.activityTaskStartedEventAttributes && scheduled.includes(e.activityTaskStartedEventAttributes.scheduledEventId!.toString()));
    expect(attempts.at(-1)!.activityTaskStartedEventAttributes!.attempt).toBe(2);
    const log = await stepLog(config, handle.workflowId);
    expect(log.filter((r) => r.step === 'cut over').map((r) => r.status)).toEqual(['started', 'succeeded']);
  }, 240_000);
});
