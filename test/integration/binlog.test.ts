/**
 * The archived binlogs on a real sandbox: the DROP TABLE and the UPDATE without WHERE are found by
 * table and statement; the UPDATE is undone by flashback (later writes kept); flashback over the
 * DROP is refused. Activities run in the SDK's activity test environment (real code, real servers).
 */
import { MockActivityEnvironment } from '@temporalio/testing';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBackupActivities } from '../../src/activities/backup';
import { createBinlogActivities } from '../../src/activities/binlog';
import { parseBinlogText } from '../../src/core/binlogEvents';
import { eventIndexPath, forEachEvent, indexEvents } from '../../src/adapters/backup/eventIndex';
import type { BinlogEventGroup } from '../../src/core/binlogEvents';
import type { BinlogArchiveEntry } from '../../src/core/manifest';
import { runTool, toolPath } from '../../src/adapters/process/tools';
import type { RunbookConfig } from '../../src/config/load';
import { connect, instanceEndpoint } from '../../src/adapters/mysql/connect';
import type { Sandbox } from '../../src/adapters/mariadbd/sandbox';
import { eventually, startTestSandbox, testPort } from '../support/sandbox';
import { sql } from '../support/stack';

let config: RunbookConfig;
let sandbox: Sandbox;
const env = new MockActivityEnvironment();
/** Run an activity function inside the SDK's activity context (heartbeats work), typed. */
const inActivity = <T>(fn: () => Promise<T>, within = env): Promise<T> => within.run(fn) as Promise<T>;

beforeAll(async () => {
  ({ config, sandbox } = await startTestSandbox('binlog', 25400));
  await sql(
    config,
    'orders-a',
    'CREATE DATABASE shop',
    'CREATE TABLE shop.orders (id INT PRIMARY KEY, amount INT)',
    'INSERT INTO shop.orders VALUES (1, 10), (2, 20), (3, 30)',
    'CREATE TABLE shop.users (id INT PRIMARY KEY, points INT)',
    'INSERT INTO shop.users VALUES (1, 100), (2, 200)',
    'UPDATE shop.users SET points = 0', // the mistake: no WHERE
    'DROP TABLE shop.orders', // the other mistake
    'INSERT INTO shop.users VALUES (3, 300)', // later work that must survive
  );
  await inActivity(() => createBackupActivities({ config }).archiveBinlogs({ cluster: 'orders', instance: 'orders-a' }));
});
afterAll(() => sandbox?.destroy());

const binlog = () => createBinlogActivities({ config });

async function users(): Promise<[number, number][]> {
  const conn = await connect(instanceEndpoint(config, 'orders', 'orders-a'));
  const [rows] = await conn.query('SELECT id, points FROM shop.users ORDER BY id');
  conn.destroy();
  return (rows as { id: number; points: number }[]).map((r) => [r.id, r.points]);
}

describe('archived binlogs', () => {
  it('finds the DROP TABLE and the UPDATE without WHERE, with exact positions', async () => {
    const drops = await inActivity(() => binlog().findBadEvents({ cluster: 'orders', query: { table: 'orders', statement: 'DROP TABLE' } }));
    expect(drops).toHaveLength(1);
    expect(drops[0]).toMatchObject({ kind: 'ddl', statements: ['DROP TABLE `shop`.`orders`'], file: 'mysql-bin.000001' });
    expect(drops[0]!.endPosition).toBeGreaterThan(drops[0]!.startPosition);
    const updates = await inActivity(() => binlog().findBadEvents({ cluster: 'orders', query: { table: 'shop.users', statement: '^UPDATE', statementNot: 'WHERE' } }));
    expect(updates.map((u) => [u.statements, u.rowEvents])).toEqual([[['UPDATE shop.users SET points = 0'], [{ type: 'UPDATE', table: 'shop.users', rows: 2 }]]]);
    expect(updates[0]!.gtid).toMatch(new RegExp(String.raw`^0-${testPort(25401)}-\d+$`));
  });

  it('undoes the UPDATE by flashback and keeps the later writes', async () => {
    const [update] = await inActivity(() => binlog().findBadEvents({ cluster: 'orders', query: { statement: '^UPDATE' } }));
    expect(await users()).toEqual([[1, 0], [2, 0], [3, 300]]);
    const prepared = await inActivity(() => binlog().flashbackTransaction({ cluster: 'orders', instance: 'orders-a', gtid: update!.gtid, file: update!.file, apply: false }));
    expect(prepared.applied).toBe(false);
    expect(await users()).toEqual([[1, 0], [2, 0], [3, 300]]); // preparing changes nothing
    await inActivity(() => binlog().flashbackTransaction({ cluster: 'orders', instance: 'orders-a', gtid: update!.gtid, file: update!.file, apply: true }));
    expect(await users()).toEqual([[1, 100], [2, 200], [3, 300]]);
  });

  it('refuses flashback over the DROP TABLE', async () => {
    const [drop] = await inActivity(() => binlog().findBadEvents({ cluster: 'orders', query: { statement: 'DROP TABLE' } }));
    await expect(inActivity(() => binlog().flashbackTransaction({ cluster: 'orders', instance: 'orders-a', gtid: drop!.gtid, file: drop!.file, apply: true }))).rejects.toThrow(
      `${drop!.gtid} is DDL (DROP TABLE \`shop\`.\`orders\`): flashback cannot undo it; use restore and replay`,
    );
  });
});

describe('event index kept beside the archive', () => {
  /** What locating would read without an index: the file decoded whole, now. */
  const decodeNow = async (path: string, file: string) =>
    parseBinlogText((await runTool(toolPath('mariadb-binlog'), ['--base64-output=DECODE-ROWS', path], { env: { TZ: 'UTC' } })).stdout, file);
  /** Index the file (or find its index), then read every transaction back from it. */
  const eventsOf = async (dir: string, entry: BinlogArchiveEntry) => {
    const { decoded } = await indexEvents(dir, entry);
    const groups: BinlogEventGroup[] = [];
    await forEachEvent(dir, entry, (g) => void groups.push(g));
    return { decoded, groups };
  };
  const entryOf = (dir: string, file: string, bytes: Buffer): BinlogArchiveEntry => {
    writeFileSync(join(dir, file), bytes);
    return { file, sizeBytes: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex'), complete: false };
  };

  it('archiving decodes each copied file once and keeps the result, equal to decoding it now', async () => {
    const dir = join(config.backupDir, 'orders', 'binlogs', 'orders-a');
    const [header, ...lines] = readFileSync(eventIndexPath(dir, 'mysql-bin.000001'), 'utf8').trim().split('\n');
    const kept = { ...(JSON.parse(header!) as { sha256: string }), groups: lines.map((l) => JSON.parse(l) as unknown) };
    const [entry] = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8')) as BinlogArchiveEntry[];
    expect(kept.sha256).toBe(entry!.sha256);
    expect(kept.groups).toEqual(await decodeNow(join(dir, 'mysql-bin.000001'), 'mysql-bin.000001'));
    expect(kept.groups).toEqual(expect.arrayContaining([expect.objectContaining({ kind: 'ddl', statements: ['DROP TABLE `shop`.`orders`'] })]));
    expect((await eventsOf(dir, entry!)).decoded).toBe('none');
  });

  it('a grown copy is decoded from the last transaction it held on, even when the earlier copy ended inside it; other bytes are decoded whole', async () => {
    const archived = join(config.backupDir, 'orders', 'binlogs', 'orders-a', 'mysql-bin.000001');
    const bytes = readFileSync(archived);
    const whole = await decodeNow(archived, 'mysql-bin.000001');
    // The UPDATE without WHERE: cut the earlier copy at an event boundary inside the transaction
    // (a copy holds whole events: the replication protocol sends nothing less).
    const update = whole.find((g) => g.statements[0] === 'UPDATE shop.users SET points = 0')!;
    const text = (await runTool(toolPath('mariadb-binlog'), [archived])).stdout;
    const cut = [...text.matchAll(/^# at (\d+)$/gm)].map((m) => Number(m[1])).filter((at) => at > update.startPosition && at < update.endPosition).at(-1)!;
    expect(cut).toBeGreaterThan(update.startPosition);
    const dir = mkdtempSync(join(tmpdir(), 'runbook-event-index-'));
    try {
      const early = await eventsOf(dir, entryOf(dir, 'mysql-bin.000001', bytes.subarray(0, cut)));
      expect(early.decoded).toBe('whole');
      expect(early.groups.map((g) => g.gtid)).toContain(update.gtid); // the cut transaction, partly
      const grown = await eventsOf(dir, entryOf(dir, 'mysql-bin.000001', bytes));
      expect(grown.decoded).toBe('tail');
      expect(grown.groups).toEqual(whole);

      // An index that was not made from these bytes is never extended: decoded whole again.
      const path = eventIndexPath(dir, 'mysql-bin.000001');
      writeFileSync(path, [{ file: 'mysql-bin.000001', sizeBytes: cut, sha256: '0'.repeat(64) }, ...early.groups].map((x) => JSON.stringify(x)).join('\n') + '\n');
      const again = await eventsOf(dir, entryOf(dir, 'mysql-bin.000001', bytes));
      expect(again.decoded).toBe('whole');
      expect(again.groups).toEqual(whole);

      // Where no index can be kept (here a file stands where its folder would go), the groups
      // are still returned: keeping them only spares the next reader a decode.
      rmSync(join(dir, '.events'), { recursive: true });
      writeFileSync(join(dir, '.events'), 'not a folder');
      const unkept: BinlogEventGroup[] = [];
      await forEachEvent(dir, entryOf(dir, 'mysql-bin.000001', bytes), (g) => void unkept.push(g));
      expect(unkept).toEqual(whole);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** Rows of a table on the primary, and the primary's GTID position: what "nothing changed" means. */
async function snapshot(table: string): Promise<{ rows: unknown[]; gtid: string }> {
  const conn = await connect(instanceEndpoint(config, 'orders', 'orders-a'));
  try {
    const [rows] = await conn.query(`SELECT * FROM ${table} ORDER BY 1`);
    const [[pos]] = (await conn.query('SELECT @@gtid_binlog_pos AS gtid')) as unknown as [[{ gtid: string }]];
    return { rows: rows as unknown[], gtid: pos.gtid };
  } finally {
    conn.destroy();
  }
}

async function snapshotQuery(statement: string): Promise<Record<string, unknown>[]> {
  const conn = await connect(instanceEndpoint(config, 'orders', 'orders-a'));
  try {
    return (await conn.query(statement))[0] as Record<string, unknown>[];
  } finally {
    conn.destroy();
  }
}

const archive = () => inActivity(() => createBackupActivities({ config }).archiveBinlogs({ cluster: 'orders', instance: 'orders-a' }));

describe('flashback safety', () => {
  it('refuses when a later UPDATE changed one of the same rows, and changes nothing', async () => {
    await sql(
      config,
      'orders-a',
      'CREATE DATABASE conflict',
      'CREATE TABLE conflict.stock (id INT PRIMARY KEY, qty INT)',
      'INSERT INTO conflict.stock VALUES (1, 10), (2, 20), (3, 30)',
      'UPDATE conflict.stock SET qty = 0', // the mistake
      'UPDATE conflict.stock SET qty = 5 WHERE id = 2', // later work on one of its rows
      'INSERT INTO conflict.stock VALUES (4, 40)',
    );
    await archive();
    const [bad] = await inActivity(() => binlog().findBadEvents({ cluster: 'orders', query: { table: 'conflict.stock', statement: '^UPDATE', statementNot: 'WHERE' } }));
    const [later] = await inActivity(() => binlog().findBadEvents({ cluster: 'orders', query: { table: 'conflict.stock', statement: 'WHERE id = 2' } }));
    const before = await snapshot('conflict.stock');
    for (const apply of [false, true]) {
      const attempt = inActivity(() => binlog().flashbackTransaction({ cluster: 'orders', instance: 'orders-a', gtid: bad!.gtid, file: bad!.file, apply }));
      await expect(attempt).rejects.toMatchObject({ type: 'FlashbackConflict', nonRetryable: true });
      await expect(attempt).rejects.toThrow(
        `later writes changed rows of conflict.stock that ${bad!.gtid} changed (${later!.gtid}; e.g. id=2): flashback would overwrite them; use restore with --skip and --cutover copy-tables`,
      );
    }
    expect(await snapshot('conflict.stock')).toEqual(before);
  });

  it('a retried attempt finds the flashback its earlier attempt applied and does not apply it twice', async () => {
    await sql(config, 'orders-a', 'CREATE DATABASE retry', 'CREATE TABLE retry.points (id INT PRIMARY KEY, n INT)', 'INSERT INTO retry.points VALUES (1, 1), (2, 2)', 'UPDATE retry.points SET n = 0');
    await archive();
    const [bad] = await inActivity(() => binlog().findBadEvents({ cluster: 'orders', query: { table: 'retry.points', statement: '^UPDATE' } }));
    const input = { cluster: 'orders', instance: 'orders-a', gtid: bad!.gtid, file: bad!.file, apply: true };

    // The first attempt applies it; what it heartbeated is what the server hands a retry.
    const first = new MockActivityEnvironment();
    let details: unknown;
    first.on('heartbeat', (d: unknown) => (details = d));
    const applied = await inActivity(() => binlog().flashbackTransaction(input), first);
    expect(applied).toMatchObject({ applied: true, rows: 2, tables: ['retry.points'], flashbackGtid: expect.stringMatching(new RegExp(String.raw`^0-${testPort(25401)}-\d+$`)) });
    expect(details).toMatchObject({ appliedFrom: applied.appliedFrom });
    const after = await snapshot('retry.points');
    expect(after.rows).toEqual([{ id: 1, n: 1 }, { id: 2, n: 2 }]);

    // Say the worker died before reporting: the retry gets those details and finds the flashback.
    const retry = new MockActivityEnvironment({ attempt: 2, heartbeatDetails: details });
    const again = await inActivity(() => binlog().flashbackTransaction(input), retry);
    expect(again).toMatchObject({ applied: true, alreadyApplied: true, flashbackGtid: applied.flashbackGtid });
    expect(await snapshot('retry.points')).toEqual(after); // no second transaction

    // Had the heartbeat been lost, the retry would see the flashback itself as a later write to the
    // same rows, and refuse: never applied twice.
    await expect(inActivity(() => binlog().flashbackTransaction(input), new MockActivityEnvironment({ attempt: 2 }))).rejects.toThrow(
      new RegExp(`^later writes changed rows of retry\\.points that ${bad!.gtid} changed \\(${applied.flashbackGtid}; e\\.g\\. id=\\d\\)`),
    );
    expect(await snapshot('retry.points')).toEqual(after);

    const verified = await inActivity(() =>
      binlog().verifyFlashback({ cluster: 'orders', instance: 'orders-a', gtid: bad!.gtid, file: bad!.file, startPosition: bad!.startPosition, endPosition: bad!.endPosition, flashbackGtid: applied.flashbackGtid!, appliedFrom: applied.appliedFrom! }),
    );
    expect(verified).toMatchObject({ problems: [], compared: 2, rows: 2, changedSince: [] });
  });

  it('refuses when the primary no longer has the event (purged): flashback needs the primary that wrote it', async () => {
    const [update] = await inActivity(() => binlog().findBadEvents({ cluster: 'orders', query: { table: 'shop.users', statement: '^UPDATE', statementNot: 'WHERE' } }));
    expect(update!.file).toBe('mysql-bin.000001');
    await sql(config, 'orders-a', 'FLUSH BINARY LOGS');
    const current = String((await snapshotQuery('SHOW MASTER STATUS'))[0]!.File);
    // A replica still reading an old file keeps it: purge once they have moved on.
    await eventually('mysql-bin.000001 purged', async () => {
      await sql(config, 'orders-a', `PURGE BINARY LOGS TO '${current}'`);
      return (await snapshotQuery('SHOW BINARY LOGS'))[0]!.Log_name === current;
    });
    await expect(inActivity(() => binlog().flashbackTransaction({ cluster: 'orders', instance: 'orders-a', gtid: update!.gtid, file: update!.file, apply: true }))).rejects.toThrow(
      `${update!.gtid} is not in orders-a's binlogs (mysql-bin.000001 is purged or was never there): flashback needs the primary that wrote it; use restore and replay`,
    );
  });
});
