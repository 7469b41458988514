/**
 * Point-in-time recovery on the real sandbox and worker. Backups of both kinds, then more writes,
 * a DROP TABLE, more writes to other tables, an UPDATE without WHERE and a later write to the same
 * table. The restore runbook finds each mistake in the archived binlogs, restores a backup into a
 * recovery instance, replays up to the mistake, skips it and replays the rest (SQL thread or pipe),
 * verifies against production with chunked checksums, and after approval copies the repaired table
 * back. Holes in the archive are refused before anything is restored.
 */
import { existsSync, readdirSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import type { WorkflowHandle } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunbookConfig } from '../../src/config/load';
import type { Sandbox } from '../../src/adapters/mariadbd/sandbox';
import type { RestoreInput, RestoreResult } from '../../src/workflows/restore';
import { decide, stepLog, waitForApprovalRequest } from '../support/failover';
import { eventually, killScratchServers, scratchServerPids, startTestSandbox, testPort } from '../support/sandbox';
import { rowsOn, sql, startInProcessWorker, type InProcessWorker } from '../support/stack';

const taskQueue = `restore-${process.pid}`;
let config: RunbookConfig;
let sandbox: Sandbox;
let stack: InProcessWorker;

const start = (input: RestoreInput, id: string): Promise<WorkflowHandle> =>
  stack.client.workflow.start('restore', { taskQueue, workflowId: `${id}-${Date.now()}`, args: [input] });
const run = async (input: RestoreInput, id: string) => (await start(input, id)).result() as Promise<RestoreResult>;
const failureOf = async (input: RestoreInput, id: string) => ((await run(input, id).catch((e: unknown) => e)) as { cause: Error }).cause.message;

const dropped = { kind: 'before-event', event: { table: 'orders', statement: 'DROP TABLE' } } as const;
const updatedItems = { kind: 'before-event', event: { table: 'items', statement: '^UPDATE' } } as const;
const input = (over: Partial<RestoreInput> = {}): RestoreInput => ({
  cluster: 'orders', target: dropped, skip: true, compare: ['shop.users', 'shop.items'],
  requester: 'alice', reason: 'orders table dropped', incidentId: 'INC-DROP', ...over,
});

const rows = (instance: string, statement: string) => rowsOn(config, instance, statement);

const count = async (instance: string, from: string) => Number((await rows(instance, `SELECT COUNT(*) AS n FROM ${from}`))[0]!.n);

const scratchServers = () => scratchServerPids(config).length;
const restoreDirs = () => (existsSync(join(config.backupDir, 'orders/restore')) ? readdirSync(join(config.backupDir, 'orders/restore')).length : 0);
const backup = (kind: 'logical' | 'physical', id: string) =>
  stack.client.workflow.execute('backup', { taskQueue, workflowId: `${id}-${Date.now()}`, args: [{ cluster: 'orders', instance: 'orders-a', kind, requester: 'alice' }] });

beforeAll(async () => {
  ({ config, sandbox } = await startTestSandbox('restore', 25800));
  stack = await startInProcessWorker(config, taskQueue);
  await sql(config, 'orders-a', 'CREATE DATABASE shop', 'CREATE TABLE shop.orders (id INT PRIMARY KEY, amount INT)', 'INSERT INTO shop.orders VALUES (1, 10), (2, 20)',
    'CREATE TABLE shop.users (id INT PRIMARY KEY, points INT)', 'INSERT INTO shop.users VALUES (1, 100)',
    'CREATE TABLE shop.items (id INT PRIMARY KEY, name VARCHAR(20), price INT)', 'USE shop', "INSERT INTO shop.items SELECT seq, CONCAT('item ', seq), seq * 10 FROM seq_1_to_30");
  await backup('logical', 'backup-logical');
  await backup('physical', 'backup-physical');
  await sql(config, 'orders-a', 'INSERT INTO shop.orders VALUES (3, 30)', 'FLUSH BINARY LOGS', 'SELECT SLEEP(1.1)', 'DROP TABLE shop.orders', 'INSERT INTO shop.users VALUES (2, 200)',
    'UPDATE shop.users SET points = points + 1 WHERE id = 1', 'FLUSH BINARY LOGS',
    'UPDATE shop.items SET price = 0', // the other mistake: no WHERE
    "INSERT INTO shop.items VALUES (31, 'late', 310)", // later work on the same table, must survive
    'INSERT INTO shop.users VALUES (3, 300)');
  // The next backup run archives the binlogs that now hold both mistakes.
  await backup('logical', 'backup-after');
}, 120_000);

afterAll(async () => {
  await stack?.stop();
  await sandbox?.destroy();
  // Scratch servers live under the backup dir, not the sandbox's: a failed case must not leave them.
  killScratchServers(config);
});

describe('restore runbook', () => {
  it('dry-run names the event, the backup, the binlog range, and starts nothing', async () => {
    const result = await run(input({ dryRun: true }), 'restore-dry');
    expect(result.status).toBe('dry_run');
    expect(result.target.event?.statements).toEqual(['DROP TABLE `shop`.`orders`']);
    expect(result.target.description).toMatch(new RegExp(String.raw`^just before 0-${testPort(25801)}-\d+ \(mysql-bin\.000002:\d+\): DROP TABLE \`shop\`\.\`orders\`$`));
    expect(result.backupId).toMatch(/^(logical|physical)-/);
    expect(scratchServers()).toBe(0);
    expect(restoreDirs()).toBe(0);
  });

  it('DROP TABLE, logical backup, SQL thread: the table as it was and every later write', async () => {
    const result = await run(input({ backupKind: 'logical' }), 'restore-drop');
    expect(result.status).toBe('succeeded');
    const v = result.verification!;
    const orders = v.tables.find((t) => t.table === 'shop.orders')!;
    expect(orders.production).toBeNull(); // still dropped in production: nothing touched it
    expect(orders.recovery?.rows).toBe(3); // as it was just before the DROP, with the write after the backup
    for (const t of ['shop.users', 'shop.items']) expect(v.tables.find((x) => x.table === t)).toMatchObject({ equal: true });
    expect(v.tables.find((x) => x.table === 'shop.users')!.recovery?.rows).toBe(3);
    expect(result.recoveryPoint).toBe(result.target.archiveEnd);
    expect(result.phases.map((p) => p.step)).toEqual([
      'locate target', 'choose backup', 'check binlog coverage', 'load policy', 'prepare recovery instance', 'replay to just before the bad event',
      'skip the bad event', 'replay the rest', 'probe topology', 'verify', 'stop the scratch instances',
    ]);
    expect(scratchServers()).toBe(0); // nothing left running
  });

  it('the same from the physical backup, replayed through mariadb-binlog | mariadb', async () => {
    const result = await run(input({ backupKind: 'physical', replayMethod: 'pipe' }), 'restore-physical-pipe');
    expect(result.backupId).toMatch(/^physical-/);
    const v = result.verification!;
    expect(v.tables.find((t) => t.table === 'shop.orders')!.recovery?.rows).toBe(3);
    for (const t of ['shop.users', 'shop.items']) expect(v.tables.find((x) => x.table === t)).toMatchObject({ equal: true });
    expect(result.recoveryPoint).toBe(result.target.archiveEnd);
  });

  it('stops just before a point in time or a GTID; a time without a zone is refused', async () => {
    const drop = (await run(input({ dryRun: true }), 'restore-find')).target;
    const bad = drop.event!;
    const byGtid = await run(input({ target: { kind: 'gtid', gtid: drop.stopAt }, skip: false, compare: [], backupKind: 'logical' }), 'restore-gtid');
    expect(byGtid.recoveryPoint).toBe(drop.stopAt);
    expect(byGtid.verification!.tables).toEqual([]);
    const byTime = await run(input({ target: { kind: 'time', at: new Date(bad.timestamp - 1000).toISOString() }, skip: false, dryRun: true }), 'restore-time');
    expect(byTime.target.stopAt).toBe(drop.stopAt); // the INSERT a second before the DROP
    expect(byTime.target.description).toMatch(new RegExp(String.raw`^through 0-${testPort(25801)}-\d+, the last transaction at or before `));
    expect(await failureOf(input({ target: { kind: 'time', at: '2026-03-14 09:26:53' }, skip: false }), 'restore-no-zone')).toBe(
      'step "locate target" failed (precondition): target time "2026-03-14 09:26:53" has no time zone: add Z or an offset like +08:00',
    );
  });

  it('refuses when the pattern matches more than one event, before restoring anything; a GTID from the list confirms one', async () => {
    const message = await failureOf(input({ target: { kind: 'before-event', event: { statement: 'INSERT' } } }), 'restore-ambiguous');
    expect(message).toMatch(new RegExp(String.raw`^step "locate target" failed \(precondition\): \d+ events match; narrow the window, table or pattern, or confirm one by its GTID \(--event\): 0-${testPort(25801)}-\d+ `));
    // Two later INSERTs into users match; the list names both, and one of its GTIDs picks one.
    const users = { statement: '^INSERT INTO shop.users VALUES \\((2|3),' };
    const listing = await failureOf(input({ target: { kind: 'before-event', event: users }, skip: false }), 'restore-two-inserts');
    const listed = [...listing.matchAll(new RegExp(String.raw`(0-${testPort(25801)}-\d+) INSERT INTO shop\.users VALUES \((\d)`, 'g'))].map((m) => [m[1]!, m[2]!]);
    expect(listed.map(([, id]) => id)).toEqual(['2', '3']);
    const confirmed = await run(input({ target: { kind: 'before-event', event: { ...users, gtid: listed[0]![0] } }, skip: false, dryRun: true }), 'restore-confirmed');
    expect(confirmed.target.event).toMatchObject({ gtid: listed[0]![0], statements: ['INSERT INTO shop.users VALUES (2, 200)'] });
  });

  it('UPDATE without WHERE: replayed around, verified, approved, and its rows written back in place in production', async () => {
    const dirsBefore = restoreDirs();
    const handle = await start(input({ target: updatedItems, cutover: 'copy-tables', compare: ['shop.users'], reason: 'prices zeroed', incidentId: 'INC-UPD' }), 'restore-update');
    await waitForApprovalRequest(handle);
    // Waiting for approval: the recovery is verified, production still has the damage.
    expect(await count('orders-a', 'shop.items WHERE price = 0')).toBe(30);
    expect(restoreDirs()).toBe(dirsBefore + 1);
    expect(await decide(handle, 'approve', 'bob')).toEqual({ accepted: true, status: 'approved' });
    const result = (await handle.result()) as RestoreResult;
    expect(result.status).toBe('succeeded');
    // In place: only the 30 rows the UPDATE changed, each still as the mistake left it; the later row is untouched.
    expect(result.cutover!.tables).toEqual([{ table: 'shop.items', action: '30 row(s) written back in place', repaired: 30, alreadyInPlace: 0, leftAsTheyAre: 0, leftExamples: [] }]);
    expect(await rows('orders-a', 'SELECT SUM(price) AS total, COUNT(*) AS n FROM shop.items')).toEqual([{ total: '4960', n: '31' }]); // 10+…+300, and the late 310
    // Nothing is left behind in production: the staging schema held copies only.
    expect(await count('orders-a', `information_schema.SCHEMATA WHERE SCHEMA_NAME = '${result.cutover!.stagingSchema}'`)).toBe(0);
    // The swap replicates like any write.
    await eventually('the repaired table on orders-b', async () => (await count('orders-b', 'shop.items WHERE price = 0')) === 0 && (await count('orders-b', 'shop.items')) === 31);
    const log = await stepLog(config, handle.workflowId);
    expect(log.filter((r) => r.status === 'succeeded').map((r) => r.step)).toEqual(expect.arrayContaining(['verify', 'approval', 'lock cluster', 'cut over', 'unlock cluster', 'record']));
  });

  it('refuses a missing binlog file, then a GTID gap, before restoring anything', async () => {
    const archive = join(config.backupDir, 'orders/binlogs/orders-a');
    const dirsBefore = restoreDirs();
    const { archiveEnd } = (await run(input({ dryRun: true }), 'restore-end')).target; // in mysql-bin.000003
    renameSync(join(archive, 'mysql-bin.000002'), join(archive, 'aside'));
    try {
      // From the physical backup (in .000001) to the end of the archive, .000002 is needed.
      expect(await failureOf(input({ target: { kind: 'gtid', gtid: archiveEnd }, skip: false, backupKind: 'physical' }), 'restore-missing-file')).toBe(
        `step "check binlog coverage" failed (precondition): archived binlog mysql-bin.000002 is unusable: missing from ${archive}`,
      );
    } finally {
      renameSync(join(archive, 'aside'), join(archive, 'mysql-bin.000002'));
    }
    // A real gap: the primary is told to skip sequence numbers, as a mis-set gtid_seq_no would.
    const [{ seq }] = (await rows('orders-a', "SELECT SUBSTRING_INDEX(@@gtid_binlog_pos, '-', -1) AS seq")) as [{ seq: string }];
    await sql(config, 'orders-a', `SET SESSION gtid_seq_no = ${Number(seq) + 5}`, 'INSERT INTO shop.users VALUES (4, 400)', 'INSERT INTO shop.users VALUES (5, 500)');
    await backup('logical', 'backup-gap'); // archives the gap; taken after the target, so not a candidate
    const message = await failureOf(input({ target: { kind: 'gtid', gtid: `0-${testPort(25801)}-${Number(seq) + 5}` }, skip: false, backupKind: 'logical' }), 'restore-gap');
    expect(message).toMatch(new RegExp(`^step "check binlog coverage" failed \\(precondition\\): GTID gap: 0-\\*-${Number(seq) + 1} … 0-\\*-${Number(seq) + 4} missing after (the backup.s )?0-${testPort(25801)}-${seq}[ ,]`));
    expect(restoreDirs()).toBe(dirsBefore);
    expect(scratchServers()).toBe(0);
  });

  it('--prune lists, then deletes, what earlier restores kept: their datadirs and staging schemas', async () => {
    expect(restoreDirs()).toBeGreaterThan(0);
    // An older run's staging schema (the damaged copy a whole-table swap used to keep).
    await sql(config, 'orders-a', 'CREATE DATABASE restore_0123456789ab', 'CREATE TABLE restore_0123456789ab.items__damaged (id INT PRIMARY KEY)');
    const prune = (dryRun: boolean) =>
      stack.client.workflow.execute('restorePrune', { taskQueue, workflowId: `prune-${dryRun}-${Date.now()}`, args: [{ cluster: 'orders', olderThanDays: 0, requester: 'alice', dryRun }] }) as Promise<{
        directories: { path: string }[];
        schemas: string[];
      }>;
    const listed = await prune(true);
    expect(listed.directories.length).toBe(restoreDirs());
    expect(listed.schemas).toEqual(['restore_0123456789ab']);
    expect(restoreDirs()).toBe(listed.directories.length); // a dry run deletes nothing
    const done = await prune(false);
    expect(done.directories.map((d) => d.path).sort()).toEqual(listed.directories.map((d) => d.path).sort());
    expect(restoreDirs()).toBe(0);
    expect(await count('orders-a', "information_schema.SCHEMATA WHERE SCHEMA_NAME = 'restore_0123456789ab'")).toBe(0);
  });
});
