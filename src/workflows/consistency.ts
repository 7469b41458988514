/**
 * Consistency runbook: prove that copies of the data hold the same rows, find the rows that
 * differ, and (after approval, never by default) repair them under a policy, as a DBA does it:
 *
 *   one check at a time → release holds left by earlier runs → choose copies → list tables → compare <table> (chunk by chunk, at one
 *   position each) → table <table> → record → [plan repair → queue conflicts → approval → lock
 *   cluster → repair <table> → re-check <table> → unlock cluster → record repair]
 *
 * Replicas are compared with their primary at the same GTID position (see
 * src/adapters/mysql/consistency.ts); two sites across regions each at its own snapshot, and the
 * result says so. A table without a primary key or unique NOT NULL key is reported unverifiable.
 * Every chunk is stored as it is compared: a killed worker resumes after the last one, and a
 * table of any size continues as new (with its progress as a checkpoint) before the history grows
 * large. No replica is left held: the holds of a run that fails or is cancelled are released under
 * a non-cancellable scope, and a retry releases those of an attempt that died.
 */
import * as wf from '@temporalio/workflow';
import { ApplicationFailure } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { ConsistencyScope, RecheckResult, RepairPlan, RepairResult, TableListing } from '../activities/consistency';
import {
  addChunks,
  consistencyOptionProblems,
  describeDifferences,
  differenceTotal,
  emptyTableReport,
  policyFor,
  startSizer,
  type ConsistencyOptions,
  type TableReport,
} from '../core/consistency';
import { ApprovalGate } from './shared/approval';
import { runRunbook, type Runbook } from './shared/runbook';
import type { StartedFromCli } from '../core/runbookDefinitions';

export interface ConsistencyInput extends StartedFromCli, ConsistencyOptions {
  cluster: string;
  requester: string;
  reason?: string;
  incidentId?: string;
  /** With `repair`: plan and show it, write nothing. */
  dryRun?: boolean;
  /** Set by the run itself when it continues as new; never by a caller. */
  checkpoint?: ConsistencyCheckpoint;
}

/** What one run of the workflow hands the next (continue-as-new). */
export interface ConsistencyCheckpoint {
  scope: ConsistencyScope;
  tables: TableReport[];
  /** Which run of the chain this is (0 first). */
  segment: number;
  throttledMs: number;
  throttleReasons: string[];
}

export interface ConsistencyReport {
  workflowId: string;
  mode: 'replication' | 'cross';
  source: string;
  targets: string[];
  /** How each replica is reached from the primary. */
  paths?: Record<string, string>;
  /** What a result means in time: one position, or two points in time across regions. */
  comparedAt: string;
  tables: TableReport[];
  totals: { tables: number; unverifiable: number; chunks: number; rowsCompared: number; differences: number };
  /** Time the walk waited for lagging replicas or a busy primary, and why. */
  throttledMs: number;
  throttleReasons: string[];
}

export interface ConsistencyResult {
  /**
   * `succeeded`: every compared table is equal on every copy (after the repair, when one ran);
   * `needs_attention`: differences left, conflicts queued, or a table unverifiable;
   * `dry_run`: the repair plan was shown, nothing written; `rejected` / `timed_out`: the approval.
   */
  status: 'succeeded' | 'needs_attention' | 'dry_run' | 'rejected' | 'timed_out';
  report: ConsistencyReport;
  plan?: RepairPlan;
  queued?: number;
  repairs?: RepairResult[];
  recheck?: RecheckResult[];
}

/** The steps of a run, in order (those in brackets only with a repair). */
export const CONSISTENCY_STEPS = [
  'one check at a time', 'release holds left by earlier runs', 'choose copies', 'list tables', 'compare <table>', 'table <table>', 'record',
  '[plan repair]', '[queue conflicts]', '[approval]', '[lock cluster]', '[repair <table>]', '[re-check <table>]', '[unlock cluster]', '[record repair]',
] as const;

const act = wf.proxyActivities<Activities>({ startToCloseTimeout: '2m', retry: { initialInterval: '1s', maximumAttempts: 5 } });
// Chunks, repairs and re-checks run as long as the data needs; a dead worker is noticed by heartbeat.
// A cancelled run waits for them to stop (they start the replicas they hold again) before its own cleanup.
const long = wf.proxyActivities<Activities>({
  startToCloseTimeout: '6h',
  heartbeatTimeout: '10s',
  retry: { initialInterval: '1s', maximumInterval: '30s', maximumAttempts: 20 },
  cancellationType: wf.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
});

const DEFAULTS = { maxRepairRows: 10_000, batchesPerRun: 100, batchMs: 20_000, batchChunks: 1000 } as const;

export async function consistency(input: ConsistencyInput): Promise<ConsistencyResult> {
  const meta = { runbook: 'consistency', cluster: input.cluster, operator: input.requester, incidentId: input.incidentId, reason: input.reason, configFingerprint: input.configFingerprint };
  const forged = input.checkpoint && !wf.workflowInfo().continuedFromExecutionRunId ? 'checkpoint is set by the run itself when it continues as new, never by a caller' : undefined;
  return runRunbook(meta, (rb) => body(rb, input), [...consistencyOptionProblems(input), forged]);
}

async function body(rb: Runbook, input: ConsistencyInput): Promise<ConsistencyResult> {
  const info = wf.workflowInfo();
  const checkLock = { cluster: `${input.cluster}/consistency`, workflowId: info.workflowId };
  const cp = input.checkpoint;
  rb.details.segment = cp?.segment ?? 0;
  let continuing = false;
  let scope: ConsistencyScope | undefined = cp?.scope;
  try {
    const settings = await act.consistencySettings({ cluster: input.cluster });
    let state: ConsistencyCheckpoint;
    if (cp) {
      state = cp;
      rb.event(`continued from run ${cp.segment}`, 'resumed', { tablesDone: cp.tables.filter((t) => t.done).length, of: cp.tables.length }, `${cp.tables.filter((t) => t.done).length} of ${cp.tables.length} table(s) done`);
    } else {
      await rb.step('one check at a time', () => act.acquireClusterLock({ ...checkLock, runbook: 'consistency', operator: input.requester }), {
        note: () => `no other consistency run on ${input.cluster} holds replicas (a failover is not blocked)`,
      });
      // Before the copies are probed: a replica a dead run left held looks broken until started again.
      await rb.step('release holds left by earlier runs', () => act.releaseConsistencyHolds({ cluster: input.cluster, checkId: info.firstExecutionRunId }), {
        note: (r) => (r.length ? `replication started again on ${r.join(', ')}` : 'none'),
      });
      const chosen = await rb.step(
        'choose copies',
        () => act.consistencyScope({ cluster: input.cluster, checkId: info.firstExecutionRunId, workflowId: info.workflowId, replicas: input.replicas, between: input.between }),
        { note: describeScope, detail: (s) => ({ scope: s }) },
      );
      scope = chosen;
      const listed = await rb.step('list tables', () => act.listConsistencyTables({ scope: chosen, schema: input.schema ?? input.table?.split('.')[0], table: input.table?.split('.').at(-1) }), {
        note: (t) => `${t.length} table(s)${t.some((x) => x.unverifiable) ? `, ${t.filter((x) => x.unverifiable).length} unverifiable: ${t.filter((x) => x.unverifiable).map((x) => x.table).join(', ')}` : ''}`,
      });
      state = { scope: chosen, tables: listed.map((t: TableListing) => emptyTableReport(t.table, t.keyColumns, startSizer(input.chunkRows), t.unverifiable)), segment: 0, throttledMs: 0, throttleReasons: [] };
      for (const t of state.tables.filter((x) => x.unverifiable)) await tableStep(rb, t);
    }
    scope = state.scope;

    // Compare, table by table, a batch of chunks per step.
    let batches = 0;
    for (let i = 0; i < state.tables.length; i++) {
      let t = state.tables[i]!;
      while (!t.done) {
        if (batches >= (input.batchesPerRun ?? DEFAULTS.batchesPerRun) || wf.workflowInfo().continueAsNewSuggested) {
          // A cancellation that arrived during the last batch ends the run here: the next run would not know of it.
          if (wf.CancellationScope.current().consideredCancelled) throw new wf.CancelledFailure('cancelled');
          continuing = true;
          await wf.continueAsNew<typeof consistency>({ ...input, checkpoint: { ...state, segment: state.segment + 1 } });
        }
        const from = t.cursor.index;
        const batch = await rb.step(
          `compare ${t.table}`,
          () =>
            long.compareConsistencyChunks({
              scope: state.scope, table: t.table, cursor: t.cursor,
              maxChunks: input.batchChunks ?? DEFAULTS.batchChunks, maxMs: DEFAULTS.batchMs,
              chunkMs: (input.chunkSeconds ?? settings.chunkSeconds) * 1000,
              maxLagSeconds: settings.maxLagSeconds, maxThreadsRunning: input.maxThreadsRunning ?? settings.maxThreadsRunning,
            }),
          {
            summary: `consistency ${input.cluster}: compare ${t.table} from chunk ${from}`,
            note: (b) => `chunks ${from}–${b.cursor.index - 1}${b.done ? ' (last)' : ''}: ${b.chunks.reduce((n, c) => n + c.sourceRows, 0)} row(s), ${b.chunks.filter((c) => c.differences.length).length} with differences${b.throttledMs ? `; waited ${Math.round(b.throttledMs / 1000)} s (${b.throttleReasons[0]})` : ''}`,
            detail: (b) => ({ fromChunk: from, toChunk: b.cursor.index - 1, rows: b.chunks.reduce((n, c) => n + c.sourceRows, 0), differences: b.chunks.flatMap((c) => c.differences).length, throttledMs: b.throttledMs }),
          },
        );
        batches++;
        t = addChunks(t, batch.chunks, batch.cursor, batch.done);
        state.tables[i] = t;
        state.throttledMs += batch.throttledMs;
        for (const r of batch.throttleReasons) if (state.throttleReasons.length < 10 && !state.throttleReasons.includes(r)) state.throttleReasons.push(r);
        if (t.done) await tableStep(rb, t);
      }
    }

    const report = reportOf(state);
    const found = report.totals.differences;
    rb.details.report = { totals: report.totals, comparedAt: report.comparedAt };
    rb.open({
      title: `consistency ${input.cluster}: ${found ? `${found} row(s) differ` : 'no differences'}${report.totals.unverifiable ? `, ${report.totals.unverifiable} table(s) unverifiable` : ''} by ${input.requester}`,
      severity: found ? 'L2' : 'L3',
      plan: describeReport(report),
      impact: input.repair && found ? 'rows are repaired after approval' : 'none: the data is only read (replicas are held a moment per chunk)',
      rootCause: input.reason,
    });
    await rb.step('record', () => act.recordConsistencyResult({ scope: state.scope, regions: regionResults(state.scope, report) }), {
      note: () => `${report.totals.tables} table(s), ${report.totals.rowsCompared} row(s) compared, ${found} difference(s), ${report.totals.unverifiable} unverifiable; ${report.comparedAt}`,
      detail: () => ({ totals: report.totals, comparedAt: report.comparedAt }),
    });
    const checked: ConsistencyResult = { status: found || report.totals.unverifiable ? 'needs_attention' : 'succeeded', report };
    if (!input.repair) return finishWith(rb, checked);
    if (!found) {
      rb.skip('plan repair', 'nothing differs: nothing to repair');
      return finishWith(rb, checked);
    }
    return await repair(rb, input, state.scope, report, settings.policies);
  } finally {
    if (!continuing) await releaseAll(rb, input, scope, checkLock);
  }
}

/**
 * However the run ends (succeeded, failed, cancelled; not when it continues as new): no replica
 * stays held and the check lock is given back, in a scope a cancellation cannot interrupt.
 */
async function releaseAll(rb: Runbook, input: ConsistencyInput, scope: ConsistencyScope | undefined, lock: { cluster: string; workflowId: string }): Promise<void> {
  await wf.CancellationScope.nonCancellable(async () => {
    if (scope?.mode === 'replication') {
      await rb.step('release held replicas', () => act.releaseConsistencyHolds({ cluster: input.cluster, checkId: scope.checkId }), {
        note: (r) => (r.length ? `replication started again on ${r.join(', ')}` : 'none held'),
      });
    }
    await rb.step('release the check lock', () => act.releaseClusterLock(lock));
  });
}

async function repair(rb: Runbook, input: ConsistencyInput, scope: ConsistencyScope, report: ConsistencyReport, configured: Record<string, string>): Promise<ConsistencyResult> {
  const tables = report.tables.filter((t) => differenceTotal(t));
  const policies = Object.fromEntries(tables.flatMap((t) => {
    const p = policyFor(t.table, input.policy, configured);
    return p ? [[t.table, p]] : [];
  }));
  const plan = await rb.step(
    'plan repair',
    async () => {
      const p = await act.planConsistencyRepair({ scope, policies, applyOn: input.applyOn ?? 'auto', maxRows: input.maxRepairRows ?? DEFAULTS.maxRepairRows });
      if (p.refused) throw ApplicationFailure.nonRetryable(p.refused, 'RepairRefused');
      return p;
    },
    { note: (p) => `${p.rowsToWrite} row write(s), ${p.queued} difference(s) for a person; ${p.tables.map((t) => `${t.table}: ${t.policy}${t.refused ? ` (not repaired: ${t.refused})` : ''}`).join('; ')}`, detail: (p) => ({ plan: p }) },
  );
  rb.details.repairPlan = plan;
  const result: ConsistencyResult = { status: 'needs_attention', report, plan };
  if (input.dryRun) {
    for (const s of ['queue conflicts', 'approval', 'repair', 're-check']) rb.skip(s, 'dry run: nothing written');
    rb.outcome = 'dry_run';
    return { ...result, status: 'dry_run' };
  }
  if (plan.queued) {
    result.queued = await rb.step('queue conflicts', () => act.queueConsistencyConflicts({ scope }), { note: (n) => `${n} difference(s) in consistency_conflict for a person to decide; nothing written for them` });
  }
  if (!plan.rowsToWrite) {
    rb.skip('approval', 'nothing to write');
    return finishWith(rb, result);
  }
  rb.updateNotice({
    plan: `${describeReport(report)}\n\n**Repair plan** (${plan.rowsToWrite} write(s); every row: \`runbook consistency-report ${wf.workflowInfo().workflowId}\`):\n${plan.lines.map((l) => `- ${l}`).join('\n')}`,
    impact: `${plan.rowsToWrite} row write(s): ${Object.entries(writesByInstance(plan)).map(([i, n]) => `${n} on ${i}`).join(', ')}`,
  });
  const policy = await act.clusterPolicy({ cluster: input.cluster, runbook: 'consistency', mode: 'repair' });
  const gate = new ApprovalGate(rb, policy.approval, input.requester);
  const decision = await rb.step('approval', () => gate.request(), { note: (d) => d });
  if (decision === 'rejected' || decision === 'timed_out') {
    rb.skip('repair', `approval ${decision}: nothing written`);
    rb.outcome = decision;
    return { ...result, status: decision };
  }
  const lock = { cluster: input.cluster, workflowId: wf.workflowInfo().workflowId };
  await rb.step('lock cluster', () => act.acquireClusterLock({ ...lock, runbook: 'consistency', operator: input.requester }));
  const repairs: RepairResult[] = [];
  try {
    for (const t of plan.tables.filter((x) => x.repair)) {
      repairs.push(
        await rb.step(`repair ${t.table}`, () => long.repairConsistencyTable({ scope, table: t.table, operator: input.requester }), {
          note: (r) => `${r.written} row(s) written (${Object.entries(r.byInstance).map(([i, n]) => `${n} on ${i}`).join(', ') || 'none'})${r.already ? `, ${r.already} already in place` : ''}${r.left.length ? `; ${r.left.length} left: ${r.left.slice(0, 3).map((l) => `${l.key} on ${l.instance} (${l.why})`).join('; ')}` : ''}`,
          detail: (r) => ({ repair: r }),
        }),
      );
    }
  } finally {
    await wf.CancellationScope.nonCancellable(() => rb.step('unlock cluster', () => act.releaseClusterLock(lock)));
  }
  const recheck: RecheckResult[] = [];
  for (const t of plan.tables.filter((x) => x.repair)) {
    recheck.push(
      await rb.step(`re-check ${t.table}`, () => long.recheckConsistencyTable({ scope, table: t.table }), {
        note: (r) => `${r.chunks} chunk(s) that differed compared again: ${r.differences.length ? `${r.differences.length} row(s) still differ (${r.differences.slice(0, 3).map((d) => `${JSON.stringify(d.key)} ${d.kind} on ${d.instance}`).join('; ')})` : '0 differences'}`,
        detail: (r) => ({ recheck: { chunks: r.chunks, differences: r.differences.length } }),
      }),
    );
  }
  const left = recheck.reduce((n, r) => n + r.differences.length, 0);
  const clean = !left && !plan.queued && !report.totals.unverifiable && repairs.every((r) => !r.left.length);
  await rb.step('record repair', () => act.recordConsistencyResult({ scope, regions: regionResults(scope, report, recheck) }), {
    note: () => `${repairs.reduce((n, r) => n + r.written, 0)} row(s) written; re-check: ${left} difference(s) left; ${plan.queued} queued`,
  });
  return finishWith(rb, { ...result, status: clean ? 'succeeded' : 'needs_attention', repairs, recheck });
}

function finishWith(rb: Runbook, r: ConsistencyResult): ConsistencyResult {
  if (r.status === 'needs_attention') rb.outcome = 'needs_attention';
  return r;
}

/** The per-table line of failover_log: chunks, rows compared, differences, or why it is unverifiable. */
async function tableStep(rb: Runbook, t: TableReport): Promise<void> {
  await rb.step(`table ${t.table}`, async () => t, {
    note: (x) =>
      x.unverifiable
        ? `UNVERIFIABLE: ${x.unverifiable}`
        : `${x.rowsCompared} row(s) in ${x.chunks} chunk(s) by (${x.keyColumns.join(', ')}): ${describeDifferences(x)}${x.examples.length ? `, e.g. ${x.examples.slice(0, 3).map((d) => `${JSON.stringify(d.key)} ${d.kind} on ${d.instance}`).join('; ')}` : ''}`,
    detail: (x) => ({ table: x.table, chunks: x.chunks, rowsCompared: x.rowsCompared, differingChunks: x.differingChunks, differences: x.differences, unverifiable: x.unverifiable ?? null, examples: x.examples.slice(0, 5) }),
  });
}

function reportOf(s: ConsistencyCheckpoint): ConsistencyReport {
  const { scope } = s;
  const tables = s.tables;
  return {
    workflowId: scope.workflowId,
    mode: scope.mode,
    source: scope.source.instance,
    targets: scope.targets.map((t) => t.instance),
    ...(scope.paths ? { paths: scope.paths } : {}),
    comparedAt:
      scope.mode === 'replication'
        ? `each chunk read on ${scope.source.instance} and every replica at one GTID position (replicas held there a moment): no write in flight can show as a difference`
        : `${scope.source.instance} and ${scope.targets[0]!.instance} each read in its own consistent snapshot, at TWO DIFFERENT POINTS IN TIME: a row written on either side in between shows as a difference`,
    tables,
    totals: {
      tables: tables.length,
      unverifiable: tables.filter((t) => t.unverifiable).length,
      chunks: tables.reduce((n, t) => n + t.chunks, 0),
      rowsCompared: tables.reduce((n, t) => n + t.rowsCompared, 0),
      differences: tables.reduce((n, t) => n + differenceTotal(t), 0),
    },
    throttledMs: s.throttledMs,
    throttleReasons: s.throttleReasons,
  };
}

/** Each compared region: equal (so its last verified time moves) or what differs. */
function regionResults(scope: ConsistencyScope, r: ConsistencyReport, recheck?: RecheckResult[]): { region: string; instance: string; equal: boolean; remark: string }[] {
  const unverifiable = r.tables.filter((t) => t.unverifiable).map((t) => t.table);
  // Replicas are verified against their primary; two sites, each against the other.
  const compared = scope.mode === 'cross' ? [scope.source, ...scope.targets] : scope.targets;
  return compared.map(({ region, instance }) => {
    const copy = scope.mode === 'cross' ? scope.targets[0]!.instance : instance;
    const found = r.tables.reduce((n, t) => n + differenceTotal({ differences: Object.fromEntries(Object.entries(t.differences).filter(([i]) => i === copy)) }), 0);
    const left = recheck ? recheck.reduce((n, x) => n + x.differences.filter((d) => d.instance === copy).length, 0) : found;
    const equal = left === 0 && !unverifiable.length;
    const remark = `${r.workflowId}: ${recheck ? `after repair ${left} difference(s) left (${found} found)` : `${found} difference(s)`} in ${r.totals.tables} table(s) against ${scope.mode === 'cross' ? `the other site (two points in time)` : r.source}${unverifiable.length ? `; unverifiable: ${unverifiable.join(', ')}` : ''}`;
    return { region, instance, equal, remark };
  });
}

function writesByInstance(p: RepairPlan): Record<string, number> {
  const out: Record<string, number> = {};
  for (const t of p.tables) for (const [i, w] of Object.entries(t.writes)) out[i] = (out[i] ?? 0) + w.write + w.delete;
  return out;
}

function describeScope(s: ConsistencyScope): string {
  if (s.mode === 'cross') return `${s.source.instance} (${s.source.region}) and ${s.targets[0]!.instance} (${s.targets[0]!.region}), no replication path: each at its own snapshot`;
  return `${s.targets.map((t) => s.paths?.[t.instance] ?? t.instance).join('; ')}: each held at the primary's position per chunk`;
}

function describeReport(r: ConsistencyReport): string {
  const lines = r.tables.map((t) =>
    t.unverifiable ? `- **${t.table}**: UNVERIFIABLE (${t.unverifiable})` : `- **${t.table}**: ${t.rowsCompared} row(s), ${t.chunks} chunk(s): ${describeDifferences(t)}`,
  );
  return [`Compared ${r.source} with ${r.targets.join(', ')}: ${r.comparedAt}.`, ...lines].join('\n');
}
