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
import { access, copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { heartbeat, sleep } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { getCluster, getInstance, resolveCredential } from '../config/load';
import { BINLOG_INDEX_FILE, LOGICAL_DUMP_FILE, MANIFEST_FILE, PHYSICAL_DATA_DIR, type BackupManifest, type BinlogArchiveEntry } from '../core/manifest';
import { filesAfter } from '../core/manifest';
import { loadDump } from '../adapters/backup/dumpLoad';
import { copyBackPhysical, pipeReplay, RestoreRefusedError } from '../adapters/backup/restoreTools';
import { appliedOn, archiveDirFor, reached, recoveryServers, REPL, type RecoveryRef, type RecoveryServer, type ReplayMethod } from '../adapters/backup/recoveryServer';
import type { ActivityDeps } from './deps';
import { startServer, stopServer, withRoot } from '../adapters/mariadbd/server';
import { replicationOn } from '../adapters/mysql/replication';

export type { RecoveryRef, ReplayMethod };

/** Sessions loading a big table of a logical backup at once: the server's insert path is per session. */
const LOAD_SESSIONS = Math.min(4, Math.max(2, availableParallelism()));

export function createRestoreActivities({ config }: ActivityDeps) {
  const clusterDir = (cluster: string) => join(config.backupDir, cluster);
  const archiveDir = (ref: RecoveryRef) => archiveDirFor(config, ref);
  const servers = (ref: RecoveryRef) => recoveryServers(config, ref);

  const readManifest = async (cluster: string, backupId: string): Promise<BackupManifest> =>
    JSON.parse(await readFile(join(clusterDir(cluster), backupId, MANIFEST_FILE), 'utf8')) as BackupManifest;

  /** The archived files replay from `after` reads (those wholly before it are not needed). */
  const archiveFiles = async (ref: RecoveryRef, after: string): Promise<BinlogArchiveEntry[]> =>
    filesAfter(JSON.parse(await readFile(join(archiveDir(ref), BINLOG_INDEX_FILE), 'utf8')) as BinlogArchiveEntry[], after);

  return {
    /**
     * Restore the backup into the recovery instance and reset its binlog/GTID state to the
     * backup's position; for SQL-thread replay also start the binlog server on a copy of the
     * archive. Done once: a marker file makes a retry skip the load, and a load that died half
     * way is started again from an empty datadir.
     */
    async prepareRecovery(input: RecoveryRef & { backupId: string; method: ReplayMethod }): Promise<{ backupGtid: string; kind: BackupManifest['kind']; loadMs: number }> {
      getCluster(config, input.cluster);
      const { binlogServer, recovery, marker } = servers(input);
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
        await startServer(binlogServer);
        await withRoot(binlogServer, async (c) => {
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
            const replication = await replicationOn(c);
            await replication.forgetSource();
            await replication.resetBinlogs();
            await replication.setAppliedPosition(manifest.gtid);
            if (input.method === 'sql-thread') {
              await replication.setSource({ host: recovery.binlogServerHost, port: binlogServer.port, user: REPL.user, password: REPL.password });
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
      await recovery.run(async (c) => {
        const replication = await replicationOn(c);
        await replication.stop();
        await replication.startUntil(input.until);
      });
      const deadline = Date.now() + input.timeoutSeconds * 1000;
      for (;;) {
        const at = await pos();
        heartbeat(at);
        if (reached(at, input.until)) break;
        const status = await recovery.run(async (c) => (await replicationOn(c)).status());
        if (status?.lastSqlErrno) throw ApplicationFailure.nonRetryable(`replay stopped at ${at}: ${status.lastSqlError}`, 'ReplayFailed');
        if (status?.lastIoErrno) throw ApplicationFailure.retryable(`replay cannot read the archive at ${at}: ${status.lastIoError}`, 'ReplayIoError');
        if (Date.now() > deadline) throw ApplicationFailure.nonRetryable(`replay did not reach ${input.until} within ${input.timeoutSeconds} s (at ${at})`, 'ReplayTimeout');
        await sleep(100);
      }
      await recovery.run(async (c) => (await replicationOn(c)).stop());
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
        await recovery.run(async (c) => {
          const replication = await replicationOn(c);
          await replication.stop();
          await replication.setAppliedPosition(input.gtid);
        });
      }
      return { skipped: input.gtid };
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
      return recovery.run(async (c) => {
        const replication = await replicationOn(c);
        const status = await replication.status();
        if (status && status.sourcePort === source.port && status.sourceHost === source.host && status.sqlRunning === 'Yes') {
          return { from: await appliedOn(recovery, 'sql-thread'), already: true };
        }
        await replication.stop();
        const from = await appliedOn(recovery, input.method);
        await replication.setAppliedPosition(from);
        await replication.setSource({ host: source.host, port: source.port, user: repl.user, password: repl.password, connectRetrySeconds: 1 });
        await replication.start();
        return { from, already: false };
      });
    },

    /** Stop the scratch instances (the recovery instance's datadir stays for inspection). */
    async stopRecovery(input: RecoveryRef): Promise<void> {
      const { binlogServer, recovery } = servers(input);
      await recovery.stop();
      await stopServer(binlogServer);
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

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}
