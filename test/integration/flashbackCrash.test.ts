/**
 * The real worker process SIGKILLed inside `apply flashback`, after the flashback transaction is
 * committed on the primary and before the activity's completion is reported; then restarted. The
 * retried apply finds the flashback already in the primary's binlog and reports it instead of
 * applying it twice: the rows hold their earlier values once, and the primary got exactly one
 * new transaction.
 */
import { Client, Connection } from '@temporalio/client';
import { MockActivityEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createBackupActivities } from '../../src/activities/backup';
import type { RunbookConfig } from '../../src/config/load';
import type { Sandbox } from '../../src/adapters/mariadbd/sandbox';
import type { FlashbackInput, FlashbackResult } from '../../src/workflows/flashback';
import { activityRuns, stepLog } from '../support/failover';
import { startTestSandbox } from '../support/sandbox';
import { rowsOn, sql } from '../support/stack';
import { killWorkerProcesses, startWorkerProcess } from '../support/workerProcess';

const taskQueue = `flashback-crash-${process.pid}`;
let config: RunbookConfig;
let sandbox: Sandbox;
let client: Client;

const binlogSeq = async () => Number(String((await rowsOn(config, 'orders-a', 'SELECT @@gtid_binlog_pos AS p'))[0]!.p).split('-').pop());
const balances = async () => (await rowsOn(config, 'orders-a', 'SELECT id, balance FROM shop.accounts ORDER BY id')).map((r) => [Number(r.id), Number(r.balance)]);

beforeAll(async () => {
  ({ config, sandbox } = await startTestSandbox('flashback-crash', 27700, (doc) => {
    doc.clusters.orders.approval.flashback = { default: { mode: 'auto' } };
  }));
  client = new Client({ connection: await Connection.connect({ address: inject('temporalAddress') }) });
  await sql(
    config,
    'orders-a',
    'CREATE DATABASE shop',
    'CREATE TABLE shop.accounts (id INT PRIMARY KEY, balance INT)',
    'INSERT INTO shop.accounts VALUES (1, 100), (2, 200), (3, 300)',
    'UPDATE shop.accounts SET balance = 0', // the mistake
  );
  await new MockActivityEnvironment().run(() => createBackupActivities({ config }).archiveBinlogs({ cluster: 'orders', instance: 'orders-a' }));
}, 120_000);

afterAll(async () => {
  killWorkerProcesses();
  await client?.connection.close();
  await sandbox?.destroy();
});

describe('worker crash inside apply flashback', () => {
  it('SIGKILL after the flashback is committed, before its completion is reported: the retry reports it, applies nothing twice', async () => {
    const before = await binlogSeq();
    const doomed = await startWorkerProcess(config, taskQueue, { CRASH_INSIDE_ACTIVITY: 'flashbackTransaction', CRASH_INSIDE_WHEN: '{"apply":true}' });
    const input: FlashbackInput = { cluster: 'orders', event: { table: 'shop.accounts', statement: '^UPDATE' }, requester: 'alice', reason: 'balances zeroed', incidentId: 'INC-FB-CRASH' };
    const handle = await client.workflow.start('flashback', { taskQueue, workflowId: `flashback-crash-${process.pid}`, args: [input] });
    await Promise.race([doomed.exited, handle.result().then((r) => Promise.reject(new Error(`run ended before the crash: ${JSON.stringify(r)}`)))]);
    expect(doomed.proc.signalCode).toBe('SIGKILL');
    // The flashback was committed before the worker died.
    expect(await balances()).toEqual([[1, 100], [2, 200], [3, 300]]);
    expect(await binlogSeq()).toBe(before + 1);

    await startWorkerProcess(config, taskQueue);
    const result = (await handle.result()) as FlashbackResult;
    expect(result).toMatchObject({ status: 'succeeded', rows: 3, verification: { problems: [] } });

    const applies = (await activityRuns(handle, 'flashbackTransaction')).filter((r) => r.input.apply === true);
    expect(applies).toHaveLength(1);
    expect(applies[0]).toMatchObject({ attempt: 2, result: { alreadyApplied: true, flashbackGtid: result.flashbackGtid } });
    expect(await balances()).toEqual([[1, 100], [2, 200], [3, 300]]);
    expect(await binlogSeq()).toBe(before + 1); // one flashback transaction, not two
    const log = await stepLog(config, handle.workflowId);
    const keys = log.map((r) => `${r.seq}:${r.status}`);
    expect(new Set(keys).size).toBe(keys.length);
    expect(log.filter((r) => r.step === 'apply flashback').map((r) => r.status)).toEqual(['started', 'succeeded']);
  });
});
