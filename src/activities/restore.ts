/**
 * Point-in-time recovery into a recovery instance, never over production. A backup is restored
 * (logical: the dump is loaded; physical: copied back into a fresh datadir), then the archived
 * binlogs are replayed up to the target:
 *
 * - `sql-thread` (default): the server's own replication SQL thread applies them from a throwaway
 *   binlog-server instance holding the archive (`START SLAVE UNTIL master_gtid_pos=…`); a bad
 *   transaction is skipped by moving `gtid_slave_pos` past it. Progress lives in the recovery
 *   instance's `gtid_slave_pos`, so a retried or resumed activity continues where replay stopped.
 * - `pipe` (fallback): `mariadb-binlog … | mariadb --binary-mode` in one session, from GTID to
 *   GTID; the applied position is read back from the recovery instance before each run.
 *
 * After verification and approval, `cutOverTables` copies recovered tables back into production
 * through a staging schema and swaps them in with one atomic RENAME, keeping the damaged table.
 *
 * Where the backup is restored: by default a scratch instance on the worker's host (port
 * control+11, datadir under the backup directory); or, with `recoverOn`, the cluster's configured
 * recovery host (`clusters.<c>.recovery`), a separate server that is wiped and loaded over the
 * network (logical backups only: a physical copy-back needs the datadir's filesystem). The binlog
 * server for SQL-thread replay is always a scratch instance on the worker's host (control+10),
 * listening where the recovery server reaches it.
 */
import { createHash } from 'node:crypto';
import { access, copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { heartbeat, sleep } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type mysql from 'mysql2/promise';
import { getCluster, getInstance, resolveCredential } from '../config/load';
import { BINLOG_INDEX_FILE, LOGICAL_DUMP_FILE, MANIFEST_FILE, PHYSICAL_DATA_DIR, type BackupManifest, type BinlogArchiveEntry } from '../backup/manifest';
import { archiveDirOf, filesAfter, latestArchive } from '../backup/archive';
import { loadDump } from '../backup/dumpLoad';
import { copyBackPhysical, pipeReplay, RestoreRefusedError, type ReplayTarget } from '../backup/restoreTools';
import { runTool, toolPath } from '../backup/tools';
import { checksumTable, diffChecksums, primaryKeyBoundaries, quoteIdent, parseTableName, type ChunkDiff, type TableChecksum } from '../mysql/checksum';
import { query as runQuery } from '../mysql/connect';
import { formatMariaGtidList, parseMariaGtidList } from '../mysql/dialect';
import { Sandbox, type SandboxInstance } from '../sandbox/sandbox';
import type { ActivityDeps } from './deps';
import { withInstance } from './instance';

const REPL = { user: 'restore_repl', password: 'restore-repl-local-only' };

/**
 * A recovery instance is scratch: durability per commit buys nothing (a crash means restoring
 * again) and costs most of replay's time; bigger buffers hold the working set of a real restore.
 */
export const RECOVERY_CNF = ['innodb_buffer_pool_size=512M', 'innodb_log_file_size=256M', 'sync_binlog=0', 'innodb_flush_log_at_trx_commit=2'];

/** Sessions loading a big table of a logical backup at once: the server's insert path is per session. */
const LOAD_SESSIONS = Math.min(4, Math.max(2, availableParallelism()));

export type ReplayMethod = 'sql-thread' | 'pipe';

export interface RecoveryRef {
  cluster: string;
  restoreId: string;
  /** The cluster's configured recovery host, by name; absent: a scratch instance on the worker's host. */
  recoverOn?: string;
  /** Whose archived binlogs to replay (the located target's); absent: the latest archive. */
  archive?: string;
}

/** The server a backup is restored into, scratch or configured, as the activities use it. */
interface RecoveryServer {
  /** What people read: `scratch instance 127.0.0.1:23111` or `recovery host orders-recovery`. */
  label: string;
  /** A datadir on this host: physical backups can be copied back into it. */
  datadir?: string;
  /** Where its replication connects to reach the binlog server. */
  binlogServerHost: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  run<T>(fn: (c: mysql.Connection) => Promise<T>): Promise<T>;
  /** Connection options for the mariadb / mariadb-dump clients. */
  client: { args: string[]; credentials?: { user: string; password: string } };
  /** The same, for the pipe replay. */
  replayTarget: ReplayTarget;
  /** Leave an empty server for the load (scratch: a fresh datadir; a host: its databases dropped). */
  wipe(): Promise<void>;
}

/** One table after replay, beside production (checksums chunked by primary-key range). */
export interface TableVerdict {
  table: string;
  recovery: { rows: number; checksum: string } | null;
  production: { rows: number; checksum: string } | null;
  equal: boolean;
  /** Up to 20 differing chunks, with their primary-key bounds. */
  differingChunks: ChunkDiff[];
  chunks: number;
  note: string;
}

export interface Verification {
  appliedTo: string;
  expected: string;
  /** Production's position; when past the archive, its later writes explain differences. */
  productionAt: string;
  productionMovedOn: boolean;
  tables: TableVerdict[];
  problems: string[];
}

export function createRestoreActivities({ config }: ActivityDeps) {
  const clusterDir = (cluster: string) => join(config.backupDir, cluster);
  /** The archive the target was located in (`RecoveryRef.archive`), else the latest. */
  const archiveDir = (ref: RecoveryRef) => {
    const instance = ref.archive ?? latestArchive(config.backupDir, ref.cluster);
    if (!instance) throw ApplicationFailure.nonRetryable(`no archived binlogs for ${ref.cluster}: run a backup (it archives them) first`, 'NoBinlogArchive');
    return archiveDirOf(config.backupDir, ref.cluster, instance);
  };

  const scratchServers = (ref: RecoveryRef) => {
    const sandbox = new Sandbox(config, undefined, { scratchOnly: true });
    const base = config.control.port;
    const dir = join(clusterDir(ref.cluster), 'restore', ref.restoreId);
    const host = ref.recoverOn ? configuredHost(ref).binlogServerHost : '127.0.0.1';
    const make = (name: string, port: number, listen: string, extraCnf?: string[]): SandboxInstance => ({
      key: `restore/${name}`,
      name,
      host: listen,
      port,
      serverId: 1_000_000 + port,
      initialRole: 'replica',
      dir: join(dir, name),
      extraCnf,
    });
    return { sandbox, dir, binlogServer: make('binlog-server', base + 10, host), scratchRecovery: make('recovery', base + 11, '127.0.0.1', RECOVERY_CNF) };
  };

  const configuredHost = (ref: RecoveryRef) => {
    const r = getCluster(config, ref.cluster).recovery;
    if (!r || r.name !== ref.recoverOn) {
      throw ApplicationFailure.nonRetryable(`${ref.cluster} has no recovery host "${ref.recoverOn}"${r ? `; its recovery host is ${r.name}` : ' (configure clusters.' + ref.cluster + '.recovery)'}`, 'NoRecoveryHost');
    }
    return r;
  };

  /** The binlog server (always scratch) and the server the backup is restored into. */
  const servers = (ref: RecoveryRef): { sandbox: Sandbox; binlogServer: SandboxInstance; recovery: RecoveryServer; marker: string } => {
    const { sandbox, dir, binlogServer, scratchRecovery } = scratchServers(ref);
    const marker = join(dir, 'recovery', 'loaded');
    if (!ref.recoverOn) {
      const inst = scratchRecovery;
      return {
        sandbox,
        binlogServer,
        marker,
        recovery: {
          label: `scratch instance ${inst.host}:${inst.port}`,
          datadir: join(inst.dir, 'data'),
          binlogServerHost: '127.0.0.1',
          start: () => sandbox.startInstance(inst),
          stop: () => sandbox.stopInstance(inst),
          run: (fn) => sandbox.withRoot(inst, fn),
          client: { args: [`--socket=${sandbox.socketOf(inst)}`, '--user=root'] },
          replayTarget: { socket: sandbox.socketOf(inst), user: 'root' },
          async wipe() {
            await sandbox.stopInstance(inst);
            await rm(join(inst.dir, 'data'), { recursive: true, force: true });
            await rm(join(inst.dir, 'binlog'), { recursive: true, force: true });
          },
        },
      };
    }
    const host = configuredHost(ref);
    const at = { cluster: ref.cluster, instance: host.name };
    const run = <T>(fn: (c: mysql.Connection) => Promise<T>) => withInstance(config, at, fn);
    const admin = resolveCredential(getCluster(config, ref.cluster).credentials.admin);
    return {
      sandbox,
      binlogServer,
      marker,
      recovery: {
        label: `recovery host ${host.name} (${host.host}:${host.port})`,
        binlogServerHost: host.binlogServerHost,
        start: () => run(async () => undefined), // it is not ours to start: reachable is enough
        // Replay ends here; a host that a promote made the primary has no replication to stop.
        stop: () =>
          run(async (c) => {
            if (((await c.query('SHOW SLAVE STATUS'))[0] as unknown[]).length) await c.query('STOP SLAVE');
          }),
        run,
        client: { args: [`--host=${host.host}`, `--port=${host.port}`], credentials: admin },
        replayTarget: { host: host.host, port: host.port, ...admin },
        async wipe() {
          await run(async (c) => {
            // Never wipe what serves production: a writable host, or one replicating from a member.
            const [[vars]] = (await c.query('SELECT @@read_only AS ro')) as unknown as [[{ ro: number }]];
            if (!Number(vars.ro)) throw ApplicationFailure.nonRetryable(`${host.name} is writable: it may be serving production (promoted by an earlier restore?); a recovery host must run read_only=ON, refusing to wipe it`, 'RecoveryHostInUse');
            const [status] = (await c.query('SHOW SLAVE STATUS')) as unknown as [Record<string, unknown>[]];
            const source = status[0] && getCluster(config, ref.cluster).instances.find((i) => i.port === Number(status[0]!.Master_Port) && i.host === String(status[0]!.Master_Host));
            if (source) throw ApplicationFailure.nonRetryable(`${host.name} replicates from ${source.name}: it is part of the cluster now; refusing to wipe it`, 'RecoveryHostInUse');
            await c.query('SET SESSION sql_log_bin = 0');
            await c.query('STOP SLAVE');
            await c.query('RESET SLAVE ALL');
            const [dbs] = (await c.query('SHOW DATABASES')) as unknown as [{ Database: string }[]];
            for (const { Database: db } of dbs) {
              if (!['mysql', 'information_schema', 'performance_schema', 'sys'].includes(db)) await c.query(`DROP DATABASE ${quoteIdent(db)}`);
            }
            await c.query('RESET MASTER');
          });
        },
      },
    };
  };

  const query = async (server: RecoveryServer, sql: string, params: unknown[] = []) => server.run(async (c) => (await c.query(sql, params))[0] as Record<string, unknown>[]);

  const readManifest = async (cluster: string, backupId: string): Promise<BackupManifest> =>
    JSON.parse(await readFile(join(clusterDir(cluster), backupId, MANIFEST_FILE), 'utf8')) as BackupManifest;

  /** The archived files replay from `after` reads (those wholly before it are not needed). */
  const archiveFiles = async (ref: RecoveryRef, after: string): Promise<BinlogArchiveEntry[]> =>
    filesAfter(JSON.parse(await readFile(join(archiveDir(ref), BINLOG_INDEX_FILE), 'utf8')) as BinlogArchiveEntry[], after);

  /**
   * What the recovery instance has applied. SQL thread: its `gtid_slave_pos`. Pipe: the GTIDs the
   * piped events carried into its own binlog (reset after the load), over the backup's position.
   */
  const appliedOn = async (recovery: RecoveryServer, method: ReplayMethod): Promise<string> => {
    const [row] = await query(recovery, 'SELECT @@gtid_slave_pos AS slave, @@gtid_binlog_pos AS binlog');
    if (method === 'sql-thread') return String(row!.slave);
    const merged = new Map(parseMariaGtidList(String(row!.slave)).map((g) => [g.domain, g]));
    for (const g of parseMariaGtidList(String(row!.binlog))) if ((merged.get(g.domain)?.seq ?? -1) < g.seq) merged.set(g.domain, g);
    return formatMariaGtidList([...merged.values()]);
  };

  /** Whether `at` has reached `gtid` in gtid's domain (server ids are not compared). */
  const reached = (at: string, gtid: string) => {
    const want = parseMariaGtidList(gtid)[0]!;
    return (parseMariaGtidList(at).find((g) => g.domain === want.domain)?.seq ?? 0) >= want.seq;
  };

  return {
    /**
     * Restore the backup into the recovery instance and reset its binlog/GTID state to the
     * backup's position; for SQL-thread replay also start the binlog server on a copy of the
     * archive. Done once: a marker file makes a retry skip the load, and a load that died half
     * way is started again from an empty datadir.
     */
    async prepareRecovery(input: RecoveryRef & { backupId: string; method: ReplayMethod }): Promise<{ backupGtid: string; kind: BackupManifest['kind']; loadMs: number }> {
      getCluster(config, input.cluster);
      const { sandbox, binlogServer, recovery, marker } = servers(input);
      const manifest = await readManifest(input.cluster, input.backupId);
      const backupDir = join(clusterDir(input.cluster), input.backupId);
      if (manifest.kind === 'physical' && !recovery.datadir) {
        throw ApplicationFailure.nonRetryable(`backup ${manifest.id} is physical: it is copied back into a datadir on the worker's host, not into ${recovery.label}; restore from a logical backup there`, 'BadInput');
      }

      // The binlog server serves the archive (copies of the files and an index naming them). It is
      // made ready while the backup loads: neither waits for the other.
      const binlogServerReady = (async () => {
        if (input.method !== 'sql-thread') return;
        const entries = await archiveFiles(input, manifest.gtid);
        const binlogDir = join(binlogServer.dir, 'binlog');
        await mkdir(binlogDir, { recursive: true });
        if (!(await exists(join(binlogServer.dir, 'data')))) {
          for (const e of entries) await copyFile(join(archiveDir(input), e.file), join(binlogDir, e.file));
          await writeFile(join(binlogDir, 'mysql-bin.index'), entries.map((e) => join(binlogDir, e.file)).join('\n') + '\n');
        }
        await sandbox.startInstance(binlogServer);
        await sandbox.withRoot(binlogServer, async (c) => {
          await c.query('SET SESSION sql_log_bin = 0');
          await c.query('CREATE USER IF NOT EXISTS ?@? IDENTIFIED BY ?', [REPL.user, '%', REPL.password]);
          await c.query('GRANT REPLICATION SLAVE ON *.* TO ?@?', [REPL.user, '%']);
        });
      })();
      binlogServerReady.catch(() => undefined); // awaited below; a load failing first must not leave it unhandled

      try {
        const loadMs = await loadBackup();
        await binlogServerReady;
        return { backupGtid: manifest.gtid, kind: manifest.kind, loadMs };
      } catch (err) {
        await binlogServerReady.catch(() => undefined); // settled before the failure is reported: nothing starts after it
        throw err;
      }

      async function loadBackup(): Promise<number> {
        let loadMs = 0;
        if (!(await exists(marker))) {
          const started = Date.now();
          heartbeat(`wiping ${recovery.label}`);
          await recovery.wipe();
          if (manifest.kind === 'physical') {
            heartbeat('copying the physical backup back');
            await refusalsAreFinal(() =>
              copyBackPhysical({ backupDataDir: join(backupDir, PHYSICAL_DATA_DIR), datadir: recovery.datadir!, onProgress: (bytes) => heartbeat({ phase: 'copy back', bytes }) }),
            );
            await recovery.start();
          } else {
            await recovery.start();
            heartbeat('loading the dump');
            // Big tables in parallel sessions (see dumpLoad.ts). Unlogged: the load's binlog would
            // be thrown away by the RESET MASTER below, and in ROW format it writes every row twice.
            await loadDump({
              file: join(backupDir, LOGICAL_DUMP_FILE),
              sessions: LOAD_SESSIONS,
              client: recovery.client,
              initCommand: 'SET SESSION sql_log_bin = 0',
              onProgress: (bytes) => heartbeat({ phase: 'load dump', bytes }),
              timeoutMs: 6 * 3600_000,
            });
          }
          // Whatever the load left in this server's binlog, and the source's replication state a
          // physical copy carries, goes: replay must start from exactly the backup's position.
          await recovery.run(async (c) => {
            await c.query('STOP SLAVE');
            await c.query('RESET SLAVE ALL');
            await c.query('RESET MASTER');
            await c.query('SET GLOBAL gtid_slave_pos = ?', [manifest.gtid]);
            if (input.method === 'sql-thread') {
              await c.query(`CHANGE MASTER TO MASTER_HOST = ?, MASTER_PORT = ${binlogServer.port}, MASTER_USER = ?, MASTER_PASSWORD = ?, MASTER_USE_GTID = slave_pos`, [
                recovery.binlogServerHost,
                REPL.user,
                REPL.password,
              ]);
            }
          });
          await mkdir(dirname(marker), { recursive: true });
          await writeFile(marker, `${manifest.id}\n`);
          loadMs = Date.now() - started;
        } else {
          await recovery.start();
        }
        return loadMs;
      }
    },

    /**
     * Apply archived transactions after `after` up to and including `until`, then stop. Already
     * there is success (a resumed run). `after` matters to the pipe only (the SQL thread keeps its
     * own position): past a skipped transaction it is the skipped GTID.
     */
    async replayTo(input: RecoveryRef & { method: ReplayMethod; after: string; until: string; timeoutSeconds: number }): Promise<{ appliedTo: string }> {
      const { recovery } = servers(input);
      await recovery.start(); // a no-op unless the worker's host rebooted it away
      const before = await appliedOn(recovery, input.method);
      if (reached(before, input.until)) return { appliedTo: before };
      if (input.method === 'pipe') {
        // A worker killed mid-pipe leaves its mariadb client applying on its own: end it (its open
        // transaction rolls back) before this run reads the position, or both would apply.
        await endOtherSessions(recovery);
        const files = (await archiveFiles(input, input.after)).map((e) => join(archiveDir(input), e.file));
        const run = await refusalsAreFinal(() => pipeReplay({
          files,
          startAfter: input.after, // pipeReplay itself starts after whatever the server already applied
          stopAt: input.until,
          target: recovery.replayTarget,
          onProgress: (bytes) => heartbeat({ phase: 'pipe replay', bytes }),
          timeoutMs: input.timeoutSeconds * 1000,
        }));
        const appliedTo = await appliedOn(recovery, 'pipe');
        if (!reached(appliedTo, input.until)) throw ApplicationFailure.nonRetryable(`pipe replay ended at ${appliedTo}, short of ${input.until} (${run.appliedTo})`, 'ReplayFailed');
        return { appliedTo };
      }
      const pos = () => appliedOn(recovery, 'sql-thread');
      await query(recovery, 'STOP SLAVE');
      await query(recovery, `START SLAVE UNTIL master_gtid_pos = ?`, [input.until]);
      const deadline = Date.now() + input.timeoutSeconds * 1000;
      for (;;) {
        const at = await pos();
        heartbeat(at);
        if (reached(at, input.until)) break;
        const [status] = await query(recovery, 'SHOW SLAVE STATUS');
        if (status && Number(status.Last_SQL_Errno)) throw ApplicationFailure.nonRetryable(`replay stopped at ${at}: ${status.Last_SQL_Error}`, 'ReplayFailed');
        if (status && Number(status.Last_IO_Errno)) throw ApplicationFailure.retryable(`replay cannot read the archive at ${at}: ${status.Last_IO_Error}`, 'ReplayIoError');
        if (Date.now() > deadline) throw ApplicationFailure.nonRetryable(`replay did not reach ${input.until} within ${input.timeoutSeconds} s (at ${at})`, 'ReplayTimeout');
        await sleep(100);
      }
      await query(recovery, 'STOP SLAVE');
      return { appliedTo: await pos() };
    },

    /** Skip one transaction: move the applied position past it without applying it. */
    async skipTransaction(input: RecoveryRef & { method: ReplayMethod; gtid: string; previous: string }): Promise<{ skipped: string }> {
      const { recovery } = servers(input);
      const at = await appliedOn(recovery, input.method);
      if (reached(at, input.gtid)) {
        if (input.method === 'sql-thread') return { skipped: input.gtid }; // done before
        // The pipe applies from the skipped GTID on; having applied it would be a bug to stop on.
        throw ApplicationFailure.nonRetryable(`${input.gtid} was applied on the recovery instance (at ${at}); restore again`, 'NotAtSkipPoint');
      }
      if (!reached(at, input.previous)) {
        throw ApplicationFailure.nonRetryable(`refusing to skip ${input.gtid}: the recovery instance is at ${at}, not at the transaction before it (${input.previous})`, 'NotAtSkipPoint');
      }
      if (input.method === 'sql-thread') {
        await query(recovery, 'STOP SLAVE');
        await query(recovery, 'SET GLOBAL gtid_slave_pos = ?', [input.gtid]);
      }
      return { skipped: input.gtid };
    },

    /**
     * Verify the recovery instance against production: it reached exactly `expected`; the bad
     * event's tables exist; a skipped event's effect is absent (row counts differ by what it did,
     * an UPDATE leaves differing chunks); every other table equals production chunk by chunk
     * (per-primary-key-range CRC32/BIT_XOR) unless production has moved on past the archive.
     */
    async verifyRecovery(
      input: RecoveryRef & {
        method: ReplayMethod;
        primary: string;
        expected: string;
        tables: string[];
        event?: { gtid: string; kind: 'ddl' | 'trans'; tables: string[]; rowEvents: { type: 'INSERT' | 'UPDATE' | 'DELETE'; table: string; rows: number }[] };
        skipped: boolean;
      },
    ): Promise<Verification> {
      const { recovery } = servers(input);
      const appliedTo = await appliedOn(recovery, input.method);
      const problems: string[] = [];
      const want = parseMariaGtidList(input.expected)[0]!;
      const got = parseMariaGtidList(appliedTo).find((g) => g.domain === want.domain);
      if (got?.seq !== want.seq) problems.push(`the recovery instance is at ${appliedTo}, not exactly at ${input.expected}`);

      const ref = { cluster: input.cluster, instance: input.primary };
      const productionAt = await withInstance(config, ref, async (c) => String((await runQuery<Record<string, unknown>[]>(c, 'SELECT @@gtid_binlog_pos AS p'))[0]!.p));
      const productionMovedOn = (parseMariaGtidList(productionAt).find((g) => g.domain === want.domain)?.seq ?? 0) > want.seq;
      const eventTables = input.event?.tables ?? [];
      const tables: TableVerdict[] = [];
      for (const table of input.tables) {
        heartbeat(table);
        // Cut where production's primary key says, then checksum both servers at once.
        const boundaries = (await withInstance(config, ref, (c) => primaryKeyBoundaries(c, table))) ?? undefined;
        const [prod, rec] = await Promise.all([
          withInstance(config, ref, (c) => checksumTable(c, table, { boundaries })),
          recovery.run((c) => checksumTable(c, table, { boundaries })),
        ]);
        const diff = diffChecksums(rec, prod);
        tables.push({
          table,
          recovery: summary(rec),
          production: summary(prod),
          equal: diff.equal,
          differingChunks: diff.differingChunks.slice(0, 20),
          chunks: Math.max(rec?.chunks.length ?? 0, prod?.chunks.length ?? 0),
          note: diff.note,
        });
      }
      for (const t of eventTables) {
        const v = tables.find((x) => x.table === t);
        if (v && !v.recovery && input.event?.kind === 'ddl') problems.push(`the recovery instance lacks ${t}`);
      }
      if (input.skipped && input.event && !productionMovedOn) {
        // Later writes were replayed on both sides; what remains between them is the skipped event.
        for (const t of eventTables) {
          const v = tables.find((x) => x.table === t);
          if (!v?.recovery || !v.production) continue;
          const net = input.event.rowEvents.filter((r) => r.table === t).reduce((n, r) => n + (r.type === 'INSERT' ? r.rows : r.type === 'DELETE' ? -r.rows : 0), 0);
          if (v.recovery.rows - v.production.rows !== -net) problems.push(`${t}: ${v.recovery.rows} row(s) recovered, expected ${v.production.rows - net} (production ${v.production.rows} without the skipped event's ${net >= 0 ? '+' : ''}${net})`);
          if (input.event.rowEvents.some((r) => r.table === t) && v.equal) problems.push(`${t} equals production: the skipped event's effect is still there`);
        }
      }
      if (input.skipped && !productionMovedOn) {
        for (const v of tables.filter((x) => !eventTables.includes(x.table) && !x.equal)) problems.push(`${v.table} differs from production: ${v.note}`);
      }
      return { appliedTo, expected: input.expected, productionAt, productionMovedOn, tables, problems };
    },

    /**
     * Copy recovered tables back into production: each is loaded into a staging schema on the
     * primary (it replicates like any write), checked against the recovery instance, then swapped
     * in with one atomic RENAME; a damaged table is kept in the staging schema, never dropped.
     * Refused when production's table changed since verification (its later writes would be lost).
     * Safe to run again: a table already swapped in is recognised by its checksum.
     */
    async cutOverTables(input: RecoveryRef & { primary: string; tables: { table: string; productionChecksum: string | null }[] }): Promise<{ stagingSchema: string; tables: { table: string; action: string }[] }> {
      const { recovery } = servers(input);
      const ref = { cluster: input.cluster, instance: input.primary };
      const staging = `restore_${createHash('sha256').update(input.restoreId).digest('hex').slice(0, 12)}`;
      const inst = getInstance(config, input.cluster, input.primary);
      const admin = resolveCredential(getCluster(config, input.cluster).credentials.admin);
      const out: { table: string; action: string }[] = [];
      for (const { table, productionChecksum } of input.tables) {
        const { db, name } = parseTableName(table);
        const recovered = await recovery.run((c) => checksumTable(c, table));
        if (!recovered) throw ApplicationFailure.nonRetryable(`the recovery instance has no ${table} to copy back`, 'NothingToCopy');
        const now = await withInstance(config, ref, (c) => checksumTable(c, table, { boundaries: recovered.boundaries }));
        if (now && diffChecksums(recovered, now).equal) {
          out.push({ table, action: 'already in place' });
          continue;
        }
        if ((now?.checksum ?? null) !== productionChecksum) {
          throw ApplicationFailure.nonRetryable(
            `production's ${table} changed since verification (${productionChecksum ?? 'absent'} → ${now?.checksum ?? 'absent'}): its newer writes would be lost; restore again`,
            'ProductionChanged',
          );
        }
        const stagedName = `${staging}.${name}`;
        const staged = await withInstance(config, ref, (c) => checksumTable(c, stagedName, { boundaries: recovered.boundaries }));
        if (!staged || !diffChecksums(recovered, staged).equal) {
          heartbeat(`copying ${table}`);
          const dir = await mkdtemp(join(tmpdir(), 'runbook-cutover-'));
          try {
            const dump = join(dir, 'table.sql');
            // No triggers: a trigger cannot follow its table across schemas in a RENAME.
            await runTool(toolPath('mariadb-dump'), [...recovery.client.args, '--single-transaction', '--skip-triggers', '--hex-blob', db, name], {
              credentials: recovery.client.credentials,
              stdoutFile: dump,
              onProgress: (bytes) => heartbeat({ phase: `dump ${table}`, bytes }),
            });
            await withInstance(config, ref, (c) => runQuery(c, `CREATE DATABASE IF NOT EXISTS ${quoteIdent(staging)}`));
            await runTool(toolPath('mariadb'), ['--binary-mode', `--host=${inst.host}`, `--port=${inst.port}`, staging], {
              credentials: admin,
              stdinFile: dump,
              onProgress: (bytes) => heartbeat({ phase: `load ${table}`, bytes }),
            });
          } finally {
            await rm(dir, { recursive: true, force: true });
          }
          const check = await withInstance(config, ref, (c) => checksumTable(c, stagedName, { boundaries: recovered.boundaries }));
          if (!check || !diffChecksums(recovered, check).equal) throw ApplicationFailure.retryable(`the copy of ${table} in ${staging} differs from the recovery instance`, 'CopyMismatch');
        }
        const q = (d: string, t: string) => `${quoteIdent(d)}.${quoteIdent(t)}`;
        await withInstance(config, ref, (c) =>
          runQuery(c, now ? `RENAME TABLE ${q(db, name)} TO ${q(staging, `${name}__damaged`)}, ${q(staging, name)} TO ${q(db, name)}` : `RENAME TABLE ${q(staging, name)} TO ${q(db, name)}`),
        );
        out.push({ table, action: now ? `replaced; the damaged table is kept as ${staging}.${name}__damaged` : 'restored (it was missing)' });
      }
      return { stagingSchema: staging, tables: out };
    },

    /**
     * `promote` cut-over, after the old primary is fenced: the recovery host replicates from it,
     * from exactly what it has applied (past the skipped event), so it receives every write
     * production took after the archive ends. Already replicating from it is success.
     */
    async replicateRecoveryFrom(input: RecoveryRef & { method: ReplayMethod; source: string }): Promise<{ from: string; already: boolean }> {
      if (!input.recoverOn) throw ApplicationFailure.nonRetryable('only a configured recovery host can join the cluster; a scratch instance cannot', 'BadInput');
      const { recovery } = servers(input);
      const source = getInstance(config, input.cluster, input.source);
      const repl = resolveCredential(getCluster(config, input.cluster).credentials.replication);
      const [status] = await query(recovery, 'SHOW SLAVE STATUS');
      if (status && Number(status.Master_Port) === source.port && String(status.Master_Host) === source.host && status.Slave_SQL_Running === 'Yes') {
        return { from: await appliedOn(recovery, 'sql-thread'), already: true };
      }
      return recovery.run(async (c) => {
        await c.query('STOP SLAVE');
        const from = await appliedOn(recovery, input.method);
        await c.query('SET GLOBAL gtid_slave_pos = ?', [from]);
        await c.query(`CHANGE MASTER TO MASTER_HOST = ?, MASTER_PORT = ${source.port}, MASTER_USER = ?, MASTER_PASSWORD = ?, MASTER_USE_GTID = slave_pos, MASTER_CONNECT_RETRY = 1`, [
          source.host,
          repl.user,
          repl.password,
        ]);
        await c.query('START SLAVE');
        return { from, already: false };
      });
    },

    /** Stop the scratch instances (the recovery instance's datadir stays for inspection). */
    async stopRecovery(input: RecoveryRef): Promise<void> {
      const { sandbox, binlogServer, recovery } = servers(input);
      await recovery.stop();
      await sandbox.stopInstance(binlogServer);
    },
  };
}

/** A refusal (unprepared backup, a gap in the stream) does not get better by retrying. */
async function refusalsAreFinal<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof RestoreRefusedError) throw ApplicationFailure.nonRetryable(err.message, 'RestoreRefused');
    throw err;
  }
}

/** Kill every client session on a scratch instance but this one (and replication's own threads). */
async function endOtherSessions(server: RecoveryServer): Promise<void> {
  await server.run(async (c) => {
    const [rows] = await c.query("SELECT ID AS id FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() AND USER NOT IN ('system user', 'event_scheduler') AND COMMAND NOT IN ('Daemon', 'Slave_IO', 'Slave_SQL', 'Slave_worker')");
    for (const r of rows as { id: number }[]) await c.query(`KILL ${Number(r.id)}`).catch(() => undefined); // gone already
  });
}

function summary(t: TableChecksum | null): { rows: number; checksum: string } | null {
  return t ? { rows: t.rows, checksum: t.checksum } : null;
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}
