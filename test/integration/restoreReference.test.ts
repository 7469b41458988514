/**
 * Restore judged against an independent truth: every statement production runs is also run on a
 * plain reference `mariadbd`, except the mistake. After the restore and its cut-over, production
 * must equal the reference table by table (row count and an ordered SHA-256 computed by the test
 * itself, see support/reference.ts), or the run must refuse with its reason and leave production
 * exactly as it was. Production keeps taking writes while one restore verifies and cuts over.
 *
 * Cases, one schema each: an UPDATE without WHERE whose later writes touch only other rows
 * (exact); the same UPDATE later touched by an UPDATE and a DELETE (refused before anything is
 * restored); an identical change to an even number of rows (which BIT_XOR of CRC32 could not
 * see); a DELETE of rows later inserted again (refused); a row changed again after the archive
 * (left for a decision, everything else repaired); a dropped table (swapped back), and one that
 * production created again and wrote to (the swap refused).
 */
import type { WorkflowHandle } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunbookConfig } from '../../src/config/load';
import type { Sandbox } from '../../src/adapters/mariadbd/sandbox';
import type { RestoreInput, RestoreResult } from '../../src/workflows/restore';
import { decide, stepLog, waitForApprovalRequest } from '../support/failover';
import { fingerprintOn, startReferenceServer, type ReferenceServer } from '../support/reference';
import { eventually, killScratchServers, scratchServerPids, startTestSandbox, testPort } from '../support/sandbox';
import { rowsOn, sql, startInProcessWorker, type InProcessWorker } from '../support/stack';

const BASE = 28000;
const taskQueue = `restore-reference-${process.pid}`;
let config: RunbookConfig;
let sandbox: Sandbox;
let stack: InProcessWorker;
let reference: ReferenceServer;

/** The mistake: run on production only. */
const MISTAKE = Symbol('mistake');
type Script = (string | { [MISTAKE]: string })[];
const mistake = (s: string) => ({ [MISTAKE]: s });

/** Run a script on production (all of it) and on the reference (all but the mistake). */
async function run(script: Script): Promise<void> {
  for (const s of script) {
    if (typeof s === 'string') {
      await sql(config, 'orders-a', s);
      await reference.exec(s);
    } else await sql(config, 'orders-a', s[MISTAKE]);
  }
}

/** Rows from the sequence engine (`mysql.seq_1_to_N`, qualified: each statement may run in its own session). */
const seqInsert = (table: string, from: number, to: number, values: string) => `INSERT INTO ${table} SELECT ${values} FROM mysql.seq_${from}_to_${to}`;

// Before the backup.
const base: Script = [
  'CREATE DATABASE exact', 'CREATE DATABASE touched', 'CREATE DATABASE flags', 'CREATE DATABASE readd', 'CREATE DATABASE since', 'CREATE DATABASE dropped', 'CREATE DATABASE recreated',
  'CREATE TABLE exact.users (id INT PRIMARY KEY, tier INT NOT NULL, points INT NOT NULL, name VARCHAR(20) NULL)',
  'CREATE TABLE exact.log (id INT PRIMARY KEY, note VARCHAR(40))',
  'CREATE TABLE touched.users (id INT PRIMARY KEY, tier INT NOT NULL, points INT NOT NULL)',
  'CREATE TABLE flags.f (id INT PRIMARY KEY, flag TINYINT NOT NULL)',
  'CREATE TABLE readd.accounts (id INT PRIMARY KEY, balance INT NOT NULL)',
  'CREATE TABLE since.users (id INT PRIMARY KEY, tier INT NOT NULL, points INT NOT NULL)',
  'CREATE TABLE dropped.orders (id INT PRIMARY KEY, amount DECIMAL(10,2), note VARCHAR(20) NULL)',
  'CREATE TABLE dropped.keep (id INT PRIMARY KEY)',
  'CREATE TABLE recreated.orders (id INT PRIMARY KEY, amount INT)',
  seqInsert('exact.users', 1, 2000, "seq, seq % 3, seq * 10, IF(seq % 11 = 0, NULL, CONCAT('u', seq))"),
  seqInsert('touched.users', 1, 500, 'seq, seq % 3, seq'),
  // 20,000 rows whose ids all have five digits: the same flip on each cancels out under BIT_XOR(CRC32).
  seqInsert('flags.f', 10000, 29999, 'seq, 1'),
  seqInsert('readd.accounts', 1, 100, 'seq, seq * 100'),
  seqInsert('since.users', 1, 300, 'seq, seq % 3, seq'),
  seqInsert('dropped.orders', 1, 1000, "seq, seq / 4, IF(seq % 9 = 0, NULL, '')"),
  seqInsert('recreated.orders', 1, 50, 'seq, seq'),
];

// After the backup, archived by the next one.
const archived: Script = [
  seqInsert('exact.users', 2001, 2050, "seq, 1, seq, 'late'"),
  'UPDATE exact.users SET points = points + 1 WHERE id <= 100',
  mistake('UPDATE exact.users SET tier = 5'),
  seqInsert('exact.users', 2051, 2100, "seq, 2, seq, 'later'"),
  'UPDATE exact.users SET points = points + 7 WHERE id > 2050',
  'DELETE FROM exact.users WHERE id IN (2099, 2100)',
  "INSERT INTO exact.log VALUES (1, 'a'), (2, 'b')",

  mistake('UPDATE touched.users SET tier = 5'),
  'UPDATE touched.users SET points = points + 1 WHERE id = 1',
  'DELETE FROM touched.users WHERE id = 2',

  mistake('UPDATE flags.f SET flag = 0'),

  mistake('DELETE FROM readd.accounts WHERE id <= 10'),
  'INSERT IGNORE INTO readd.accounts VALUES (1, 1), (2, 2)',

  mistake('UPDATE since.users SET tier = 5'),

  seqInsert('dropped.orders', 1001, 1010, "seq, 1.25, 'late'"),
  mistake('DROP TABLE dropped.orders'),
  'INSERT INTO dropped.keep VALUES (1)',

  mistake('DROP TABLE recreated.orders'),
];

// After the archive: production moves on before the restores start.
const afterArchive: Script = [
  seqInsert('exact.users', 2101, 2150, "seq, 0, seq, 'after'"),
  'UPDATE since.users SET points = points + 1 WHERE id = 7', // a row the mistake changed, changed again
  // The application creates its table again and writes to it: a swap would lose this.
  'CREATE TABLE IF NOT EXISTS recreated.orders (id INT PRIMARY KEY, amount INT)',
  'INSERT INTO recreated.orders VALUES (5000, 1)',
];

const backup = (id: string) =>
  stack.client.workflow.execute('backup', { taskQueue, workflowId: `${id}-${Date.now()}`, args: [{ cluster: 'orders', instance: 'orders-a', kind: 'logical', requester: 'alice' }] });

const input = (table: string, statement: string, over: Partial<RestoreInput> = {}): RestoreInput => ({
  cluster: 'orders', target: { kind: 'before-event', event: { table, statement } }, skip: true, cutover: 'copy-tables',
  requester: 'alice', reason: 'a mistake', incidentId: `INC-${table.replace('.', '-')}`, ...over,
});
const start = (i: RestoreInput) => stack.client.workflow.start('restore', { taskQueue, workflowId: `restore-${i.incidentId}-${Date.now()}`, args: [i] });
/** Start, approve as bob when asked, and return the result (or the failure's message). */
async function restoreApproved(i: RestoreInput): Promise<{ handle: WorkflowHandle; result?: RestoreResult; failure?: string }> {
  const handle = await start(i);
  const result = handle.result() as Promise<RestoreResult>;
  void waitForApprovalRequest(handle).then(() => decide(handle, 'approve', 'bob')).catch(() => undefined);
  try {
    return { handle, result: await result };
  } catch (err) {
    return { handle, failure: (err as { cause?: Error }).cause?.message ?? String(err) };
  }
}

const prod = (table: string, o?: Parameters<typeof fingerprintOn>[3]) => fingerprintOn(config, 'orders-a', table, o);
const caughtUp = async (instance: string) => {
  const [{ pos }] = (await rowsOn(config, 'orders-a', 'SELECT @@gtid_binlog_pos AS pos')) as [{ pos: string }];
  await eventually(`${instance} caught up`, async () => Number((await rowsOn(config, instance, `SELECT MASTER_GTID_WAIT('${pos}', 1) AS w`))[0]!.w) === 0, 60_000);
};

beforeAll(async () => {
  ({ config, sandbox } = await startTestSandbox('restore-reference', BASE));
  reference = await startReferenceServer(config.control.port + 20);
  stack = await startInProcessWorker(config, taskQueue);
  await run(base);
  await backup('backup-base');
  await run(archived);
  await backup('backup-archive'); // archives the binlogs that hold every mistake
  await run(afterArchive);
  await caughtUp('orders-b');
  await caughtUp('orders-c');
}, 180_000);

afterAll(async () => {
  await stack?.stop();
  await reference?.destroy();
  await sandbox?.destroy();
  killScratchServers(config);
});

describe('restore against an independent reference', () => {
  it('an UPDATE without WHERE, later writes to other rows, production writing during verify and cut-over: equal to the reference', async () => {
    // An application writing to the same tables all along, as fast as it can; its statements go to the reference afterwards.
    const written: string[] = [];
    let writing = true;
    const writer = (async () => {
      for (let n = 1; writing; n++) {
        const s = [`INSERT INTO exact.users VALUES (${100000 + n}, ${n % 3}, ${n}, 'w${n}')`, `INSERT INTO exact.log VALUES (${1000 + n}, 'w${n}')`];
        for (const x of s) await sql(config, 'orders-a', x);
        written.push(...s);
      }
    })();
    let outcome: Awaited<ReturnType<typeof restoreApproved>>;
    try {
      outcome = await restoreApproved(input('exact.users', '^UPDATE exact.users SET tier'));
    } finally {
      writing = false;
      await writer;
    }
    expect(outcome.failure).toBeUndefined();
    const result = outcome.result!;
    expect(result.status).toBe('succeeded');
    expect(written.length).toBeGreaterThan(0);
    const v = result.verification!.tables.find((t) => t.table === 'exact.users')!;
    expect(v).toMatchObject({ changedSince: 0 });
    expect(v.repairable).toBe(2050); // every row that existed when the mistake ran, no other
    expect(result.cutover!.tables).toMatchObject([{ table: 'exact.users', repaired: 2050, leftAsTheyAre: 0 }]);
    await reference.exec(...written);
    for (const t of ['exact.users', 'exact.log']) expect(await prod(t), t).toEqual(await reference.fingerprint(t));
    // Replicated like any write.
    await caughtUp('orders-b');
    expect(await fingerprintOn(config, 'orders-b', 'exact.users')).toEqual(await reference.fingerprint('exact.users'));
  });

  it('an UPDATE later touched by an UPDATE and a DELETE: refused before anything is restored, production unchanged', async () => {
    const before = await prod('touched.users');
    const { failure, handle } = await restoreApproved(input('touched.users', '^UPDATE touched.users SET tier'));
    expect(failure).toMatch(
      new RegExp(String.raw`^step "check the skip is exact" failed \(precondition\): skipping 0-${testPort(28001)}-\d+ cannot be exact: later archived transactions changed rows of touched\.users that it changed \(0-${testPort(28001)}-\d+, 0-${testPort(28001)}-\d+; e\.g\. id=1\): their row images carry its values, so replay would bring them back\. Nothing was restored\.`),
    );
    expect(await prod('touched.users')).toEqual(before);
    expect(scratchServerPids(config)).toEqual([]);
    const steps = (await stepLog(config, handle.workflowId)).map((r) => r.step);
    expect(steps).not.toContain('prepare recovery instance');
  });

  it('an identical change to an even number of rows (invisible to BIT_XOR of CRC32): found, repaired, equal to the reference', async () => {
    const { result, failure } = await restoreApproved(input('flags.f', '^UPDATE flags'));
    expect(failure).toBeUndefined();
    expect(result!.verification!.tables.find((t) => t.table === 'flags.f')).toMatchObject({ equal: false, differingRows: 20000, repairable: 20000 });
    expect(result!.cutover!.tables).toMatchObject([{ table: 'flags.f', repaired: 20000 }]);
    expect(await prod('flags.f')).toEqual(await reference.fingerprint('flags.f'));
  });

  it('a DELETE of rows that were inserted again later: refused, production unchanged', async () => {
    const before = await prod('readd.accounts');
    const { failure } = await restoreApproved(input('readd.accounts', '^DELETE FROM readd'));
    expect(failure).toMatch(/^step "check the skip is exact" failed \(precondition\): skipping \S+ cannot be exact: later archived transactions changed rows of readd\.accounts that it changed \(\S+; e\.g\. id=1\)/);
    expect(await prod('readd.accounts')).toEqual(before);
  });

  it('a row changed again after the archive: every other row repaired, that one left and reported, the run needs attention', async () => {
    const { result, failure } = await restoreApproved(input('since.users', '^UPDATE since.users'));
    expect(failure).toBeUndefined();
    expect(result!.status).toBe('needs_attention');
    expect(result!.verification!.tables.find((t) => t.table === 'since.users')).toMatchObject({ repairable: 299, changedSince: 1, changedSinceExamples: ['(7)'] });
    expect(result!.cutover!.tables).toMatchObject([{ table: 'since.users', repaired: 299, leftAsTheyAre: 1, leftExamples: ['(7)'] }]);
    expect(result!.cutover!.leftFile).toMatch(/left-for-decision\.json$/);
    // Equal to the reference but for row 7, which keeps production's values: the bad tier and the later +1.
    const not7 = { except: (row: (string | null)[]) => row[0] === '7' };
    expect(await prod('since.users', not7)).toEqual(await reference.fingerprint('since.users', not7));
    expect(await rowsOn(config, 'orders-a', 'SELECT tier, points FROM since.users WHERE id = 7')).toEqual([{ tier: 5, points: 8 }]);
    expect(await reference.rows('SELECT tier, points FROM since.users WHERE id = 7')).toEqual([{ tier: 1, points: 8 }]);
  });

  it('a DROP TABLE: the table back, equal to the reference; no staging schema left', async () => {
    const { result, failure } = await restoreApproved(input('dropped.orders', '^DROP TABLE', { compare: ['dropped.keep'] }));
    expect(failure).toBeUndefined();
    expect(result!.status).toBe('succeeded');
    for (const t of ['dropped.orders', 'dropped.keep']) expect(await prod(t), t).toEqual(await reference.fingerprint(t));
    expect(await rowsOn(config, 'orders-a', "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE 'restore\\_%'")).toEqual([]);
  });

  it('a DROP TABLE whose table production created again and wrote to: the swap is refused, production unchanged', async () => {
    const before = await prod('recreated.orders');
    const { failure } = await restoreApproved(input('recreated.orders', '^DROP TABLE'));
    expect(failure).toMatch(/^step "cut over" failed \(precondition\): production has recreated\.orders again, with 1 row\(s\) written since the DROP: swapping the recovered table in would lose them/);
    expect(await prod('recreated.orders')).toEqual(before);
  });
});
