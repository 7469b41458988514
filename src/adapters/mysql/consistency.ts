/**
 * SQL of the consistency runbook against the managed instances: reading every copy of a table at
 * the SAME position, comparing a chunk, naming the rows that differ (with their images), and the
 * two ways a repair writes.
 *
 * One position (replication). Production never stands still, so a copy is only compared with the
 * primary as both were after the same transaction. For each chunk: every compared replica's SQL
 * thread is stopped (it now lags the primary, so it cannot pass what the primary is about to
 * show); the primary opens a consistent snapshot and reads its exact binlog position, file:offset
 * and GTID position P (the position InnoDB's snapshot corresponds to, as `mariadb-dump
 * --single-transaction --gtid` finds it); each replica of the primary is started `SQL_THREAD
 * UNTIL` that file:offset, and a replica of a replica, once its source has reached P, `UNTIL` its
 * source's binlog end (a middle replica logs what it applies, ROW format included); each is waited
 * for (`MASTER_GTID_WAIT`) and checked to be exactly at P. The IO threads keep running: stopping
 * them would make each chunk reconnect and the source scan its binlog for the GTID to resume from
 * (on MariaDB 10.11 that grows with the binlog file: 100+ ms a chunk, seen). A replica whose
 * source is not held by this check cannot use its source's coordinates: it is held the slow way,
 * `START SLAVE UNTIL master_gtid_pos = P` (both threads, as MariaDB requires). Each opens its own
 * consistent snapshot while held at P, and its SQL thread is started again at once. The chunk is
 * then read in those snapshots, all at P, while the replicas carry on: a replica is held for the
 * time it takes to reach P and open a snapshot (tens of ms), not for the time of a checksum.
 *
 * Two sites (cross-region): no replication path joins them, so there is no common position: each
 * is read in its own consistent snapshot, and the result says it is of two points in time.
 *
 * Writes. A held replica's copy is written with sql_log_bin=0 while its replication is held at
 * the primary's snapshot position: no GTID of its own, no race with its SQL thread, and the
 * primary's rows are read in that snapshot. A write that must replicate (the primary's own row
 * changes, or a site's across regions) is an ordinary logged change: ROW events carry the full
 * row to every replica, at every level. Both lock the rows they write, write only while the
 * copy is still what the plan saw (compare-and-set by row digest), and read the result back
 * before they commit: exactly the winner's rows, or nothing.
 *
 * Why a repair never re-sends the primary's unchanged row "through the primary": in ROW format an
 * UPDATE that changes nothing logs nothing, and a statement-format REPLACE (pt-table-sync's way)
 * is re-logged as ROW events by a ROW-format middle replica, which then fail on the next level
 * where the row is missing (seen: error 1032 on a third-level replica). Each replica's copy is
 * therefore repaired on that replica.
 *
 * MariaDB only: MySQL has no binlog position of a consistent snapshot and no UNTIL a GTID position.
 */
import type { RunbookConfig } from '../../config/load';
import { checksumChunk, describeTable, diffChunkRows, rowDigests, rowImages, writableColumns } from './checksum';
import { columnDifferences, keysWhere, keyText, qualifiedName, quoteIdent, reviveTuple, showTuple, type TableShape } from '../../core/rowDigest';
import { connect, instanceEndpoint, query, type Conn } from './connect';
import { compareMariaGtid, parseMariaGtidList } from '../../core/gtid';
import { type Dialect, type ReplicaStatus } from './dialect';
import { dialectOf } from './probe';

/** A broken precondition: nothing is compared or written (the activity turns it into a non-retryable failure). */
export class Refusal extends Error {
  constructor(message: string, readonly kind = 'Refused') {
    super(message);
  }
}

/** One side of a comparison: a read session (its snapshots) and, on a replica, a second one that steers replication. */
export interface CopySession {
  cluster: string;
  instance: string;
  /** The instance it replicates from (replication mode). */
  upstream?: string;
  conn: Conn;
  control?: Conn;
  dialect: Dialect;
}

export interface CopySessions {
  source: CopySession;
  targets: CopySession[];
  close(): void;
}

/**
 * Sessions on the source and each target, in UTC (TIMESTAMP images and newest-wins stamps compare
 * and are written back as the same instant), REPEATABLE READ (snapshots). `control` adds a second
 * session on each target to stop and start its replication: a START SLAVE commits the session's
 * transaction, which would end the snapshot.
 */
export async function openCopySessions(
  config: RunbookConfig,
  source: { cluster: string; instance: string },
  targets: { cluster: string; instance: string; upstream?: string }[],
  o: { control: boolean; timeoutMs: number },
): Promise<CopySessions> {
  const opened: Conn[] = [];
  const open = async (side: { cluster: string; instance: string; upstream?: string }, withControl: boolean): Promise<CopySession> => {
    const session = async () => {
      const conn = await connect(instanceEndpoint(config, side.cluster, side.instance), { timeoutMs: o.timeoutMs });
      opened.push(conn);
      await query(conn, "SET SESSION time_zone = '+00:00'");
      await query(conn, 'SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ');
      return conn;
    };
    const conn = await session();
    const { dialect } = await dialectOf(conn);
    if (dialect.flavor !== 'mariadb') throw new Refusal(`${side.instance} is ${dialect.flavor}: comparing at one position needs MariaDB (the binlog position of a consistent snapshot, START SLAVE UNTIL master_gtid_pos)`, 'NotMariaDB');
    return { ...side, conn, dialect, ...(withControl ? { control: await session() } : {}) };
  };
  try {
    const s = await open(source, false);
    const t = await Promise.all(targets.map((x) => open(x, o.control)));
    return { source: s, targets: t, close: () => opened.forEach((c) => c.destroy()) };
  } catch (err) {
    opened.forEach((c) => c.destroy());
    throw err;
  }
}

/** Open a consistent snapshot on `s`: the GTID position it is at, and the binlog file:offset that is. */
export async function openSnapshot(s: Pick<CopySession, 'conn' | 'dialect' | 'instance'>): Promise<{ position: string; file: string; offset: number }> {
  await query(s.conn, 'ROLLBACK');
  await query(s.conn, 'START TRANSACTION WITH CONSISTENT SNAPSHOT');
  const at = s.dialect.parseSnapshotBinlog(await query<Record<string, unknown>[]>(s.conn, s.dialect.snapshotBinlogQuery()));
  if (!at) throw new Refusal(`${s.instance} reports no binlog snapshot position (binary log off?): it cannot be read at a known position`, 'NoSnapshotPosition');
  const q = s.dialect.binlogGtidPosition(at.file, at.position);
  const [row] = await query<{ p: string | null }[]>(s.conn, q.sql, q.params);
  if (row?.p === null || row?.p === undefined) throw new Refusal(`${s.instance} cannot tell the GTID position of ${at.file}:${at.position}`, 'NoSnapshotPosition');
  return { position: String(row.p), file: at.file, offset: at.position };
}

export async function endSnapshots(s: CopySessions): Promise<void> {
  await Promise.all([s.source, ...s.targets].map((x) => query(x.conn, 'ROLLBACK').catch(() => undefined)));
}

export interface HoldHooks {
  /** Before a replica's replication is stopped: record the hold (throw to refuse). */
  beforeHold(instances: string[]): Promise<void>;
  /** Once replication runs again on those replicas. */
  afterRelease(instances: string[]): Promise<void>;
  heartbeat(detail: Record<string, unknown>): void;
}

const replicaStatus = async (s: CopySession): Promise<ReplicaStatus | null> =>
  s.dialect.parseReplicaStatus(await query<Record<string, unknown>[]>(s.control ?? s.conn, s.dialect.replicaStatusQuery()));

const slavePos = async (conn: Conn) => String((await query<{ p: string }[]>(conn, 'SELECT @@GLOBAL.gtid_slave_pos AS p'))[0]!.p);

/** Whether `at` is exactly `position` in each of its domains (not short of it, not past it). */
function exactlyAt(at: string, position: string): { ok: boolean; ahead: boolean } {
  const want = parseMariaGtidList(position);
  const have = parseMariaGtidList(at);
  const seq = (d: number) => have.find((g) => g.domain === d)?.seq ?? 0;
  const ahead = compareMariaGtid(at, position).aAhead.length > 0;
  return { ok: !ahead && want.every((w) => seq(w.domain) === w.seq), ahead };
}

/**
 * Run `during` with the source in a consistent snapshot at a GTID position P and every target's
 * replication held right after P (see the top of this file); replication runs again on every
 * target when this returns or throws (a process that dies meanwhile leaves the hold recorded by
 * `beforeHold` for a retry to undo). A target that is not replicating is refused untouched.
 */
export async function atOnePosition<T>(s: CopySessions, hooks: HoldHooks, during: (position: string) => Promise<T>, o: { catchUpTimeoutMs: number }): Promise<{ position: string; heldMs: Record<string, number>; result: T }> {
  for (const t of s.targets) {
    const r = await replicaStatus(t);
    if (!r) throw new Refusal(`${t.instance} replicates from nobody: it cannot be compared at the primary's position`, 'NotReplicating');
    if (r.sqlRunning !== 'Yes' || r.ioRunning === 'No' || r.lastSqlErrno || r.lastIoErrno) {
      throw new Refusal(`${t.instance}'s replication is not running (IO ${r.ioRunning}, SQL ${r.sqlRunning}${r.lastSqlError || r.lastIoError ? `: ${r.lastSqlError || r.lastIoError}` : ''}): fix it first, a stopped replica cannot be held at a position`, 'NotReplicating');
    }
  }
  const names = s.targets.map((t) => t.instance);
  // Held by its SQL thread alone when its source's coordinates for P are known: the primary's, or a held replica's.
  const sqlOnly = (t: CopySession) => t.upstream === s.source.instance || s.targets.some((x) => x.instance === t.upstream);
  await hooks.beforeHold(names);
  const heldAt = new Map<string, number>();
  const heldMs: Record<string, number> = {};
  try {
    await Promise.all(s.targets.map(async (t) => {
      heldAt.set(t.instance, Date.now());
      await query(t.control!, sqlOnly(t) ? t.dialect.stopReplicaSqlThread() : t.dialect.stopReplica());
    }));
    const snap = await openSnapshot(s.source);
    const { position } = snap;
    hooks.heartbeat({ phase: 'replicas held', position, held: names });
    // Level by level: a replica of a replica stops where its source's binlog ends once that source is at P.
    const reached = new Map<string, Promise<void>>();
    const reach = (t: CopySession): Promise<void> => {
      let p = reached.get(t.instance);
      if (!p) {
        p = (async () => {
          let until;
          if (!sqlOnly(t)) until = t.dialect.startReplicaUntil(position);
          else if (t.upstream === s.source.instance) until = t.dialect.startReplicaSqlThreadUntil(snap.file, snap.offset);
          else {
            const up = s.targets.find((x) => x.instance === t.upstream)!;
            await reach(up);
            const end = up.dialect.parseBinlogEnd(await query<Record<string, unknown>[]>(up.control!, up.dialect.binlogEndQuery()));
            if (!end) throw new Refusal(`${up.instance} has no binlog: ${t.instance}, its replica, cannot be held at a position through it`, 'NoBinlog');
            until = t.dialect.startReplicaSqlThreadUntil(end.file, end.position);
          }
          await query(t.control!, until.sql, until.params);
          await waitExactlyAt(t, position, o.catchUpTimeoutMs);
        })();
        reached.set(t.instance, p);
      }
      return p;
    };
    await Promise.all(s.targets.map(reach));
    const result = await during(position);
    return { position, heldMs, result };
  } finally {
    await Promise.all(s.targets.map(async (t) => {
      if (!heldAt.has(t.instance)) return;
      await release(t, sqlOnly(t));
      heldMs[t.instance] = Date.now() - heldAt.get(t.instance)!;
    }));
    await hooks.afterRelease([...heldAt.keys()]);
  }
}

/**
 * Replication running again, without its UNTIL: a SQL thread that reached its UNTIL position may
 * still show as running until the next event arrives, and then stop; a START on it would be a
 * no-op. So it is stopped (the UNTIL goes with it) and started.
 */
async function release(t: CopySession, sqlOnly: boolean): Promise<void> {
  await query(t.control!, sqlOnly ? t.dialect.stopReplicaSqlThread() : t.dialect.stopReplica());
  await query(t.control!, sqlOnly ? t.dialect.startReplicaSqlThread() : t.dialect.startReplica());
}

/**
 * A replica a run left held (its process died): its replication started again, whichever threads
 * are stopped, without any UNTIL. Nothing is done to a replica that replicates normally.
 */
export async function releaseHeldReplica(conn: Conn): Promise<boolean> {
  const { dialect } = await dialectOf(conn);
  const rows = await query<Record<string, unknown>[]>(conn, dialect.replicaStatusQuery());
  const r = dialect.parseReplicaStatus(rows);
  if (!r) return false;
  const untilSet = String(rows[0]?.Until_Condition ?? 'None') !== 'None';
  if (r.sqlRunning === 'Yes' && r.ioRunning !== 'No' && !untilSet) return false;
  await query(conn, dialect.stopReplica());
  await query(conn, dialect.startReplica());
  return true;
}

/**
 * Wait until a replica started UNTIL `position` has applied exactly that: `MASTER_GTID_WAIT` in
 * one-second slices with a check of its threads; past it is refused (it has transactions the
 * primary lacks). The UNTIL keeps it there: it applies nothing beyond, running or not.
 */
async function waitExactlyAt(t: CopySession, position: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const wait = t.dialect.waitForGtid(position, 1);
    const [row] = await query<Record<string, unknown>[]>(t.control!, wait.sql, wait.params, 10_000);
    if (wait.interpret(row!) === 'reached') break;
    const r = await replicaStatus(t);
    if (r?.lastSqlErrno) throw new Refusal(`${t.instance} stopped with an error while catching up to ${position}: ${r.lastSqlError}`, 'ReplicationBroken');
    if (r?.lastIoErrno && r.ioRunning === 'No') throw new Error(`${t.instance} cannot read its source's binlog while catching up to ${position}: ${r.lastIoError}`);
    if (Date.now() > deadline) throw new Error(`${t.instance} did not reach ${position} within ${Math.round(timeoutMs / 1000)} s (at ${await slavePos(t.control!)})`);
  }
  const at = await slavePos(t.control!);
  const exact = exactlyAt(at, position);
  if (exact.ahead) throw new Refusal(`${t.instance} is at ${at}, past the primary's ${position}: it has transactions the primary lacks`, 'ErrantTransactions');
  if (!exact.ok) throw new Error(`${t.instance} stopped at ${at}, not at ${position}`);
}

/** Each target opens its consistent snapshot, held at `position` (checked before and after). */
export async function snapshotTargetsAt(s: CopySessions, position: string): Promise<void> {
  await Promise.all(s.targets.map(async (t) => {
    await query(t.conn, 'ROLLBACK');
    await query(t.conn, 'START TRANSACTION WITH CONSISTENT SNAPSHOT');
    // Replication is stopped: nothing commits between the check and the snapshot's read view.
    const at = await slavePos(t.control!);
    if (!exactlyAt(at, position).ok) throw new Error(`${t.instance} moved to ${at} while held at ${position}`);
  }));
}

/** Across regions: every side in its own consistent snapshot, each at its own position. */
export async function snapshotsEach(s: CopySessions): Promise<Record<string, string>> {
  const positions: Record<string, string> = {};
  for (const side of [s.source, ...s.targets]) positions[side.instance] = (await openSnapshot(side)).position;
  return positions;
}

// ---------------------------------------------------------------------------------------------
// Load and lag
// ---------------------------------------------------------------------------------------------

/** Why a chunk should wait now (a replica lags more than allowed, the primary is busy), or nothing. */
export async function throttleReasons(s: CopySessions, o: { maxLagSeconds: number; maxThreadsRunning: number; replicas: boolean }): Promise<string[]> {
  const reasons: string[] = [];
  const rows = await query<{ Value: string }[]>(s.source.conn, s.source.dialect.threadsRunningQuery());
  const running = Number(rows[0]?.Value ?? 0);
  // This session's own statement is one of them.
  if (running - 1 > o.maxThreadsRunning) reasons.push(`${s.source.instance} has ${running} threads running (limit ${o.maxThreadsRunning})`);
  if (o.replicas) {
    for (const t of s.targets) {
      const r = await replicaStatus(t);
      if (r && r.lagSeconds !== null && r.lagSeconds > o.maxLagSeconds) reasons.push(`${t.instance} lags ${r.lagSeconds} s (limit ${o.maxLagSeconds})`);
    }
  }
  return reasons;
}

// ---------------------------------------------------------------------------------------------
// Tables
// ---------------------------------------------------------------------------------------------

export interface TableToCompare {
  table: string;
  shape?: TableShape;
  /** Why the table cannot be compared row by row. */
  unverifiable?: string;
}

/** Base tables of the source (in `schema`, or `table` alone), system schemas aside, each with its key or why it has none. */
export async function tablesToCompare(conn: Conn, o: { schema?: string; table?: string }): Promise<TableToCompare[]> {
  const rows = await query<{ s: string; t: string }[]>(
    conn,
    `SELECT TABLE_SCHEMA AS s, TABLE_NAME AS t FROM information_schema.TABLES
     WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys')
     ${o.schema ? 'AND TABLE_SCHEMA = ?' : ''} ${o.table ? 'AND TABLE_NAME = ?' : ''} ORDER BY TABLE_SCHEMA, TABLE_NAME`,
    [...(o.schema ? [o.schema] : []), ...(o.table ? [o.table] : [])],
  );
  const out: TableToCompare[] = [];
  for (const r of rows) {
    const table = `${r.s}.${r.t}`;
    const shape = await describeTable(conn, table, 60_000, { uniqueKey: true });
    if (!shape) continue; // dropped meanwhile
    out.push(shape.primaryKey.length ? { table, shape } : { table, shape, unverifiable: 'no primary key or unique NOT NULL key: its rows have no identity to compare by (one extra duplicate row would be invisible to a key, and a full-table sum cannot say which row differs)' });
  }
  return out;
}

/** Why a target's copy of the table is not comparable with the source's (missing, other columns, other key). */
export async function shapeMismatch(source: TableShape, target: Conn, instance: string): Promise<string | undefined> {
  const t = await describeTable(target, `${source.db}.${source.name}`, 60_000, { uniqueKey: true });
  if (!t) return `${source.db}.${source.name} does not exist on ${instance}`;
  const cols = (x: TableShape) => x.columns.map((c) => `${c.name} ${c.dataType}`).join(', ');
  if (cols(t) !== cols(source)) return `${instance} has other columns (${cols(t)}) than the source (${cols(source)})`;
  if (t.primaryKey.join(',') !== source.primaryKey.join(',')) return `${instance} is keyed by (${t.primaryKey.join(', ') || 'nothing'}), the source by (${source.primaryKey.join(', ')})`;
  return undefined;
}

/** What stops a table from being repaired automatically (triggers would fire, foreign keys would cascade), or nothing. */
export async function repairObstacle(conn: Conn, shape: TableShape): Promise<string | undefined> {
  const [t] = await query<{ n: string }[]>(conn, 'SELECT COUNT(*) AS n FROM information_schema.TRIGGERS WHERE EVENT_OBJECT_SCHEMA = ? AND EVENT_OBJECT_TABLE = ?', [shape.db, shape.name]);
  if (Number(t!.n)) return `${shape.db}.${shape.name} has triggers: a repair's writes would fire them`;
  const [f] = await query<{ n: string }[]>(conn, 'SELECT COUNT(*) AS n FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE UNIQUE_CONSTRAINT_SCHEMA = ? AND REFERENCED_TABLE_NAME = ?', [shape.db, shape.name]);
  if (Number(f!.n)) return `${shape.db}.${shape.name} is referenced by foreign keys: rewriting its rows could cascade to other tables`;
  if (shape.columns.some((c) => ['geometry', 'point', 'linestring', 'polygon', 'multipoint', 'multilinestring', 'multipolygon', 'geometrycollection'].includes(c.dataType))) {
    return `${shape.db}.${shape.name} has spatial columns: their values are not written back exactly`;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Comparing a chunk
// ---------------------------------------------------------------------------------------------

export interface ChunkSums {
  source: { rows: number; digest: string; ms: number };
  targets: { instance: string; rows: number; digest: string; ms: number; equal: boolean }[];
}

/** The chunk's row count and digest on every side, read in parallel in each side's snapshot. */
export async function sumChunk(s: CopySessions, shape: TableShape, lower: unknown[] | null, upper: unknown[] | null, timeoutMs: number): Promise<ChunkSums> {
  const timed = async (conn: Conn) => {
    const started = Date.now();
    const sum = await checksumChunk(conn, shape, lower, upper, timeoutMs);
    return { ...sum, ms: Date.now() - started };
  };
  const [source, ...targets] = await Promise.all([s.source, ...s.targets].map((x) => timed(x.conn)));
  return {
    source: source!,
    targets: targets.map((t, i) => ({ instance: s.targets[i]!.instance, ...t, equal: t.rows === source!.rows && t.digest === source!.digest })),
  };
}

export interface FoundDifference {
  instance: string;
  key: unknown[];
  keyText: string;
  kind: 'missing' | 'extra' | 'changed';
  columns: string[];
  sourceDigest: string | null;
  targetDigest: string | null;
  sourceImage: Record<string, unknown> | null;
  targetImage: Record<string, unknown> | null;
}

/** The rows of a chunk that differ between the source and `target`, in their snapshots, with both images and the differing columns. */
export async function diffChunk(s: CopySessions, target: CopySession, shape: TableShape, lower: unknown[] | null, upper: unknown[] | null, timeoutMs: number): Promise<FoundDifference[]> {
  const rd = await diffChunkRows(s.source.conn, target.conn, shape, lower, upper, timeoutMs);
  const keys = [...rd.onlyA, ...rd.onlyB, ...rd.changed];
  if (!keys.length) return [];
  const [srcImages, tgtImages, srcDigests, tgtDigests] = await Promise.all([
    rowImages(s.source.conn, shape, keys, { timeoutMs }),
    rowImages(target.conn, shape, keys, { timeoutMs }),
    rowDigests(s.source.conn, shape, keys, { timeoutMs }),
    rowDigests(target.conn, shape, keys, { timeoutMs }),
  ]);
  const entry = (key: unknown[], kind: FoundDifference['kind']): FoundDifference => {
    const k = keyText(key);
    const a = srcImages.get(k) ?? null;
    const b = tgtImages.get(k) ?? null;
    return {
      instance: target.instance, key, keyText: k, kind,
      columns: kind === 'changed' && a && b ? columnDifferences(shape, a, b) : [],
      sourceDigest: srcDigests.get(k) ?? null, targetDigest: tgtDigests.get(k) ?? null,
      sourceImage: a && imageForAudit(a), targetImage: b && imageForAudit(b),
    };
  };
  return [...rd.onlyA.map((k) => entry(k, 'missing')), ...rd.onlyB.map((k) => entry(k, 'extra')), ...rd.changed.map((k) => entry(k, 'changed'))];
}

/** Largest image (as JSON) kept for review and audit; a larger row is not repaired automatically. */
export const MAX_IMAGE_CHARS = 1024 * 1024;

/** A row image people can read in JSON: bytes as `{hex}`, everything else as the server returned it. */
export function imageForAudit(row: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [c, v] of Object.entries(row)) out[c] = Buffer.isBuffer(v) ? { hex: v.toString('hex') } : v;
  const length = JSON.stringify(out).length;
  return length > MAX_IMAGE_CHARS ? { imageTooLarge: length } : out;
}

// ---------------------------------------------------------------------------------------------
// Repair writes
// ---------------------------------------------------------------------------------------------

/** One row a repair writes on one copy, as the approved plan has it. */
export interface PlannedRow {
  key: unknown[];
  keyHash: string;
  op: 'write' | 'delete';
  /** The winner's row digest in the plan (null: the winner lacks the row, so it is deleted). */
  winnerDigest: string | null;
  /** The written copy's digest in the plan (null: it lacks the row). */
  currentDigest: string | null;
}

export interface RepairedRow {
  row: PlannedRow;
  before: Record<string, unknown> | null;
  after: Record<string, unknown> | null;
}

export interface WriteOutcome {
  written: RepairedRow[];
  /** Already as the winner's (an earlier attempt wrote them). */
  already: PlannedRow[];
  /** Not written: the winner or this copy changed since the plan (a re-check says where they stand). */
  left: { row: PlannedRow; why: string }[];
}

/**
 * Write `rows` on `target` from `winner`'s rows, in one transaction: lock them, keep only those
 * still as the plan saw them, write, read back (exactly the winner's digests, or roll back), call
 * `beforeCommit` with what is about to be committed (the audit), commit. `logged: false` writes
 * with sql_log_bin=0 (a held replica), `true` as an ordinary replicated change.
 */
export async function writeRows(target: Conn, winner: Conn, shape: TableShape, rows: PlannedRow[], o: { logged: boolean; beforeCommit: (written: RepairedRow[]) => Promise<void>; timeoutMs: number }): Promise<WriteOutcome> {
  const out: WriteOutcome = { written: [], already: [], left: [] };
  if (!rows.length) return out;
  const keys = rows.map((r) => reviveTuple(r.key));
  const columns = await writableColumns(target, shape, o.timeoutMs);
  await query(target, `SET SESSION sql_log_bin = ${o.logged ? 1 : 0}, SESSION foreign_key_checks = 0`);
  await query(target, 'START TRANSACTION');
  try {
    const [winnerImages, winnerDigests] = await Promise.all([rowImages(winner, shape, keys, { timeoutMs: o.timeoutMs }), rowDigests(winner, shape, keys, { timeoutMs: o.timeoutMs })]);
    const before = await rowImages(target, shape, keys, { forUpdate: true, timeoutMs: o.timeoutMs });
    const current = await rowDigests(target, shape, keys, { timeoutMs: o.timeoutMs });
    const update: RepairedRow[] = [];
    const insert: RepairedRow[] = [];
    const remove: RepairedRow[] = [];
    for (const row of rows) {
      const k = keyText(reviveTuple(row.key));
      const now = current.get(k) ?? null;
      const wants = winnerDigests.get(k) ?? null;
      if (now === wants && (wants === null) === (row.op === 'delete')) out.already.push(row);
      else if (wants !== row.winnerDigest) out.left.push({ row, why: `the winner's row changed since the plan (${wants === null ? 'now absent' : 'other values'})` });
      else if (now !== row.currentDigest) out.left.push({ row, why: `this copy changed since the plan (${now === null ? 'now absent' : 'other values'})` });
      else {
        const entry: RepairedRow = { row, before: before.get(k) ?? null, after: winnerImages.get(k) ?? null };
        (row.op === 'delete' ? remove : now === null ? insert : update).push(entry);
      }
    }
    const pk = shape.primaryKey;
    const set = columns.filter((c) => !pk.includes(c));
    for (const r of update) {
      if (!set.length) continue; // every column is the key: equal keys are equal rows
      await query(target, `UPDATE ${qualifiedName(shape)} SET ${set.map((c) => `${quoteIdent(c)} = ?`).join(', ')} WHERE ${keysWhere(pk, 1)}`, [...set.map((c) => r.after![c]), ...reviveTuple(r.row.key)], o.timeoutMs);
    }
    for (const r of insert) {
      await query(target, `INSERT INTO ${qualifiedName(shape)} (${columns.map(quoteIdent).join(', ')}) VALUES (${columns.map(() => '?').join(', ')})`, columns.map((c) => r.after![c]), o.timeoutMs);
    }
    if (remove.length) await query(target, `DELETE FROM ${qualifiedName(shape)} WHERE ${keysWhere(pk, remove.length)}`, remove.flatMap((r) => reviveTuple(r.row.key)), o.timeoutMs);
    const written = [...update, ...insert, ...remove];
    if (written.length) {
      const after = await rowDigests(target, shape, written.map((r) => reviveTuple(r.row.key)), { timeoutMs: o.timeoutMs });
      const wrong = written.filter((r) => (after.get(keyText(reviveTuple(r.row.key))) ?? null) !== r.row.winnerDigest);
      if (wrong.length) {
        throw new Refusal(`writing ${shape.db}.${shape.name} ${wrong.slice(0, 3).map((r) => showTuple(reviveTuple(r.row.key))).join(', ')} did not give the winner's rows (a value that does not survive the round trip?): rolled back`, 'RepairMismatch');
      }
      await o.beforeCommit(written.map((r) => ({ ...r, before: r.before && imageForAudit(r.before), after: r.after && imageForAudit(r.after) })));
    }
    await query(target, 'COMMIT');
    out.written = written;
    return out;
  } catch (err) {
    await query(target, 'ROLLBACK').catch(() => undefined);
    // The server refused a row (a constraint, a value out of range): trying again gives the same.
    const e = err as { sqlState?: string; fatal?: boolean; message: string };
    if (!(err instanceof Refusal) && typeof e.sqlState === 'string' && !e.fatal && !TRANSIENT_SQL_STATES.has(e.sqlState)) {
      throw new Refusal(`writing ${shape.db}.${shape.name} was refused by the server, rolled back: ${e.message}`, 'RepairRefusedByServer');
    }
    throw err;
  } finally {
    await query(target, 'SET SESSION sql_log_bin = 1, SESSION foreign_key_checks = 1').catch(() => undefined);
  }
}

/** Lock waits and deadlocks: another attempt may succeed. */
const TRANSIENT_SQL_STATES = new Set(['40001', 'HY000', '08S01']);

/** The keys (of `keys`) that `conn`'s copy lacks: a logged change to them would stop its replication. */
export async function keysMissingOn(conn: Conn, shape: TableShape, keys: unknown[][]): Promise<unknown[][]> {
  const digests = await rowDigests(conn, shape, keys.map(reviveTuple));
  return keys.filter((k) => (digests.get(keyText(reviveTuple(k))) ?? null) === null);
}
