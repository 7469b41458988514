/**
 * Failback runbook: bring the old primary of an emergency failover (or a member a restore's
 * `--cutover promote` left stale) back into the cluster, safely, and optionally switch back to it:
 *
 *   fence returning instance (read-only before anything else) → identify primary → errant analysis
 *   (its history against the primary's; what only it holds exported with the incident) → decide
 *   (rejoin / flashback / reseed) → approval (four-eyes) → lock cluster → compare-and-swap
 *   primary → rejoin → catch up → consistency check (a child run: zero differences) →
 *   [switch back: compare-and-swap primary → fence old primary → wait for catch-up → promote
 *   returning instance → switch traffic → repoint … → verify] → record → unlock cluster
 *
 * The cluster lock is taken after the approval, not before: a real failure while the failback
 * waits for a human must still be failed over. The compare-and-swap then notices it (the primary
 * is not the one the run started with) and the run stops with nothing changed. The consistency
 * child takes only its own `<cluster>/consistency` lock (never the cluster lock: it is not asked
 * to repair), so it cannot deadlock on the lock this run holds.
 */
import * as wf from '@temporalio/workflow';
import { ApplicationFailure } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { FailbackAnalysis } from '../activities/failback';
import { decideFailback, failbackInputProblems, type FailbackMethod, type FailbackMethodOption } from '../core/failback';
import type { StartedFromCli } from '../core/runbookDefinitions';
import type { InstanceProbe } from '../core/types';
import { ApprovalGate } from './shared/approval';
import { fenceCatchUpPromote, pos, rollForwardPastPromotion, sideOf, type Promotion } from './shared/promotion';
import { runRunbook, type Runbook } from './shared/runbook';
import { consistency, type ConsistencyResult } from './consistency';

export interface FailbackInput extends StartedFromCli {
  cluster: string;
  /** The returning instance. */
  instance: string;
  switchBack?: boolean;
  method?: FailbackMethodOption;
  requester: string;
  reason: string;
  incidentId: string;
  dryRun?: boolean;
}

export interface FailbackResult {
  status: 'succeeded' | 'dry_run' | 'rejected' | 'timed_out';
  method: FailbackMethod;
  why: string;
  /** The primary the run started with (and, after a switch back, the instance). */
  primaryBefore: string;
  primaryAfter: string;
  analysis: Pick<FailbackAnalysis, 'instancePosition' | 'primaryPosition' | 'commonPosition' | 'exact' | 'purged' | 'export'> & { errant: { gtid: string; statement: string; tables: string[] }[] };
  wasWritable: boolean;
  consistency?: { differences: number; rowsCompared: number; workflowId: string };
}

/** Every step after the decision, in order (the switch back's only with --switch-back). */
export const FAILBACK_CHANGING_STEPS = (method: FailbackMethod) => ['approval', 'lock cluster', 'compare-and-swap primary', ...METHOD_STEPS[method], 'rejoin', 'catch up', 'consistency check', 'record'];
export const SWITCH_BACK_STEPS = ['compare-and-swap primary (switch back)', 'fence old primary', 'wait for catch-up', 'promote returning instance', 'switch traffic'];

/** The methods this version carries out; the others are decided and shown, then refused before approval. */
const AVAILABLE: FailbackMethod[] = ['rejoin', 'flashback', 'reseed-logical', 'reseed-physical'];

/** What a method does before the rejoin. */
const METHOD_STEPS: Record<FailbackMethod, string[]> = { rejoin: [], flashback: ['undo errant transactions'], 'reseed-logical': ['reseed (logical)'], 'reseed-physical': ['reseed (physical)'] };

const act = wf.proxyActivities<Activities>({ startToCloseTimeout: '30s', retry: { initialInterval: '500ms', backoffCoefficient: 2, maximumAttempts: 4 } });
// Reading binlogs and waiting for catch-up: as long as needed, a dead worker noticed by heartbeat.
const long = wf.proxyActivities<Activities>({ startToCloseTimeout: '2h', heartbeatTimeout: '15s', retry: { initialInterval: '1s', maximumAttempts: 5 } });
const untilDone = wf.proxyActivities<Activities>({ startToCloseTimeout: '15s', retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '10s' } });

export async function failback(input: FailbackInput): Promise<FailbackResult> {
  const meta = { runbook: 'failback', cluster: input.cluster, operator: input.requester, incidentId: input.incidentId, reason: input.reason, configFingerprint: input.configFingerprint };
  return runRunbook(meta, (rb) => body(rb, input), failbackInputProblems(input));
}

async function body(rb: Runbook, input: FailbackInput): Promise<FailbackResult> {
  const { cluster, instance } = input;
  const ref = { cluster, instance };
  const policy = await rb.step('load policy', () => act.clusterPolicy({ cluster, runbook: 'failback', mode: 'default' }), {
    note: (p) => `approval ${p.approval.mode} (four-eyes always), catch-up ${p.thresholds.catchUpTimeoutSeconds} s`,
  });
  if (!policy.instances.some((i) => i.name === instance)) throw ApplicationFailure.nonRetryable(`${instance} is not an instance of ${cluster} (${policy.instances.map((i) => i.name).join(', ')})`, 'BadInput');

  // 1. Read-only before anything else (a dry run only looks: it says whether it is writable).
  const fenced = input.dryRun
    ? await rb.step('probe returning instance', async () => {
        const p = await act.probeInstance(ref);
        if (!p.reachable) throw ApplicationFailure.nonRetryable(`${instance} is unreachable (${p.error}): start it first`, 'Unreachable');
        return { wasWritable: p.readOnly === false, killedSessions: 0, position: p.gtid?.binlogPos ?? '', replicatingFrom: p.replication ? p.replication.sourceInstance ?? p.replication.sourceHost : null };
      }, { note: (f) => `${f.wasWritable ? 'WRITABLE (a real run makes it read-only first)' : 'read-only'}, at ${pos(f.position)}` })
    : await rb.step('fence returning instance', () => act.fenceReturningInstance(ref), {
        note: (f) => `${instance} ${f.wasWritable ? `was WRITABLE: read-only now, ${f.killedSessions} session(s) ended` : 'already read-only'}, at ${pos(f.position)}${f.replicatingFrom ? `, replicating from ${f.replicatingFrom}` : ', replicating from nobody'}`,
        detail: (f) => ({ fence: f }),
      });

  const start = await rb.step('identify primary', async () => {
    const t = await act.probeTopology(cluster);
    if (!t.primary) throw ApplicationFailure.nonRetryable(`${cluster} has no single writable primary (${t.problems.join('; ') || 'none writable'}): nothing to fail back to`, 'NoPrimary');
    if (t.primary === instance) throw ApplicationFailure.nonRetryable(`${instance} is the primary of ${cluster}: nothing to fail back`, 'IsPrimary');
    const others = t.instances.filter((i) => i.instance !== instance && i.instance !== t.primary && i.replication?.sourceInstance === t.primary).map((i) => i.instance);
    const side = (name: string) => {
      const i = t.instances.find((x) => x.instance === name)! as InstanceProbe;
      return sideOf(i);
    };
    return { primary: t.primary, others, from: side(t.primary), to: side(instance) };
  }, { note: (s) => `${s.primary} is the primary${s.others.length ? `; replicas ${s.others.join(', ')}` : ''}`, detail: (s) => ({ start: s }) });

  const analysis = await rb.step('errant analysis', () => long.analyseFailback({ ...ref, primary: start.primary, incidentId: input.incidentId }), {
    note: (a) =>
      `${a.errant.length} errant transaction(s)${a.errant.length ? ` (${a.errant.slice(0, 3).map((e) => e.gtid).join(', ')}${a.errant.length > 3 ? ', …' : ''}), exported to ${a.export!.dir}` : ''}; ` +
      `${a.purged.length ? `${start.primary} PURGED binlogs ${instance} needs (domain ${a.purged.map((p) => p.domain).join(', ')})` : `${start.primary} still has the binlogs ${instance} needs`}${a.exact ? '' : `; not exact: ${a.problems.join('; ')}`}`,
    detail: (a) => ({ analysis: { ...a, errant: a.errant.slice(0, 50) } }),
  });

  const decided = await rb.step('decide', async () => {
    // A member a restore's promote left stale holds the event it skipped, deep in its history.
    const lineage = await act.backupLineage({ cluster });
    const stale = lineage?.stale?.includes(instance) ? `${instance} is on the backup lineage's stale list: it holds ${lineage.skipped}, which restore ${lineage.workflowId} skipped when it promoted ${lineage.promoted}` : undefined;
    const d = decideFailback(
      { errant: analysis.errant.length, flashbackRefusals: analysis.errant.flatMap((e) => (e.flashbackRefusal ? [e.flashbackRefusal] : [])), purged: analysis.purged.length, exact: analysis.exact, stale },
      input.method ?? 'auto',
    );
    if (!d.ok) throw ApplicationFailure.nonRetryable(d.refusal, 'MethodRefused');
    if (!AVAILABLE.includes(d.method) && !input.dryRun) {
      throw ApplicationFailure.nonRetryable(
        `${d.method} is needed (${d.why}) but this version carries out only ${AVAILABLE.join(', ')}: rebuild ${instance} from ${start.primary} by hand; the errant transactions are kept in ${analysis.export?.dir ?? '(none)'}`,
        'MethodUnavailable',
      );
    }
    if (d.method === 'reseed-physical' && !policy.reseedPhysical && !input.dryRun) {
      throw ApplicationFailure.nonRetryable(`reseed-physical needs a reseed.physical template (sourceCommand, targetCommand) in ${cluster}'s config: add one, or use --method reseed-logical`, 'MethodUnavailable');
    }
    return d;
  }, { note: (d) => `${d.method}: ${d.why}` });
  const method = decided.method;

  const result: FailbackResult = {
    status: 'succeeded', method, why: decided.why, primaryBefore: start.primary, primaryAfter: start.primary, wasWritable: fenced.wasWritable,
    analysis: {
      instancePosition: analysis.instancePosition, primaryPosition: analysis.primaryPosition, commonPosition: analysis.commonPosition, exact: analysis.exact, purged: analysis.purged, export: analysis.export,
      errant: analysis.errant.map((e) => ({ gtid: e.gtid, statement: e.statement, tables: e.tables })),
    },
  };
  const steps = [...FAILBACK_CHANGING_STEPS(method), ...(input.switchBack ? SWITCH_BACK_STEPS : [])];
  rb.details.failback = { method, why: decided.why, primary: start.primary, switchBack: !!input.switchBack, errant: analysis.errant.length };
  if (input.dryRun) {
    for (const s of steps) rb.skip(s, 'dry run: nothing changed');
    rb.outcome = 'dry_run';
    return { ...result, status: 'dry_run' };
  }
  rb.open({
    title: `failback ${cluster}: ${instance} (${method})${input.switchBack ? ` and switch back from ${start.primary}` : ''} by ${input.requester}`,
    severity: 'L3',
    plan: describePlan(input, start.primary, method, decided.why, analysis),
    impact: input.switchBack ? `writes to ${cluster} pause for about a second while ${start.primary} hands over to ${instance}` : `none for clients: ${instance} joins as a read-only replica of ${start.primary}`,
    eta: 'minutes, after approval',
    rootCause: input.reason,
  });

  const gate = new ApprovalGate(rb, { ...policy.approval, fourEyes: true }, input.requester);
  const decision = await rb.step('approval', () => gate.request(), { note: (d) => d });
  if (decision === 'rejected' || decision === 'timed_out') {
    for (const s of steps.slice(1)) rb.skip(s, `approval ${decision}: nothing changed`);
    rb.outcome = decision;
    return { ...result, status: decision };
  }

  const lock = { cluster, workflowId: wf.workflowInfo().workflowId };
  await rb.step('lock cluster', () => act.acquireClusterLock({ ...lock, runbook: 'failback', operator: input.requester }));
  try {
    await rb.step('compare-and-swap primary', () => act.checkPrimaryUnchanged({ cluster, expected: start.primary }), { note: (c) => `${c.primary} is still the primary` });
    if (method === 'flashback') {
      await rb.step('undo errant transactions', () => long.undoErrantTransactions({ ...ref, errant: analysis.errant.map(({ gtid, file, startPosition, endPosition }) => ({ gtid, file, startPosition, endPosition })), commonPosition: analysis.commonPosition }), {
        note: (u) =>
          `${u.undone.length + u.alreadyUndone.length} errant transaction(s) undone on ${instance}${u.alreadyUndone.length ? ` (${u.alreadyUndone.length} by an earlier attempt)` : ''}; ` +
          `binlog started afresh at ${u.binlogFrom || '(none)'}, gtid_slave_pos ${pos(u.slavePos)} (the common history)`,
        detail: (u) => ({ undo: u }),
      });
    }
    // Both reseeds take the same input and report alike; only how the copy travelled differs.
    const reseedFrom = { ...ref, primary: start.primary, incidentId: input.incidentId, workflowId: wf.workflowInfo().workflowId };
    const reseeded = (r: { alreadyDone?: boolean; source: string; gtid: string; binlogFrom: string }, copy: string) =>
      r.alreadyDone ? `reseeded by an earlier attempt from ${r.source} at ${pos(r.gtid)}` : `${instance} ${copy}; gtid_slave_pos ${pos(r.gtid)}, binlog afresh at ${r.binlogFrom}`;
    if (method === 'reseed-logical') {
      await rb.step('reseed (logical)', () => long.reseedLogical(reseedFrom), {
        note: (r) => reseeded(r, `wiped and loaded from ${r.source}'s dump (${r.dumpBytes} bytes${r.dumpReused ? ', an earlier attempt\'s' : `, ${r.dumpMs} ms`}; load ${r.loadMs} ms)`),
        detail: (r) => ({ reseed: r }),
      });
    }
    if (method === 'reseed-physical') {
      await rb.step('reseed (physical)', () => long.reseedPhysical(reseedFrom), {
        note: (r) => reseeded(r, `rebuilt from ${r.source}'s physical copy (${r.copyBytes} bytes${r.copyReused ? ', an earlier attempt\'s' : `, ${r.copyMs} ms`})`),
        detail: (r) => ({ reseed: r }),
      });
    }
    await rb.step('rejoin', () => act.repointReplica({ ...ref, newPrimary: start.primary }), {
      note: (r) => (r.alreadyReplicating ? `already replicating from ${start.primary}` : `replicating from ${start.primary} from ${pos(r.fromPosition)} (gtid_slave_pos set from its own history)`),
    });
    await rb.step('catch up', async () => {
      const p = await act.probeInstance({ cluster, instance: start.primary });
      return long.waitForCatchUp({ ...ref, position: p.gtid?.binlogPos ?? '', timeoutSeconds: policy.thresholds.catchUpTimeoutSeconds });
    }, { note: (w) => `${instance} at ${pos(w.appliedPosition)} after ${w.waitedMs} ms` });
    const checked = await rb.step('consistency check', async () => {
      const workflowId = `${wf.workflowInfo().workflowId}-consistency`;
      const r: ConsistencyResult = await wf.executeChild(consistency, {
        workflowId,
        args: [{ cluster, requester: input.requester, reason: `failback ${instance}: prove it holds what ${start.primary} holds`, incidentId: input.incidentId, replicas: [instance] }],
      });
      const t = r.report.totals;
      if (r.status !== 'succeeded' || t.differences || t.unverifiable) {
        throw ApplicationFailure.nonRetryable(`${instance} differs from ${start.primary}: ${t.differences} row(s) differ, ${t.unverifiable} table(s) unverifiable (report: runbook consistency-report ${workflowId}); it stays a read-only replica`, 'Inconsistent');
      }
      return { differences: t.differences, rowsCompared: t.rowsCompared, tables: t.tables, workflowId };
    }, { note: (c) => `0 differences in ${c.rowsCompared} row(s) of ${c.tables} table(s) (${c.workflowId})` });
    result.consistency = { differences: checked.differences, rowsCompared: checked.rowsCompared, workflowId: checked.workflowId };

    if (input.switchBack) {
      await switchBack(rb, input, policy, start, analysis);
      result.primaryAfter = instance;
    } else {
      await rb.step('record', () => record(input, start.primary, analysis), { note: (r) => r });
    }
  } finally {
    await wf.CancellationScope.nonCancellable(() => rb.step('unlock cluster', () => untilDone.releaseClusterLock(lock)));
  }
  rb.updateNotice({
    plan: `${describePlan(input, start.primary, method, decided.why, analysis)}\n\n**Done**: ${instance} ${input.switchBack ? 'is the primary again' : `replicates from ${start.primary}`}; 0 differences in ${result.consistency?.rowsCompared ?? 0} row(s).`,
  });
  return result;
}

/** The planned switchover back, as a compare-and-swap on the primary the run started with. */
async function switchBack(
  rb: Runbook,
  input: FailbackInput,
  policy: Awaited<ReturnType<Activities['clusterPolicy']>>,
  start: { primary: string; others: string[]; from: Promotion['from']; to: Promotion['to'] },
  analysis: FailbackAnalysis,
): Promise<void> {
  const { cluster, instance } = input;
  await rb.step('compare-and-swap primary (switch back)', () => act.checkPrimaryUnchanged({ cluster, expected: start.primary }), { note: (c) => `${c.primary} is still the primary` });
  const promotion: Promotion = { cluster, mode: 'planned', incidentId: input.incidentId, from: start.from, to: start.to, promoteStep: 'promote returning instance' };
  await fenceCatchUpPromote(rb, promotion, {
    step: 'wait for catch-up',
    run: (fence) => long.waitForCatchUp({ cluster, instance, position: fence.finalPosition, timeoutSeconds: policy.thresholds.catchUpTimeoutSeconds }),
  });
  const replicas = [start.primary, ...start.others];
  const workflowId = wf.workflowInfo().workflowId;
  await rollForwardPastPromotion(rb, promotion, {
    thresholds: policy.thresholds,
    steps: ['switch traffic', ...replicas.map((r) => `repoint ${r}`), 'verify', 'record'],
    after: async (forward, endpoint) => {
      for (const r of replicas) {
        await forward.step(`repoint ${r}`, () => act.repointReplica({ cluster, instance: r, newPrimary: instance }), {
          note: (x) => (x.alreadyReplicating ? `already replicating from ${instance}` : `replicating from ${instance} from ${pos(x.fromPosition)}`),
        });
      }
      await forward.step('verify', () => long.verifyCluster({ cluster, primary: instance, replicas, workflowId, timeoutSeconds: policy.thresholds.verifyTimeoutSeconds }), {
        note: (v) => `heartbeat ${v.heartbeatPosition} applied on ${v.replicas.join(', ')}; one writable instance`,
      });
      await forward.step('record', async () => {
        const w = await endpoint.written('5s');
        return `${await record(input, start.primary, analysis)}; writer endpoint → ${instance}, generation ${w.generation}`;
      }, { note: (r) => r });
    },
  });
}

/** sync_status from the cluster as it is now (no region left needs_failback), the lineage, the notice. */
async function record(input: FailbackInput, primary: string, analysis: FailbackAnalysis): Promise<string> {
  await act.recordSyncStatus(await act.probeTopology(input.cluster));
  const lineage = await act.clearStaleMember({ cluster: input.cluster, instance: input.instance });
  return `sync_status recorded (${input.instance} no longer needs failback)${lineage.wasStale ? '; taken off the backup lineage\'s stale list' : ''}${analysis.export ? `; errant transactions kept in ${analysis.export.dir}` : ''}`;
}

function describePlan(input: FailbackInput, primary: string, method: FailbackMethod, why: string, a: FailbackAnalysis): string {
  const errant = a.errant.slice(0, 20).map((e) => `  - ${e.gtid} ${new Date(e.timestamp).toISOString()} ${e.tables.join(', ') || '(no table)'}: \`${e.statement}\``);
  return [
    `- **instance**: ${input.instance} at ${pos(a.instancePosition)}; primary ${primary} at ${pos(a.primaryPosition)}; common history through ${pos(a.commonPosition)}`,
    `- **errant**: ${a.errant.length} transaction(s)${a.export ? `, exported to ${a.export.dir} (errant.binlog, errant.sql)` : ''}`,
    ...errant,
    ...(a.errant.length > 20 ? [`  - … and ${a.errant.length - 20} more (errant.sql)`] : []),
    `- **binlogs**: ${a.purged.length ? `${primary} purged what ${input.instance} needs (domain ${a.purged.map((p) => p.domain).join(', ')})` : `${primary} still has every binlog ${input.instance} needs`}`,
    `- **method**: ${method}: ${why}`,
    `- **then**: catch up, consistency check (zero differences required)${input.switchBack ? `, switch back: ${input.instance} becomes the primary (refused if ${primary} is no longer the primary)` : ''}`,
  ].join('\n');
}
