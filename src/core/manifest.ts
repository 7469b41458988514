/**
 * What a backup is, on disk and across the workflow/activity boundary. Pure types and helpers: the
 * backup workflow imports this module, so it must never import I/O.
 *
 * Layout under `RunbookConfig.backupDir`:
 *
 *   <cluster>/<backupId>/manifest.json    written LAST: a folder without it is an incomplete backup
 *   <cluster>/<backupId>/dump.sql         logical: mariadb-dump --single-transaction --master-data=2 --gtid
 *   <cluster>/<backupId>/data/…           physical: a prepared mariadb-backup target dir (restore with --copy-back)
 *   <cluster>/binlogs/<instance>/<file>   binlogs copied from that primary over the replication protocol
 *   <cluster>/binlogs/<instance>/index.json  BinlogArchiveEntry[] in file order (see archive.ts)
 */
import type { Topology, TopologyInstance } from './types';
import { parseMariaGtidList } from './gtid';

export type BackupKind = 'logical' | 'physical';
export const BACKUP_KINDS: readonly BackupKind[] = ['logical', 'physical'];

export const MANIFEST_FILE = 'manifest.json';
export const BINLOG_ARCHIVE_DIR = 'binlogs';
export const BINLOG_INDEX_FILE = 'index.json';
/** The dump of a logical backup, relative to its backup folder. */
export const LOGICAL_DUMP_FILE = 'dump.sql';
/** The mariadb-backup target dir of a physical backup, relative to its backup folder. */
export const PHYSICAL_DATA_DIR = 'data';

export interface BackupManifest {
  /** `<kind>-<yyyymmddHHMMSS>` (UTC), unique within the cluster; also the folder name. */
  id: string;
  cluster: string;
  /** The instance the backup was taken from. */
  instance: string;
  kind: BackupKind;
  /** ISO 8601, UTC. */
  startedAt: string;
  endedAt: string;
  /** The source's own binlog coordinates at the backup's consistent point (SHOW MASTER STATUS). */
  binlog: { file: string; position: number };
  /** The source's @@gtid_binlog_pos at the consistent point: where point-in-time recovery resumes. */
  gtid: string;
  /** Total bytes of `files`. */
  sizeBytes: number;
  /**
   * sha256 of the `sha256sum`-style listing of `files` (`<hex>  <path>\n` per file, paths sorted):
   * `cd <backup folder> && sha256sum <files…> | sha256sum` reproduces it.
   */
  sha256: string;
  /** Every file of the backup, relative to its folder, sorted; manifest.json is not one of them. */
  files: string[];
  /** Tool and version that produced it, e.g. `mariadb-dump Ver 10.19 Distrib 10.11.19-MariaDB`. */
  tool: string;
  /** `@@version` of the source. */
  serverVersion: string;
}

export interface BinlogArchiveEntry {
  /** Binlog file name as the server names it (`mysql-bin.000042`). */
  file: string;
  sizeBytes: number;
  sha256: string;
  /** The first GTID written in this file, if it holds any transaction. */
  firstGtid?: string;
  /** False for the server's current binlog, still growing when it was copied. */
  complete: boolean;
}

const pad = (n: number, width = 2) => String(n).padStart(width, '0');

/** `<kind>-<yyyymmddHHMMSS>` in UTC, e.g. `logical-20260314092653`. */
export function backupIdFor(kind: BackupKind, at: Date | number): string {
  const d = new Date(at);
  return `${kind}-${d.getUTCFullYear()}${pad(d.getUTCMonth() + 1)}${pad(d.getUTCDate())}${pad(d.getUTCHours())}${pad(d.getUTCMinutes())}${pad(d.getUTCSeconds())}`;
}

/** A backup id is a folder name: letters, digits, `.`, `_`, `-`; never `binlogs`, `.` or `..`. */
export function isValidBackupId(id: string): boolean {
  return /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(id) && id !== BINLOG_ARCHIVE_DIR;
}

export function sortByEndedAt(manifests: BackupManifest[]): BackupManifest[] {
  return [...manifests].sort((a, b) => (a.endedAt < b.endedAt ? -1 : a.endedAt > b.endedAt ? 1 : a.id.localeCompare(b.id)));
}

/** Binlog files in server order (`mysql-bin.000009` before `mysql-bin.000010`, and past 999999). */
export function compareBinlogNames(a: string, b: string): number {
  const na = /\.(\d+)$/.exec(a);
  const nb = /\.(\d+)$/.exec(b);
  const base = (s: string, m: RegExpExecArray | null) => (m ? s.slice(0, m.index) : s);
  if (na && nb && base(a, na) === base(b, nb)) return Number(na[1]) - Number(nb[1]);
  return a < b ? -1 : a > b ? 1 : 0;
}

export interface BackupSourceChoice {
  /** The instance to back up. */
  source: string;
  /** The primary, whose binlogs are archived; null when the topology has no single primary. */
  primary: string | null;
  /** One line for the timeline: why this source. */
  reason: string;
}

function healthyReplicaOf(i: TopologyInstance, primary: string, maxLagSeconds: number): boolean {
  const r = i.replication;
  return (
    i.reachable &&
    i.role === 'replica' &&
    r !== null &&
    r.sourceInstance === primary &&
    r.ioRunning === 'Yes' &&
    r.sqlRunning === 'Yes' &&
    r.lagSeconds !== null &&
    r.lagSeconds <= maxLagSeconds
  );
}

/**
 * Where to take a backup from: the requested instance if any (it must answer); else a healthy
 * replica of the primary (both threads running, within `maxLagSeconds`), the least lagging, so the
 * primary is spared the load; else the primary. Throws a plain Error when nothing qualifies.
 */
export function chooseBackupSource(topology: Topology, maxLagSeconds: number, requested?: string): BackupSourceChoice {
  const primary = topology.primary;
  if (requested) {
    const inst = topology.instances.find((i) => i.instance === requested);
    if (!inst) throw new Error(`cluster ${topology.cluster} has no instance ${requested}; known: ${topology.instances.map((i) => i.instance).join(', ')}`);
    if (!inst.reachable) throw new Error(`${requested} is unreachable: ${inst.error ?? 'no answer'}`);
    return { source: requested, primary, reason: `${requested} as requested (${inst.role})` };
  }
  if (!primary) {
    throw new Error(`cluster ${topology.cluster} has no single primary (${topology.problems.join('; ') || 'none writable'}); name the instance to back up`);
  }
  const replicas = topology.instances
    .filter((i) => healthyReplicaOf(i, primary, maxLagSeconds))
    .sort((a, b) => a.replication!.lagSeconds! - b.replication!.lagSeconds! || a.instance.localeCompare(b.instance));
  const best = replicas[0];
  if (best) return { source: best.instance, primary, reason: `healthy replica ${best.instance} (lag ${best.replication!.lagSeconds} s), sparing primary ${primary}` };
  return { source: primary, primary, reason: `primary ${primary}: no healthy replica within ${maxLagSeconds} s` };
}

/**
 * The archived files a replay from `after` (a GTID position, e.g. a backup's) may read: all but
 * those whose every transaction is at or before it, i.e. whose NEXT file starts at or before
 * after+1 in its domain. Without `after`, all of them.
 */
export function filesAfter(index: BinlogArchiveEntry[], after?: string): BinlogArchiveEntry[] {
  if (!after) return index;
  const floor = parseMariaGtidList(after);
  return index.filter((_, i) => {
    const next = index[i + 1]?.firstGtid;
    if (!next) return true;
    const g = parseMariaGtidList(next)[0]!;
    const f = floor.find((x) => x.domain === g.domain);
    return !(f !== undefined && g.seq <= f.seq + 1);
  });
}
