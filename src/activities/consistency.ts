/**
 * Activities of the consistency runbook (src/workflows/consistency.ts): which copies and tables
 * are compared, a batch of chunks compared at one position each (stored as they are computed, so
 * a killed worker resumes after the last one stored), the repair plan under each table's policy,
 * the manual queue, the repair writes, the re-check, and the record in sync_status.
 *
 * Each checks state before it changes it and is safe to run twice: a batch resumes from the
 * chunks stored; a replica held by an attempt that died is found by its hold record and started
 * again before anything else; a repaired row already as the winner's is counted, not written again.
 */
import { createHash } from 'node:crypto';
import { Context, heartbeat, sleep } from '@temporalio/activity';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { getCluster, getInstance } from '../config/load';
import {
  chunksFrom,
  differencesOf,
  holdsOf,
  markRepairsApplied,
  queueConflicts,
  recordHold,
  recordRepairsPending,
  recordVerified,
  releaseHold,
  saveChunk,
  saveDecisions,
  saveDifferences,
  withControl,
  type CheckRef,
  type StoredChunk,
  type StoredDifference,
} from '../adapters/control/store';
import {
  confirmedDifferences,
  decideKey,
  parsePolicy,
  resize,
  type ChunkOutcome,
  type ChunkSizer,
  type KeyDecision,
  type RepairPolicy,
  type RowDifference,
  type TableCursor,
} from '../core/consistency';
import {
  atOnePosition,
  diffChunk,
  endSnapshots,
  keysMissingOn,
  openCopySessions,
  Refusal,
  releaseHeldReplica,
  repairObstacle,
  shapeMismatch,
  snapshotsEach,
  snapshotTargetsAt,
  sumChunk,
  tablesToCompare,
  throttleReasons,
  writeRows,
  type CopySessions,
  type FoundDifference,
  type HoldHooks,
  type PlannedRow,
} from '../adapters/mysql/consistency';
import { describeTable, nextBoundary } from '../adapters/mysql/checksum';
import { keyText, reviveTuple, showTuple, type TableShape } from '../core/rowDigest';
import { connect, instanceEndpoint, query } from '../adapters/mysql/connect';
import { probeInstance, probeTopology } from '../adapters/mysql/probe';
import type { Topology } from '../core/types';
import { runIsOver } from './audit';
import type { ActivityDeps } from './deps';

/** One copy: an instance of a cluster. */
export interface CopyRef {
  cluster: string;
  instance: string;
  region: string;
}

/** What a run compares: the source and the copies compared with it, and how. */
export interface ConsistencyScope extends CheckRef {
  cluster: string;
  /** `replication`: the source is the primary and each target replicates from it (at any depth); `cross`: two independent sites. */
  mode: 'replication' | 'cross';
  source: CopyRef;
  targets: CopyRef[];
  /** Each target's replication path from the source (`orders-a → orders-b → orders-c`). */
  paths?: Record<string, string>;
}

export interface TableListing {
  table: string;
  keyColumns: string[];
  unverifiable?: string;
}

export interface CompareInput {
  scope: ConsistencyScope;
  table: string;
  cursor: TableCursor;
  /** Stop the batch after this many chunks or this long (the workflow calls again). */
  maxChunks: number;
  maxMs: number;
  /** Time target of one chunk (ms). */
  chunkMs: number;
  maxLagSeconds: number;
  maxThreadsRunning: number;
}

export interface CompareResult {
  chunks: ChunkOutcome[];
  cursor: TableCursor;
  done: boolean;
  /** Why the walk waited (lag, load), with how long in total. */
  throttledMs: number;
  throttleReasons: string[];
}

export interface PlanInput {
  scope: ConsistencyScope;
  /** Each table's policy text (the command's or the config's); a table without one is not repaired. */
  policies: Record<string, string>;
  applyOn: 'auto' | 'replicas';
  /** Refuse a repair that writes more rows than this: that is a reseed, not a repair. */
  maxRows: number;
}

export interface TablePlan {
  table: string;
  policy: string;
  /** Rows repaired, and queued for a person, and why a table is not repaired at all. */
  repair: number;
  queue: number;
  writes: Record<string, { write: number; delete: number; logged: boolean }>;
  refused?: string;
}

export interface RepairPlan {
  tables: TablePlan[];
  /** Rows that will be written (over every copy). */
  rowsToWrite: number;
  queued: number;
  /** The plan refused as a whole (too many rows). */
  refused?: string;
  /** The first lines of the plan, one a row (the full list: `runbook consistency-report`). */
  lines: string[];
}

export interface RepairResult {
  table: string;
  written: number;
  already: number;
  left: { instance: string; key: string; why: string }[];
  byInstance: Record<string, number>;
}

export interface RecheckResult {
  table: string;
  chunks: number;
  differences: RowDifference[];
}

/** Lines of the plan the approval shows (the report command lists all). */
const PLAN_LINES = 50;
/** Rows locked and written per transaction (and, on a replica, per hold). */
const REPAIR_BATCH = 200;
const QUERY_TIMEOUT_MS = 120_000;

const refuse = (err: unknown): never => {
  if (err instanceof Refusal) throw ApplicationFailure.nonRetryable(err.message, err.kind);
  throw err;
};

export const keyHash = (k: string) => createHash('sha256').update(k).digest('hex');

export function createConsistencyActivities({ config }: ActivityDeps) {
  const catchUpMs = (cluster: string) => getCluster(config, cluster).thresholds.catchUpTimeoutSeconds * 1000;
  const probeMs = (cluster: string) => getCluster(config, cluster).thresholds.probeTimeoutSeconds * 1000;

  /** Sessions on the scope's source and `targets`, closed after `fn`; refusals become non-retryable failures. */
  const withSessions = async <T>(scope: ConsistencyScope, targets: CopyRef[], fn: (s: CopySessions) => Promise<T>): Promise<T> => {
    let s: CopySessions | undefined;
    // Each replica's source, from its path (`a → b → c`: c's is b).
    const upstream = (t: CopyRef) => scope.paths?.[t.instance]?.split(' → ').at(-2);
    try {
      s = await openCopySessions(config, scope.source, targets.map((t) => ({ ...t, upstream: upstream(t) })), { control: scope.mode === 'replication', timeoutMs: probeMs(scope.cluster) });
      return await fn(s);
    } catch (err) {
      return refuse(err);
    } finally {
      s?.close();
    }
  };

  const holdHooks = (scope: ConsistencyScope, beat: (d: Record<string, unknown>) => void): HoldHooks => ({
    async beforeHold(instances) {
      await withControl(config, async (c) => {
        for (const instance of instances) {
          const other = await recordHold(c, { cluster: scope.cluster, instance, checkId: scope.checkId, workflowId: scope.workflowId });
          if (other) {
            for (const i of instances) await releaseHold(c, { cluster: scope.cluster, instance: i, checkId: scope.checkId });
            throw new Refusal(`${instance} is held at a position by another consistency run, ${other.workflowId}, since ${other.heldAt} UTC`, 'ReplicaHeld');
          }
        }
      });
    },
    async afterRelease(instances) {
      await withControl(config, async (c) => {
        for (const instance of instances) await releaseHold(c, { cluster: scope.cluster, instance, checkId: scope.checkId });
      });
    },
    heartbeat: beat,
  });

  /**
   * Start the replication a run left held: this run's own (an attempt killed mid-hold), and any
   * other run's that Temporal says is over. A run that still goes keeps its holds.
   */
  const releaseLeftHolds = async (cluster: string, checkId: string): Promise<string[]> => {
    const holds = await withControl(config, (c) => holdsOf(c, cluster));
    const released: string[] = [];
    for (const h of holds) {
      if (h.checkId !== checkId && !(await runIsOver(h.workflowId))) continue;
      const conn = await connect(instanceEndpoint(config, cluster, h.instance), { timeoutMs: probeMs(cluster) });
      try {
        await releaseHeldReplica(conn);
      } finally {
        conn.destroy();
      }
      await withControl(config, (c) => releaseHold(c, h));
      released.push(`${h.instance} (held by ${h.workflowId} since ${h.heldAt} UTC)`);
    }
    return released;
  };

  /** The table's shape on the source, with every target's copy checked to be the same table. */
  const shapeOf = async (s: CopySessions, table: string): Promise<TableShape> => {
    const shape = await describeTable(s.source.conn, table, QUERY_TIMEOUT_MS, { uniqueKey: true });
    if (!shape?.primaryKey.length) throw new Refusal(`${table} ${shape ? 'has no primary key or unique NOT NULL key' : `no longer exists on ${s.source.instance}`}`, 'TableChanged');
    for (const t of s.targets) {
      const problem = await shapeMismatch(shape, t.conn, t.instance);
      if (problem) throw new Refusal(problem, 'NotComparable');
    }
    return shape;
  };

  /** Read every copy of one chunk at one position (replication) or each in its own snapshot (cross); the differing rows, with images. */
  const readChunk = async (scope: ConsistencyScope, s: CopySessions, shape: TableShape, lower: unknown[] | null, upper: unknown[] | null, beat: (d: Record<string, unknown>) => void) => {
    let position: string | undefined;
    let positions: Record<string, string> | undefined;
    let heldMs: Record<string, number> = {};
    try {
      if (scope.mode === 'replication') {
        ({ position, heldMs } = await atOnePosition(s, holdHooks(scope, beat), (p) => snapshotTargetsAt(s, p), { catchUpTimeoutMs: catchUpMs(scope.cluster) }));
      } else {
        positions = await snapshotsEach(s);
      }
      const sums = await sumChunk(s, shape, lower, upper, QUERY_TIMEOUT_MS);
      const differences: FoundDifference[] = [];
      for (const t of sums.targets.filter((x) => !x.equal)) differences.push(...(await diffChunk(s, s.targets.find((x) => x.instance === t.instance)!, shape, lower, upper, QUERY_TIMEOUT_MS)));
      return { sums, differences, position, positions, heldMs };
    } finally {
      await endSnapshots(s);
    }
  };

  /** Wait until every target has applied what its source had written by now (the re-check is "after catch-up"). */
  const catchUp = async (scope: ConsistencyScope, s: CopySessions) => {
    if (scope.mode !== 'replication') return;
    const [row] = await query<{ p: string }[]>(s.source.conn, 'SELECT @@GLOBAL.gtid_binlog_pos AS p');
    for (const t of s.targets) {
      const wait = t.dialect.waitForGtid(String(row!.p), catchUpMs(scope.cluster) / 1000);
      const [r] = await query<Record<string, unknown>[]>(t.control!, wait.sql, wait.params, catchUpMs(scope.cluster) + 5000);
      if (wait.interpret(r!) !== 'reached') throw new Error(`${t.instance} did not catch up to ${row!.p} within ${catchUpMs(scope.cluster) / 1000} s`);
    }
  };

  const toDifference = (d: FoundDifference, bounds: { index: number; lower: unknown[] | null; upper: unknown[] | null }): RowDifference => ({
    instance: d.instance, key: d.key, keyText: d.keyText, kind: d.kind, columns: d.columns, chunk: bounds,
  });

  return {
    /** The cluster's consistency settings from the worker's config: policies per table, limits. */
    async consistencySettings(input: { cluster: string }): Promise<{ policies: Record<string, string>; maxThreadsRunning: number; chunkSeconds: number; maxLagSeconds: number }> {
      const c = getCluster(config, input.cluster);
      return { ...c.consistency, maxLagSeconds: c.thresholds.maxLagSeconds };
    },

    /**
     * The copies a run compares. Replication: the probed primary is the source; the targets are the
     * replicas named (default: every replica) that replicate from it, directly or through others;
     * one whose replication is broken is refused (it cannot be held at a position). Cross: the two
     * instances given, each probed.
     */
    async consistencyScope(input: CheckRef & { cluster: string; replicas?: string[]; between?: { source: string; target: string } }): Promise<ConsistencyScope> {
      const ref = (name: string): CopyRef => {
        const [c, i] = name.includes('/') ? (name.split('/') as [string, string]) : [input.cluster, name];
        try {
          return { cluster: c, instance: i, region: getInstance(config, c, i).region };
        } catch (err) {
          throw ApplicationFailure.nonRetryable((err as Error).message, 'UnknownInstance');
        }
      };
      if (input.between) {
        const source = ref(input.between.source);
        const target = ref(input.between.target);
        if (source.cluster === target.cluster && source.instance === target.instance) throw ApplicationFailure.nonRetryable('compare two different instances', 'BadInput');
        for (const side of [source, target]) {
          const p = await probeInstance(config, side.cluster, side.instance);
          if (!p.reachable) throw ApplicationFailure.retryable(`${side.instance} unreachable: ${p.error}`, 'InstanceUnreachable');
        }
        return { ...input, mode: 'cross', source, targets: [target] };
      }
      const topology = await probeTopology(config, input.cluster);
      if (!topology.primary) throw ApplicationFailure.nonRetryable(`${input.cluster} has no single primary (${topology.problems.join('; ') || 'none writable'}): nothing to compare the replicas with`, 'NoPrimary');
      const paths = replicationPaths(topology);
      const wanted = input.replicas?.length ? input.replicas : topology.instances.filter((i) => i.role === 'replica').map((i) => i.instance);
      const targets: CopyRef[] = [];
      for (const name of wanted) {
        const i = topology.instances.find((x) => x.instance === name);
        if (!i) throw ApplicationFailure.nonRetryable(`${input.cluster} has no instance ${name}`, 'UnknownInstance');
        if (name === topology.primary) throw ApplicationFailure.nonRetryable(`${name} is the primary: it is the source the replicas are compared with`, 'BadInput');
        if (!paths[name]) throw ApplicationFailure.nonRetryable(`${name} does not replicate from ${topology.primary} (${i.reachable ? (i.replication ? `its source is ${i.replication.sourceInstance ?? `${i.replication.sourceHost}:${i.replication.sourcePort}`}` : 'it replicates from nobody') : `unreachable: ${i.error}`})`, 'NotReplicating');
        const r = i.replication!;
        if (r.sqlRunning !== 'Yes' || r.ioRunning === 'No' || r.lastSqlErrno) {
          throw ApplicationFailure.nonRetryable(`${name}'s replication is not running (IO ${r.ioRunning}, SQL ${r.sqlRunning}${r.lastSqlError ? `: ${r.lastSqlError}` : ''}): it cannot be held at a position`, 'NotReplicating');
        }
        targets.push({ cluster: input.cluster, instance: name, region: i.region });
      }
      if (!targets.length) throw ApplicationFailure.nonRetryable(`${input.cluster} has no replica to compare with ${topology.primary}`, 'NothingToCompare');
      const primary = topology.instances.find((i) => i.instance === topology.primary)!;
      return {
        ...input,
        mode: 'replication',
        source: { cluster: input.cluster, instance: primary.instance, region: primary.region },
        targets,
        paths: Object.fromEntries(targets.map((t) => [t.instance, paths[t.instance]!])),
      };
    },

    /** Holds a run left behind (its own killed attempt, or a run that is over): replication started again. */
    async releaseConsistencyHolds(input: { cluster: string; checkId: string }): Promise<string[]> {
      return releaseLeftHolds(input.cluster, input.checkId);
    },

    /** The source's base tables (one schema, or one table), each with the key its rows are named by, or why it cannot be compared. */
    async listConsistencyTables(input: { scope: ConsistencyScope; schema?: string; table?: string }): Promise<TableListing[]> {
      return withSessions(input.scope, input.scope.targets, async (s) => {
        const tables = await tablesToCompare(s.source.conn, { schema: input.schema, table: input.table });
        if (!tables.length) throw ApplicationFailure.nonRetryable(`no table on ${s.source.instance} matches${input.schema ? ` schema ${input.schema}` : ''}${input.table ? ` table ${input.table}` : ''}`, 'NothingToCompare');
        const out: TableListing[] = [];
        for (const t of tables) {
          // A copy that lacks the table, or has it with other columns or another key, cannot be compared row by row: said, not skipped.
          let unverifiable = t.unverifiable;
          for (const target of s.targets) unverifiable ??= t.shape && (await shapeMismatch(t.shape, target.conn, target.instance));
          out.push({ table: t.table, keyColumns: t.shape?.primaryKey ?? [], ...(unverifiable ? { unverifiable } : {}) });
        }
        return out;
      });
    },

    /**
     * Compare a batch of chunks of one table from `cursor`: each at one position (see the adapter),
     * sized to the time target; a chunk that differs is read row by row, re-checked after the
     * replicas caught up, and only what differs both times is called a difference. Every chunk is
     * stored as it is computed; a retried batch first reports (and continues after) the chunks an
     * earlier attempt stored. Waits while a replica lags or the primary is busy.
     */
    async compareConsistencyChunks(input: CompareInput): Promise<CompareResult> {
      const { scope, table } = input;
      const run: CheckRef = { checkId: scope.checkId, workflowId: scope.workflowId };
      const started = Date.now();
      let details: Record<string, unknown> = { table, chunk: input.cursor.index, phase: 'starting' };
      const beat = (d: Record<string, unknown>) => {
        details = { table, ...d };
        heartbeat(details);
      };
      beat({ chunk: input.cursor.index, phase: 'starting' });
      const ticker = setInterval(() => heartbeat(details), 2000);
      try {
        const out: CompareResult = { chunks: [], cursor: input.cursor, done: false, throttledMs: 0, throttleReasons: [] };
        // What an earlier attempt stored: reported, and the walk continues after it.
        const stored = await withControl(config, (c) => chunksFrom(c, run.checkId, table, input.cursor.index));
        if (stored.length) {
          const diffs = await withControl(config, (c) => differencesOf(c, run.checkId, { table }));
          for (const c of contiguous(stored, input.cursor.index)) {
            const bounds = { index: c.index, lower: c.lower, upper: c.upper };
            out.chunks.push({
              bounds,
              sourceRows: c.sourceRows,
              differingOn: c.targets.filter((t) => !t.equal).map((t) => t.instance),
              differences: diffs.filter((d) => d.chunkIndex === c.index).map((d) => ({ instance: d.instance, key: d.key, keyText: keyText(reviveTuple(d.key)), kind: d.kind, columns: d.columns, chunk: bounds })),
            });
            out.cursor = { index: c.index + 1, lower: c.upper, sizer: c.sizer as ChunkSizer };
            out.done = c.upper === null;
          }
        }
        if (scope.mode === 'replication') await releaseLeftHolds(scope.cluster, scope.checkId);
        if (out.done) return out;
        return await withSessions(scope, scope.targets, async (s) => {
          const shape = await shapeOf(s, table);
          while (!out.done && out.chunks.length < input.maxChunks && Date.now() - started < input.maxMs) {
            if (Context.current().cancellationSignal.aborted) throw new CancelledFailure('cancelled between chunks: no replica is held');
            // Lag and load limits: wait (heartbeating) until both are within bounds.
            for (;;) {
              const reasons = await throttleReasons(s, { maxLagSeconds: input.maxLagSeconds, maxThreadsRunning: input.maxThreadsRunning, replicas: scope.mode === 'replication' });
              if (!reasons.length) break;
              for (const r of reasons) if (!out.throttleReasons.includes(r) && out.throttleReasons.length < 10) out.throttleReasons.push(r);
              beat({ chunk: out.cursor.index, phase: 'waiting', reasons });
              await sleep(500);
              out.throttledMs += 500;
            }
            const chunkStarted = Date.now();
            const { index, lower, sizer } = out.cursor;
            await query(s.source.conn, 'ROLLBACK');
            const upper = await nextBoundary(s.source.conn, shape, lower, sizer.rows, QUERY_TIMEOUT_MS);
            const bounds = { index, lower, upper };
            const first = await readChunk(scope, s, shape, lower, upper, (d) => beat({ chunk: index, ...d }));
            let found = first.differences;
            if (found.length) {
              // Re-checked after catch-up, at a later position: what differs again is a difference.
              beat({ chunk: index, phase: 're-check', rows: found.length });
              await catchUp(scope, s);
              const again = await readChunk(scope, s, shape, lower, upper, (d) => beat({ chunk: index, ...d }));
              const confirmed = new Set(confirmedDifferences(found.map((d) => toDifference(d, bounds)), again.differences.map((d) => toDifference(d, bounds))).map((d) => `${d.instance}\u0000${d.keyText}`));
              found = again.differences.filter((d) => confirmed.has(`${d.instance}\u0000${d.keyText}`));
            }
            const chunkMs = Date.now() - chunkStarted;
            const next = resize(sizer, first.sums.source.rows, chunkMs, input.chunkMs);
            const record: StoredChunk = {
              table, index, lower, upper, sourceInstance: scope.source.instance, sourceRows: first.sums.source.rows, sourceDigest: first.sums.source.digest,
              targets: first.sums.targets.map((t) => ({ instance: t.instance, rows: t.rows, digest: t.digest, equal: t.equal })),
              ...(first.position ? { position: first.position } : {}), ...(first.positions ? { positions: first.positions } : {}),
              sizer: next, chunkMs, pausedMs: Math.max(0, ...Object.values(first.heldMs)), differing: first.sums.targets.some((t) => !t.equal),
            };
            await withControl(config, async (c) => {
              await saveDifferences(c, run, found.map((d) => storedDifference(scope, table, d, bounds, first.position)));
              await saveChunk(c, run, record);
            });
            out.chunks.push({ bounds, sourceRows: record.sourceRows, differingOn: record.targets.filter((t) => !t.equal).map((t) => t.instance), differences: found.map((d) => toDifference(d, bounds)) });
            out.cursor = { index: index + 1, lower: upper, sizer: next };
            out.done = upper === null;
            beat({ chunk: out.cursor.index, phase: 'compared', rows: record.sourceRows });
          }
          return out;
        });
      } finally {
        clearInterval(ticker);
      }
    },

    /**
     * Decide every difference under its table's policy (src/core/consistency.ts) and store the
     * plan beside it: what is written where, what a person must decide. Refused for a table whose
     * writes would fire triggers or cascade, and as a whole past `maxRows` rows to write.
     */
    async planConsistencyRepair(input: PlanInput): Promise<RepairPlan> {
      const { scope } = input;
      const diffs = await withControl(config, (c) => differencesOf(c, scope.checkId));
      const plan: RepairPlan = { tables: [], rowsToWrite: 0, queued: 0, lines: [] };
      const decided: StoredDifference[] = [];
      const byTable = groupBy(diffs, (d) => d.table);
      await withSessions(scope, [], async (s) => {
        for (const [table, rows] of byTable) {
          const text = input.policies[table];
          const parsed = text === undefined ? undefined : parsePolicy(text);
          const shape = await describeTable(s.source.conn, table, QUERY_TIMEOUT_MS, { uniqueKey: true });
          const tp: TablePlan = { table, policy: text ?? '(none)', repair: 0, queue: 0, writes: {} };
          plan.tables.push(tp);
          let refusal: string | undefined;
          if (!parsed) refusal = 'no repair policy for this table (--policy, or clusters.<c>.consistency.policies)';
          else if ('problem' in parsed) refusal = parsed.problem;
          else if (!shape) refusal = `${table} no longer exists on ${s.source.instance}`;
          else if (parsed.kind !== 'manual') {
            refusal = await repairObstacle(s.source.conn, shape);
            if (!refusal && parsed.kind === 'newest-wins' && !shape.columns.some((c) => c.name === parsed.column)) refusal = `newest-wins: ${table} has no column ${parsed.column}`;
          }
          const policy: RepairPolicy = parsed && !('problem' in parsed) && !refusal ? parsed : { kind: 'manual' };
          if (refusal) tp.refused = refusal;
          for (const [, copies] of groupBy(rows, (d) => d.keyHash)) {
            const d0 = copies[0]!;
            const stampOf = (image: Record<string, unknown> | null) => (policy.kind === 'newest-wins' && image ? image[policy.column] : undefined);
            const tooLarge = copies.some((d) => (d.sourceImage && 'imageTooLarge' in d.sourceImage) || (d.targetImage && 'imageTooLarge' in d.targetImage));
            const decision: KeyDecision = refusal
              ? { action: 'queue', writes: [], reason: `not repaired: ${refusal}` }
              : tooLarge
                ? { action: 'queue', writes: [], reason: 'a row image is over 1 MiB: it could not be kept for the audit' }
                : decideKey(
                    policy,
                    { instance: scope.source.instance, present: d0.sourceDigest !== null, digest: d0.sourceDigest, stamp: stampOf(d0.sourceImage) },
                    copies.map((d) => ({ instance: d.instance, present: d.targetDigest !== null, digest: d.targetDigest, stamp: stampOf(d.targetImage) })),
                    { mode: scope.mode, applyOn: input.applyOn },
                  );
            for (const d of copies) {
              decided.push({ ...d, policy: text ?? 'none', decision: decision.action, winner: decision.winner, writes: decision.writes, reason: decision.reason });
              if (decision.action === 'queue') tp.queue++;
            }
            if (decision.action === 'repair') tp.repair++;
            for (const w of decision.writes) {
              const counts = (tp.writes[w.instance] ??= { write: 0, delete: 0, logged: w.logged });
              counts[w.op]++;
              plan.rowsToWrite++;
            }
            if (plan.lines.length < PLAN_LINES) plan.lines.push(planLine(table, d0.key, copies, decision));
          }
          plan.queued += tp.queue;
        }
      });
      await withControl(config, (c) => saveDecisions(c, scope.checkId, decided));
      if (plan.rowsToWrite > input.maxRows) plan.refused = `the repair would write ${plan.rowsToWrite} rows, more than ${input.maxRows}: that is a reseed, not a repair (raise --max-repair-rows to go on)`;
      return plan;
    },

    /** The manual queue: every difference the plan left to a person, once each (nothing is written to any copy). */
    async queueConsistencyConflicts(input: { scope: ConsistencyScope }): Promise<number> {
      return withControl(config, async (c) => {
        const queued = (await differencesOf(c, input.scope.checkId)).filter((d) => d.decision === 'queue');
        await queueConflicts(c, { ...input.scope }, queued);
        return queued.length;
      });
    },

    /**
     * Apply the approved plan to one table: each copy's rows from the winner's, a held replica's
     * unlogged at the primary's snapshot position, a write that must replicate logged (and only
     * when every replica holds the row, else its replication would stop on it). Every row is
     * compared and locked before it is written, audited before the commit, read back after.
     */
    async repairConsistencyTable(input: { scope: ConsistencyScope; table: string; operator: string }): Promise<RepairResult> {
      const { scope, table } = input;
      const result: RepairResult = { table, written: 0, already: 0, left: [], byInstance: {} };
      const diffs = (await withControl(config, (c) => differencesOf(c, scope.checkId, { table }))).filter((d) => d.decision === 'repair' && d.writes?.length);
      if (!diffs.length) return result;
      if (scope.mode === 'replication') {
        const topology = await probeTopology(config, scope.cluster);
        if (topology.primary !== scope.source.instance) throw ApplicationFailure.nonRetryable(`the primary is ${topology.primary ?? 'unknown'} now, not ${scope.source.instance} as when compared: check again`, 'PrimaryChanged');
      }
      // One planned write per (copy written, key): from the winner's copy.
      const planned = new Map<string, { instance: string; logged: boolean; winner: string; rows: Map<string, PlannedRow> }>();
      for (const [, copies] of groupBy(diffs, (d) => d.keyHash)) {
        const d0 = copies[0]!;
        // A copy without a difference row holds the source's row (null: the copy lacks the row).
        const digestOn = (instance: string): string | null => {
          const copy = copies.find((d) => d.instance === instance);
          return instance === scope.source.instance || !copy ? d0.sourceDigest : copy.targetDigest;
        };
        for (const w of d0.writes!) {
          const group = planned.get(w.instance) ?? { instance: w.instance, logged: w.logged, winner: d0.winner!, rows: new Map() };
          planned.set(w.instance, group);
          group.rows.set(d0.keyHash, { key: d0.key, keyHash: d0.keyHash, op: w.op, winnerDigest: digestOn(d0.winner!), currentDigest: digestOn(w.instance) });
        }
      }
      for (const group of planned.values()) {
        const rows = [...group.rows.values()];
        const audit = (written: { row: PlannedRow; before: Record<string, unknown> | null; after: Record<string, unknown> | null }[], position?: string) =>
          withControl(config, (c) =>
            recordRepairsPending(c, { ...scope, operator: input.operator }, written.map((w) => ({
              table, writtenOn: group.instance, logged: group.logged, keyHash: w.row.keyHash, key: w.row.key, op: w.row.op,
              policy: diffs.find((d) => d.keyHash === w.row.keyHash)!.policy ?? '', winner: group.winner, beforeImage: w.before, afterImage: w.after, ...(position ? { position } : {}),
            }))),
          );
        const tally = async (outcome: Awaited<ReturnType<typeof writeRows>>) => {
          await withControl(config, (c) => markRepairsApplied(c, scope.checkId, table, group.instance, [...outcome.written.map((w) => w.row.keyHash), ...outcome.already.map((r) => r.keyHash)]));
          result.written += outcome.written.length;
          result.already += outcome.already.length;
          result.byInstance[group.instance] = (result.byInstance[group.instance] ?? 0) + outcome.written.length;
          for (const l of outcome.left) result.left.push({ instance: group.instance, key: showTuple(reviveTuple(l.row.key)), why: l.why });
        };
        const target = scope.targets.find((t) => t.instance === group.instance);
        if (scope.mode === 'replication' && !group.logged) {
          // A replica's copy, while its replication is held at the primary's snapshot position.
          if (!target) throw ApplicationFailure.nonRetryable(`${group.instance} is not a compared replica`, 'BadPlan');
          await releaseLeftHolds(scope.cluster, scope.checkId);
          await withSessions(scope, [target], async (s) => {
            const shape = await shapeOf(s, table);
            for (let i = 0; i < rows.length; i += REPAIR_BATCH) {
              const batch = rows.slice(i, i + REPAIR_BATCH);
              heartbeat({ table, instance: group.instance, done: i, of: rows.length });
              let at: string | undefined;
              const { result: outcome } = await atOnePosition(
                s,
                holdHooks(scope, (d) => heartbeat({ table, instance: group.instance, ...d })),
                (p) => ((at = p), writeRows(s.targets[0]!.conn, s.source.conn, shape, batch, { logged: false, beforeCommit: (w) => audit(w, at), timeoutMs: QUERY_TIMEOUT_MS })),
                { catchUpTimeoutMs: catchUpMs(scope.cluster) },
              );
              await endSnapshots(s);
              await tally(outcome);
            }
          });
          continue;
        }
        // A logged change: on the primary (a replica's row won) or on a site across regions.
        const writtenSide = group.instance === scope.source.instance ? scope.source : target;
        const winnerSide = group.winner === scope.source.instance ? scope.source : scope.targets.find((t) => t.instance === group.winner);
        if (!writtenSide || !winnerSide) throw ApplicationFailure.nonRetryable(`the plan writes ${group.instance} from ${group.winner}: not a side of this comparison`, 'BadPlan');
        await withSessions({ ...scope, source: writtenSide }, [winnerSide], async (s) => {
          const shape = await shapeOf(s, table);
          let writable = rows;
          if (scope.mode === 'replication') {
            // Every replica must hold the row, or the primary's change stops its replication.
            const replicas = (await probeTopology(config, scope.cluster)).instances.filter((i) => i.role === 'replica');
            for (const r of replicas) {
              const conn = await connect(instanceEndpoint(config, scope.cluster, r.instance), { timeoutMs: probeMs(scope.cluster) });
              try {
                const lacking = new Set((await keysMissingOn(conn, shape, writable.map((x) => x.key))).map((k) => keyText(reviveTuple(k))));
                for (const x of writable.filter((w) => lacking.has(keyText(reviveTuple(w.key))))) result.left.push({ instance: group.instance, key: showTuple(reviveTuple(x.key)), why: `${r.instance} lacks the row: the primary's change would stop its replication` });
                writable = writable.filter((w) => !lacking.has(keyText(reviveTuple(w.key))));
              } finally {
                conn.destroy();
              }
            }
          }
          for (let i = 0; i < writable.length; i += REPAIR_BATCH) {
            const batch = writable.slice(i, i + REPAIR_BATCH);
            heartbeat({ table, instance: group.instance, done: i, of: writable.length });
            await tally(await writeRows(s.source.conn, s.targets[0]!.conn, shape, batch, { logged: true, beforeCommit: (w) => audit(w), timeoutMs: QUERY_TIMEOUT_MS }));
          }
        });
      }
      return result;
    },

    /** After a repair: the table's differing chunks compared again (at one position, re-checked): what still differs. */
    async recheckConsistencyTable(input: { scope: ConsistencyScope; table: string }): Promise<RecheckResult> {
      const { scope, table } = input;
      const chunks = (await withControl(config, (c) => chunksFrom(c, scope.checkId, table))).filter((c) => c.differing);
      const out: RecheckResult = { table, chunks: chunks.length, differences: [] };
      if (!chunks.length) return out;
      if (scope.mode === 'replication') await releaseLeftHolds(scope.cluster, scope.checkId);
      return withSessions(scope, scope.targets, async (s) => {
        const shape = await shapeOf(s, table);
        for (const c of chunks) {
          const bounds = { index: c.index, lower: c.lower, upper: c.upper };
          heartbeat({ table, chunk: c.index, phase: 're-check after repair' });
          await catchUp(scope, s);
          const first = await readChunk(scope, s, shape, c.lower, c.upper, (d) => heartbeat({ table, ...d }));
          if (!first.differences.length) continue;
          await catchUp(scope, s);
          const again = await readChunk(scope, s, shape, c.lower, c.upper, (d) => heartbeat({ table, ...d }));
          out.differences.push(...confirmedDifferences(first.differences.map((d) => toDifference(d, bounds)), again.differences.map((d) => toDifference(d, bounds))));
        }
        return out;
      });
    },

    /** sync_status: each compared region's last verified time (moved only when it was shown equal) and what this run found. */
    async recordConsistencyResult(input: { scope: ConsistencyScope; regions: { region: string; instance: string; equal: boolean; remark: string }[] }): Promise<void> {
      const at = Date.now();
      await withControl(config, async (c) => {
        for (const r of input.regions) await recordVerified(c, { cluster: input.scope.cluster, region: r.region, instance: r.instance, ...(r.equal ? { verifiedAt: at } : {}), remark: r.remark });
      });
    },
  };
}

/** How each replica is reached from the primary (`a → b → c`), from the probed sources. */
function replicationPaths(t: Topology): Record<string, string> {
  const paths: Record<string, string> = {};
  for (const i of t.instances) {
    const chain = [i.instance];
    let at = i;
    while (at.replication?.sourceInstance && chain.length <= t.instances.length) {
      chain.unshift(at.replication.sourceInstance);
      const next = t.instances.find((x) => x.instance === at.replication!.sourceInstance);
      if (!next) break;
      at = next;
    }
    if (chain.length > 1 && chain[0] === t.primary) paths[i.instance] = chain.join(' → ');
  }
  return paths;
}

/** The stored chunks that follow on from `from` without a gap. */
function contiguous(stored: StoredChunk[], from: number): StoredChunk[] {
  const out: StoredChunk[] = [];
  for (const c of stored) {
    if (c.index !== from + out.length) break;
    out.push(c);
    if (c.upper === null) break;
  }
  return out;
}

function storedDifference(scope: ConsistencyScope, table: string, d: FoundDifference, bounds: { index: number; lower: unknown[] | null; upper: unknown[] | null }, position?: string): StoredDifference {
  return {
    table, instance: d.instance, keyHash: keyHash(d.keyText), key: d.key, kind: d.kind, columns: d.columns, chunkIndex: bounds.index, lower: bounds.lower, upper: bounds.upper,
    ...(position ? { position } : {}), sourceInstance: scope.source.instance, sourceDigest: d.sourceDigest, targetDigest: d.targetDigest, sourceImage: d.sourceImage, targetImage: d.targetImage,
  };
}

function groupBy<T>(items: T[], key: (t: T) => string): Map<string, T[]> {
  const m = new Map<string, T[]>();
  for (const i of items) m.set(key(i), [...(m.get(key(i)) ?? []), i]);
  return m;
}

/** One line of the reviewed plan: the row, how each copy differs, what is written where, and why. */
export function planLine(table: string, key: unknown[], copies: Pick<StoredDifference, 'instance' | 'kind' | 'columns'>[], d: Pick<KeyDecision, 'action' | 'writes' | 'reason'>): string {
  const how = copies.map((c) => `${c.kind}${c.columns.length ? ` (${c.columns.join(', ')})` : ''} on ${c.instance}`).join(', ');
  const what = d.action === 'queue' ? 'QUEUED for a person' : d.writes.map((w) => `${w.op} on ${w.instance}${w.logged ? ' (logged: replicates)' : ' (unlogged, replication held at the source position)'}`).join('; ');
  return `${table} ${showTuple(reviveTuple(key))}: ${how} → ${what}: ${d.reason}`;
}
