/**
 * The servers a restore works with, and what they say about their progress. One home for it: the
 * restore activities (prepare, replay, verify, cut over) all reach the recovery instance through here.
 *
 * - the **recovery instance**: by default a scratch `mariadbd` on the worker's host (port
 *   control+11, datadir under `<backupDir>/<cluster>/restore/<id>/`), or with `recoverOn` the
 *   cluster's configured recovery host (`clusters.<c>.recovery`), a separate server that is wiped
 *   and loaded over the network;
 * - the **binlog server**: always a scratch instance on the worker's host (control+10) serving the
 *   archived binlogs to the recovery instance's SQL thread.
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import type mysql from 'mysql2/promise';
import { getCluster, resolveCredential, type RunbookConfig } from '../../config/load';
import { archiveDirOf, latestArchive } from './archive';
import type { ReplayTarget } from './restoreTools';
import { quoteIdent } from '../../core/rowDigest';
import { formatMariaGtidList, parseMariaGtidList } from '../../core/gtid';
import { pathsOf, startServer, stopServer, withRoot, type MariadbdInstance } from '../mariadbd/server';
import { withInstance } from '../mysql/instance';
import { replicationOn } from '../mysql/replication';

export const REPL = { user: 'restore_repl', password: 'restore-repl-local-only' };

/**
 * A recovery instance is scratch: durability per commit buys nothing (a crash means restoring
 * again) and costs most of replay's time; bigger buffers hold the working set of a real restore.
 */
export const RECOVERY_CNF = [
  'innodb_buffer_pool_size=512M',
  'innodb_log_file_size=256M',
  'sync_binlog=0',
  'innodb_flush_log_at_trx_commit=2',
  // What the SQL thread replays is not written to this server's binlog again: nobody reads it, and
  // it doubled replay's writes (gtid_slave_pos tracks progress either way). The pipe's own session
  // still binlogs: that is how a resumed pipe knows what it applied.
  'log_slave_updates=OFF',
];

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
export interface RecoveryServer {
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


/** The archive the target was located in (`RecoveryRef.archive`), else the latest. */
export function archiveDirFor(config: RunbookConfig, ref: RecoveryRef): string {
  const instance = ref.archive ?? latestArchive(config.backupDir, ref.cluster);
  if (!instance) throw ApplicationFailure.nonRetryable(`no archived binlogs for ${ref.cluster}: run a backup (it archives them) first`, 'NoBinlogArchive');
  return archiveDirOf(config.backupDir, ref.cluster, instance);
}

function scratchServers(config: RunbookConfig, ref: RecoveryRef) {
  const base = config.control.port;
  const dir = restoreDirOf(config, ref);
  const host = ref.recoverOn ? configuredHost(config, ref).binlogServerHost : '127.0.0.1';
  const make = (name: string, port: number, listen: string, extraCnf?: string[]): MariadbdInstance => ({
    key: `restore/${name}`,
    host: listen,
    port,
    serverId: 1_000_000 + port,
    initialRole: 'replica',
    dir: join(dir, name),
    extraCnf,
  });
  const { binlogServerOffset, recoveryOffset } = config.scratchPorts;
  return { dir, binlogServer: make('binlog-server', base + binlogServerOffset, host), scratchRecovery: make('recovery', base + recoveryOffset, '127.0.0.1', RECOVERY_CNF) };
}

function configuredHost(config: RunbookConfig, ref: RecoveryRef) {
  const r = getCluster(config, ref.cluster).recovery;
  if (!r || r.name !== ref.recoverOn) {
    throw ApplicationFailure.nonRetryable(`${ref.cluster} has no recovery host "${ref.recoverOn}"${r ? `; its recovery host is ${r.name}` : ' (configure clusters.' + ref.cluster + '.recovery)'}`, 'NoRecoveryHost');
  }
  return r;
}

/** The binlog server (always scratch) and the server the backup is restored into. */
export function recoveryServers(config: RunbookConfig, ref: RecoveryRef): { binlogServer: MariadbdInstance; recovery: RecoveryServer; marker: string; dir: string } {
  const { dir, binlogServer, scratchRecovery } = scratchServers(config, ref);
  const marker = join(dir, 'recovery', 'loaded');
  if (!ref.recoverOn) {
    const inst = scratchRecovery;
    return {
      binlogServer,
      marker,
      dir,
      recovery: {
        label: `scratch instance ${inst.host}:${inst.port}`,
        datadir: join(inst.dir, 'data'),
        binlogServerHost: '127.0.0.1',
        start: () => startServer(inst),
        stop: () => stopServer(inst),
        run: (fn) => withRoot(inst, fn),
        client: { args: [`--socket=${pathsOf(inst).socket}`, '--user=root'] },
        replayTarget: { socket: pathsOf(inst).socket, user: 'root' },
        async wipe() {
          await stopServer(inst);
          await rm(join(inst.dir, 'data'), { recursive: true, force: true });
          await rm(join(inst.dir, 'binlog'), { recursive: true, force: true });
        },
      },
    };
  }
  const host = configuredHost(config, ref);
  const at = { cluster: ref.cluster, instance: host.name };
  const run = <T>(fn: (c: mysql.Connection) => Promise<T>) => withInstance(config, at, fn);
  const admin = resolveCredential(getCluster(config, ref.cluster).credentials.admin);
  return {
    binlogServer,
    marker,
    dir,
    recovery: {
      label: `recovery host ${host.name} (${host.host}:${host.port})`,
      binlogServerHost: host.binlogServerHost,
      start: () => run(async () => undefined), // it is not ours to start: reachable is enough
      // Replay ends here; a host that a promote made the primary has no replication to stop.
      stop: () =>
        run(async (c) => {
          const replication = await replicationOn(c);
          if (await replication.status()) await replication.stop();
        }),
      run,
      client: { args: [`--host=${host.host}`, `--port=${host.port}`], credentials: admin },
      replayTarget: { host: host.host, port: host.port, ...admin },
      async wipe() {
        await run(async (c) => {
          // Never wipe what serves production: a writable host, or one replicating from a member.
          const [[vars]] = (await c.query('SELECT @@read_only AS ro')) as unknown as [[{ ro: number }]];
          if (!Number(vars.ro)) throw ApplicationFailure.nonRetryable(`${host.name} is writable: it may be serving production (promoted by an earlier restore?); a recovery host must run read_only=ON, refusing to wipe it`, 'RecoveryHostInUse');
          const replication = await replicationOn(c);
          const status = await replication.status();
          const source = status && getCluster(config, ref.cluster).instances.find((i) => i.port === status.sourcePort && i.host === status.sourceHost);
          if (source) throw ApplicationFailure.nonRetryable(`${host.name} replicates from ${source.name}: it is part of the cluster now; refusing to wipe it`, 'RecoveryHostInUse');
          await c.query('SET SESSION sql_log_bin = 0');
          await replication.forgetSource();
          const [dbs] = (await c.query('SHOW DATABASES')) as unknown as [{ Database: string }[]];
          for (const { Database: db } of dbs) {
            if (!['mysql', 'information_schema', 'performance_schema', 'sys'].includes(db)) await c.query(`DROP DATABASE ${quoteIdent(db)}`);
          }
          await replication.resetBinlogs();
        });
      },
    },
  };
}

/** `<backupDir>/<cluster>/restore/<restore id>/`: the restore's own files (scratch datadirs, plans). */
export function restoreDirOf(config: RunbookConfig, ref: Pick<RecoveryRef, 'cluster' | 'restoreId'>): string {
  return join(config.backupDir, ref.cluster, 'restore', ref.restoreId);
}

/** Rows of one statement on a recovery server. */
export async function queryOn(server: RecoveryServer, sql: string, params: unknown[] = []): Promise<Record<string, unknown>[]> {
  return server.run(async (c) => (await c.query(sql, params))[0] as Record<string, unknown>[]);
}

/**
 * What the recovery instance has applied. SQL thread: its `gtid_slave_pos`. Pipe: the GTIDs the
 * piped events carried into its own binlog (reset after the load), over the backup's position.
 */
export async function appliedOn(recovery: RecoveryServer, method: ReplayMethod): Promise<string> {
  const [row] = await queryOn(recovery, 'SELECT @@gtid_slave_pos AS slave, @@gtid_binlog_pos AS binlog');
  if (method === 'sql-thread') return String(row!.slave);
  const merged = new Map(parseMariaGtidList(String(row!.slave)).map((g) => [g.domain, g]));
  for (const g of parseMariaGtidList(String(row!.binlog))) if ((merged.get(g.domain)?.seq ?? -1) < g.seq) merged.set(g.domain, g);
  return formatMariaGtidList([...merged.values()]);
}

/** Whether `at` has reached `gtid` in gtid's domain (server ids are not compared). */
export function reached(at: string, gtid: string): boolean {
  const want = parseMariaGtidList(gtid)[0]!;
  return (parseMariaGtidList(at).find((g) => g.domain === want.domain)?.seq ?? 0) >= want.seq;
}

/** Whether `at` has reached every domain of the position `position` (a GTID list). */
export function reachedAll(at: string, position: string): boolean {
  const have = parseMariaGtidList(at);
  return parseMariaGtidList(position).every((w) => (have.find((g) => g.domain === w.domain)?.seq ?? 0) >= w.seq);
}
