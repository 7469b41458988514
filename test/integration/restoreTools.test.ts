/**
 * The restore primitives on real servers: a physical backup of the primary copied back into a fresh
 * datadir that a sandbox mariadbd then runs on (the backup left intact, a non-empty or unprepared
 * datadir refused), and the binlog pipe replay `mariadb-binlog | mariadb` from archived copies of
 * the primary's binlogs around a bad DELETE: skipped by two calls, resumable, idempotent, and
 * refusing a missing file, a server with its own writes, a failing server side.
 */
import { spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyBackPhysical, pipeReplay, replayedPosition, RestoreRefusedError, type ReplayTarget } from '../../src/adapters/backup/restoreTools';
import { loadDump, planDumpLoad, sliceSegment } from '../../src/adapters/backup/dumpLoad';
import { listFiles, logicalBackup, physicalBackup, sha256OfFiles, statementGate, ToolError, toolPath } from '../../src/adapters/process/tools';
import { checksumTable } from '../../src/adapters/mysql/checksum';
import { diffChecksums } from '../../src/core/rowDigest';
import { resolveCredential, type RunbookConfig } from '../../src/config/load';
import { connect, instanceEndpoint } from '../../src/adapters/mysql/connect';
import type { Sandbox, SandboxInstance } from '../../src/adapters/mariadbd/sandbox';
import { startTestSandbox } from '../support/sandbox';
import { sql } from '../support/stack';

let config: RunbookConfig;
let sandbox: Sandbox;
let work: string;
const scratches: SandboxInstance[] = [];

/** An extra sandbox instance (like the restore activity's scratch ones), under this file's temp dir. */
function scratch(name: string, port: number): SandboxInstance {
  const inst: SandboxInstance = { key: `scratch/${name}`, name, host: '127.0.0.1', port, serverId: 1_000_000 + port, initialRole: 'replica', dir: join(work, name) };
  scratches.push(inst);
  return inst;
}

async function onPrimary<T = Record<string, unknown>>(statement: string): Promise<T[]> {
  const conn = await connect(instanceEndpoint(config, 'orders', 'orders-a'));
  try {
    return (await conn.query(statement))[0] as T[];
  } finally {
    conn.destroy();
  }
}
const onScratch = <T = Record<string, unknown>>(inst: SandboxInstance, statement: string): Promise<T[]> =>
  sandbox.withRoot(inst, async (c) => (await c.query(statement))[0] as T[]);
const primaryGtid = async () => String((await onPrimary<{ g: string }>('SELECT @@gtid_binlog_pos AS g'))[0]!.g);

beforeAll(async () => {
  ({ config, sandbox } = await startTestSandbox('restoretools', 25900));
  work = mkdtempSync(join(tmpdir(), 'runbook-restoretools-work-'));
});

afterAll(async () => {
  for (const inst of scratches) await sandbox?.stopInstance(inst).catch(() => {});
  await sandbox?.destroy();
  if (work) rmSync(work, { recursive: true, force: true });
  if (config) rmSync(dirname(config.files[0]!), { recursive: true, force: true });
});

describe('copyBackPhysical', () => {
  it('restores a prepared physical backup into a fresh datadir a sandbox mariadbd runs on, leaving the backup intact', async () => {
    await sql(
      config,
      'orders-a',
      'CREATE DATABASE shop',
      'CREATE TABLE shop.items (id INT PRIMARY KEY, name VARCHAR(32) NOT NULL, payload BLOB)',
      "INSERT INTO shop.items SELECT seq, CONCAT('item ', seq), UNHEX(SHA2(seq, 256)) FROM shop.seq_1_to_2000",
      "UPDATE shop.items SET name = CONCAT(name, ' (sold)') WHERE id % 7 = 0",
    );
    const sumSql = "SELECT COUNT(*) AS n, CAST(BIT_XOR(CRC32(CONCAT_WS('#', id, name, HEX(payload)))) AS CHAR) AS crc FROM shop.items";
    const [source] = await onPrimary<{ n: number; crc: string }>(sumSql);
    expect(Number(source!.n)).toBe(2000);
    const [{ datadir }] = (await onPrimary<{ datadir: string }>('SELECT @@datadir AS datadir')) as [{ datadir: string }];
    const orders = config.clusters.orders!;
    const a = orders.instances.find((i) => i.name === 'orders-a')!;
    const backupDataDir = join(work, 'backup', 'data');
    mkdirSync(dirname(backupDataDir)); // mariadb-backup creates the target dir, not its parents
    const backup = await physicalBackup({ host: a.host, port: a.port, ...resolveCredential(orders.credentials.admin), targetDir: backupDataDir, datadir });
    expect(backup.gtid).toBe(await primaryGtid());
    const filesBefore = await listFiles(backupDataDir);
    const digestBefore = await sha256OfFiles(backupDataDir, filesBefore);

    const inst = scratch('physical', 25950);
    const datadir2 = join(inst.dir, 'data');
    const copied = await copyBackPhysical({ backupDataDir, datadir: datadir2 });
    expect(copied.sizeBytes).toBeGreaterThan(1_000_000);
    expect(readdirSync(join(datadir2, 'shop')).sort()).toEqual(expect.arrayContaining(['items.frm', 'items.ibd']));

    await sandbox.startInstance(inst); // data/mysql exists: no mariadb-install-db over the copy
    const [restored] = await onScratch<{ n: number; crc: string }>(inst, sumSql);
    expect({ n: Number(restored!.n), crc: restored!.crc }).toEqual({ n: 2000, crc: source!.crc });
    const [vars] = await onScratch<{ id: number; dd: string; pos: string }>(inst, 'SELECT @@server_id AS id, @@datadir AS dd, @@gtid_binlog_pos AS pos');
    expect(Number(vars!.id)).toBe(1_025_950); // the scratch server, not orders-a
    expect(vars!.dd.replace(/\/$/, '')).toBe(datadir2);
    expect(vars!.pos).toBe(''); // binlogs are not part of a physical backup

    // The backup is unchanged, file for file.
    expect(await listFiles(backupDataDir)).toEqual(filesBefore);
    expect((await sha256OfFiles(backupDataDir, filesBefore)).sha256).toBe(digestBefore.sha256);

    // Into a non-empty datadir: refused, nothing touched (here the live one just restored).
    const entries = readdirSync(datadir2).sort();
    await expect(copyBackPhysical({ backupDataDir, datadir: datadir2 })).rejects.toThrow(/refusing to copy back into .* it is not empty/);
    expect(readdirSync(datadir2).sort()).toEqual(entries);
    const other = join(work, 'other-data');
    mkdirSync(other);
    writeFileSync(join(other, 'keep.me'), 'x');
    await expect(copyBackPhysical({ backupDataDir, datadir: other })).rejects.toBeInstanceOf(RestoreRefusedError);
    expect(readdirSync(other)).toEqual(['keep.me']);

    // An unprepared target dir (mariadb-backup would copy it back without a word): refused.
    const raw = join(work, 'raw');
    mkdirSync(raw);
    writeFileSync(join(raw, 'xtrabackup_checkpoints'), readFileSync(join(backupDataDir, 'xtrabackup_checkpoints'), 'utf8').replace(/backup_type = \S+/, 'backup_type = full-backuped'));
    await expect(copyBackPhysical({ backupDataDir: raw, datadir: join(work, 'never') })).rejects.toThrow(/is not prepared \(backup_type = full-backuped\)/);
    expect(readdirSync(work)).not.toContain('never');

    await sandbox.stopInstance(inst);
  });
});

describe('pipeReplay', () => {
  it('replays archived binlogs around a bad DELETE in two calls, resumably and idempotently', async () => {
    const ledger = 'SELECT id, amount FROM pay.ledger ORDER BY id';
    const rows = (r: { id: number; amount: number }[]) => r.map((x) => [Number(x.id), Number(x.amount)]);
    await sql(config, 'orders-a', 'CREATE DATABASE pay', 'CREATE TABLE pay.ledger (id INT PRIMARY KEY, amount INT NOT NULL)');
    const start = await primaryGtid();
    await sql(config, 'orders-a', 'INSERT INTO pay.ledger VALUES (1, 10), (2, 20)', 'FLUSH BINARY LOGS', 'INSERT INTO pay.ledger VALUES (3, 30)', 'UPDATE pay.ledger SET amount = 31 WHERE id = 3');
    const beforeBad = await primaryGtid();
    const rowsBeforeBad = rows(await onPrimary(ledger));
    await sql(config, 'orders-a', 'DELETE FROM pay.ledger');
    const bad = await primaryGtid();
    await sql(config, 'orders-a', 'FLUSH BINARY LOGS', 'INSERT INTO pay.ledger VALUES (4, 40)', 'BEGIN', 'INSERT INTO pay.ledger VALUES (5, 50)', 'UPDATE pay.ledger SET amount = 41 WHERE id = 4', 'COMMIT');
    const end = await primaryGtid();
    const production = rows(await onPrimary(ledger));
    const seq = (g: string) => Number(g.split('-')[2]);
    expect([seq(beforeBad) - seq(start), seq(bad) - seq(beforeBad), seq(end) - seq(bad)]).toEqual([3, 1, 2]);
    expect(rowsBeforeBad).toEqual([[1, 10], [2, 20], [3, 31]]);
    expect(production).toEqual([[4, 41], [5, 50]]);

    // Archived copies of all of orders-a's binlogs (the last one still open on the server).
    const serverBinlogs = join(sandbox.instance('orders-a').dir, 'binlog');
    const archive = join(work, 'binlogs');
    mkdirSync(archive);
    const names = readdirSync(serverBinlogs).filter((f) => /\.\d+$/.test(f)).sort();
    for (const f of names) copyFileSync(join(serverBinlogs, f), join(archive, f));
    const files = names.map((f) => join(archive, f));
    expect(files.length).toBeGreaterThanOrEqual(3);
    // The file holding INSERT 3, the UPDATE and the DELETE: the one FLUSHed to after INSERT 1, 2.
    const middle = files[files.length - 2]!;

    const rec = scratch('replay', 25951);
    await sandbox.startInstance(rec);
    const target: ReplayTarget = { socket: sandbox.socketOf(rec), user: 'root' };
    const at = async () => (await replayedPosition(target)).gtidBinlogPos;
    expect(await at()).toBe('');

    // The server side failing (no such table yet): mariadb is named, with its error, nothing applied.
    const failed = await pipeReplay({ files, startAfter: start, stopAt: beforeBad, target }).catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(ToolError);
    expect((failed as ToolError).tool).toBe('mariadb');
    expect((failed as ToolError).message).toMatch(/^mariadb failed \(exit 1\) reading from mariadb-binlog; mariadb stderr:\n.*ERROR 1146 .*pay.*ledger/s);
    expect(await at()).toBe('');

    // The starting state, created locally: its own GTIDs past startAfter would make replay skip; refused.
    await sandbox.withRoot(rec, async (c) => {
      await c.query('SET SESSION gtid_seq_no = 1000');
      await c.query('CREATE DATABASE pay');
      await c.query('CREATE TABLE pay.ledger (id INT PRIMARY KEY, amount INT NOT NULL)');
    });
    expect(await at()).toBe('0-1025951-1001');
    await expect(pipeReplay({ files, startAfter: start, stopAt: beforeBad, target })).rejects.toThrow(/written by itself .* RESET MASTER after loading/);
    await onScratch(rec, 'RESET MASTER');
    expect(await at()).toBe('');

    // An archive that ends too early (the last two files not there yet): what it holds is applied
    // (INSERT 1, 2), then a refusal that says where it stopped.
    const source = start.split('-')[1];
    const afterFirst = `0-${source}-${seq(start) + 1}`;
    await expect(pipeReplay({ files: files.slice(0, -2), startAfter: start, stopAt: beforeBad, target })).rejects.toThrow(
      new RestoreRefusedError(
        `the binlogs given end at ${afterFirst}, before stopAt ${beforeBad} (last file ${files[files.length - 3]}): the recovery server is at ${afterFirst}; replay again with the later files`,
      ),
    );
    expect(await at()).toBe(afterFirst);
    expect(rows(await onScratch(rec, ledger))).toEqual([[1, 10], [2, 20]]);

    // A file missing from the list: mariadb-binlog would jump the gap silently; refused at the gap,
    // before any of the transaction after it reaches the server.
    const gap = await pipeReplay({ files: files.filter((f) => f !== middle), startAfter: start, stopAt: end, target }).catch((e: unknown) => e);
    expect(gap).toBeInstanceOf(RestoreRefusedError);
    expect((gap as Error).message).toBe(
      `after ${afterFirst} the next transaction in the binlogs is 0-${source}-${seq(bad) + 1}: 3 missing (a binlog file left out?); nothing after ${afterFirst} was sent`,
    );
    expect(await at()).toBe(afterFirst);
    expect(rows(await onScratch(rec, ledger))).toEqual([[1, 10], [2, 20]]);

    // Up to the transaction before the bad one: resumes after what is already there.
    const progress: number[] = [];
    const first = await pipeReplay({ files, startAfter: start, stopAt: beforeBad, target, onProgress: (b) => progress.push(b) });
    expect(first).toMatchObject({ appliedTo: beforeBad, from: afterFirst, transactions: 2 });
    expect(rows(await onScratch(rec, ledger))).toEqual(rowsBeforeBad);

    // From after the bad one to the end: production without the DELETE's effect.
    const second = await pipeReplay({ files, startAfter: bad, stopAt: end, target });
    expect(second).toMatchObject({ appliedTo: end, from: bad, transactions: 2 });
    expect(await at()).toBe(end);
    const recovered = rows(await onScratch(rec, ledger));
    expect(recovered).toEqual([...rowsBeforeBad, ...production]);
    expect(recovered).toEqual([[1, 10], [2, 20], [3, 31], [4, 41], [5, 50]]);

    // Again: nothing changes.
    const again = await pipeReplay({ files, startAfter: bad, stopAt: end, target });
    expect(again).toMatchObject({ appliedTo: end, from: end, transactions: 0 });
    expect(rows(await onScratch(rec, ledger))).toEqual(recovered);
    expect(await at()).toBe(end);

    // A stopAt already reached runs nothing at all: these files do not even exist.
    const reached = await pipeReplay({ files: ['/nonexistent/mysql-bin.000001'], startAfter: start, stopAt: beforeBad, target });
    expect(reached).toMatchObject({ appliedTo: end, transactions: 0 });
    expect(await at()).toBe(end);

    // A stopAt past the end of the files, the server already at their last transaction:
    // mariadb-binlog's own error says so, nothing is applied.
    await sql(config, 'orders-a', 'INSERT INTO pay.ledger VALUES (6, 60)');
    const later = await primaryGtid();
    const short = await pipeReplay({ files, startAfter: bad, stopAt: later, target }).catch((e: unknown) => e);
    expect(short).toBeInstanceOf(ToolError);
    expect((short as ToolError).message).toMatch(/^mariadb-binlog failed \(exit 1\) writing to mariadb; .*Did not reach stop position/s);
    expect(await at()).toBe(end);

    // With the archive brought up to date: a run cut short by its timeout kills both sides, and
    // the next call finishes the job.
    const archive2 = join(work, 'binlogs2');
    mkdirSync(archive2);
    const names2 = readdirSync(serverBinlogs).filter((f) => /\.\d+$/.test(f)).sort();
    for (const f of names2) copyFileSync(join(serverBinlogs, f), join(archive2, f));
    const files2 = names2.map((f) => join(archive2, f));
    const cut = await pipeReplay({ files: files2, startAfter: bad, stopAt: later, target, timeoutMs: 1 }).catch((e: unknown) => e);
    expect(cut).toBeInstanceOf(ToolError);
    expect(cut).toMatchObject({ tool: 'mariadb-binlog | mariadb', reason: 'timeout' });
    expect((cut as Error).message).toMatch(/^mariadb-binlog \| mariadb timed out after 1 ms/);
    expect(await at()).toBe(end);
    expect(await pipeReplay({ files: files2, startAfter: bad, stopAt: later, target })).toMatchObject({ appliedTo: later, from: end, transactions: 1 });
    expect(rows(await onScratch(rec, ledger))).toEqual([...recovered, [6, 60]]);

    // Positions must be single GTIDs of one domain.
    await expect(pipeReplay({ files, startAfter: '1-1-1', stopAt: end, target })).rejects.toThrow(/different GTID domains/);
    await expect(pipeReplay({ files, startAfter: `${start},1-1-1`, stopAt: end, target })).rejects.toThrow(/must be one GTID/);
    await sandbox.stopInstance(rec);
  });
});

describe('statementGate', () => {
  /**
   * What a worker killed mid-replay leaves the SQL client with: a stream cut inside a statement,
   * then EOF. `DROP TABLE gate.orders_old` cut after `gate.orders` is a different, valid DDL.
   */
  const cut = 'DELIMITER /*!*/;\nINSERT INTO gate.orders VALUES (1)/*!*/;\nDROP TABLE gate.orders';
  const feed = (launcher: string[], input: string) =>
    new Promise<number | null>((resolve, reject) => {
      const inst = config.clusters.orders!.instances[0]!;
      const admin = resolveCredential(config.clusters.orders!.credentials.admin);
      const client = [toolPath('mariadb'), '--no-defaults', `--host=${inst.host}`, `--port=${inst.port}`, `--user=${admin.user}`, `--password=${admin.password}`, '--binary-mode', '--batch'];
      const all = [...launcher, ...client];
      const child = spawn(all[0]!, all.slice(1), { stdio: ['pipe', 'ignore', 'ignore'] });
      child.on('error', reject);
      child.on('close', resolve);
      child.stdin.end(input); // then EOF, as when the writer dies
    });
  const tables = async () => (await onPrimary<{ t: string }>("SELECT TABLE_NAME AS t FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'gate' ORDER BY 1")).map((r) => r.t);
  const fresh = () => sql(config, 'orders-a', 'DROP DATABASE IF EXISTS gate', 'CREATE DATABASE gate', 'CREATE TABLE gate.orders (i INT)', 'CREATE TABLE gate.orders_old (i INT)');

  it('the hazard is real: a bare mariadb client runs the cut statement at EOF', async () => {
    await fresh();
    await feed([], cut);
    expect(await tables()).toEqual(['orders_old']); // the wrong table is gone
  });

  it('behind the gate only whole statements run; the end marker lets a complete tail through', async () => {
    await fresh();
    const gate = statementGate('/*!*/;');
    expect(await feed(gate.launcher!, cut)).toBe(0);
    expect(await tables()).toEqual(['orders', 'orders_old']);
    expect(await onPrimary('SELECT i FROM gate.orders')).toEqual([{ i: 1 }]); // the whole INSERT before the cut ran
    await feed(gate.launcher!, `DELIMITER /*!*/;\nDROP TABLE gate.orders_old/*!*/;\nDELIMITER ;\nDROP TABLE gate.orders;${gate.endWith}`);
    expect(await tables()).toEqual([]);
  });
});

describe('loadDump', () => {
  it('loads a dump with big tables cut into parallel sessions; the result equals the source, bytes, triggers, views and routines included', async () => {
    await sql(
      config,
      'orders-a',
      'DROP DATABASE IF EXISTS ld',
      'CREATE DATABASE ld',
      'USE ld',
      'CREATE TABLE ld.big (id INT PRIMARY KEY, payload VARBINARY(300), note VARCHAR(40) CHARACTER SET utf8mb4)',
      // Every byte value, a newline, quotes and backslashes in the binary column; 4-byte UTF-8 in the text.
      "INSERT INTO ld.big SELECT seq, CONCAT(UNHEX('000A0D1A22275C'), UNHEX(LPAD(HEX(seq % 256), 2, '0')), REPEAT(CHAR(seq % 256 USING binary), 200)), CONCAT('row ', seq, ' 🦭') FROM seq_1_to_20000",
      'CREATE TABLE ld.small (id INT PRIMARY KEY, total INT)',
      'INSERT INTO ld.small VALUES (1, 0)',
      'CREATE TRIGGER ld.count_big AFTER INSERT ON ld.big FOR EACH ROW UPDATE ld.small SET total = total + 1 WHERE id = 1',
      'CREATE VIEW ld.big_view AS SELECT id, note FROM ld.big WHERE id <= 10',
      'CREATE FUNCTION ld.twice(x INT) RETURNS INT DETERMINISTIC RETURN 2 * x',
    );
    const inst = config.clusters.orders!.instances[0]!;
    const admin = resolveCredential(config.clusters.orders!.credentials.admin);
    const file = join(work, 'load-dump.sql');
    await logicalBackup({ host: inst.host, port: inst.port, ...admin, outFile: file });

    const plan = await planDumpLoad(file, { minBlockBytes: 64 * 1024 });
    const runs = plan.segments.filter((s) => s.kind === 'data');
    const big = runs.filter((s) => s.db === 'ld'); // ld.big; ld.small is too small to be worth a session
    expect(big).toHaveLength(1);
    expect(sliceSegment(big[0]!, 2)).toHaveLength(2);
    expect(plan.header.toString('utf8')).toContain("SET NAMES utf8mb4");

    const target = scratch('load', 25952);
    await sandbox.startInstance(target);
    const loaded = await loadDump({ file, sessions: 2, minBlockBytes: 64 * 1024, client: { args: [`--socket=${sandbox.socketOf(target)}`, '--user=root'] }, initCommand: 'SET SESSION sql_log_bin = 0' });
    expect(loaded.parallelRuns).toBe(runs.length);
    // One session per serial segment, one per slice of each big run.
    expect(loaded.sessions).toBe(plan.segments.filter((s) => s.kind === 'serial').length + runs.reduce((n, r) => n + sliceSegment(r, 2).length, 0));

    const source = await connect(instanceEndpoint(config, 'orders', 'orders-a'));
    try {
      for (const table of ['ld.big', 'ld.small']) {
        const a = await checksumTable(source, table);
        const b = await sandbox.withRoot(target, (c) => checksumTable(c, table, { boundaries: a?.boundaries }));
        expect(diffChecksums(a, b)).toMatchObject({ equal: true });
      }
    } finally {
      source.destroy();
    }
    // The trigger came after the data (it did not fire during the load), and the rest is there too.
    expect(await onScratch(target, 'SELECT total FROM ld.small')).toEqual([{ total: 0 }]);
    expect(await onScratch(target, 'SELECT COUNT(*) AS n FROM ld.big_view')).toEqual([{ n: 10 }]);
    expect(await onScratch(target, 'SELECT ld.twice(21) AS x')).toEqual([{ x: 42 }]);
    expect(await onScratch(target, "SELECT COUNT(*) AS n FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = 'ld'")).toEqual([{ n: 1 }]);
    await sandbox.stopInstance(target);
  });
});
