/**
 * Point-in-time-recovery benchmark on the local sandbox (figures printed, never asserted).
 *
 * On the same generated data (a table of --rows rows, then --trx single-row binlog transactions
 * with a `DROP TABLE shop.scratch` in the middle):
 *
 *   runbook:   the `restore` workflow end to end (locate the DROP in the archived binlogs → choose
 *              the backup → load it into a recovery instance → replay through the SQL thread up to
 *              the DROP → skip it → replay the rest → verify → stop), by wall clock, and per step
 *              from the run's own step records (`runbookState` query); orchestration overhead =
 *              wall time − Σ step durations.
 *   baseline:  the same work done by hand the fastest way a skilled DBA would, on a fresh scratch
 *              mariadbd with the runbook's recovery cnf but the binary log OFF (nothing reads it):
 *              logical: the dump cut by hand (`awk` deals the big table's INSERT statements
 *              round-robin into N pieces) loaded by N parallel sessions after the rest;
 *              physical: `mariadb-backup --copy-back` of the same prepared backup, then start;
 *              then one `mariadb-binlog --start-position … | mariadb` pipe up to just before the
 *              DROP and one from just after it to the end of the archive.
 * Each side starts on a quiet machine (see settle): the sandbox's servers are still purging and
 * flushing after the generated transactions, and that load would otherwise fall on one side only.
 *
 *   npm run bench:restore -- [--rows N] [--trx M] [--writers W] [--method sql-thread|pipe] [--backup logical|physical]
 * Both sides restore the same kind of backup (--backup). Both results are checked against each other
 * and production (row count and an ordered SHA-256 of every row, computed here) and a mismatch is
 * printed loudly. Targets: the runbook's total ≤ the by-hand total (orchestration included), its
 * replay ≥ 1.5× faster than the hand-run pipe; orchestration overhead < 5 % of the total.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { Client, Connection, WorkflowFailedError } from '@temporalio/client';
import proto from '@temporalio/proto';
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import type { BadEventQuery } from '../src/core/binlogEvents';
import { archiveDirOf } from '../src/adapters/backup/archive';
import { BINLOG_INDEX_FILE, LOGICAL_DUMP_FILE, MANIFEST_FILE, PHYSICAL_DATA_DIR, type BackupManifest, type BinlogArchiveEntry } from '../src/core/manifest';
import { toolPath } from '../src/adapters/process/tools';
import type { RunbookConfig } from '../src/config/load';
import { connect, instanceEndpoint, type Conn } from '../src/adapters/mysql/connect';
import { Sandbox, type SandboxInstance } from '../src/adapters/mariadbd/sandbox';
import { startDevServer, stopDevServer } from '../src/adapters/temporal/devServer';
import { createRunbookWorker } from '../src/worker/createWorker';
import type { BackupInput } from '../src/workflows/backup';
import type { ReplayMethod, RestoreInput, RestoreResult } from '../src/workflows/restore';
import type { RunbookState, StepRecord } from '../src/core/runbookDefinitions';
import { testSandboxConfig } from '../test/support/sandbox';
import { fingerprint } from '../test/support/reference';

const { values } = parseArgs({
  options: {
    rows: { type: 'string', default: '1000000' },
    trx: { type: 'string', default: '100000' },
    writers: { type: 'string', default: '4' },
    /** The runbook's replay method: `sql-thread` (its default, the one the target is about) or `pipe`. */
    method: { type: 'string', default: 'sql-thread' },
    /** What the runbook restores from: `logical` (the same dump as the baseline) or `physical` (copy-back). */
    backup: { type: 'string', default: 'logical' },
  },
});
const BACKUP = values.backup as 'logical' | 'physical';
if (!['logical', 'physical'].includes(BACKUP)) throw new Error('--backup must be logical or physical');
const METHOD = values.method as ReplayMethod;
if (!['sql-thread', 'pipe'].includes(METHOD)) throw new Error('--method must be sql-thread or pipe');
const ROWS = Number(values.rows);
const TRX = Number(values.trx);
const WRITERS = Number(values.writers);
for (const [name, v] of [['--rows', ROWS], ['--trx', TRX], ['--writers', WRITERS]] as const) {
  if (!Number.isInteger(v) || v < 1) throw new Error(`${name} must be a whole number ≥ 1`);
}

const BASE_PORT = 26400; // control 26400, orders-a/b/c 26401-26403; the runbook's scratch instances are +10/+11
const BASELINE_PORT = 26450;
const CLUSTER = 'orders';
const PRIMARY = 'orders-a';
const BIG_TABLE = 'shop.items';
/** my.cnf lines that name one instance (paths, port, id): not carried from one instance to another. */
const PER_INSTANCE = /^(datadir|socket|pid-file|log-error|tmpdir|port|bind-address|server_id|log_bin|relay_log)\s*=/;
const DROPPED_TABLE = 'shop.scratch';

/**
 * The restore workflow's input, in one place: the workflow's input is still moving. This is the
 * reworked shape (`target: { kind: 'before-event', event }`, `replayMethod`, `cutover`); the one before
 * it was `{ cluster, badEvent: event, skip, compare, requester, reason, incidentId }`. Step
 * durations are read from the run's `runbookState`, not from `result.phases`.
 */
function restoreInput(o: { event: BadEventQuery; skip: boolean; compare: string[]; incidentId: string; method: ReplayMethod }): RestoreInput {
  return {
    cluster: CLUSTER,
    target: { kind: 'before-event', event: o.event },
    skip: o.skip,
    replayMethod: o.method,
    backupKind: BACKUP,
    cutover: 'none', // recover and verify only: production is never written by the benchmark's restore
    compare: o.compare,
    requester: 'bench',
    reason: `benchmark: restore to just before the DROP of ${DROPPED_TABLE}, skip it, replay the rest`,
    incidentId: o.incidentId,
  };
}

// ---------------------------------------------------------------------------------------------
// Small helpers.

const log = (line: string) => console.error(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}`);
const sec = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
const pct = (part: number, whole: number) => `${((100 * part) / whole).toFixed(1)} %`;

async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const t0 = performance.now();
  const value = await fn();
  return { ms: performance.now() - t0, value };
}

async function onPrimary<T>(config: RunbookConfig, fn: (c: Conn) => Promise<T>, instance = PRIMARY): Promise<T> {
  const conn = await connect(instanceEndpoint(config, CLUSTER, instance));
  try {
    return await fn(conn);
  } finally {
    conn.destroy();
  }
}

const rowsOf = async (c: Conn, sql: string, params: unknown[] = []) => (await c.query(sql, params))[0] as Record<string, unknown>[];

/** What a DBA types: one shell line, failing if any part of the pipe fails. */
function shell(script: string): Promise<number> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-c', `set -euo pipefail; ${script}`], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr = (stderr + d).slice(-8000)));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(performance.now() - t0) : reject(new Error(`shell failed (${code}): ${script}\n${stderr.trim()}`))));
  });
}
const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** CPU time of the whole machine (all cores) from /proc/stat: busy and total jiffies. */
function cpuJiffies(): { busy: number; total: number } {
  const [, ...fields] = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/);
  const n = fields.map(Number);
  const idle = n[3]! + (n[4] ?? 0); // idle + iowait
  const total = n.slice(0, 8).reduce((a, b) => a + b, 0); // user … steal (guest is inside user)
  return { busy: total - idle, total };
}

/**
 * Wait until the machine is quiet (under 10 % busy for three 1-second samples in a row, at most
 * three minutes): after 100k transactions the sandbox servers purge and flush for a while, and
 * whichever side is measured first would otherwise run against that. Both sides start quiet.
 */
async function settle(what: string): Promise<void> {
  const t0 = performance.now();
  let quiet = 0;
  let last = cpuJiffies();
  let busyPct = 100;
  while (quiet < 3 && performance.now() - t0 < 180_000) {
    await new Promise((r) => setTimeout(r, 1000));
    const now = cpuJiffies();
    busyPct = (100 * (now.busy - last.busy)) / Math.max(1, now.total - last.total);
    last = now;
    quiet = busyPct < 10 ? quiet + 1 : 0;
  }
  log(`  quiet before ${what} after ${sec(performance.now() - t0)} (last second ${busyPct.toFixed(0)} % busy)`);
}

const tsMs = (ts: proto.temporal.api.history.v1.IHistoryEvent['eventTime']) => Number(ts?.seconds?.toString() ?? 0) * 1000 + (ts?.nanos ?? 0) / 1e6;

// ---------------------------------------------------------------------------------------------
// Data.

async function generateData(config: RunbookConfig): Promise<void> {
  await onPrimary(config, async (c) => {
    await c.query('CREATE DATABASE shop');
    await c.query(`CREATE TABLE ${BIG_TABLE} (
      id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
      sku VARCHAR(32) NOT NULL,
      name VARCHAR(120) NOT NULL,
      qty INT NOT NULL,
      price DECIMAL(12,2) NOT NULL,
      updated_at DATETIME(6) NOT NULL,
      KEY sku (sku)
    ) ENGINE=InnoDB`);
    const chunk = 100_000;
    for (let from = 1; from <= ROWS; from += chunk) {
      const to = Math.min(ROWS, from + chunk - 1);
      await c.query(
        `INSERT INTO ${BIG_TABLE} (id, sku, name, qty, price, updated_at)
         SELECT seq, CONCAT('SKU-', LPAD(seq, 9, '0')), CONCAT('item ', MD5(seq)), seq % 1000, (seq % 100000) / 100,
                TIMESTAMP'2024-01-01 00:00:00' + INTERVAL seq SECOND
         FROM shop.seq_${from}_to_${to}`,
      );
    }
    await c.query(`CREATE TABLE ${DROPPED_TABLE} (id INT PRIMARY KEY, note VARCHAR(64) NOT NULL) ENGINE=InnoDB`);
    await c.query(`INSERT INTO ${DROPPED_TABLE} SELECT seq, CONCAT('note ', seq) FROM shop.seq_1_to_100`);
  });
}

/**
 * The generated data predates the binlog retention, as in production: once the replicas have it,
 * the primary purges the binlog that holds the bulk insert. Restore never needs it (replay starts
 * at the backup's position), and locating the bad event then reads only the incident's binlogs,
 * not a decoded million-row insert.
 */
async function purgeGenerationBinlogs(config: RunbookConfig): Promise<void> {
  const pos = await onPrimary(config, async (c) => {
    await c.query('FLUSH BINARY LOGS');
    return String((await rowsOf(c, 'SELECT @@gtid_binlog_pos AS p'))[0]!.p);
  });
  for (const replica of ['orders-b', 'orders-c']) {
    const [r] = await onPrimary(config, (c) => rowsOf(c, 'SELECT MASTER_GTID_WAIT(?, 1800) AS w', [pos]), replica);
    if (Number(r!.w) !== 0) throw new Error(`${replica} did not reach ${pos}`);
  }
  await onPrimary(config, async (c) => {
    const logs = await rowsOf(c, 'SHOW BINARY LOGS');
    await c.query(`PURGE BINARY LOGS TO '${String(logs.at(-1)!.Log_name)}'`);
  });
}

/**
 * `count` single-row autocommit transactions on the big table from `WRITERS` connections: mostly
 * UPDATEs of a spread of rows, one in ten an INSERT; before the DROP, one in a hundred touches the
 * table that is about to be dropped.
 */
async function writeTransactions(config: RunbookConfig, count: number, offset: number, touchScratch: boolean): Promise<void> {
  let next = 0;
  let reported = 0;
  const one = async (c: Conn, k: number) => {
    if (k % 10 === 0) {
      await c.query(`INSERT INTO ${BIG_TABLE} (sku, name, qty, price, updated_at) VALUES (?, ?, ?, ?, NOW(6))`, [`NEW-${k}`, `new item ${k}`, k % 50, (k % 9999) / 100]);
    } else if (touchScratch && k % 100 === 55) {
      await c.query(`UPDATE ${DROPPED_TABLE} SET note = ? WHERE id = ?`, [`touched by ${k}`, (k % 100) + 1]);
    } else {
      const id = ((k * 7919 + 104_729) % ROWS) + 1;
      await c.query(`UPDATE ${BIG_TABLE} SET qty = qty + 1, price = price + 0.01, updated_at = NOW(6) WHERE id = ?`, [id]);
    }
  };
  await Promise.all(
    Array.from({ length: Math.min(WRITERS, count) }, async () => {
      const c = await connect(instanceEndpoint(config, CLUSTER, PRIMARY));
      try {
        for (let i = next++; i < count; i = next++) {
          await one(c, offset + i);
          if (next - reported >= count / 5) {
            reported = next;
            log(`  ${Math.min(next, count)}/${count} transactions`);
          }
        }
      } finally {
        c.destroy();
      }
    }),
  );
}

// ---------------------------------------------------------------------------------------------
// Stack.

Runtime.install({ logger: new DefaultLogger('ERROR') });
const stateDir = mkdtempSync(join(tmpdir(), 'runbook-bench-restore-temporal-'));
const config = testSandboxConfig('bench-pitr', BASE_PORT);
const configDir = dirname(config.files[0]!); // holds the sandbox datadirs and the backups
const sandbox = new Sandbox(config);
const baseline: SandboxInstance = {
  key: 'bench/baseline',
  name: 'baseline',
  host: '127.0.0.1',
  port: BASELINE_PORT,
  serverId: 1_000_000 + BASELINE_PORT,
  initialRole: 'replica', // the same cnf as the runbook's recovery instance
  dir: join(configDir, 'baseline'),
};
const clusterDir = join(config.backupDir, CLUSTER);
// Short: the restore activity puts the workflow id into its scratch instances' unix socket paths,
// which mariadbd refuses beyond 107 bytes.
const restoreId = `pitr-${Date.now().toString(36)}`;
// The restore activity's scratch instances (see src/activities/restore.ts), stopped in `finally` should the run fail.
const restoreScratch = (name: string, port: number): SandboxInstance => ({
  key: `restore/${name}`, name, host: '127.0.0.1', port, serverId: 1_000_000 + port, initialRole: 'replica', dir: join(clusterDir, 'restore', restoreId, name),
});

let server: Awaited<ReturnType<typeof startDevServer>> | undefined;
let client: Client | undefined;
let native: NativeConnection | undefined;
let stopWorker: (() => Promise<void>) | undefined;

try {
  server = await startDevServer({ stateDir, headless: true });
  client = new Client({ connection: await Connection.connect({ address: server.address }) });
  native = await NativeConnection.connect({ address: server.address });
  log(`sandbox up on ports ${BASE_PORT}-${BASE_PORT + 3}`);
  await sandbox.up();
  const taskQueue = 'bench-restore';
  const worker = await createRunbookWorker({ connection: native, namespace: 'default', taskQueue, config });
  const running = worker.run();
  stopWorker = async () => {
    worker.shutdown();
    await running;
  };
  const runBackup = async (label: string, kind: BackupInput['kind']) => {
    const input: BackupInput = { cluster: CLUSTER, instance: PRIMARY, kind, requester: 'bench' };
    const { ms } = await timed(() => client!.workflow.execute('backup', { taskQueue, workflowId: `bench-backup-${label}-${Date.now()}`, args: [input] }));
    log(`  backup workflow (${label}): ${sec(ms)}`);
  };

  // 1. Data.
  log(`generating ${ROWS} rows in ${BIG_TABLE} (sequence engine) and ${DROPPED_TABLE}`);
  const gen = await timed(() => generateData(config));
  log(`  ${sec(gen.ms)}; purging the generation's binlogs once the replicas have them`);
  await purgeGenerationBinlogs(config);

  // 2. The backup the restore will start from.
  log(`${BACKUP} backup (backup workflow)`);
  await runBackup('before', BACKUP);

  // 3. The incident: transactions, the DROP in the middle, more transactions; then archive them all.
  const half = Math.floor(TRX / 2);
  log(`${half} transactions, DROP TABLE ${DROPPED_TABLE}, ${TRX - half} transactions (${WRITERS} writers)`);
  const load = await timed(async () => {
    await writeTransactions(config, half, 0, true);
    await onPrimary(config, (c) => c.query(`DROP TABLE ${DROPPED_TABLE}`));
    await writeTransactions(config, TRX - half, half, false);
  });
  log(`  ${sec(load.ms)} (${((TRX + 1) / (load.ms / 1000)).toFixed(0)} trx/s on the primary)`);
  // The backup activity archives every binlog the server lists, the current one included: no FLUSH needed.
  log('second backup run (archives the binlogs holding the DROP)');
  await runBackup('after', 'logical');

  // 4. The runbook.
  const workflowId = restoreId;
  const recoveryDir = join(clusterDir, 'restore', restoreId, 'recovery');
  const seen: { recoveryUp?: number; loaded?: number } = {};
  const watch = setInterval(() => {
    const t = performance.now();
    if (seen.recoveryUp === undefined && existsSync(join(recoveryDir, 'mysqld.sock'))) seen.recoveryUp = t;
    if (seen.loaded === undefined && existsSync(join(recoveryDir, 'loaded'))) seen.loaded = t;
  }, 20);
  await settle('the runbook');
  log('restore workflow: locate the DROP → backup → load → replay → skip → replay the rest → verify');
  const input = restoreInput({ event: { table: DROPPED_TABLE, statement: 'DROP TABLE' }, skip: true, compare: [BIG_TABLE], incidentId: 'BENCH-PITR', method: METHOD });
  const t0 = performance.now();
  const handle = await client.workflow.start('restore', { taskQueue, workflowId, args: [input] });
  let result: RestoreResult;
  try {
    result = (await handle.result()) as RestoreResult;
  } catch (err) {
    const state = await handle.query<RunbookState>('runbookState').catch(() => undefined);
    for (const s of state?.steps ?? []) log(`  step ${s.name}: ${s.status}${s.error ? ` — ${s.error}` : ''}`);
    throw err instanceof WorkflowFailedError && err.cause ? err.cause : err;
  } finally {
    clearInterval(watch);
  }
  const runbookWall = performance.now() - t0;
  if (result.status !== 'succeeded') throw new Error(`restore ended ${result.status}`);
  log(`  ${sec(runbookWall)}`);

  // Per step, from the run's own records (workflow time: a step starts when the workflow schedules
  // it and ends when the workflow sees its result, so the scheduling latency is inside the step).
  const state = await handle.query<RunbookState>('runbookState');
  const steps = state.steps.filter((s): s is StepRecord & { endedAt: number } => s.endedAt !== undefined && s.status === 'succeeded');
  const stepsTotal = steps.reduce((a, s) => a + (s.endedAt - s.startedAt), 0);
  // And the activities' own execution times from the history (started → completed), the audit
  // writer's excepted: that is what the steps did, the rest is orchestration.
  const history = await handle.fetchHistory();
  const E = proto.temporal.api.enums.v1.EventType;
  const scheduled = new Map<string, string>();
  const started = new Map<string, number>();
  const activityMs = new Map<string, number>();
  for (const e of history.events ?? []) {
    if (e.eventType === E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED) scheduled.set(String(e.eventId), e.activityTaskScheduledEventAttributes?.activityType?.name ?? '?');
    if (e.eventType === E.EVENT_TYPE_ACTIVITY_TASK_STARTED) started.set(String(e.activityTaskStartedEventAttributes?.scheduledEventId), tsMs(e.eventTime));
    if (e.eventType === E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED) {
      const id = String(e.activityTaskCompletedEventAttributes?.scheduledEventId);
      const type = scheduled.get(id) ?? '?';
      activityMs.set(type, (activityMs.get(type) ?? 0) + tsMs(e.eventTime) - (started.get(id) ?? tsMs(e.eventTime)));
    }
  }
  const workActivities = [...activityMs].filter(([type]) => !['recordAudit', 'notify', 'recordAndNotify'].includes(type));
  const activityTotal = workActivities.reduce((a, [, ms]) => a + ms, 0);

  // By name pattern, so renamed steps of the reworked workflow still land in the right bucket.
  const runbookReplay = steps.filter((s) => /replay|skip/i.test(s.name)).reduce((a, s) => a + (s.endedAt - s.startedAt), 0);
  const runbookPrepare = steps.filter((s) => /prepare|restore backup|load/i.test(s.name)).reduce((a, s) => a + (s.endedAt - s.startedAt), 0);
  const runbookLoad = seen.recoveryUp !== undefined && seen.loaded !== undefined ? seen.loaded - seen.recoveryUp : undefined;

  // 5. The hand-run baseline, on the same dump and archived binlogs.
  // The exact positions the runbook found (its located event), for the hand-run pipe.
  const bad = result.target.event;
  if (!bad) throw new Error(`the restore located no event: ${result.target.description}`);
  // The backup the runbook used: the same files by hand.
  const manifest = JSON.parse(readFileSync(join(clusterDir, result.backupId, MANIFEST_FILE), 'utf8')) as BackupManifest;
  const dump = join(clusterDir, result.backupId, LOGICAL_DUMP_FILE);
  const archive = archiveDirOf(config.backupDir, CLUSTER, result.target.archive);
  const index = JSON.parse(readFileSync(join(archive, BINLOG_INDEX_FILE), 'utf8')) as BinlogArchiveEntry[];
  const fileNames = index.map((e) => e.file);
  const from = fileNames.indexOf(manifest.binlog.file);
  const at = fileNames.indexOf(bad.file);
  if (from < 0 || at < from) throw new Error(`archive ${fileNames.join(', ')} lacks ${manifest.binlog.file} … ${bad.file}`);
  const paths = (files: string[]) => files.map((f) => q(join(archive, f))).join(' ');
  const replayBytes = index.slice(from).reduce((a, e) => a + e.sizeBytes, 0) - manifest.binlog.position;

  // The runbook's recovery cnf (its my.cnf stays after the run) minus what names the instance, and
  // the binary log off: by hand nobody reads the scratch server's binlog.
  const recovery = restoreScratch('recovery', BASE_PORT + 11);
  const cnfLines = (file: string) => readFileSync(file, 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#') && !l.startsWith('[') && !PER_INSTANCE.test(l));
  const sameCnf = cnfLines(join(recovery.dir, 'my.cnf'));
  const sandboxCnf = new Set(cnfLines(join(config.sandboxDir, CLUSTER, PRIMARY, 'my.cnf')));
  const recoveryOverrides = sameCnf.filter((l) => !sandboxCnf.has(l));
  baseline.extraCnf = [...sameCnf, 'skip-log-bin'];
  const mariadb = () => `${q(toolPath('mariadb'))} --socket=${q(sandbox.socketOf(baseline))} --user=root --binary-mode`;
  const binlogTool = q(toolPath('mariadb-binlog'));
  const phases: [string, number][] = [];
  let startupMs = 0;
  await settle('the baseline');
  if (BACKUP === 'physical') {
    // By hand: copy the prepared backup into an empty datadir, start the server on it.
    log('  mariadb-backup --copy-back; start mariadbd');
    const copy = await shell(`mkdir -p ${q(join(baseline.dir, 'data'))} && ${q(toolPath('mariadb-backup'))} --copy-back --target-dir=${q(join(clusterDir, result.backupId, PHYSICAL_DATA_DIR))} --datadir=${q(join(baseline.dir, 'data'))}`);
    const start = await timed(() => sandbox.startInstance(baseline));
    phases.push(['copy back', copy], ['start mariadbd', start.ms]);
  } else {
    log(`baseline: fresh mariadbd on port ${BASELINE_PORT} (binlog off)`);
    startupMs = (await timed(() => sandbox.startInstance(baseline))).ms;
    // By hand: the big table's INSERTs cut into WRITERS pieces loaded at once, after everything else.
    const work = mkdtempSync(join(tmpdir(), 'bench-hand-load-'));
    const big = BIG_TABLE.split('.')[1]!;
    log(`  awk: the big table's INSERTs dealt into ${WRITERS} pieces; mariadb < rest; ${WRITERS} × mariadb < piece`);
    // The dump's INSERTs span lines (a row per line, `);` ends one): whole statements, dealt round-robin.
    const cut = await shell(
      `cd ${q(work)} && awk 'index($0, "INSERT INTO \`${big}\`") == 1 { inb = 1 } inb { print > "big.sql"; if ($0 ~ /\\);$/) inb = 0; next } { print > "rest.sql" }' ${q(dump)}` +
        ` && awk -v n=${WRITERS} '{ print > ("piece_" i) } /\\);$/ { i = (i + 1) % n }' big.sql`,
    );
    const rest = await shell(`${mariadb()} < ${q(join(work, 'rest.sql'))}`);
    const pieces = await shell(`cd ${q(work)} && ls piece_* | xargs -P ${WRITERS} -I{} sh -c ${q(`(echo 'SET unique_checks=0, foreign_key_checks=0;'; cat {}) | ${mariadb()} shop`)}`);
    rmSync(work, { recursive: true, force: true });
    phases.push(['cut the dump', cut], ['load the rest', rest], [`load ${big} in ${WRITERS} sessions`, pieces]);
  }
  log(`  mariadb-binlog ${manifest.binlog.file}:${manifest.binlog.position} → ${bad.file}:${bad.startPosition} | mariadb`);
  const replayBefore = await shell(`${binlogTool} --start-position=${manifest.binlog.position} --stop-position=${bad.startPosition} ${paths(fileNames.slice(from, at + 1))} | ${mariadb()}`);
  log(`  mariadb-binlog ${bad.file}:${bad.endPosition} → end of archive | mariadb`);
  const replayRest = await shell(`${binlogTool} --start-position=${bad.endPosition} ${paths(fileNames.slice(at))} | ${mariadb()}`);
  const baselineLoad = phases.reduce((a, [, ms]) => a + ms, 0);
  const baselineReplay = replayBefore + replayRest;
  const baselineTotal = baselineLoad + baselineReplay;

  // Same result? The runbook's recovery instance was stopped by its last step but its datadir
  // stays: start it again (replication off) and ask all three the same questions.
  log('comparing the baseline with the runbook\'s recovery instance and production');
  await sandbox.startInstance({ ...recovery, extraCnf: [...sameCnf, 'skip-slave-start'] });
  const onServer = (inst: SandboxInstance) => <T>(fn: (c: Conn) => Promise<T>) => sandbox.withRoot(inst, (c) => fn(c as unknown as Conn));
  const sides: Record<string, <T>(fn: (c: Conn) => Promise<T>) => Promise<T>> = { baseline: onServer(baseline), runbook: onServer(recovery), production: (fn) => onPrimary(config, fn) };
  const mismatches: string[] = [];
  const sums: Record<string, Record<string, string>> = {};
  for (const table of [BIG_TABLE, DROPPED_TABLE]) {
    for (const [side, on] of Object.entries(sides)) {
      if (side === 'production' && table === DROPPED_TABLE) continue; // dropped there: that is the incident
      // Production has moved on past the archive only if something wrote to it: nothing does here.
      const f = await on((c) => fingerprint(c, table));
      (sums[table] ??= {})[side] = f ? `${f.rows} rows, sha256 ${f.digest.slice(0, 16)}…` : 'missing';
    }
    const distinct = new Set(Object.values(sums[table]!));
    if (distinct.size !== 1) mismatches.push(`${table}: ${Object.entries(sums[table]!).map(([side, v]) => `${side}: ${v}`).join('; ')}`);
  }
  const gtids = { runbook: String((await sides.runbook!((c) => rowsOf(c, 'SELECT @@gtid_slave_pos AS p')))[0]!.p) };
  const bigRows = Number((await sides.baseline!((c) => rowsOf(c, `SELECT COUNT(*) AS n FROM ${BIG_TABLE}`)))[0]!.n);
  await sandbox.stopInstance(recovery);
  await sandbox.stopInstance(baseline);

  // 6. Figures.
  const seqOf = (gtid: string) => Number(gtid.split(',').map((g) => g.trim().split('-')).find((p) => p[0] === bad.gtid.split('-')[0])?.[2] ?? NaN);
  const replayedTrx = seqOf(gtids.runbook) - seqOf(manifest.gtid);
  const overhead = runbookWall - stepsTotal;
  console.log(`\npoint-in-time recovery: restore + replay, skipping one DROP TABLE (same data, same cnf)`);
  console.log(`  data:      ${ROWS} generated rows in ${BIG_TABLE}, ${bigRows} after replay; dump ${mib(manifest.sizeBytes)} (${manifest.id})`);
  console.log(`  binlogs:   ${TRX} single-row transactions + the DROP (${replayedTrx} GTIDs from ${manifest.gtid} to ${gtids.runbook}), ${mib(replayBytes)} of binlog to replay in ${index.length - from} file(s)`);
  console.log(`  bad event: ${bad.gtid} ${bad.file}:${bad.startPosition}-${bad.endPosition} ${bad.statements[0] ?? ''}`);
  console.log(`  cnf:       both restores run with the recovery instance's cnf: the sandbox's plus ${recoveryOverrides.join(' ') || '(nothing)'}`);
  console.log(`\n  runbook (restore workflow, wall clock):   ${sec(runbookWall)}`);
  for (const s of steps) {
    const ms = s.endedAt - s.startedAt;
    const extra = /prepare/i.test(s.name) && runbookLoad !== undefined && BACKUP === 'logical' ? `   (dump load ≈ ${sec(runbookLoad)}, scratch instances + binlog copy ≈ ${sec(ms - runbookLoad)})` : '';
    console.log(`    ${s.name.padEnd(38)} ${sec(ms).padStart(9)}  ${pct(ms, runbookWall).padStart(7)}${extra}`);
  }
  console.log(`    ${'orchestration (wall − Σ steps)'.padEnd(38)} ${sec(overhead).padStart(9)}  ${pct(overhead, runbookWall).padStart(7)}   target < 5 %`);
  console.log(`    activity execution time (history):     ${sec(activityTotal)}; wall − that: ${sec(runbookWall - activityTotal)} (${pct(runbookWall - activityTotal, runbookWall)})`);
  console.log(`      ${workActivities.map(([type, ms]) => `${type} ${sec(ms)}`).join(', ')}`);
  console.log(`\n  baseline by hand (${BACKUP === 'physical' ? 'copy-back' : `dump cut by hand, ${WRITERS} parallel sessions`}, binlog off; mariadb-binlog | mariadb):   ${sec(baselineTotal)}${startupMs ? `   (+ ${sec(startupMs)} to create and start the scratch mariadbd, not counted)` : ''}`);
  for (const [name, ms] of phases) console.log(`    ${name.padEnd(40)} ${sec(ms).padStart(9)}`);
  console.log(`    replay to just before the DROP           ${sec(replayBefore).padStart(9)}`);
  console.log(`    replay the rest                          ${sec(replayRest).padStart(9)}`);
  console.log(`\n  ratio baseline / runbook, total:                         ${(baselineTotal / runbookWall).toFixed(2)}×   target ≥ 1× (the runbook no slower than by hand, orchestration included)`);
  console.log(`  ratio baseline / runbook, load + replay only:            ${(baselineTotal / (runbookPrepare + runbookReplay)).toFixed(2)}×   (runbook prepare + replay steps ${sec(runbookPrepare + runbookReplay)})`);
  if (runbookLoad !== undefined && BACKUP === 'logical') console.log(`  ratio baseline / runbook, dump load only:                ${(baselineLoad / runbookLoad).toFixed(2)}×`);
  console.log(`  ratio baseline / runbook, replay only:                   ${(baselineReplay / runbookReplay).toFixed(2)}×   target ≥ 1.5× (runbook ${METHOD} ${sec(runbookReplay)} vs hand-run pipe ${sec(baselineReplay)})`);
  console.log(`  orchestration overhead:                                  ${pct(overhead, runbookWall)} of the runbook's total`);
  if (mismatches.length) {
    console.log(`\n  !!!!! RESULT MISMATCH between the baseline and the runbook !!!!!`);
    for (const m of mismatches) console.log(`  !!!!! ${m}`);
    process.exitCode = 1;
  } else {
    console.log(`\n  same result (baseline = runbook's recovery instance; = production for ${BIG_TABLE}; ordered SHA-256 of every row), runbook at ${gtids.runbook}:`);
    for (const [table, bySide] of Object.entries(sums)) console.log(`    ${table}: ${Object.values(bySide)[0]} (${Object.keys(bySide).join(' = ')})`);
  }
} finally {
  await sandbox.stopInstance(baseline).catch(() => {});
  for (const [name, port] of [['binlog-server', BASE_PORT + 10], ['recovery', BASE_PORT + 11]] as const) await sandbox.stopInstance(restoreScratch(name, port)).catch(() => {});
  await stopWorker?.().catch(() => {});
  await native?.close().catch(() => {});
  await client?.connection.close().catch(() => {});
  await sandbox.destroy().catch(() => {});
  await stopDevServer(stateDir).catch(() => {});
  rmSync(stateDir, { recursive: true, force: true });
  rmSync(configDir, { recursive: true, force: true });
}
