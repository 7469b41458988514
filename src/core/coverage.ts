/**
 * Whether the archived binlogs can carry a backup to a target: every transaction after the
 * backup's GTID position up to and including the target GTID must be in the archive, in order,
 * with no file missing in between. Checked BEFORE anything is restored: discovering a hole after
 * an hour of loading a dump is how a hand-run recovery silently ends short of its target.
 *
 * Pure (no I/O): the activity lists the archive and feeds its transactions through, one at a time.
 */
import { compareBinlogNames, type BinlogArchiveEntry } from './manifest';
import { parseMariaGtidList, type MariaGtid } from './gtid';

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
 * A point in time for recovery: RFC 3339 with an explicit offset (`2026-03-14T09:26:53+08:00`,
 * `…Z`), seconds required, fraction allowed, `T` or a space between date and time. Anything else is
 * refused in one line: a bare `2026-03-14 09:26` read in the worker's local zone is exactly how a
 * `--stop-datetime` replays the bad statement, `12/02/2026` is read month-first by some parsers and
 * day-first by people, and `2026-02-30` must not quietly become March 2. `option` names the flag
 * in the message. The pattern is fixed-width and anchored: it cannot backtrack on operator input.
 */
export function parsePointInTime(at: string, option = 'point in time'): number {
  const text = typeof at === 'string' ? at.trim() : '';
  if (text.length > 40) throw new Error(`${option} "${text.slice(0, 40)}…" is too long to be an RFC 3339 date-time`);
  const m = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$/.exec(text);
  if (!m) {
    if (/^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?$/.test(text)) throw new Error(`${option} "${text}" has no time zone: add Z or an offset like +08:00`);
    throw new Error(`${option} "${text}" is not an RFC 3339 date-time with an offset, like 2026-03-14T09:26:53+08:00`);
  }
  const [, y, mo, d, h, mi, sec, frac, zone] = m;
  const [year, month, day, hour, minute, second] = [y, mo, d, h, mi, sec].map(Number) as [number, number, number, number, number, number];
  const daysInMonth = new Date(Date.UTC(year, month, 0)).getUTCDate();
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth || hour > 23 || minute > 59 || second > 59) {
    throw new Error(`${option} "${text}" is not a valid date-time (${month >= 1 && month <= 12 && day > daysInMonth ? `${y}-${mo} has ${daysInMonth} days` : 'a field is out of range'})`);
  }
  let offsetMin = 0;
  if (zone !== 'Z' && zone !== 'z') {
    const [oh, om] = zone!.slice(1).split(':').map(Number) as [number, number];
    if (oh > 23 || om > 59) throw new Error(`${option} "${text}" has an invalid offset ${zone}`);
    offsetMin = (zone!.startsWith('-') ? -1 : 1) * (oh * 60 + om);
  }
  const ms = frac ? Math.floor(Number(`0${frac}`) * 1000) : 0;
  return Date.UTC(year, month - 1, day, hour, minute, second, ms) - offsetMin * 60_000;
}

/** Refuse a recovery point in the future (a typo in the year, the wrong offset): nothing is there yet. */
export function refuseFuturePoint(ms: number, nowMs: number, option = 'point in time'): void {
  if (ms > nowMs + 1000) throw new Error(`${option} ${new Date(ms).toISOString()} is in the future (now ${new Date(nowMs).toISOString()}): check the date and the offset`);
}
