/**
 * The one promotion sequence, for every runbook that makes another server the primary (a planned
 * failover, restore's `--cutover promote`, failback's switch back):
 *
 *   fence old primary → catch up (undone by unfencing, under a non-cancellable scope, if it fails)
 *   → promote → [the point of no return] → the runbook's own steps, rolling forward, around
 *   `switch traffic` (the writer endpoint and the traffic hooks, with their complete environment)
 *
 * A planned switchover runs fence, catch-up, promotion and the writer endpoint as ONE activity, the
 * `hand over writes` step (activities/handOver.ts, each sub-step with its own failover_log rows):
 * the window in which writes are refused is then the servers' own time, not round trips through
 * the Temporal server.
 *
 * Vitess's reparentutil shape: small named, time-bounded steps; the undo under a fresh scope. Past
 * the promotion nothing is undone: every step is retried until done, or the run waits in
 * `needs_attention` for `runbook resume` (rollForward.ts), never half switched.
 */
import * as wf from '@temporalio/workflow';
import type { Activities } from '../../activities';
import type { HookEnv } from '../../activities/traffic';
import type { InstanceProbe } from '../../core/types';
import { RollForward, type RollForwardPolicy } from './rollForward';
import { together, type Runbook } from './runbook';
import { stepContext } from './interceptors';
import { switchTraffic, WriterEndpointRow } from './trafficSwitch';

const act = wf.proxyActivities<Activities>({
  startToCloseTimeout: '15s',
  retry: { initialInterval: '500ms', backoffCoefficient: 2, maximumAttempts: 4 },
});
// Options per call (the catch-up timeout bounds it): see handOver.
const critical = wf.proxyActivities<Activities>({ startToCloseTimeout: '1m' });

/** One side of a promotion, as the traffic hooks are told about it. */
export interface PromotionSide {
  instance: string;
  region: string;
  /** host:port */
  address: string;
}

export type FenceResult = Awaited<ReturnType<Activities['fenceOldPrimary']>>;

export interface Promotion {
  cluster: string;
  mode: HookEnv['mode'];
  incidentId?: string;
  from: PromotionSide;
  to: PromotionSide;
  /** The promote step's name (`promote candidate`, `promote recovery host`). */
  promoteStep: string;
}

/** What a traffic or fencing hook is told: both sides, the run, the incident (RUNBOOK_* variables). */
export function hookEnvironment(p: Pick<Promotion, 'cluster' | 'mode' | 'incidentId' | 'from' | 'to'>): HookEnv {
  return {
    cluster: p.cluster,
    mode: p.mode,
    oldInstance: p.from.instance,
    newInstance: p.to.instance,
    oldPrimary: p.from.address,
    newPrimary: p.to.address,
    oldRegion: p.from.region,
    newRegion: p.to.region,
    incidentId: p.incidentId,
    workflowId: wf.workflowInfo().workflowId,
  };
}

/** A probed instance as a side of a promotion. */
export function sideOf(probe: Pick<InstanceProbe, 'instance' | 'region' | 'address'>): PromotionSide {
  return { instance: probe.instance, region: probe.region, address: probe.address };
}

/** The one step a planned switchover's critical section is (its sub-steps: HAND_OVER_SUB_STEPS). */
export const HAND_OVER_STEP = 'hand over writes';

/**
 * How the candidate catches up: `timeoutSeconds` alone is the plain wait for the fenced primary's
 * final position, and then fence, catch-up, promotion and writer endpoint run as ONE activity (the
 * `hand over writes` step, each sub-step with its own rows); a `run` of its own (a restore's
 * recovery host first starts replicating) makes them separate steps, the catch-up named `step`.
 */
export type CatchUp =
  | { timeoutSeconds: number }
  | { step: string; run: (fence: FenceResult) => Promise<{ appliedPosition: string; waitedMs: number }> };

/**
 * Fence the old primary, let the candidate catch up to its final position, promote the candidate.
 * A catch-up that fails unfences the old primary, even when the run is being cancelled, and fails
 * the run: production is then as it was. The undo is refused once the candidate took writes (two
 * writers): then the promotion happened and the run rolls forward from it.
 */
export async function fenceCatchUpPromote(rb: Runbook, p: Promotion, catchUp: CatchUp): Promise<void> {
  const old = { cluster: p.cluster, instance: p.from.instance };
  const undo = async (err: unknown): Promise<void> => {
    // Leave the cluster as it was, even if this run is being cancelled.
    const undone = await wf.CancellationScope.nonCancellable(() =>
      rb.step('unfence old primary (compensation)', () => act.unfencePrimary({ ...old, unlessPromoted: p.to.instance }), {
        note: (u) => (u.promoted ? `${p.to.instance} was promoted before the failure: not undone, rolling forward` : u.changed ? `${p.from.instance} writable again` : `${p.from.instance} was writable`),
      }),
    );
    if (!undone.promoted) throw err;
  };
  if (!('run' in catchUp)) {
    try {
      await rb.step(HAND_OVER_STEP, () => handOver(rb, p, catchUp.timeoutSeconds), {
        alone: true,
        note: (r) => `writes blocked ${r.writesBlockedMs} ms on the servers: ${r.subSteps.map((s) => `${s.name} ${s.endedAt - s.startedAt} ms`).join(', ')}`,
        // Sub-step rows the control database did not take travel with the step's own row.
        detail: (r) => ({ writesBlockedMs: r.writesBlockedMs, endpoint: r.endpoint, ...(r.auditNotWritten ? { subStepsNotLogged: r.auditNotWritten } : {}) }),
      });
    } catch (err) {
      await undo(err);
    }
    return;
  }
  const fence = await rb.step('fence old primary', () => act.fenceOldPrimary(old), {
    note: (f) => `${p.from.instance} read-only at ${pos(f.finalPosition)}, ${f.killedSessions} session(s) ended`,
    detail: (f) => f,
  });
  try {
    await rb.step(catchUp.step, () => catchUp.run(fence), { note: (w) => `${p.to.instance} at ${pos(w.appliedPosition)} after ${w.waitedMs} ms` });
  } catch (err) {
    await undo(err);
  }
  await rb.step(p.promoteStep, () => act.promoteCandidate({ cluster: p.cluster, instance: p.to.instance, expectedSource: p.from.instance }), {
    note: (r) => `${p.to.instance} writable at ${pos(r.position)}`,
  });
}

/**
 * The critical section as one activity. Its heartbeat timeout is short (it heartbeats every second
 * whatever it waits for), so a dead worker is noticed in seconds while writes are blocked; its
 * retries resume from what the servers say. Cancellation waits for the activity to stop (the
 * default), so the undo never races a promotion still in flight.
 */
function handOver(rb: Runbook, p: Promotion, timeoutSeconds: number) {
  const seq = stepContext.getStore()!.seq;
  return critical.handOverWrites.executeWithOptions(
    {
      startToCloseTimeout: `${timeoutSeconds + 60}s`,
      heartbeatTimeout: '3s',
      // Stated, not left to the default (which encodes as TRY_CANCEL): a cancelled run must not
      // undo the fence while this activity may still promote.
      cancellationType: wf.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
      retry: { initialInterval: '200ms', backoffCoefficient: 2, maximumAttempts: 5 },
    },
    [
      {
        cluster: p.cluster,
        from: p.from.instance,
        to: p.to.instance,
        catchUpTimeoutSeconds: timeoutSeconds,
        incidentId: p.incidentId,
        audit: { stepSeq: seq, runbook: rb.meta.runbook, operator: rb.meta.operator, reason: rb.meta.reason, incidentId: rb.meta.incidentId, fromRegion: rb.regions.from, toRegion: rb.regions.to },
      },
    ],
  );
}

/**
 * Everything after the promotion, rolling forward and not cancellable (a run cancelled now would
 * leave the cluster half switched: terminate it to abandon it). `before` runs ahead of the
 * traffic switch, `beside` at the same time as it (steps that touch other servers than the
 * traffic hooks do, e.g. repointing replicas: neither waits for the other), `after` behind both
 * with the writer endpoint row (`endpoint.written` waits for the control database). `steps` names
 * every step from here on, in order (what `needs_attention` lists, less the steps already done).
 */
export async function rollForwardPastPromotion(
  rb: Runbook,
  p: Promotion,
  o: {
    thresholds: RollForwardPolicy;
    steps: string[];
    before?: (forward: RollForward) => Promise<void>;
    beside?: (forward: RollForward) => Promise<void>;
    after: (forward: RollForward, endpoint: WriterEndpointRow) => Promise<void>;
  },
): Promise<void> {
  const done = (name: string) => rb.state().steps.some((s) => s.name === name && (s.status === 'succeeded' || s.status === 'skipped'));
  // Every step not done yet, the one that stopped first: with steps running at once, one listed
  // before it may still be running.
  const forward = new RollForward(rb, o.thresholds, (step) => [step, ...o.steps.filter((s) => s !== step && !done(s)), 'unlock cluster']);
  const endpoint = new WriterEndpointRow();
  await wf.CancellationScope.nonCancellable(async () => {
    await o.before?.(forward);
    await together([
      switchTraffic(forward, endpoint, {
        row: { cluster: p.cluster, instance: p.to.instance, workflowId: wf.workflowInfo().workflowId, incidentId: p.incidentId },
        env: hookEnvironment(p),
      }),
      o.beside?.(forward),
    ]);
    await o.after(forward, endpoint);
  });
}

/** A GTID position for a human: an empty one (a fresh server) says so. */
export const pos = (p: string) => p || '(empty GTID position)';
