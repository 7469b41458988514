/**
 * Continuous binlog archiving: one long activity follows the current primary's binlogs as it
 * writes them (`mariadb-binlog --raw --stop-never`) into `<backupDir>/<cluster>/binlogs/<primary>/`,
 * publishing complete transactions as they arrive (binlogStream.ts), indexing their events for
 * restores, and heartbeating how far the archive is behind the primary. When the primary is fenced
 * (a failover) it drains what is left and returns; the `binlog-archive` workflow then follows the
 * new primary. A backup's own archive step leaves the directory to it while it runs (the lease).
 *
 * Without it, binlogs were archived only by a backup, and a restore to a point after the last
 * backup found "0 events match": the event had simply never been archived.
 */
import { hostname } from 'node:os';
import { crc32 } from 'node:zlib';
import { mkdir, readFile, rm, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { activityInfo, CancelledFailure, Context, heartbeat, log, sleep } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { getCluster, getInstance, resolveCredential } from '../config/load';
import { archiveDirOf } from '../adapters/backup/archive';
import { ArchiveConflictError, StreamPublisher, STREAM_DIR } from '../adapters/backup/binlogStream';
import { indexEvents } from '../adapters/backup/eventIndex';
import { BINLOG_INDEX_FILE, compareBinlogNames, type BinlogArchiveEntry } from '../core/manifest';
import { streamBinlogs, writeJsonAtomically, ToolError } from '../adapters/process/tools';
import { connect, instanceEndpoint, query, type Conn } from '../adapters/mysql/connect';
import { parseMariaGtidList } from '../core/gtid';
import { probeTopology } from '../adapters/mysql/probe';
import type { ActivityDeps } from './deps';

/** What the archiver heartbeats, and what `runbook archive status` shows. */
export interface ArchiveProgress {
  primary: string;
  /** The last transaction archived, and when the primary committed it. */
  archivedTo?: string;
  archivedAt?: string;
  /** The primary's own position at the last look. */
  primaryAt?: string;
  /** 0 when the archive holds everything the primary has written; else seconds since the last archived commit. */
  lagSeconds: number;
  file?: string;
  since: string;
  updatedAt: string;
}

export interface ArchiveSegment {
  primary: string;
  archivedTo?: string;
  reason: string;
}

/** How often the stream is published and the primary looked at. */
const POLL_MS = 500;
/** A lease not renewed for this long belongs to an archiver that died. */
const LEASE_STALE_MS = 20_000;
/** Events are indexed at most this often while a file grows (and always when it is closed). */
const INDEX_EVERY_MS = 5_000;
/** How long a fenced primary's last writes may take to arrive. */
const DRAIN_MS = 30_000;

const LEASE_FILE = '.stream.lease';

interface Lease {
  owner: string;
  host: string;
  pid: number;
  renewedAt: number;
}

/**
 * Whether a continuous archiver holds `dir` now (a lease renewed recently): a backup's own archive
 * step then leaves the directory alone, since two writers would corrupt it.
 */
export async function streamingInto(dir: string, now = Date.now()): Promise<Lease | undefined> {
  try {
    const lease = JSON.parse(await readFile(join(dir, LEASE_FILE), 'utf8')) as Lease;
    return now - lease.renewedAt < LEASE_STALE_MS ? lease : undefined;
  } catch {
    return undefined;
  }
}

/** The id the archiver reads binlogs as (a replica's server id, unique per cluster, far from real servers'). */
function readerServerId(cluster: string): number {
  return 3_900_000_000 + (crc32(Buffer.from(cluster)) % 1_000_000);
}

export function createArchiveActivities({ config }: ActivityDeps) {
  return {
    /**
     * Archive the current primary's binlogs continuously until it is fenced (returns, to follow
     * the next primary) or the run is cancelled. Retried on any failure (a primary that went away,
     * a broken connection): a new attempt resumes the incomplete file where the archive ends.
     */
    async streamBinlogArchive(input: { cluster: string; workflowId: string }): Promise<ArchiveSegment> {
      getCluster(config, input.cluster);
      const topology = await probeTopology(config, input.cluster);
      if (!topology.primary) throw ApplicationFailure.retryable(`${input.cluster} has no single primary to archive from (${topology.problems.join('; ') || 'none writable'})`, 'NoPrimary');
      const primary = topology.primary;
      const dir = archiveDirOf(config.backupDir, input.cluster, primary);
      await mkdir(dir, { recursive: true, mode: 0o700 });
      const owner = `${input.workflowId}/${activityInfo().activityId}`;
      await takeLease(dir, owner);
      const abort = new AbortController();
      const cancel = Context.current().cancellationSignal;
      const onCancel = () => abort.abort();
      cancel.addEventListener('abort', onCancel);
      let conn: Conn | undefined;
      let tool: Promise<unknown> | undefined;
      try {
        conn = await connect(instanceEndpoint(config, input.cluster, primary), { timeoutMs: 5000 });
        const index = await readIndex(dir);
        const serverLogs = await query<{ Log_name: string; File_size: number | string }[]>(conn, 'SHOW BINARY LOGS');
        if (!serverLogs.length) throw ApplicationFailure.nonRetryable(`${primary} has no binary logs: nothing to archive`, 'BinlogDisabled');
        // From the first of the server's files the archive does not hold whole.
        const complete = new Map(index.filter((e) => e.complete).map((e) => [e.file, e.sizeBytes]));
        const start = serverLogs.find((l, i) => i === serverLogs.length - 1 || complete.get(l.Log_name) !== Number(l.File_size))!.Log_name;
        await rm(join(dir, STREAM_DIR), { recursive: true, force: true });
        await mkdir(join(dir, STREAM_DIR), { recursive: true, mode: 0o700 });
        const publisher = new StreamPublisher(dir, index);
        const inst = getInstance(config, input.cluster, primary);
        const admin = resolveCredential(getCluster(config, input.cluster).credentials.admin);
        let ended: unknown;
        tool = streamBinlogs({ host: inst.host, port: inst.port, ...admin, file: start, outDir: join(dir, STREAM_DIR), serverId: readerServerId(input.cluster), signal: abort.signal }).then(
          () => (ended = new Error('the binlog stream ended')),
          (err: unknown) => (ended = err),
        );
        const since = new Date().toISOString();
        let progress: ArchiveProgress | undefined;
        // The primary, looked at through a connection re-opened when cut (a fence ends client sessions).
        const look = async () => {
          try {
            return (await query<{ ro: number | string; pos: string }[]>(conn!, 'SELECT @@read_only AS ro, @@gtid_binlog_pos AS pos'))[0]!;
          } catch {
            conn?.destroy();
            conn = await connect(instanceEndpoint(config, input.cluster, primary), { timeoutMs: 5000 }).catch((err: Error) => {
              throw ApplicationFailure.retryable(`${primary} unreachable: ${err.message}`, 'InstanceUnreachable');
            });
            return (await query<{ ro: number | string; pos: string }[]>(conn, 'SELECT @@read_only AS ro, @@gtid_binlog_pos AS pos'))[0]!;
          }
        };
        let indexedAt = 0;
        let fencedAt: number | undefined;
        log.info('archiving binlogs continuously', { cluster: input.cluster, primary, from: start });
        for (;;) {
          const changed = await publisher.publish().catch((err: unknown) => {
            if (err instanceof ArchiveConflictError) throw ApplicationFailure.nonRetryable(err.message, 'ArchiveConflict');
            throw err;
          });
          if (changed.length) await writeJsonAtomically(join(dir, BINLOG_INDEX_FILE), publisher.index());
          const entries = publisher.index();
          const closed = changed.filter((f) => entries.find((e) => e.file === f)?.complete);
          if (closed.length || (changed.length && Date.now() - indexedAt > INDEX_EVERY_MS)) {
            // Decoded now, while nothing is burning: a restore then reads these indexes (eventIndex.ts).
            for (const file of changed) {
              await indexEvents(dir, entries.find((e) => e.file === file)!, () => heartbeat(progress), { appendOnly: true }).catch((err: Error) =>
                log.warn('binlog events not indexed; a restore will decode this file itself', { file, error: err.message.split('\n')[0] }),
              );
            }
            indexedAt = Date.now();
          }
          await renewLease(dir, owner);
          const now = await look();
          const last = publisher.last();
          const caughtUp = Boolean(last.gtid) && archivedThrough(last.gtid!, String(now.pos));
          progress = {
            primary,
            archivedTo: last.gtid,
            archivedAt: last.at ? new Date(last.at).toISOString() : undefined,
            primaryAt: String(now.pos),
            lagSeconds: caughtUp || !String(now.pos) ? 0 : last.at ? Math.max(0, Math.round((Date.now() - last.at) / 1000)) : Math.round((Date.now() - Date.parse(since)) / 1000),
            file: last.file,
            since,
            updatedAt: new Date().toISOString(),
          };
          heartbeat(progress);
          if (cancel.aborted) throw new CancelledFailure('archiving stopped');
          // Fenced: the primary is changing. Its last writes are archived, then the next primary is followed.
          if (Number(now.ro)) {
            fencedAt ??= Date.now();
            if (caughtUp || Date.now() - fencedAt > DRAIN_MS) {
              await flushIndexes(dir, publisher.index());
              return { primary, archivedTo: last.gtid, reason: `${primary} is read-only now (fenced): following the next primary` };
            }
          } else fencedAt = undefined;
          if (ended) {
            await flushIndexes(dir, publisher.index());
            // The primary fenced while the stream ended: the next primary holds the rest (log_slave_updates).
            if (Number((await look()).ro)) return { primary, archivedTo: last.gtid, reason: `${primary} is read-only now (fenced) and its stream ended: following the next primary` };
            const why = ended instanceof ToolError ? ended.stderrTail.split('\n').find((l) => l.trim()) ?? ended.message : (ended as Error).message;
            throw ApplicationFailure.retryable(`the binlog stream from ${primary} ended: ${why}`, 'StreamEnded');
          }
          await sleep(POLL_MS);
        }
      } finally {
        cancel.removeEventListener('abort', onCancel);
        abort.abort();
        await tool;
        conn?.destroy();
        await releaseLease(dir, owner);
      }
    },
  };
}

/** Whether the archive's last transaction is the primary's last in its domain. */
function archivedThrough(archived: string, primaryAt: string): boolean {
  const a = parseMariaGtidList(archived)[0]!;
  return (parseMariaGtidList(primaryAt).find((g) => g.domain === a.domain)?.seq ?? 0) <= a.seq;
}

async function readIndex(dir: string): Promise<BinlogArchiveEntry[]> {
  try {
    return (JSON.parse(await readFile(join(dir, BINLOG_INDEX_FILE), 'utf8')) as BinlogArchiveEntry[]).sort((a, b) => compareBinlogNames(a.file, b.file));
  } catch {
    return [];
  }
}

/** Index whatever was published but not yet indexed (best effort: a restore decodes what lacks one). */
async function flushIndexes(dir: string, entries: BinlogArchiveEntry[]): Promise<void> {
  await writeJsonAtomically(join(dir, BINLOG_INDEX_FILE), entries);
  for (const e of entries.slice(-2)) await indexEvents(dir, e, undefined, { appendOnly: true }).catch(() => undefined);
}

async function takeLease(dir: string, owner: string): Promise<void> {
  const held = await streamingInto(dir);
  if (held && held.owner !== owner) {
    throw ApplicationFailure.retryable(`another archiver streams into ${dir} (${held.owner} on ${held.host}, pid ${held.pid}); waiting for it to stop`, 'ArchiveBusy');
  }
  await renewLease(dir, owner);
}

async function renewLease(dir: string, owner: string): Promise<void> {
  await writeJsonAtomically(join(dir, LEASE_FILE), { owner, host: hostname(), pid: process.pid, renewedAt: Date.now() } satisfies Lease);
}

async function releaseLease(dir: string, owner: string): Promise<void> {
  const held = await streamingInto(dir, 0).catch(() => undefined);
  if (!held || held.owner === owner) await unlink(join(dir, LEASE_FILE)).catch(() => undefined);
}

