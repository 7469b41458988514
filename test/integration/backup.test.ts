/**
 * The backup runbook on a real worker and dev server, against the real sandbox: a logical and a
 * physical backup taken from a healthy replica at the source's exact GTID position, checksums that
 * catch a changed byte, the primary's binlogs copied byte for byte, idempotent retries, and a
 * password that never reaches a tool's command line.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MockActivityEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBackupActivities } from '../../src/activities/backup';
import { resolveCredential, type RunbookConfig } from '../../src/config/load';
import { connect, instanceEndpoint } from '../../src/adapters/mysql/connect';
import type { Sandbox } from '../../src/adapters/mariadbd/sandbox';
import type { BackupResult } from '../../src/workflows/backup';
import { eventually, startTestSandbox } from '../support/sandbox';
import { sql, startInProcessWorker, type InProcessWorker } from '../support/stack';

const taskQueue = `backup-${process.pid}`;
let config: RunbookConfig;
let sandbox: Sandbox;
let stack: InProcessWorker;
let activities: ReturnType<typeof createBackupActivities>;
let result: BackupResult;
let password: string;
/** The primary's position when the backup started (nothing is written during it). */
let primaryGtid: string;
/** What the backup source said right after the run. */
let sourceAfter: { gtid: string; file: string; position: number };

interface SeenProcess {
  pid: number;
  argv: string[];
  environ: string;
  optionFileMode?: number;
  optionFile?: string;
}
const seen = new Map<number, SeenProcess>();

/** Watch this process's children (the in-process worker runs the tools) while they are alive. */
function watchChildren(): () => void {
  const scan = () => {
    let tasks: string[] = [];
    try {
      tasks = readdirSync(`/proc/${process.pid}/task`);
    } catch {
      return;
    }
    for (const tid of tasks) {
      let children = '';
      try {
        children = readFileSync(`/proc/${process.pid}/task/${tid}/children`, 'utf8');
      } catch {
        continue;
      }
      for (const pid of children.trim().split(/\s+/).filter(Boolean).map(Number)) {
        if (seen.has(pid)) continue;
        try {
          const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
          if (!argv.length || !/mariadb-(dump|backup|binlog)$/.test(argv[0]!)) continue;
          const entry: SeenProcess = { pid, argv, environ: readFileSync(`/proc/${pid}/environ`, 'utf8') };
          const option = argv.find((a) => a.startsWith('--defaults-extra-file='));
          if (option) {
            entry.optionFile = option.slice('--defaults-extra-file='.length);
            try {
              entry.optionFileMode = statSync(entry.optionFile).mode & 0o777;
            } catch {
              /* the tool already finished and the file is gone */
            }
          }
          seen.set(pid, entry);
        } catch {
          /* exited between the listing and the read */
        }
      }
    }
  };
  const timer = setInterval(scan, 2);
  return () => clearInterval(timer);
}

async function one<T>(instance: string, statement: string): Promise<T> {
  const conn = await connect(instanceEndpoint(config, 'orders', instance));
  try {
    const [rows] = await conn.query(statement);
    return (rows as T[])[0]!;
  } finally {
    conn.destroy();
  }
}

const gtidOf = (instance: string) => one<{ g: string }>(instance, 'SELECT @@gtid_binlog_pos AS g').then((r) => r.g);
const quiet = { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error() {} };
/** Run one of the backup activities directly, in an activity context (they heartbeat). */
const run = <A extends unknown[], R>(fn: (...args: A) => Promise<R>, ...args: A): Promise<R> =>
  new MockActivityEnvironment({ startToCloseTimeoutMs: 300_000, heartbeatTimeoutMs: 30_000 }, { logger: quiet }).run(fn, ...args) as Promise<R>;
const backupDir = (id: string) => join(config.backupDir, 'orders', id);
const binlogDirOf = (instance: string) => join(config.sandboxDir, 'orders', instance, 'binlog');
const manifestOf = (kind: string) => result.manifests.find((m) => m.kind === kind)!;

beforeAll(async () => {
  ({ config, sandbox } = await startTestSandbox('backup', 25300));
  password = resolveCredential(config.clusters.orders!.credentials.admin).password;
  activities = createBackupActivities({ config });
  stack = await startInProcessWorker(config, taskQueue, {
    workflowsPath: fileURLToPath(new URL('../fixtures/backupWorkflows.ts', import.meta.url)),
    extraActivities: activities,
  });

  await sql(
    config,
    'orders-a',
    'CREATE DATABASE shop',
    'CREATE TABLE shop.customers (id INT PRIMARY KEY, name VARCHAR(64) NOT NULL)',
    'CREATE TABLE shop.orders (id INT PRIMARY KEY, customer_id INT NOT NULL, total DECIMAL(10,2), note BLOB)',
    'CREATE TABLE shop.audit (id INT AUTO_INCREMENT PRIMARY KEY, order_id INT, at DATETIME(3) DEFAULT NOW(3))',
    'CREATE TRIGGER shop.orders_audit AFTER INSERT ON shop.orders FOR EACH ROW INSERT INTO shop.audit (order_id) VALUES (NEW.id)',
    'CREATE PROCEDURE shop.order_count() SELECT COUNT(*) FROM shop.orders',
    "INSERT INTO shop.customers SELECT seq, CONCAT('customer ', seq) FROM shop.seq_1_to_500",
    "INSERT INTO shop.orders SELECT seq, 1 + seq % 500, seq * 1.25, UNHEX(SHA2(seq, 256)) FROM shop.seq_1_to_3000",
    // A second binlog: the first is complete, the second still growing.
    'FLUSH BINARY LOGS',
    "INSERT INTO shop.orders SELECT seq, 1 + seq % 500, seq * 0.5, RANDOM_BYTES(64) FROM shop.seq_3001_to_4000",
    "UPDATE shop.customers SET name = CONCAT(name, ' (vip)') WHERE id <= 10",
  );
  primaryGtid = await gtidOf('orders-a');
  for (const replica of ['orders-b', 'orders-c']) await eventually(`${replica} caught up`, async () => (await gtidOf(replica)) === primaryGtid);

  const stopWatching = watchChildren();
  try {
    result = await stack.client.workflow.execute('backup', {
      taskQueue,
      workflowId: `backup-orders-${Date.now()}`,
      args: [{ cluster: 'orders', kind: 'both', requester: 'alice', reason: 'backup test' }],
    });
  } finally {
    stopWatching();
  }
  const source = result.manifests[0]!.instance;
  const status = await one<{ File: string; Position: number | string }>(source, 'SHOW MASTER STATUS');
  sourceAfter = { gtid: await gtidOf(source), file: status.File, position: Number(status.Position) };
});

afterAll(async () => {
  await stack?.stop();
  await sandbox?.destroy();
  // The whole private dir of this file: its config, the (destroyed) sandbox and the backups.
  if (config) rmSync(dirname(config.files[0]!), { recursive: true, force: true });
});

describe('backup runbook', () => {
  it('takes a logical and a physical backup from a healthy replica, each with its manifest written', async () => {
    expect(result.manifests.map((m) => m.kind)).toEqual(['logical', 'physical']);
    for (const m of result.manifests) {
      expect(['orders-b', 'orders-c']).toContain(m.instance); // a healthy replica, not the primary
      expect(m.id).toMatch(new RegExp(`^${m.kind}-\\d{14}$`));
      expect(JSON.parse(readFileSync(join(backupDir(m.id), 'manifest.json'), 'utf8'))).toEqual(m);
      expect(m.files.length).toBeGreaterThan(0);
      expect(m.files).not.toContain('manifest.json');
      expect(m.sizeBytes).toBe(m.files.reduce((n, f) => n + statSync(join(backupDir(m.id), f)).size, 0));
      expect(m.serverVersion).toMatch(/MariaDB/);
      expect(Date.parse(m.endedAt)).toBeGreaterThanOrEqual(Date.parse(m.startedAt));
    }
    expect(manifestOf('logical').files).toEqual(['dump.sql']);
    expect(manifestOf('logical').tool).toMatch(/^mariadb-dump /);
    expect(manifestOf('physical').files).toContain('data/xtrabackup_binlog_info');
    expect(manifestOf('physical').files).toContain('data/shop/orders.ibd');
    expect(manifestOf('physical').tool).toMatch(/^mariadb-backup /);

    const dump = readFileSync(join(backupDir(manifestOf('logical').id), 'dump.sql'), 'utf8');
    expect(dump).toContain('INSERT INTO `orders` VALUES');
    expect(dump).toContain('CREATE DEFINER'); // routines and triggers are in
    expect(dump).toMatch(/order_count/);
    expect(dump).toMatch(/orders_audit/);

    const listed = await run(activities.listBackups, { cluster: 'orders' });
    expect(listed.map((m) => m.id)).toEqual(result.manifests.map((m) => m.id));
  });

  it("records the source's exact GTID position and binlog coordinates", () => {
    // Nothing was written during the run: the source is where the primary was before it.
    expect(sourceAfter.gtid).toBe(primaryGtid);
    const logical = manifestOf('logical');
    const dump = readFileSync(join(backupDir(logical.id), 'dump.sql'), 'utf8');
    // The GTID comment comes at the END of the dump, after the data.
    const gtidComments = [...dump.matchAll(/^-- SET GLOBAL gtid_slave_pos='([^']*)';$/gm)];
    expect(gtidComments).toHaveLength(1);
    expect(gtidComments[0]!.index).toBeGreaterThan(dump.lastIndexOf('INSERT INTO'));
    expect(gtidComments[0]![1]).toBe(primaryGtid);
    expect(logical.gtid).toBe(primaryGtid);
    const change = /^-- CHANGE MASTER TO MASTER_LOG_FILE='([^']+)', MASTER_LOG_POS=(\d+);$/m.exec(dump.slice(0, 4096));
    expect(change).not.toBeNull();
    expect(logical.binlog).toEqual({ file: change![1], position: Number(change![2]) });
    expect(logical.binlog).toEqual({ file: sourceAfter.file, position: sourceAfter.position });

    const physical = manifestOf('physical');
    const info = readFileSync(join(backupDir(physical.id), 'data', 'xtrabackup_binlog_info'), 'utf8').trim().split('\t');
    expect(info).toEqual([sourceAfter.file, String(sourceAfter.position), primaryGtid]);
    expect(physical.gtid).toBe(primaryGtid);
    expect(physical.binlog).toEqual({ file: sourceAfter.file, position: sourceAfter.position });
  });

  it('verifies the checksums, and a single changed byte fails verification', async () => {
    for (const m of result.manifests) {
      // The manifest's sha256 is that of the sha256sum listing of its files.
      const listing = [...m.files]
        .sort()
        .map((f) => `${createHash('sha256').update(readFileSync(join(backupDir(m.id), f))).digest('hex')}  ${f}\n`)
        .join('');
      expect(m.sha256).toBe(createHash('sha256').update(listing).digest('hex'));
      expect(await run(activities.verifyBackup, { cluster: 'orders', backupId: m.id })).toEqual({ ok: true, expected: m.sha256, actual: m.sha256 });
    }

    for (const [kind, file] of [
      ['logical', 'dump.sql'],
      ['physical', 'data/shop/orders.ibd'],
    ] as const) {
      const m = manifestOf(kind);
      const path = join(backupDir(m.id), file);
      const original = readFileSync(path);
      const tampered = Buffer.from(original);
      const at = Math.floor(tampered.length / 2);
      tampered[at] = tampered[at]! ^ 0x01;
      writeFileSync(path, tampered);
      try {
        const verdict = await run(activities.verifyBackup, { cluster: 'orders', backupId: m.id });
        expect(verdict.ok).toBe(false);
        expect(verdict.expected).toBe(m.sha256);
        expect(verdict.actual).toMatch(/^[0-9a-f]{64}$/);
        expect(verdict.actual).not.toBe(m.sha256);
      } finally {
        writeFileSync(path, original);
      }
      expect((await run(activities.verifyBackup, { cluster: 'orders', backupId: m.id })).ok).toBe(true);
    }
  });

  it("archives the primary's binlogs byte for byte, the current one marked incomplete", () => {
    const serverDir = binlogDirOf('orders-a');
    const serverFiles = readdirSync(serverDir).filter((f) => /\.\d+$/.test(f)).sort();
    expect(serverFiles.length).toBeGreaterThanOrEqual(2);
    expect(result.binlogs.map((b) => b.file)).toEqual(serverFiles);
    expect(result.binlogs.map((b) => b.complete)).toEqual(serverFiles.map((_, i) => i < serverFiles.length - 1));
    const archive = join(config.backupDir, 'orders', 'binlogs', 'orders-a');
    expect(JSON.parse(readFileSync(join(archive, 'index.json'), 'utf8'))).toEqual(result.binlogs);

    for (const entry of result.binlogs) {
      const copy = readFileSync(join(archive, entry.file));
      const original = readFileSync(join(serverDir, entry.file));
      expect(entry.sizeBytes).toBe(copy.length);
      expect(entry.sha256).toBe(createHash('sha256').update(copy).digest('hex'));
      expect(entry.firstGtid).toMatch(/^0-\d+-\d+$/);
      if (entry.complete) {
        expect(copy.equals(original)).toBe(true);
      } else {
        // The server's open binlog carries LOG_EVENT_BINLOG_IN_USE_F in its format description
        // event's flags (file offset 21); the replication protocol sends it cleared. Nothing else differs.
        expect(copy.length).toBe(original.length);
        const differing = [...copy.keys()].filter((i) => copy[i] !== original[i]);
        expect(differing.every((i) => i === 21)).toBe(true);
        expect(original[21]! & 0x01).toBe(1);
        expect(Buffer.concat([copy.subarray(0, 21), copy.subarray(22)]).equals(Buffer.concat([original.subarray(0, 21), original.subarray(22)]))).toBe(true);
      }
    }
  });

  it('takeBackup returns the existing manifest for a completed id, and starts a partial one over', async () => {
    for (const m of result.manifests) {
      const firstFile = join(backupDir(m.id), m.files[0]!);
      const mtime = statSync(firstFile).mtimeMs;
      const again = await run(activities.takeBackup, { cluster: 'orders', instance: m.instance, kind: m.kind, backupId: m.id });
      expect(again).toEqual(m);
      expect(statSync(firstFile).mtimeMs).toBe(mtime); // not taken again
    }

    // An earlier attempt that died before its manifest: removed, and the backup taken afresh.
    const partialId = 'logical-partial';
    mkdirSync(join(backupDir(partialId)), { recursive: true });
    writeFileSync(join(backupDir(partialId), 'dump.sql'), '-- half a dump\n');
    writeFileSync(join(backupDir(partialId), 'leftover.tmp'), 'junk');
    const fresh = await run(activities.takeBackup, { cluster: 'orders', instance: 'orders-b', kind: 'logical', backupId: partialId });
    expect(fresh.files).toEqual(['dump.sql']);
    expect(existsSync(join(backupDir(partialId), 'leftover.tmp'))).toBe(false);
    expect(fresh.gtid).toBe(primaryGtid);
    expect((await run(activities.verifyBackup, { cluster: 'orders', backupId: partialId })).ok).toBe(true);
    const again = await run(activities.takeBackup, { cluster: 'orders', instance: 'orders-b', kind: 'logical', backupId: partialId });
    expect(again).toEqual(fresh);
  });

  it("never puts the password on a tool's command line or in its environment", () => {
    const procs = [...seen.values()];
    const connecting = procs.filter((p) => p.argv.some((a) => a.startsWith('--host=')));
    // The watcher saw the tools while they ran: at least the dump and the physical backup.
    expect(connecting.some((p) => p.argv[0]!.endsWith('mariadb-dump'))).toBe(true);
    expect(connecting.some((p) => p.argv[0]!.endsWith('mariadb-backup') && p.argv.includes('--backup'))).toBe(true);
    for (const p of procs) {
      expect(p.argv.join(' ')).not.toContain(password);
      expect(p.argv.some((a) => /^(-p|--password)/.test(a))).toBe(false);
      expect(p.environ).not.toContain(password);
      expect(p.environ).not.toContain('MYSQL_PWD=');
    }
    for (const p of connecting) {
      expect(p.argv[1]).toMatch(/^--defaults-extra-file=/);
      expect(existsSync(p.optionFile!)).toBe(false); // deleted once the tool exited
    }
    const modes = connecting.map((p) => p.optionFileMode).filter((m) => m !== undefined);
    expect(modes.length).toBeGreaterThan(0);
    expect(modes.every((m) => m === 0o600)).toBe(true);
  });

  it('archives incrementally: a newly complete file is copied again, an archived complete one is not', async () => {
    const archive = join(config.backupDir, 'orders', 'binlogs', 'orders-a');
    const before = result.binlogs;
    const firstComplete = before.find((b) => b.complete)!;
    const mtime = statSync(join(archive, firstComplete.file)).mtimeMs;
    await sql(config, 'orders-a', "INSERT INTO shop.customers VALUES (9001, 'late customer')", 'FLUSH BINARY LOGS', "INSERT INTO shop.customers VALUES (9002, 'later customer')");

    const after = await run(activities.archiveBinlogs, { cluster: 'orders', instance: 'orders-a' });
    const serverDir = binlogDirOf('orders-a');
    const serverFiles = readdirSync(serverDir).filter((f) => /\.\d+$/.test(f)).sort();
    expect(after.map((b) => b.file)).toEqual(serverFiles);
    expect(after.length).toBe(before.length + 1);
    expect(after.filter((b) => !b.complete).map((b) => b.file)).toEqual([serverFiles[serverFiles.length - 1]]);
    expect(statSync(join(archive, firstComplete.file)).mtimeMs).toBe(mtime);
    for (const entry of after.filter((b) => b.complete)) {
      expect(readFileSync(join(archive, entry.file)).equals(readFileSync(join(serverDir, entry.file)))).toBe(true);
    }
    expect(after.find((b) => b.file === before[before.length - 1]!.file)).toMatchObject({ complete: true });
  });
});
