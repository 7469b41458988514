/**
 * Activities that take, archive, check and list backups under `RunbookConfig.backupDir`. Names in,
 * credentials resolved here and handed to the tools through a private option file (see
 * src/adapters/process/tools.ts), never through workflow inputs, argv or logs.
 *
 * Safe to run twice: a backup whose manifest exists is returned as it is; a folder without a
 * manifest is an incomplete earlier attempt and is removed before starting over; binlogs already
 * archived complete are not copied again. Nothing is ever moved or purged on a server.
 */
import { randomUUID } from 'node:crypto';
import { accessSync, constants, existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Context, heartbeat, log } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import {
  BACKUP_KINDS,
  BINLOG_ARCHIVE_DIR,
  BINLOG_INDEX_FILE,
  compareBinlogNames,
  isValidBackupId,
  LOGICAL_DUMP_FILE,
  MANIFEST_FILE,
  PHYSICAL_DATA_DIR,
  sortByEndedAt,
  type BackupKind,
  type BackupManifest,
  type BinlogArchiveEntry,
} from '../core/manifest';
import { archiveDirOf } from '../adapters/backup/archive';
import { indexEvents } from '../adapters/backup/eventIndex';
import { fetchBinlogs, listFiles, logicalBackup, physicalBackup, sha256OfFile, sha256OfFiles, ToolError, ToolNotFoundError, writeJsonAtomically, type ServerLogin } from '../adapters/process/tools';
import { ConfigError, getCluster, getInstance, resolveCredential, type RunbookConfig } from '../config/load';
import { query, type Conn } from '../adapters/mysql/connect';
import type { InstanceRef } from '../core/types';
import type { ActivityDeps } from './deps';
import { streamingInto } from './archive';
import { withInstance } from '../adapters/mysql/instance';

export interface TakeBackupInput extends InstanceRef {
  kind: BackupKind;
  backupId: string;
}

export interface VerifyResult {
  ok: boolean;
  expected: string;
  actual: string;
}

const refuse = (message: string, type = 'PreconditionFailed') => ApplicationFailure.nonRetryable(message, type);

/** Config mistakes and missing tools do not heal on retry. */
function classify(err: unknown): unknown {
  if (err instanceof ConfigError) return refuse(err.message, 'ConfigError');
  if (err instanceof ToolNotFoundError) return refuse(err.message, 'ToolMissing');
  if (err instanceof ToolError && err.reason !== 'aborted') return ApplicationFailure.retryable(err.message, 'ToolFailed');
  return err;
}

const onServer = withInstance;

/** Host, port and the cluster's admin login for the tools; the password goes no further. */
function loginFor(config: RunbookConfig, ref: InstanceRef): ServerLogin {
  const inst = getInstance(config, ref.cluster, ref.instance);
  const { user, password } = resolveCredential(getCluster(config, ref.cluster).credentials.admin);
  return { host: inst.host, port: inst.port, user, password };
}

/** Heartbeat details as the tool makes progress; and the tool's own deadline, inside the activity's. */
function toolContext(phase: string) {
  const ctx = Context.current();
  const budget = ctx.info.startToCloseTimeoutMs > 0 ? ctx.info.startToCloseTimeoutMs - 30_000 : 25 * 60_000;
  return {
    signal: ctx.cancellationSignal,
    timeoutMs: Math.max(60_000, budget),
    onProgress: (bytes: number) => heartbeat({ phase, bytes }),
  };
}

/** `<backupDir>/<cluster>/lineage.json`: see startBackupLineage. */
const LINEAGE_FILE = 'lineage.json';

export interface BackupLineage {
  /** Backups that ended before this (ISO time) belong to the history before the promotion. */
  since: string;
  promoted: string;
  skipped: string;
  workflowId: string;
  /**
   * The members before the promotion: they all hold the skipped event. A backup of one would
   * bring it back into every restore seeded from it, so none is taken until it is reseeded from
   * the promoted server (and taken off this list).
   */
  stale?: string[];
}

async function readLineage(file: string): Promise<BackupLineage | undefined> {
  return existsSync(file) ? (JSON.parse(await readFile(file, 'utf8')) as BackupLineage) : undefined;
}

async function readManifest(file: string): Promise<BackupManifest> {
  return JSON.parse(await readFile(file, 'utf8')) as BackupManifest;
}

export function createBackupActivities({ config }: ActivityDeps) {
  const clusterDir = (cluster: string) => join(config.backupDir, cluster);
  const inFlight = new Set<string>();

  const checkedBackupId = (id: string) => {
    if (!isValidBackupId(id)) throw refuse(`invalid backup id ${JSON.stringify(id)}: letters, digits, ".", "_" and "-" only`, 'InvalidInput');
    return id;
  };

  return {
    /**
     * Take one backup of `instance` into `<backupDir>/<cluster>/<backupId>/`, manifest.json last.
     * Returns the existing manifest if this backup id is already complete.
     */
    async takeBackup(input: TakeBackupInput): Promise<BackupManifest> {
      try {
        if (!BACKUP_KINDS.includes(input.kind)) throw refuse(`unknown backup kind ${JSON.stringify(input.kind)}; expected ${BACKUP_KINDS.join(' or ')}`, 'InvalidInput');
        const login = loginFor(config, input);
        const dir = join(clusterDir(input.cluster), checkedBackupId(input.backupId));
        const manifestFile = join(dir, MANIFEST_FILE);
        if (existsSync(manifestFile)) {
          const existing = await readManifest(manifestFile);
          if (existing.kind !== input.kind || existing.instance !== input.instance) {
            throw refuse(`backup ${input.backupId} of ${input.cluster} already exists as a ${existing.kind} backup of ${existing.instance}`, 'BackupIdTaken');
          }
          log.info('backup already complete', { backupId: input.backupId });
          return existing;
        }
        const lineageFile = join(clusterDir(input.cluster), LINEAGE_FILE);
        const lineage = await readLineage(lineageFile);
        if (lineage?.stale?.includes(input.instance)) {
          throw refuse(
            `${input.instance} holds ${lineage.skipped}, which restore ${lineage.workflowId} skipped when it promoted ${lineage.promoted}: a backup of it would bring that event back; ` +
              `reseed it from ${lineage.promoted}, then take it off "stale" in ${lineageFile}`,
            'StaleMember',
          );
        }
        const key = `${input.cluster}/${input.backupId}`;
        if (inFlight.has(key)) throw ApplicationFailure.retryable(`backup ${key} is already running in this worker`, 'BackupInProgress');
        inFlight.add(key);
        try {
          return await takeFresh(input, login, dir, manifestFile);
        } finally {
          inFlight.delete(key);
        }
      } catch (err) {
        throw classify(err);
      }
    },

    /**
     * Copy the instance's binlogs into `<backupDir>/<cluster>/binlogs/<instance>/`: every file not yet archived
     * complete, and always the current (last, still growing) one again. All but the last are
     * marked complete; index.json lists everything archived so far, including files the server
     * has since purged.
     */
    async archiveBinlogs(input: InstanceRef): Promise<BinlogArchiveEntry[]> {
      try {
        return await archive(input);
      } catch (err) {
        throw classify(err);
      }
    },

    /** Recompute a backup's sha256 from its files; a missing file is a mismatch, not an error. */
    async verifyBackup(input: { cluster: string; backupId: string }): Promise<VerifyResult> {
      const dir = join(clusterDir(input.cluster), checkedBackupId(input.backupId));
      const manifestFile = join(dir, MANIFEST_FILE);
      if (!existsSync(manifestFile)) throw refuse(`backup ${input.backupId} of ${input.cluster} not found (no ${manifestFile})`, 'BackupNotFound');
      const manifest = await readManifest(manifestFile);
      const missing = manifest.files.filter((f) => !existsSync(join(dir, f)));
      if (missing.length) return { ok: false, expected: manifest.sha256, actual: `missing: ${missing.join(', ')}` };
      const digest = await sha256OfFiles(dir, manifest.files, (bytes) => heartbeat({ phase: 'verify', bytes }));
      return { ok: digest.sha256 === manifest.sha256, expected: manifest.sha256, actual: digest.sha256 };
    },

    /**
     * A restore's `promote` cut-over started a new history: the promoted server never applied the
     * skipped bad event that every older backup (and the old members) hold, while GTID positions,
     * one sequence number per domain, cannot show that hole. Restores must not combine an older
     * backup with the new primary's binlogs: from now on they use backups ended after this.
     * Recorded once per run (a retry keeps the first time).
     */
    async startBackupLineage(input: { cluster: string; promoted: string; skipped: string; workflowId: string; stale: string[] }): Promise<BackupLineage> {
      const file = join(clusterDir(input.cluster), LINEAGE_FILE);
      const current = await readLineage(file);
      if (current?.workflowId === input.workflowId) return current;
      const lineage: BackupLineage = { since: new Date().toISOString(), promoted: input.promoted, skipped: input.skipped, workflowId: input.workflowId, stale: input.stale };
      await mkdir(clusterDir(input.cluster), { recursive: true, mode: 0o700 });
      await writeJsonAtomically(file, lineage);
      return lineage;
    },

    /**
     * A member reseeded from the promoted server (failback) no longer holds the skipped event:
     * off the lineage's stale list, so it may be backed up again. Not listed: nothing to do.
     */
    async clearStaleMember(input: { cluster: string; instance: string }): Promise<{ wasStale: boolean }> {
      const file = join(clusterDir(input.cluster), LINEAGE_FILE);
      const current = await readLineage(file);
      if (!current?.stale?.includes(input.instance)) return { wasStale: false };
      await writeJsonAtomically(file, { ...current, stale: current.stale.filter((i) => i !== input.instance) });
      return { wasStale: true };
    },

    /** The cluster's current backup lineage, if a promote cut-over ever started one. */
    async backupLineage(input: { cluster: string }): Promise<BackupLineage | null> {
      return (await readLineage(join(clusterDir(input.cluster), LINEAGE_FILE))) ?? null;
    },

    /** Complete backups of a cluster (those with a manifest), oldest first by endedAt. */
    async listBackups(input: { cluster: string }): Promise<BackupManifest[]> {
      const root = clusterDir(input.cluster);
      if (!existsSync(root)) return [];
      const manifests: BackupManifest[] = [];
      for (const e of await readdir(root, { withFileTypes: true })) {
        if (!e.isDirectory() || e.name === BINLOG_ARCHIVE_DIR || e.name.startsWith('.')) continue;
        const file = join(root, e.name, MANIFEST_FILE);
        if (existsSync(file)) manifests.push(await readManifest(file));
      }
      return sortByEndedAt(manifests);
    },
  };

  async function takeFresh(input: TakeBackupInput, login: ServerLogin, dir: string, manifestFile: string): Promise<BackupManifest> {
    const server = await onServer(config, input, async (conn) => {
      const [row] = await query<Record<string, string | number | null>[]>(conn, 'SELECT @@version AS version, @@datadir AS datadir, @@log_bin AS logBin');
      return { version: String(row!.version), datadir: String(row!.datadir), logBin: Number(row!.logBin) === 1 };
    });
    if (!/mariadb/i.test(server.version)) throw refuse(`${input.instance} runs ${server.version}: the backup tools here are MariaDB's (mariadb-dump, mariadb-backup)`, 'UnsupportedFlavor');
    if (!server.logBin) throw refuse(`${input.instance} has the binary log off: a backup could not record the position to recover from`, 'BinlogDisabled');
    if (input.kind === 'physical') {
      try {
        accessSync(server.datadir, constants.R_OK | constants.X_OK);
      } catch {
        throw refuse(
          `mariadb-backup copies the datadir from the local disk, and ${input.instance}'s datadir ${server.datadir} is not readable on this worker: run the worker on the database host`,
          'DatadirNotLocal',
        );
      }
    }

    if (existsSync(dir)) {
      log.warn('removing an incomplete earlier attempt', { dir });
      await rm(dir, { recursive: true, force: true });
    }
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const startedAt = new Date().toISOString();
    heartbeat({ phase: input.kind, bytes: 0 });
    const result =
      input.kind === 'logical'
        ? await logicalBackup({ ...login, outFile: join(dir, LOGICAL_DUMP_FILE), ...toolContext('dump') })
        : await physicalBackup({ ...login, targetDir: join(dir, PHYSICAL_DATA_DIR), datadir: server.datadir, ...toolContext('mariadb-backup') });
    const files = await listFiles(dir);
    const digest = await sha256OfFiles(dir, files, (bytes) => heartbeat({ phase: 'checksum', bytes }));
    const manifest: BackupManifest = {
      id: input.backupId,
      cluster: input.cluster,
      instance: input.instance,
      kind: input.kind,
      startedAt,
      endedAt: new Date().toISOString(),
      binlog: result.binlog,
      gtid: result.gtid,
      sizeBytes: digest.sizeBytes,
      sha256: digest.sha256,
      files,
      tool: result.tool,
      serverVersion: server.version,
    };
    // Last: from here on the backup counts as complete.
    await writeJsonAtomically(manifestFile, manifest);
    log.info('backup complete', { backupId: manifest.id, kind: manifest.kind, sizeBytes: manifest.sizeBytes, gtid: manifest.gtid, ms: result.durationMs });
    return manifest;
  }

  async function archive(input: InstanceRef): Promise<BinlogArchiveEntry[]> {
    const login = loginFor(config, input);
    // Per source: a new primary's binlog names repeat the old one's (see archive.ts).
    const dir = archiveDirOf(config.backupDir, input.cluster, input.instance);
    const indexFile = join(dir, BINLOG_INDEX_FILE);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const index = new Map<string, BinlogArchiveEntry>();
    if (existsSync(indexFile)) {
      for (const e of JSON.parse(await readFile(indexFile, 'utf8')) as BinlogArchiveEntry[]) index.set(e.file, e);
    }

    // The continuous archiver owns this directory while it runs: a second writer would corrupt it,
    // and it archives within a second anyway.
    const streaming = await streamingInto(dir);
    if (streaming) {
      log.info('binlogs are archived continuously; the backup leaves them to the archiver', { dir, archiver: streaming.owner });
      return [...index.values()].sort((a, b) => compareBinlogNames(a.file, b.file));
    }
    const serverLogs = await onServer(config, input, async (conn) => {
      try {
        const rows = await query<{ Log_name: string; File_size: number | string }[]>(conn, 'SHOW BINARY LOGS');
        return rows.map((r) => ({ file: r.Log_name, size: Number(r.File_size) }));
      } catch (err) {
        if ((err as { errno?: number }).errno === 1381) throw refuse(`${input.instance} has the binary log off: nothing to archive`, 'BinlogDisabled');
        throw err;
      }
    });
    if (!serverLogs.length) return [...index.values()].sort((a, b) => compareBinlogNames(a.file, b.file));
    const current = serverLogs[serverLogs.length - 1]!;

    const toFetch: string[] = [];
    for (const s of serverLogs) {
      const known = index.get(s.file);
      const isCurrent = s === current;
      if (known?.complete) {
        // A complete file never changes: a different size means another server's binlog by the same name.
        if (isCurrent || known.sizeBytes !== s.size) {
          throw refuse(
            `archived binlog ${s.file} (${known.sizeBytes} bytes, complete) differs from ${input.instance}'s (${s.size} bytes${isCurrent ? ', current' : ''}): ` +
              `${dir} holds other binlogs by that name (was ${input.instance}'s binary log reset?); move that archive aside to start a new one`,
            'ArchiveConflict',
          );
        }
        const local = await stat(join(dir, s.file)).catch(() => undefined);
        if (local?.size === known.sizeBytes) continue;
      }
      toFetch.push(s.file);
    }

    const staging = join(dir, `.fetch-${randomUUID()}`);
    await mkdir(staging, { mode: 0o700 });
    try {
      heartbeat({ phase: 'fetch binlogs', bytes: 0 });
      await fetchBinlogs({ ...login, files: toFetch, outDir: staging, ...toolContext('fetch binlogs') });
      const firstGtids = await onServer(config, input, async (conn) => {
        const out = new Map<string, string | undefined>();
        for (const file of toFetch) out.set(file, await firstGtidOf(conn, file));
        return out;
      });
      for (const file of toFetch) {
        const listed = serverLogs.find((s) => s.file === file)!;
        const complete = file !== current.file;
        const fetched = join(staging, file);
        const { sha256, sizeBytes } = await sha256OfFile(fetched);
        if (complete ? sizeBytes !== listed.size : sizeBytes < listed.size) {
          throw ApplicationFailure.retryable(`copied ${file} has ${sizeBytes} bytes, the server listed ${listed.size}`, 'BinlogCopyMismatch');
        }
        await rename(fetched, join(dir, file));
        index.set(file, { file, sizeBytes, sha256, ...(firstGtids.get(file) ? { firstGtid: firstGtids.get(file) } : {}), complete });
      }
    } finally {
      await rm(staging, { recursive: true, force: true });
    }
    const entries = [...index.values()].sort((a, b) => compareBinlogNames(a.file, b.file));
    await writeJsonAtomically(indexFile, entries);
    // Decode what was copied now, while nothing is burning: a restore then locates its bad event
    // from these indexes instead of decoding during the incident (see eventIndex.ts). The archive
    // is complete without them: a failure here is logged and the restore decodes for itself.
    for (const file of toFetch) {
      heartbeat({ phase: 'index binlog events', file });
      try {
        const { transactions, decoded } = await indexEvents(dir, index.get(file)!, () => heartbeat({ phase: 'index binlog events', file }));
        log.info('binlog events indexed', { file, transactions, decoded });
      } catch (err) {
        log.warn('binlog events not indexed; a restore will decode this file itself', { file, error: (err as Error).message.split('\n')[0] });
      }
    }
    log.info('binlogs archived', { instance: input.instance, fetched: toFetch.length, archived: entries.length });
    return entries;
  }
}

/** The first GTID event of a binlog file (`GTID 0-1-5` or `BEGIN GTID 0-1-5`), if any. */
async function firstGtidOf(conn: Conn, file: string): Promise<string | undefined> {
  const events = await query<{ Event_type: string; Info: string }[]>(conn, 'SHOW BINLOG EVENTS IN ? LIMIT 200', [file], 30_000);
  for (const e of events) {
    const m = e.Event_type === 'Gtid' ? /GTID (\d+-\d+-\d+)/.exec(e.Info) : null;
    if (m) return m[1];
  }
  return undefined;
}

export type BackupActivities = ReturnType<typeof createBackupActivities>;
