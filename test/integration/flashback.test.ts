/**
 * The flashback runbook on the real sandbox and worker. An UPDATE without WHERE is undone by
 * `mariadb-binlog --flashback` after approval, keeping a later INSERT into the same table and the
 * writes to another table, and the undo replicates. A DROP TABLE, and an UPDATE whose rows were
 * changed again later, are refused by the check before anyone is asked. A dry run and a rejected
 * approval change nothing. Each case has its own table.
 */
import type { WorkflowHandle } from '@temporalio/client';
import { MockActivityEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBackupActivities } from '../../src/activities/backup';
import type { RunbookConfig } from '../../src/config/load';
import { connect, instanceEndpoint } from '../../src/adapters/mysql/connect';
import type { Sandbox } from '../../src/adapters/mariadbd/sandbox';
import type { FlashbackInput, FlashbackResult } from '../../src/workflows/flashback';
import { decide, runFailover, stepLog, waitForApprovalRequest } from '../support/failover';
import { eventually, startTestSandbox, testPort } from '../support/sandbox';
import { sql, startInProcessWorker, type InProcessWorker } from '../support/stack';

const taskQueue = `flashback-${process.pid}`;
let config: RunbookConfig;
let sandbox: Sandbox;
let stack: InProcessWorker;

const start = (input: FlashbackInput, id: string): Promise<WorkflowHandle> =>
  stack.client.workflow.start('flashback', { taskQueue, workflowId: `${id}-${Date.now()}`, args: [input] });
const failureOf = async (input: FlashbackInput, id: string) => {
  const handle = await start(input, id);
  const err = (await handle.result().catch((e: unknown) => e)) as { cause: Error };
  return { message: err.cause.message, workflowId: handle.workflowId };
};

const input = (event: FlashbackInput['event'], over: Partial<FlashbackInput> = {}): FlashbackInput => ({
  cluster: 'orders', event, requester: 'alice', reason: 'balances zeroed by an UPDATE without WHERE', incidentId: 'INC-FB', ...over,
});
const accountsMistake = { table: 'shop.accounts', statement: '^UPDATE' };

async function rows(instance: string, statement: string): Promise<unknown[][]> {
  const conn = await connect(instanceEndpoint(config, 'orders', instance));
  try {
    return (await conn.query({ sql: statement, rowsAsArray: true }))[0] as unknown[][];
  } finally {
    conn.destroy();
  }
}
const gtidPosition = async () => String((await rows('orders-a', 'SELECT @@gtid_binlog_pos'))[0]![0]);

beforeAll(async () => {
  ({ config, sandbox } = await startTestSandbox('flashback', 26600));
  stack = await startInProcessWorker(config, taskQueue);
  await sql(
    config,
    'orders-a',
    'CREATE DATABASE shop',
    'CREATE TABLE shop.accounts (id INT PRIMARY KEY, balance INT, owner VARCHAR(20))',
    "INSERT INTO shop.accounts VALUES (1, 100, 'ann'), (2, 200, NULL), (3, 300, 'cy')",
    'CREATE TABLE shop.audit (id INT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(40))',
    'CREATE DATABASE dropped',
    'CREATE TABLE dropped.parts (id INT PRIMARY KEY, name VARCHAR(20))',
    "INSERT INTO dropped.parts VALUES (1, 'bolt')",
    'CREATE DATABASE clash',
    'CREATE TABLE clash.stock (id INT PRIMARY KEY, qty INT)',
    'INSERT INTO clash.stock VALUES (1, 10), (2, 20)',
    'CREATE DATABASE rej',
    'CREATE TABLE rej.wallets (id INT PRIMARY KEY, coins INT)',
    'INSERT INTO rej.wallets VALUES (1, 5), (2, 6)',
    // The mistakes, each followed by later work.
    'UPDATE shop.accounts SET balance = 0',
    "INSERT INTO shop.accounts VALUES (4, 400, 'dee')", // a new row in the same table: kept
    "INSERT INTO shop.audit (note) VALUES ('other table, kept')",
    'DROP TABLE dropped.parts',
    'UPDATE clash.stock SET qty = 0',
    'UPDATE clash.stock SET qty = 5 WHERE id = 2', // a later change to a row the mistake changed
    'UPDATE rej.wallets SET coins = 0',
  );
  await new MockActivityEnvironment().run(() => createBackupActivities({ config }).archiveBinlogs({ cluster: 'orders', instance: 'orders-a' }));
}, 120_000);

afterAll(async () => {
  await stack?.stop();
  await sandbox?.destroy();
});

describe('flashback runbook', () => {
  it('dry run: shows the plan (statement, rows, bytes, later writes checked) and changes nothing', async () => {
    const before = await gtidPosition();
    const handle = await start(input(accountsMistake, { dryRun: true }), 'flashback-dry');
    const result = (await handle.result()) as FlashbackResult;
    expect(result).toMatchObject({ status: 'dry_run', rows: 3, event: { statements: ['UPDATE shop.accounts SET balance = 0'], rowEvents: [{ type: 'UPDATE', table: 'shop.accounts', rows: 3 }] } });
    expect(result.check).toMatchObject({ applied: false, primary: 'orders-a', tables: ['shop.accounts'], rows: 3 });
    expect(result.check.bytes).toBeGreaterThan(0);
    expect(result.check.conflicts.transactionsRead).toBeGreaterThanOrEqual(6); // every later write on the primary was read
    expect(await rows('orders-a', 'SELECT id, balance FROM shop.accounts ORDER BY id')).toEqual([[1, 0], [2, 0], [3, 0], [4, 400]]);
    expect(await gtidPosition()).toBe(before);
    const log = await stepLog(config, handle.workflowId);
    expect(log.filter((r) => r.status === 'skipped').map((r) => r.step)).toEqual(['approval', 'lock cluster', 'apply flashback', 'verify', 'unlock cluster', 'record']);
  });

  it('undoes the UPDATE without WHERE after approval by another person; later writes kept; replicated', async () => {
    const handle = await start(input(accountsMistake), 'flashback-update');
    await waitForApprovalRequest(handle);
    expect(await rows('orders-a', 'SELECT COUNT(*) FROM shop.accounts WHERE balance = 0')).toEqual([['3']]); // nothing yet
    expect(await decide(handle, 'approve', 'alice')).toMatchObject({ accepted: false, reason: 'four-eyes: alice requested this run and may not approve it' });
    expect(await decide(handle, 'approve', 'bob')).toEqual({ accepted: true, status: 'approved' });
    const result = (await handle.result()) as FlashbackResult;
    expect(result).toMatchObject({ status: 'succeeded', rows: 3, flashbackGtid: expect.stringMatching(new RegExp(String.raw`^0-${testPort(26601)}-\d+$`)), verification: { problems: [], compared: 3, changedSince: [] } });
    const expected = [[1, 100, 'ann'], [2, 200, null], [3, 300, 'cy'], [4, 400, 'dee']];
    expect(await rows('orders-a', 'SELECT * FROM shop.accounts ORDER BY id')).toEqual(expected);
    expect(await rows('orders-a', 'SELECT note FROM shop.audit')).toEqual([['other table, kept']]);
    // The flashback is an ordinary transaction: the replicas apply it too.
    await eventually('the undone rows on orders-b', async () => JSON.stringify(await rows('orders-b', 'SELECT * FROM shop.accounts ORDER BY id')) === JSON.stringify(expected));
    const log = await stepLog(config, handle.workflowId);
    expect(log.filter((r) => r.status === 'succeeded').map((r) => r.step)).toEqual([
      'locate the bad event', 'check flashback is possible', 'approval', 'lock cluster', 'apply flashback', 'verify', 'unlock cluster', 'record', 'runbook',
    ]);
    expect(log.filter((r) => r.status === 'approved').map((r) => r.step)).toEqual(['approve by bob via cli']);
  });

  it('refuses a DROP TABLE before any approval is requested; nothing changed', async () => {
    const before = await gtidPosition();
    const { message, workflowId } = await failureOf(input({ table: 'dropped.parts', statement: 'DROP TABLE' }), 'flashback-drop');
    expect(message).toMatch(new RegExp(String.raw`^step "check flashback is possible" failed \(precondition\): 0-${testPort(26601)}-\d+ is DDL \(DROP TABLE \`dropped\`\.\`parts\`\): flashback cannot undo it; use restore and replay$`));
    const log = await stepLog(config, workflowId);
    expect(log.some((r) => r.step === 'approval' || r.status === 'requested')).toBe(false);
    expect(await gtidPosition()).toBe(before);
  });

  it('refuses when a later UPDATE changed the same rows (FlashbackConflict), before approval; nothing changed', async () => {
    const before = await gtidPosition();
    const { message, workflowId } = await failureOf(input({ table: 'clash.stock', statement: '^UPDATE', statementNot: 'WHERE' }), 'flashback-conflict');
    expect(message).toMatch(
      new RegExp(String.raw`^step "check flashback is possible" failed \(precondition\): later writes changed rows of clash\.stock that 0-${testPort(26601)}-\d+ changed \(0-${testPort(26601)}-\d+; e\.g\. id=2\): flashback would overwrite them; use restore with --skip and --cutover copy-tables$`),
    );
    const log = await stepLog(config, workflowId);
    expect(log.some((r) => r.step === 'approval')).toBe(false);
    expect(await rows('orders-a', 'SELECT id, qty FROM clash.stock ORDER BY id')).toEqual([[1, 0], [2, 5]]);
    expect(await gtidPosition()).toBe(before);
  });

  it('a rejected approval changes nothing', async () => {
    const before = await gtidPosition();
    const handle = await start(input({ table: 'rej.wallets', statement: '^UPDATE' }), 'flashback-rejected');
    await waitForApprovalRequest(handle);
    expect(await decide(handle, 'reject', 'bob')).toEqual({ accepted: true, status: 'rejected' });
    const result = (await handle.result()) as FlashbackResult;
    expect(result).toMatchObject({ status: 'rejected', rows: 2 });
    expect(result.flashbackGtid).toBeUndefined();
    expect(await rows('orders-a', 'SELECT id, coins FROM rej.wallets ORDER BY id')).toEqual([[1, 0], [2, 0]]);
    expect(await gtidPosition()).toBe(before);
    const log = await stepLog(config, handle.workflowId);
    expect(log.filter((r) => r.status === 'skipped').map((r) => r.step)).toEqual(['apply flashback']);
  });

  it('after a switchover, finds the mistake in the new primary\'s own archive and undoes it there', async () => {
    await sql(config, 'orders-a', 'CREATE DATABASE moved', 'CREATE TABLE moved.prices (id INT PRIMARY KEY, price INT)', 'INSERT INTO moved.prices VALUES (1, 11), (2, 22)', 'UPDATE moved.prices SET price = 0');
    const { result: switched } = await runFailover(stack.client, taskQueue, { mode: 'planned', target: 'orders-b' });
    expect(switched.status).toBe('succeeded');
    // orders-b's binlog (log_slave_updates) holds the mistake too, under its own file names, which
    // repeat orders-a's: archived apart, it is the archive a restore or flashback now reads.
    await new MockActivityEnvironment().run(() => createBackupActivities({ config }).archiveBinlogs({ cluster: 'orders', instance: 'orders-b' }));
    const handle = await start(input({ table: 'moved.prices', statement: '^UPDATE' }, { incidentId: 'INC-MOVED' }), 'flashback-moved');
    await waitForApprovalRequest(handle);
    await decide(handle, 'approve', 'bob');
    const result = (await handle.result()) as FlashbackResult;
    expect(result).toMatchObject({ status: 'succeeded', rows: 2, check: { primary: 'orders-b' }, verification: { problems: [] } });
    expect(await rows('orders-b', 'SELECT id, price FROM moved.prices ORDER BY id')).toEqual([[1, 11], [2, 22]]);
    await eventually('the undone rows on orders-a, now a replica', async () => JSON.stringify(await rows('orders-a', 'SELECT id, price FROM moved.prices ORDER BY id')) === '[[1,11],[2,22]]');
  });

  it('refuses input that names no event, in one line', async () => {
    const { message } = await failureOf(input({}), 'flashback-bad-input');
    expect(message).toBe('step "locate the bad event" failed (precondition): name the bad event: a table, a statement pattern or a time window (from/to)');
  });
});
