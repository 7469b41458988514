/**
 * Failover runbook: planned switchover and emergency failover.
 *
 * Planned:   preflight → approval → hand over writes (one activity: fence old primary → wait for
 *            catch-up → promote candidate → writer endpoint, each a sub-step with its own audit
 *            rows) → switch traffic → repoint replicas → verify → record.
 *            A catch-up that fails or times out is compensated (the old primary is unfenced), so
 *            the cluster is left as it was. No acknowledged write is lost: the candidate applies
 *            everything up to the fenced primary's final GTID position before it is promoted.
 *            The promotion is the point of no return: every step after it rolls forward (retried
 *            until done, or the run waits in needs_attention for `runbook resume`; rollForward.ts).
 * Emergency: confirm failure → fence (read_only, else STONITH hook), at the same time stop IO
 *            threads → apply relay logs → choose candidate (and state the expected loss) →
 *            approval → promote → switch traffic → repoint (every replica at once) → verify →
 *            record (old primary: needs failback).
 */
import * as wf from '@temporalio/workflow';
import { ApplicationFailure } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { FailoverMode, FailoverPlan } from '../core/failover';
import { describePlan, planEmergency, planSwitchover } from '../core/plan';
import { confirmationProbes, confirmedDeadProblem, lastKnownPrimary, type ConfirmedDead } from '../core/failedPrimary';
import type { InstanceProbe } from '../core/types';
import { ApprovalGate } from './shared/approval';
import { fenceCatchUpPromote, HAND_OVER_STEP, hookEnvironment, pos, rollForwardPastPromotion, type Promotion } from './shared/promotion';
import { runRunbook, together, type Runbook } from './shared/runbook';
import { type StartedFromCli } from '../core/runbookDefinitions';
import { nameProblem } from '../core/inputs';

export interface FailoverInput extends StartedFromCli {
  cluster: string;
  mode: FailoverMode;
  /** A region or an instance; default: the most advanced eligible replica. */
  target?: string;
  reason: string;
  requester: string;
  incidentId: string;
  dryRun?: boolean;
  /** Emergency started by the monitor: its confirmation of the dead primary (see confirmationProbes). */
  confirmedDead?: ConfirmedDead;
}

export interface FailoverResult {
  status: 'succeeded' | 'dry_run' | 'rejected' | 'timed_out';
  plan: FailoverPlan;
}

// Quick, idempotent statements: retried a few times, each attempt bounded (fencing may wait 5 s
// for a running write, end sessions and wait again); a worker dying mid-call is noticed by then.
const act = wf.proxyActivities<Activities>({
  startToCloseTimeout: '15s',
  retry: { initialInterval: '500ms', backoffCoefficient: 2, maximumAttempts: 4 },
});
// Waits that heartbeat: a dead worker is noticed within seconds and the wait resumes elsewhere.
const waits = wf.proxyActivities<Activities>({
  startToCloseTimeout: '10m',
  heartbeatTimeout: '5s',
  retry: { initialInterval: '500ms', maximumAttempts: 3 },
});
// Hooks the engine does not know to be safe twice (fencing): run once; a lost attempt is reported, not repeated.
const once = wf.proxyActivities<Activities>({ startToCloseTimeout: '2m', heartbeatTimeout: '10s', retry: { maximumAttempts: 1 } });
// Confirming a failure is read-only and starts over when run again, so an attempt lost with its
// worker (no heartbeat for 10 s) is run again elsewhere: an automatic failover must survive the
// worker that started it. Its verdicts are final: a primary that answers, or replicas still
// connected to it, are non-retryable refusals, so no retry turns "alive" into "dead".
const confirm = wf.proxyActivities<Activities>({ startToCloseTimeout: '2m', heartbeatTimeout: '10s', retry: { initialInterval: '500ms', maximumAttempts: 3 } });
// Short reads (the policy, the topology), the control database's own rows (the lock,
// sync_status) and stopping the replicas' IO threads: local activities, run by the worker inside the workflow task, so that each costs
// its own work and not two round trips through the Temporal server. Each is safe to run twice: a
// worker that dies before the task completes runs it again when the run is replayed elsewhere.
const quick = wf.proxyLocalActivities<Activities>({
  startToCloseTimeout: '15s',
  retry: { initialInterval: '500ms', backoffCoefficient: 2, maximumAttempts: 4 },
});
// The fence's first try on a primary that is down (read-only, if it answers after all): safe to
// repeat, tried once (the fencing hooks come next), and local like the reads above.
const onceQuick = wf.proxyLocalActivities<Activities>({ startToCloseTimeout: '30s', retry: { maximumAttempts: 1 } });
// The lock must be released, whenever the control database answers again (as the audit waits for it).
const untilDone = wf.proxyLocalActivities<Activities>({ startToCloseTimeout: '15s', retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '10s' } });

/** The steps that change something, in order, as they would run for this plan. */
export function changingSteps(plan: FailoverPlan): string[] {
  const repoints = (plan.mode === 'planned' ? [plan.from.instance, ...plan.others] : plan.others).map((i) => `repoint ${i}`);
  return plan.mode === 'planned'
    ? [HAND_OVER_STEP, 'switch traffic', ...repoints, 'verify', 'record']
    : ['promote candidate', 'switch traffic', ...repoints, 'verify', 'record'];
}

export async function failover(input: FailoverInput): Promise<FailoverResult> {
  const meta = { runbook: 'failover', cluster: input.cluster, operator: input.requester, incidentId: input.incidentId, reason: input.reason, configFingerprint: input.configFingerprint };
  return runRunbook(meta, async (rb) => {
    const policy = await rb.step('load policy', () => quick.clusterPolicy({ cluster: input.cluster, runbook: 'failover', mode: input.mode }), {
      note: (p) => `approval ${p.approval.mode}, max lag ${p.thresholds.maxLagSeconds} s, catch-up ${p.thresholds.catchUpTimeoutSeconds} s`,
    });
    const gate = new ApprovalGate(rb, policy.approval, input.requester);
    const run = () => (input.mode === 'planned' ? plannedSwitchover(rb, gate, input, policy) : emergencyFailover(rb, gate, input, policy));
    if (input.dryRun) return run(); // reads only: no lock
    const lock = { cluster: input.cluster, workflowId: wf.workflowInfo().workflowId };
    await rb.step('lock cluster', () => quick.acquireClusterLock({ ...lock, runbook: 'failover', operator: input.requester }));
    try {
      return await run();
    } finally {
      await wf.CancellationScope.nonCancellable(() => rb.step('unlock cluster', () => untilDone.releaseClusterLock(lock)));
    }
  }, [nameProblem('target', input.target), confirmedDeadProblem(input.confirmedDead)]);
}

async function plannedSwitchover(rb: Runbook, gate: ApprovalGate, input: FailoverInput, policy: Awaited<ReturnType<Activities['clusterPolicy']>>): Promise<FailoverResult> {
  const { cluster } = input;
  const plan = await rb.step(
    'preflight',
    async () => {
      const result = planSwitchover(await quick.probeTopology(cluster), policy, input.target);
      if (!result.ok) throw ApplicationFailure.nonRetryable(`refusing the switchover: ${result.refusals.join('; ')}`, 'Unsafe');
      return result.plan;
    },
    { note: (p) => `${p.from.instance} → ${p.to.instance}, lag ${p.lagSeconds} s`, detail: (p) => ({ plan: p }) },
  );
  adopt(rb, input, plan);
  if (input.dryRun) return dryRun(rb, plan);

  const decision = await rb.step('approval', () => gate.request(), { note: (d) => d });
  if (decision === 'rejected' || decision === 'timed_out') return abort(rb, plan, decision);

  const promotion = promotionOf(input, plan, 'promote candidate');
  // Fence, catch-up, promotion and writer endpoint: one activity, the `hand over writes` step.
  await fenceCatchUpPromote(rb, promotion, { timeoutSeconds: policy.thresholds.catchUpTimeoutSeconds });
  await afterPromotion(rb, input, policy, plan, [plan.from.instance, ...plan.others]);
  return { status: 'succeeded', plan };
}

async function emergencyFailover(rb: Runbook, gate: ApprovalGate, input: FailoverInput, policy: Awaited<ReturnType<Activities['clusterPolicy']>>): Promise<FailoverResult> {
  const { cluster } = input;
  const before = await rb.step('identify failed primary', async () => {
    const found = lastKnownPrimary(await quick.probeTopology(cluster));
    if (!found.ok) throw ApplicationFailure.nonRetryable(`refusing the emergency failover: ${found.reason}`, 'Unsafe');
    return found;
  }, { note: (f) => `${f.primary}, last seen at ${f.lastKnownPosition ?? 'unknown'}` });
  const primary = { cluster, instance: before.primary };
  // The execution's start time, from its history (the same on every replay; runStartTime is the
  // first activation a worker saw, which a worker that replays the run later sees later).
  const probes = confirmationProbes(policy.thresholds, input.confirmedDead, before.primary, wf.workflowInfo().startTime.getTime());
  await rb.step('confirm failure', () => confirm.confirmPrimaryDown({ ...primary, attempts: probes.attempts, intervalMs: policy.thresholds.confirmIntervalMs, replicaGraceSeconds: policy.thresholds.replicaGraceSeconds }), {
    note: (c) => `${c.evidence.join('; ')}${probes.because ? ` (${probes.because})` : ''}`,
  });
  const replicas = before.replicas.map((r) => r.instance);
  const chooseCandidate = (probes: () => Promise<InstanceProbe[]>, note = '') =>
    rb.step(
      'choose candidate',
      async () => {
        const result = planEmergency({ primary: before.primary, primaryLastKnown: before.lastKnownPosition, replicas: await probes(), policy, target: input.target });
        if (!result.ok) throw ApplicationFailure.nonRetryable(`no safe candidate: ${result.refusals.join('; ')}`, 'Unsafe');
        return result.plan;
      },
      { note: (p) => `${p.to.instance}: ${p.expectedLoss?.summary}${note}`, detail: (p) => ({ plan: p }) },
    );
  if (input.dryRun) {
    // Read-only: the replicas as they are now, without stopping their IO threads.
    const plan = await chooseCandidate(() => Promise.all(replicas.map((instance) => act.probeInstance({ cluster, instance }))), ' (dry run: from the positions applied so far; a real run first stops IO and applies the relay logs)');
    adopt(rb, input, plan);
    return dryRun(rb, plan, ['fence old primary', 'stop replication IO', 'apply relay logs']);
  }
  // Fencing the dead primary and preparing the replicas are independent: they run at once, and
  // nothing is promoted before both are done.
  const [fenced, applied] = await together([
    rb.step('fence old primary', () => fenceUnreachable(rb, input, before.primary), { note: (f) => f.how }),
    (async () => {
      await rb.step('stop replication IO', () => Promise.all(replicas.map((instance) => quick.stopReplicationIo({ cluster, instance }))));
      return rb.step('apply relay logs', () =>
        Promise.all(replicas.map((instance) => waits.waitForRelayApplied({ cluster, instance, timeoutSeconds: policy.thresholds.catchUpTimeoutSeconds }))),
      );
    })(),
  ]);
  const plan = await chooseCandidate(async () => applied);
  adopt(rb, input, plan);

  const decision = await rb.step('approval', () => gate.request(fenced.confirmed ? {} : { forceRequired: fenced.how }), { note: (d) => d });
  if (decision === 'rejected' || decision === 'timed_out') return abort(rb, plan, decision);

  await rb.step('promote candidate', () => act.promoteCandidate({ cluster, instance: plan.to.instance }), { note: (p) => `writable at ${pos(p.position)}` });
  await afterPromotion(rb, input, policy, plan, plan.others);
  return { status: 'succeeded', plan };
}

/** Read-only if it still answers; else the configured STONITH hooks; else a human must decide. */
async function fenceUnreachable(rb: Runbook, input: FailoverInput, primary: string): Promise<{ confirmed: boolean; how: string }> {
  try {
    const f = await onceQuick.fenceOldPrimary({ cluster: input.cluster, instance: primary });
    return { confirmed: true, how: `read-only at ${pos(f.finalPosition)}` };
  } catch {
    try {
      const results = await once.runHooks({ cluster: input.cluster, kind: 'fencing', env: fencingEnv(input, primary, rb) });
      if (results.length && results.every((r) => r.ok)) return { confirmed: true, how: `fencing hook(s) ${results.map((r) => r.name).join(', ')} succeeded` };
      return { confirmed: false, how: results.length ? 'a fencing hook failed: fencing not confirmed' : 'unreachable and no fencing hook configured: fencing not confirmed' };
    } catch (err) {
      return { confirmed: false, how: `fencing not confirmed: ${(err as Error).cause instanceof Error ? ((err as Error).cause as Error).message : (err as Error).message}` };
    }
  }
}

/** What a fencing hook is told before a candidate is chosen: the failed primary on both sides. */
function fencingEnv(input: FailoverInput, primary: string, rb: Runbook) {
  const plan = rb.details.plan as FailoverPlan | undefined;
  const side = { instance: primary, region: plan?.from.region ?? '', address: plan?.from.address ?? '' };
  return hookEnvironment({ cluster: input.cluster, mode: input.mode, incidentId: input.incidentId, from: side, to: { ...side, address: plan?.to.address ?? '', region: plan?.to.region ?? '' } });
}

/**
 * Everything after the promotion, the point of no return: traffic, repointing, verification and
 * the record only roll forward. A cancellation is not honoured here: a run cancelled now would
 * leave the cluster half switched (terminate it to abandon it).
 */
async function afterPromotion(rb: Runbook, input: FailoverInput, policy: Awaited<ReturnType<Activities['clusterPolicy']>>, plan: FailoverPlan, replicas: string[]): Promise<void> {
  const steps = changingSteps(plan);
  const workflowId = wf.workflowInfo().workflowId;
  await rollForwardPastPromotion(rb, promotionOf(input, plan, 'promote candidate'), {
    thresholds: policy.thresholds,
    steps: steps.slice(steps.indexOf('switch traffic')),
    // Each replica's repoint touches that replica alone (and reads the new primary): they run at
    // once, each its own roll-forward step, beside the traffic switch (hooks and the endpoint row
    // touch no replica); verify waits for all of them.
    beside: async (forward) => {
      await together(
        replicas.map((instance) =>
          forward.step(`repoint ${instance}`, () => act.repointReplica({ cluster: plan.cluster, instance, newPrimary: plan.to.instance }), {
            note: (r) => (r.alreadyReplicating ? `already replicating from ${plan.to.instance}` : `replicating from ${plan.to.instance} from ${pos(r.fromPosition)}`),
          }),
        ),
      );
    },
    after: async (forward, endpoint) => {
      await forward.step('verify', () => waits.verifyCluster({ cluster: input.cluster, primary: plan.to.instance, replicas, workflowId, timeoutSeconds: policy.thresholds.verifyTimeoutSeconds }), {
        note: (v) => `heartbeat ${v.heartbeatPosition} applied on ${v.replicas.join(', ') || 'no replica'}; one writable instance`,
      });
      await forward.step(
        'record',
        async () => {
          const written = await endpoint.written('5s');
          await quick.recordSyncStatus(await quick.probeTopology(input.cluster));
          if (input.mode === 'emergency') {
            await quick.markNeedsFailback({ cluster: input.cluster, region: plan.from.region, instance: plan.from.instance, remark: `failed over to ${plan.to.instance} (${input.incidentId})` });
          }
          return written;
        },
        { note: (w) => `sync_status recorded; writer endpoint → ${plan.to.instance}, generation ${w.generation}` },
      );
    },
  });
}

/** The plan as the shared promotion sequence sees it: both sides, for the hooks and the audit. */
function promotionOf(input: FailoverInput, plan: FailoverPlan, promoteStep: string): Promotion {
  return { cluster: input.cluster, mode: input.mode, incidentId: input.incidentId, from: plan.from, to: plan.to, promoteStep };
}

/** The plan is known: it goes on every later audit row, into the run's state, and to people. */
function adopt(rb: Runbook, input: FailoverInput, plan: FailoverPlan): void {
  rb.regions = { from: plan.from.region, to: plan.to.region };
  rb.details.plan = plan;
  if (input.dryRun) return; // a dry run is nobody's incident
  rb.open({
    title: title(input, plan),
    severity: input.mode === 'emergency' ? 'L1' : 'L3',
    plan: describePlan(plan),
    impact:
      input.mode === 'emergency'
        ? `writes to ${input.cluster} fail until ${plan.to.instance} is promoted${plan.expectedLoss ? `; ${plan.expectedLoss.summary}` : ''}`
        : `writes to ${input.cluster} pause for about a second while ${plan.from.instance} hands over to ${plan.to.instance}`,
    eta: input.mode === 'emergency' ? 'minutes, after approval' : 'seconds, after approval',
    rootCause: input.reason,
    followUp: input.mode === 'emergency' ? [`fail back or reseed ${plan.from.instance} (marked needs_failback in sync_status)`] : [],
  });
}

/** A dry run ends here, as a success: the plan, and every step that would have changed something skipped. */
function dryRun(rb: Runbook, plan: FailoverPlan, stepsBefore: string[] = []): FailoverResult {
  for (const step of [...stepsBefore, ...changingSteps(plan)]) rb.skip(step, 'dry run: nothing changed');
  rb.outcome = 'dry_run';
  return { status: 'dry_run', plan };
}

function abort(rb: Runbook, plan: FailoverPlan, decision: 'rejected' | 'timed_out'): FailoverResult {
  for (const step of changingSteps(plan)) rb.skip(step, `approval ${decision}: nothing changed`);
  rb.outcome = decision;
  return { status: decision, plan };
}


function title(input: FailoverInput, plan: FailoverPlan): string {
  return `failover ${input.cluster}: ${plan.from.region} → ${plan.to.region} (${input.mode}) by ${input.requester}`;
}
