/**
 * Whether the archived binlogs can carry a backup to a target: every transaction after the
 * backup's GTID position up to and including the target GTID must be in the archive, in order,
 * with no file missing in between. Checked BEFORE anything is restored: discovering a hole after
 * an hour of loading a dump is how a hand-run recovery silently ends short of its target.
 *
 * Pure (no I/O): the activity lists the archive and feeds its transactions through, one at a time.
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
  const walk = walkCoverage(input);
  for (const t of input.transactions) if (!walk.see(t)) break;
  return walk.result();
}

/**
 * The same check fed one transaction at a time, in archive order (an archive can hold far more
 * transactions than fit in memory). `see` returns false once the answer is known: past the
 * target, or a problem found; `done` says so before the first one (a missing file, a bad target).
 */
export function walkCoverage(input: Omit<CoverageInput, 'transactions'>): { done: boolean; see: (t: ArchivedTransaction) => boolean; result: () => Coverage } {
  const target = parseMariaGtidList(input.to);
  let problem: string | undefined;
  const to = target[0]!;
  const fromSeq = target.length === 1 ? (parseMariaGtidList(input.from).find((g) => g.domain === to.domain)?.seq ?? 0) : 0;
  const files = [...input.index].sort((a, b) => compareBinlogNames(a.file, b.file));
  if (target.length !== 1) problem = `target must be one GTID, got "${input.to}"`;
  else if (to.seq < fromSeq) problem = `target ${input.to} is before the backup's position ${input.from}`;
  else if (input.damaged[0]) problem = `archived binlog ${input.damaged[0].file} is unusable: ${input.damaged[0].why}`;
  else {
    for (let i = 1; i < files.length && !problem; i++) {
      const [a, b] = [numberOf(files[i - 1]!.file), numberOf(files[i]!.file)];
      if (b !== a + 1) {
        const missing = files[i]!.file.replace(/\d+$/, (n) => String(a + 1).padStart(n.length, '0'));
        problem = `binlog file ${missing} is missing from the archive (between ${files[i - 1]!.file} and ${files[i]!.file})`;
      }
    }
  }

  // Walk the target's domain in archive order: seq numbers after the backup must run 1, 2, 3… to the target.
  let expected = fromSeq + 1;
  let first: ArchivedTransaction | undefined;
  let last: ArchivedTransaction | undefined;
  let count = 0;
  let past = false;
  const used = new Set<string>();
  const see = (t: ArchivedTransaction): boolean => {
    if (problem || past) return false;
    const g = parseMariaGtidList(t.gtid)[0];
    if (!g || g.domain !== to.domain || g.seq <= fromSeq) return true;
    if (g.seq > to.seq) return !(past = true);
    if (g.seq !== expected) {
      const where = last ? `after ${last.gtid} (${last.file}:${last.startPosition})` : `after the backup's ${fmt({ ...to, seq: fromSeq })}`;
      problem =
        g.seq < expected
          ? `GTID ${t.gtid} in ${t.file} goes backwards ${where}: the archive mixes servers' binlogs`
          : `GTID gap: ${to.domain}-*-${expected}${g.seq - 1 > expected ? ` … ${to.domain}-*-${g.seq - 1}` : ''} missing ${where}, next is ${t.gtid} in ${t.file}`;
      return false;
    }
    first ??= t;
    last = t;
    count++;
    used.add(t.file);
    expected++;
    return true;
  };
  const result = (): Coverage => {
    if (problem) return { ok: false, problem };
    if (to.seq === fromSeq) return { ok: true, files: [], transactions: 0, last: input.to }; // the backup is the target: nothing to replay
    if (!last || parseMariaGtidList(last.gtid)[0]!.seq !== to.seq) {
      const upTo = last ? `${last.gtid} (${last.file})` : `nothing after the backup's ${fmt({ ...to, seq: fromSeq })}`;
      return { ok: false, problem: `target ${input.to} is beyond the archive, which holds ${upTo}: archive newer binlogs (run a backup) first` };
    }
    return { ok: true, files: files.map((f) => f.file).filter((f) => used.has(f)), transactions: count, first: first?.gtid, last: last.gtid };
  };
  return { done: Boolean(problem), see, result };
}

/**
 * The transaction a point in time means: the last one committed at or before `atMs` (binlog
 * times have one-second resolution, so `at` is taken to the second). Undefined if none.
 */
export function lastTransactionAtOrBefore(transactions: ArchivedTransaction[], atMs: number): ArchivedTransaction | undefined {
  const atOrBefore = committedAtOrBefore(atMs);
  let found: ArchivedTransaction | undefined;
  for (const t of transactions) if (atOrBefore(t)) found = t;
  return found;
}

/** Whether a transaction was committed at or before `atMs`, to the second (binlog times' resolution). */
export function committedAtOrBefore(atMs: number): (t: ArchivedTransaction) => boolean {
  const limit = Math.floor(atMs / 1000) * 1000;
  return (t) => t.timestamp <= limit;
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
