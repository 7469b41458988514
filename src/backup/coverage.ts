/**
 * Whether the archived binlogs can carry a backup to a target: every transaction after the
 * backup's GTID position up to and including the target GTID must be in the archive, in order,
 * with no file missing in between. Checked BEFORE anything is restored: discovering a hole after
 * an hour of loading a dump is how a hand-run recovery silently ends short of its target.
 *
 * Pure (no I/O): the activity lists the archive and scans it for GTIDs.
 */
import { compareBinlogNames, type BinlogArchiveEntry } from './manifest';
import { parseMariaGtidList, type MariaGtid } from '../mysql/dialect';

/** One transaction as the archive holds it (from `mariadb-binlog` headers). */
export interface ArchivedTransaction {
  gtid: string;
  file: string;
  startPosition: number;
  /** Epoch ms, from the event header (second resolution). */
  timestamp: number;
}

export interface CoverageInput {
  index: BinlogArchiveEntry[];
  /** Files listed in the index but absent or damaged on disk, each with why. */
  damaged: { file: string; why: string }[];
  /** Every transaction of the archive, in file order. */
  transactions: ArchivedTransaction[];
  /** The backup's GTID position (a list, one GTID per domain). */
  from: string;
  /** The last transaction replay must apply (one GTID). */
  to: string;
}

export type Coverage =
  | { ok: true; files: string[]; transactions: number; first?: string; last: string }
  | { ok: false; problem: string };

const numberOf = (file: string) => Number(/\.(\d+)$/.exec(file)?.[1] ?? NaN);
const fmt = (g: MariaGtid) => `${g.domain}-${g.server}-${g.seq}`;

export function checkCoverage(input: CoverageInput): Coverage {
  const target = parseMariaGtidList(input.to);
  if (target.length !== 1) return { ok: false, problem: `target must be one GTID, got "${input.to}"` };
  const to = target[0]!;
  const fromSeq = parseMariaGtidList(input.from).find((g) => g.domain === to.domain)?.seq ?? 0;
  if (to.seq < fromSeq) return { ok: false, problem: `target ${input.to} is before the backup's position ${input.from}` };

  const damaged = input.damaged[0];
  if (damaged) return { ok: false, problem: `archived binlog ${damaged.file} is unusable: ${damaged.why}` };
  const files = [...input.index].sort((a, b) => compareBinlogNames(a.file, b.file));
  for (let i = 1; i < files.length; i++) {
    const [a, b] = [numberOf(files[i - 1]!.file), numberOf(files[i]!.file)];
    if (b !== a + 1) {
      const missing = files[i]!.file.replace(/\d+$/, (n) => String(a + 1).padStart(n.length, '0'));
      return { ok: false, problem: `binlog file ${missing} is missing from the archive (between ${files[i - 1]!.file} and ${files[i]!.file})` };
    }
  }

  // Walk the target's domain in archive order: seq numbers after the backup must run 1, 2, 3… to the target.
  let expected = fromSeq + 1;
  let first: ArchivedTransaction | undefined;
  let last: ArchivedTransaction | undefined;
  let count = 0;
  const used = new Set<string>();
  for (const t of input.transactions) {
    const g = parseMariaGtidList(t.gtid)[0];
    if (!g || g.domain !== to.domain || g.seq <= fromSeq) continue;
    if (g.seq > to.seq) break;
    if (g.seq !== expected) {
      const where = last ? `after ${last.gtid} (${last.file}:${last.startPosition})` : `after the backup's ${fmt({ ...to, seq: fromSeq })}`;
      return {
        ok: false,
        problem:
          g.seq < expected
            ? `GTID ${t.gtid} in ${t.file} goes backwards ${where}: the archive mixes servers' binlogs`
            : `GTID gap: ${to.domain}-*-${expected}${g.seq - 1 > expected ? ` … ${to.domain}-*-${g.seq - 1}` : ''} missing ${where}, next is ${t.gtid} in ${t.file}`,
      };
    }
    first ??= t;
    last = t;
    count++;
    used.add(t.file);
    expected++;
  }
  if (to.seq === fromSeq) return { ok: true, files: [], transactions: 0, last: input.to }; // the backup is the target: nothing to replay
  if (!last || parseMariaGtidList(last.gtid)[0]!.seq !== to.seq) {
    const upTo = last ? `${last.gtid} (${last.file})` : `nothing after the backup's ${fmt({ ...to, seq: fromSeq })}`;
    return { ok: false, problem: `target ${input.to} is beyond the archive, which holds ${upTo}: archive newer binlogs (run a backup) first` };
  }
  return { ok: true, files: files.map((f) => f.file).filter((f) => used.has(f)), transactions: count, first: first?.gtid, last: last.gtid };
}

/**
 * The transaction a point in time means: the last one committed at or before `atMs` (binlog
 * times have one-second resolution, so `at` is taken to the second). Undefined if none.
 */
export function lastTransactionAtOrBefore(transactions: ArchivedTransaction[], atMs: number): ArchivedTransaction | undefined {
  const limit = Math.floor(atMs / 1000) * 1000;
  let found: ArchivedTransaction | undefined;
  for (const t of transactions) if (t.timestamp <= limit) found = t;
  return found;
}

/**
 * A point in time for recovery, refused unless it names its zone: a bare `2026-03-14 09:26`
 * read in the worker's local zone is exactly how a `--stop-datetime` replays the bad statement.
 */
export function parsePointInTime(at: string): number {
  if (!/(Z|[+-]\d{2}:?\d{2})$/i.test(at.trim())) throw new Error(`point in time "${at}" has no time zone: add Z or an offset like +08:00`);
  const ms = Date.parse(at.trim());
  if (Number.isNaN(ms)) throw new Error(`point in time "${at}" is not an ISO 8601 date-time`);
  return ms;
}
