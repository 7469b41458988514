/**
 * The consistency runbook's decisions, as pure functions the workflow and the activities share: how
 * big the next chunk is, which differences a re-check confirms, which copy of a row wins under a
 * repair policy and where it is written, and how chunk results add up into a table's report.
 * Workflow-safe: no I/O, no clock, no Node built-ins (keys arrive with their canonical text, made
 * by the activity that read them).
 */

/** A row's key as the server returned it (through JSON a binary value is `{type:'Buffer', data}`). */
export type KeyTuple = unknown[];

/**
 * How one copy differs from the source (the primary, or `--source` across regions):
 * `missing` the source has the row and this copy does not; `extra` this copy has a row the source
 * does not; `changed` both have it with other values.
 */
export type DiffKind = 'missing' | 'extra' | 'changed';

/** A chunk of a table: `lower < key <= upper`, either bound open (null). */
export interface ChunkBounds {
  index: number;
  lower: KeyTuple | null;
  upper: KeyTuple | null;
}

/** One row of one copy that differs from the source. */
export interface RowDifference {
  instance: string;
  key: KeyTuple;
  /** The key's canonical text (equal exactly when the keys are). */
  keyText: string;
  kind: DiffKind;
  /** For `changed`: the columns whose values differ. */
  columns: string[];
  chunk: ChunkBounds;
}

// ---------------------------------------------------------------------------------------------
// Chunk sizing: a time target, as pt-table-checksum's --chunk-time
// ---------------------------------------------------------------------------------------------

export const CHUNK_LIMITS = {
  /** The first chunk of a table when sizing to a time target (pt-table-checksum's --chunk-size). */
  initialRows: 1000,
  minRows: 100,
  /** `--chunk-rows` and the sizer never go above this. */
  maxRows: 1_000_000,
  /** A chunk grows at most this many times over the previous one: one fast (sparse) range must not make the next one huge. */
  maxGrowth: 4,
  /** Weight of a faster rate just measured against the average so far (a slower one is taken as it is). */
  newRateWeight: 0.25,
  /**
   * The fraction of the time target a chunk is sized for: the target is a ceiling for nearly every
   * chunk (p95), and on a loaded server the same rows take a quarter longer or more from one chunk
   * to the next.
   */
  aimAt: 0.7,
} as const;

export interface ChunkSizer {
  /** Rows of the next chunk. */
  rows: number;
  /** Fixed by `--chunk-rows`: never resized. */
  fixed: boolean;
  /** Weighted average of rows per millisecond measured so far (absent before the first chunk). */
  rate?: number;
}

export function startSizer(chunkRows?: number): ChunkSizer {
  return chunkRows ? { rows: chunkRows, fixed: true } : { rows: CHUNK_LIMITS.initialRows, fixed: false };
}

/** The next chunk's size after one of `rows` rows took `ms` (its slowest side), aiming at `targetMs`. */
export function resize(s: ChunkSizer, rows: number, ms: number, targetMs: number): ChunkSizer {
  if (s.fixed || rows < 1) return s;
  const measured = rows / Math.max(ms, 1);
  // Slow down at once (a chunk over its time holds the replicas' view and the primary's undo
  // longer), speed up gradually (one sparse, fast range says little about the next).
  const rate = s.rate === undefined || measured < s.rate ? measured : s.rate * (1 - CHUNK_LIMITS.newRateWeight) + measured * CHUNK_LIMITS.newRateWeight;
  const wanted = Math.round(rate * targetMs * CHUNK_LIMITS.aimAt);
  const next = Math.max(CHUNK_LIMITS.minRows, Math.min(CHUNK_LIMITS.maxRows, s.rows * CHUNK_LIMITS.maxGrowth, wanted));
  return { rows: next, fixed: false, rate };
}

// ---------------------------------------------------------------------------------------------
// Re-check
// ---------------------------------------------------------------------------------------------

/**
 * A difference is called one only when the re-check (at a later position, after catch-up) finds
 * the same row of the same copy differing again; it is reported as the re-check saw it.
 */
export function confirmedDifferences(first: RowDifference[], recheck: RowDifference[]): RowDifference[] {
  const seen = new Set(first.map((d) => `${d.instance}\u0000${d.keyText}`));
  return recheck.filter((d) => seen.has(`${d.instance}\u0000${d.keyText}`));
}

// ---------------------------------------------------------------------------------------------
// Repair policies
// ---------------------------------------------------------------------------------------------

export type RepairPolicy = { kind: 'source-wins' } | { kind: 'newest-wins'; column: string } | { kind: 'manual' };

export const POLICY_FORMAT = 'source-wins, newest-wins:<timestamp column> or manual';
const COLUMN = /^[A-Za-z0-9_$]{1,64}$/;

/** `source-wins`, `newest-wins:updated_at`, `manual`; a one-line problem for anything else. */
export function parsePolicy(text: unknown): RepairPolicy | { problem: string } {
  if (typeof text !== 'string' || text.length > 80) return { problem: `a repair policy is ${POLICY_FORMAT}, got ${JSON.stringify(text)}` };
  if (text === 'source-wins' || text === 'manual') return { kind: text };
  const m = /^newest-wins:(.*)$/.exec(text);
  if (m) {
    if (!COLUMN.test(m[1]!)) return { problem: `newest-wins needs the timestamp column that says which copy is newer (letters, digits, "_" or "$"): newest-wins:updated_at, got ${JSON.stringify(text)}` };
    return { kind: 'newest-wins', column: m[1]! };
  }
  return { problem: `a repair policy is ${POLICY_FORMAT}, got ${JSON.stringify(text)}` };
}

export function policyText(p: RepairPolicy): string {
  return p.kind === 'newest-wins' ? `newest-wins:${p.column}` : p.kind;
}

/** The policy for a table: the command's, else the config's for that table, else its schema's (`shop.*`), else none. */
export function policyFor(table: string, command: string | undefined, configured: Record<string, string> = {}): string | undefined {
  return command ?? configured[table] ?? configured[`${table.split('.')[0]}.*`];
}

/** One copy of a row, as the plan sees it. */
export interface RowVersion {
  instance: string;
  present: boolean;
  /** The row digest (absent row: null). */
  digest: string | null;
  /** The newest-wins column's value in this copy (absent row or column: undefined). */
  stamp?: unknown;
}

/** One write of a repair: `write` the winner's row on `instance` (an insert or a replacement), or `delete` it there. */
export interface PlannedWrite {
  instance: string;
  op: 'write' | 'delete';
  /**
   * Logged (sql_log_bin=1) writes replicate to the instance's replicas: the primary's own, or a
   * site's across regions. A replica's own copy is written unlogged while its replication is held
   * at the source's position, so it creates no GTID of its own.
   */
  logged: boolean;
}

export interface KeyDecision {
  /** `repair`: `writes` make every copy the winner's; `queue`: a person decides (nothing is written). */
  action: 'repair' | 'queue';
  /** The instance whose copy wins. */
  winner?: string;
  writes: PlannedWrite[];
  reason: string;
}

export interface DecisionContext {
  /** `replication`: the source is the primary, the targets replicate from it; `cross`: two independent sites. */
  mode: 'replication' | 'cross';
  /** `replicas`: the primary must not be touched; a decision that needs it is queued instead. */
  applyOn: 'auto' | 'replicas';
}

/**
 * Which copy of one row wins, and what is written where, for the source's copy and every copy that
 * differs from it (copies equal to the source need nothing). Refuses rather than guesses: a tie, a
 * missing timestamp, a row present on one side only under newest-wins (a deletion leaves no
 * timestamp to compare), or a winner that can only be written where the command forbids, is queued.
 */
export function decideKey(policy: RepairPolicy, source: RowVersion, differing: RowVersion[], ctx: DecisionContext): KeyDecision {
  const queue = (reason: string): KeyDecision => ({ action: 'queue', writes: [], reason });
  if (!differing.length) return { action: 'repair', winner: source.instance, writes: [], reason: 'every copy is equal' };
  if (policy.kind === 'manual') return queue('policy manual: a person decides');
  const toTargets = (): PlannedWrite[] =>
    differing.map((t) => ({ instance: t.instance, op: source.present ? 'write' : 'delete', logged: ctx.mode === 'cross' }));
  if (policy.kind === 'source-wins') {
    return { action: 'repair', winner: source.instance, writes: toTargets(), reason: `source-wins: ${source.instance}'s ${source.present ? 'row' : 'absence of the row'}` };
  }
  const versions = [source, ...differing];
  const oneSided = versions.filter((v) => !v.present).map((v) => v.instance);
  if (oneSided.length) return queue(`newest-wins: the row is absent on ${oneSided.join(', ')}, so there is no ${policy.column} to compare there (a deletion leaves none)`);
  const unstamped = versions.filter((v) => v.stamp === null || v.stamp === undefined).map((v) => v.instance);
  if (unstamped.length) return queue(`newest-wins: ${policy.column} is NULL on ${unstamped.join(', ')}`);
  let newest = versions[0]!;
  for (const v of versions.slice(1)) {
    const c = compareStamps(v.stamp, newest.stamp);
    if (c === undefined) return queue(`newest-wins: ${policy.column} values ${JSON.stringify(v.stamp)} and ${JSON.stringify(newest.stamp)} cannot be compared`);
    if (c > 0) newest = v;
  }
  const tied = versions.filter((v) => v.digest !== newest.digest && compareStamps(v.stamp, newest.stamp) === 0).map((v) => v.instance);
  if (tied.length) return queue(`newest-wins: ${newest.instance} and ${tied.join(', ')} hold different rows with the same ${policy.column} (${String(newest.stamp)})`);
  const why = `newest-wins: ${newest.instance} has the newest ${policy.column} (${String(newest.stamp)})`;
  if (newest.instance === source.instance || newest.digest === source.digest) return { action: 'repair', winner: source.instance, writes: toTargets(), reason: why };
  // A target's copy wins: the source must change.
  if (ctx.mode === 'replication' && ctx.applyOn === 'replicas') return queue(`${why}: writing it needs the primary, which --apply-on replicas keeps untouched`);
  const writes: PlannedWrite[] = [{ instance: source.instance, op: 'write', logged: true }];
  // Through the primary, the change replicates to every replica; across regions the other site is written too.
  if (ctx.mode === 'cross') writes.push(...differing.filter((t) => t.digest !== newest.digest).map((t) => ({ instance: t.instance, op: 'write' as const, logged: true })));
  return { action: 'repair', winner: newest.instance, writes, reason: why };
}

/**
 * Order two timestamps as the newest-wins column holds them: DATETIME / TIMESTAMP text (read in
 * UTC on both sides, so text order is time order once the fractions are padded), or numbers (epoch
 * seconds, versions). undefined when they are not comparable.
 */
export function compareStamps(a: unknown, b: unknown): -1 | 0 | 1 | undefined {
  const asTime = (v: unknown) => (typeof v === 'string' && DATETIME.test(v) ? padFraction(v) : undefined);
  const ta = asTime(a);
  const tb = asTime(b);
  if (ta !== undefined && tb !== undefined) return ta < tb ? -1 : ta > tb ? 1 : 0;
  const asNumber = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : typeof v === 'string' && NUMBER.test(v) ? Number(v) : undefined);
  const na = asNumber(a);
  const nb = asNumber(b);
  if (na === undefined || nb === undefined) return undefined;
  // Integers beyond 2^53 (BIGINT text) compare exactly as integers.
  if (typeof a === 'string' && typeof b === 'string' && INTEGER.test(a) && INTEGER.test(b)) {
    const ba = BigInt(a);
    const bb = BigInt(b);
    return ba < bb ? -1 : ba > bb ? 1 : 0;
  }
  return na < nb ? -1 : na > nb ? 1 : 0;
}

const DATETIME = /^\d{4}-\d{2}-\d{2}( \d{2}:\d{2}:\d{2}(\.\d{1,6})?)?$/;
const NUMBER = /^-?\d{1,30}(\.\d{1,30})?$/;
const INTEGER = /^-?\d{1,30}$/;

function padFraction(v: string): string {
  const [whole, fraction = ''] = v.split('.');
  return `${whole!.padEnd(19, ' ')}.${fraction.padEnd(6, '0')}`;
}

// ---------------------------------------------------------------------------------------------
// Progress and the report
// ---------------------------------------------------------------------------------------------

/** Where a table's walk stands: the next chunk starts after `lower`. */
export interface TableCursor {
  index: number;
  lower: KeyTuple | null;
  sizer: ChunkSizer;
}

export type DifferenceCounts = Record<DiffKind, number>;

/** What a run found in one table: the per-table line of failover_log and of the report. */
export interface TableReport {
  table: string;
  /** The key rows are named by (primary key, or a unique NOT NULL key); empty when unverifiable. */
  keyColumns: string[];
  /** Why the table cannot be compared row by row (no primary key or unique NOT NULL key, missing on a side, other columns). */
  unverifiable?: string;
  done: boolean;
  cursor: TableCursor;
  chunks: number;
  /** Rows of the source compared (each copy is compared with them). */
  rowsCompared: number;
  /** Chunks whose digests differed on some copy (before the re-check). */
  differingChunks: number;
  /** Confirmed differences per copy. */
  differences: Record<string, DifferenceCounts>;
  /** The first confirmed differences, with their chunk bounds (the full list is in the control database). */
  examples: RowDifference[];
}

/** At most this many differences of a table travel in the workflow's state and history. */
export const EXAMPLES_PER_TABLE = 20;

export function emptyTableReport(table: string, keyColumns: string[], sizer: ChunkSizer, unverifiable?: string): TableReport {
  return {
    table,
    keyColumns,
    ...(unverifiable ? { unverifiable } : {}),
    done: Boolean(unverifiable),
    cursor: { index: 0, lower: null, sizer },
    chunks: 0,
    rowsCompared: 0,
    differingChunks: 0,
    differences: {},
    examples: [],
  };
}

/** One chunk as the batch activity reports it. */
export interface ChunkOutcome {
  bounds: ChunkBounds;
  sourceRows: number;
  /** Copies whose digest differed at the compared position. */
  differingOn: string[];
  differences: RowDifference[];
}

/** The table's report after a batch of chunks, ending at `cursor` (`done` when the last chunk was open-ended). */
export function addChunks(r: TableReport, chunks: ChunkOutcome[], cursor: TableCursor, done: boolean): TableReport {
  const out: TableReport = { ...r, cursor, done, differences: { ...r.differences }, examples: [...r.examples] };
  for (const c of chunks) {
    if (c.bounds.index < r.cursor.index) continue; // already counted (a retried batch reports from its start)
    out.chunks++;
    out.rowsCompared += c.sourceRows;
    if (c.differingOn.length) out.differingChunks++;
    for (const d of c.differences) {
      const counts = (out.differences[d.instance] ??= { missing: 0, extra: 0, changed: 0 });
      counts[d.kind]++;
      if (out.examples.length < EXAMPLES_PER_TABLE) out.examples.push(d);
    }
  }
  return out;
}

export function differenceTotal(r: Pick<TableReport, 'differences'>): number {
  return Object.values(r.differences).reduce((n, c) => n + c.missing + c.extra + c.changed, 0);
}

/** `3 changed, 1 missing, 1 extra on orders-b` for a table's line. */
export function describeDifferences(r: Pick<TableReport, 'differences'>): string {
  const parts = Object.entries(r.differences)
    .filter(([, c]) => c.missing + c.extra + c.changed)
    .map(([instance, c]) => `${(['changed', 'missing', 'extra'] as const).filter((k) => c[k]).map((k) => `${c[k]} ${k}`).join(', ')} on ${instance}`);
  return parts.length ? parts.join('; ') : 'no differences';
}

// ---------------------------------------------------------------------------------------------
// Input bounds (the CLI's and the workflow's own check)
// ---------------------------------------------------------------------------------------------

/** What the runbook takes besides who and why; bounded at the CLI and again by the workflow. */
export interface ConsistencyOptions {
  replicas?: string[];
  between?: { source: string; target: string };
  schema?: string;
  table?: string;
  chunkRows?: number;
  chunkSeconds?: number;
  repair?: boolean;
  policy?: string;
  applyOn?: 'auto' | 'replicas';
  maxThreadsRunning?: number;
  maxRepairRows?: number;
  batchChunks?: number;
  batchesPerRun?: number;
}

export const CONSISTENCY_LIMITS = {
  replicas: 64,
  chunkSeconds: { min: 0.05, max: 60 },
  maxThreadsRunning: 100_000,
  maxRepairRows: 10_000_000,
  batchChunks: 10_000,
  batchesPerRun: 10_000,
} as const;

const IDENTIFIER = /^[A-Za-z0-9_$]{1,64}$/;
const INSTANCE_REF = /^([a-z][a-z0-9_-]{0,62}\/)?[a-z][a-z0-9_-]{0,62}$/;

/** Every problem with the options, one line each (empty: fine). */
export function consistencyOptionProblems(o: ConsistencyOptions): string[] {
  const p: string[] = [];
  const int = (field: string, v: unknown, min: number, max: number) => {
    if (v !== undefined && (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max)) p.push(`${field} must be a whole number from ${min} to ${max}, got ${JSON.stringify(v)}`);
  };
  if (o.replicas !== undefined) {
    if (!Array.isArray(o.replicas) || o.replicas.length > CONSISTENCY_LIMITS.replicas) p.push(`replicas must be a list of at most ${CONSISTENCY_LIMITS.replicas} instance names`);
    else for (const r of o.replicas) if (typeof r !== 'string' || !INSTANCE_REF.test(r) || r.includes('/')) p.push(`replica ${JSON.stringify(r)} is not an instance name`);
  }
  if (o.between !== undefined) {
    const b = o.between as Partial<{ source: unknown; target: unknown }> | null;
    for (const side of ['source', 'target'] as const) {
      const v = b?.[side];
      if (typeof v !== 'string' || !INSTANCE_REF.test(v)) p.push(`the ${side} instance must be a name or cluster/name, got ${JSON.stringify(v ?? null)}`);
    }
    if (o.replicas?.length) p.push('compare either replicas with their primary or two instances across regions, not both');
    if (o.applyOn === 'replicas') p.push('--apply-on replicas is for replicas of one primary; across regions each site is written as a logged change');
  }
  if (o.schema !== undefined && (typeof o.schema !== 'string' || !IDENTIFIER.test(o.schema))) p.push(`schema must be a database name (letters, digits, "_" or "$"), got ${JSON.stringify(o.schema)}`);
  if (o.table !== undefined) {
    const parts = typeof o.table === 'string' ? o.table.split('.') : [];
    if (!parts.length || parts.length > 2 || !parts.every((x) => IDENTIFIER.test(x))) p.push(`table must be db.table or a table name, got ${JSON.stringify(o.table)}`);
    else if (parts.length === 1 && o.schema === undefined) p.push('a table name alone needs its schema (--schema), or give db.table');
    else if (parts.length === 2 && o.schema !== undefined && o.schema !== parts[0]) p.push(`table ${o.table} is not in schema ${o.schema}`);
  }
  int('chunkRows', o.chunkRows, 1, CHUNK_LIMITS.maxRows);
  if (o.chunkSeconds !== undefined && (typeof o.chunkSeconds !== 'number' || !(o.chunkSeconds >= CONSISTENCY_LIMITS.chunkSeconds.min && o.chunkSeconds <= CONSISTENCY_LIMITS.chunkSeconds.max))) {
    p.push(`chunkSeconds must be from ${CONSISTENCY_LIMITS.chunkSeconds.min} to ${CONSISTENCY_LIMITS.chunkSeconds.max}, got ${JSON.stringify(o.chunkSeconds)}`);
  }
  if (o.policy !== undefined) {
    const parsed = parsePolicy(o.policy);
    if ('problem' in parsed) p.push(parsed.problem);
    if (!o.repair) p.push('a policy goes with --repair');
  }
  if (o.applyOn !== undefined && o.applyOn !== 'auto' && o.applyOn !== 'replicas') p.push(`applyOn must be auto or replicas, got ${JSON.stringify(o.applyOn)}`);
  if (o.applyOn !== undefined && !o.repair) p.push('--apply-on goes with --repair');
  int('maxThreadsRunning', o.maxThreadsRunning, 1, CONSISTENCY_LIMITS.maxThreadsRunning);
  int('maxRepairRows', o.maxRepairRows, 1, CONSISTENCY_LIMITS.maxRepairRows);
  int('batchChunks', o.batchChunks, 1, CONSISTENCY_LIMITS.batchChunks);
  int('batchesPerRun', o.batchesPerRun, 1, CONSISTENCY_LIMITS.batchesPerRun);
  return p;
}
