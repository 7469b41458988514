/**
 * The one promotion sequence, for every runbook that makes another server the primary (a planned
 * failover, restore's `--cutover promote`, failback's switch back):
 *
 *   fence old primary → catch up (undone by unfencing, under a non-cancellable scope, if it fails)
 *   → promote → [the point of no return] → the runbook's own steps, rolling forward, around
 *   `switch traffic` (the writer endpoint and the traffic hooks, with their complete environment)
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
import type { Runbook } from './runbook';
import { switchTraffic, WriterEndpointRow } from './trafficSwitch';

const act = wf.proxyActivities<Activities>({
  startToCloseTimeout: '15s',
  retry: { initialInterval: '500ms', backoffCoefficient: 2, maximumAttempts: 4 },
});

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

/**
 * Fence the old primary, let the candidate catch up to its final position (`catchUp`, a named
 * step), promote the candidate. A catch-up that fails unfences the old primary, even when the run
 * is being cancelled, and fails the run: production is then as it was.
 */
export async function fenceCatchUpPromote(
  rb: Runbook,
  p: Promotion,
  catchUp: { step: string; run: (fence: FenceResult) => Promise<{ appliedPosition: string; waitedMs: number }> },
): Promise<FenceResult> {
  const old = { cluster: p.cluster, instance: p.from.instance };
  const fence = await rb.step('fence old primary', () => act.fenceOldPrimary(old), {
    note: (f) => `${p.from.instance} read-only at ${pos(f.finalPosition)}, ${f.killedSessions} session(s) ended`,
    detail: (f) => f,
  });
  try {
    await rb.step(catchUp.step, () => catchUp.run(fence), { note: (w) => `${p.to.instance} at ${pos(w.appliedPosition)} after ${w.waitedMs} ms` });
  } catch (err) {
    // Leave the cluster as it was, even if this run is being cancelled.
    await wf.CancellationScope.nonCancellable(() => rb.step('unfence old primary (compensation)', () => act.unfencePrimary(old)));
    throw err;
  }
  await rb.step(p.promoteStep, () => act.promoteCandidate({ cluster: p.cluster, instance: p.to.instance, expectedSource: p.from.instance }), {
    note: (r) => `${p.to.instance} writable at ${pos(r.position)}`,
  });
  return fence;
}

/**
 * Everything after the promotion, rolling forward and not cancellable (a run cancelled now would
 * leave the cluster half switched: terminate it to abandon it). `before` runs ahead of the
 * traffic switch, `after` behind it with the writer endpoint row (`endpoint.written` waits for the
 * control database). `steps` names every step from here on, in order (what `needs_attention` lists).
 */
export async function rollForwardPastPromotion(
  rb: Runbook,
  p: Promotion,
  o: {
    thresholds: RollForwardPolicy;
    steps: string[];
    before?: (forward: RollForward) => Promise<void>;
    after: (forward: RollForward, endpoint: WriterEndpointRow) => Promise<void>;
  },
): Promise<void> {
  const forward = new RollForward(rb, o.thresholds, (step) => [...o.steps.slice(Math.max(0, o.steps.indexOf(step))), 'unlock cluster']);
  const endpoint = new WriterEndpointRow();
  await wf.CancellationScope.nonCancellable(async () => {
    await o.before?.(forward);
    await switchTraffic(forward, endpoint, {
      row: { cluster: p.cluster, instance: p.to.instance, workflowId: wf.workflowInfo().workflowId, incidentId: p.incidentId },
      env: hookEnvironment(p),
    });
    await o.after(forward, endpoint);
  });
}

/** A GTID position for a human: an empty one (a fresh server) says so. */
export const pos = (p: string) => p || '(empty GTID position)';
