/**
 * The monitor's decisions, pure and workflow-safe: what one round of probes says about a cluster
 * (given what the previous rounds said), which changes are worth a row and a message, and what to
 * do about a dead primary under the cluster's policy, its downtimes and its anti-flapping block.
 *
 * Holistic detection, as orchestrator does it: a primary is dead only when the monitor has missed
 * it for `failureThreshold` consecutive rounds AND every reachable replica of it says its IO thread
 * lost it. The monitor alone missing it, while a replica still streams from it, is a partition on
 * the monitor's side: an alert, never a failover.
 */
import type { Topology } from './types';

/** One instance as one round of probes saw it: small, because every round goes into history. */
export interface InstanceObservation {
  instance: string;
  region: string;
  reachable: boolean;
  error?: string;
  readOnly?: boolean;
  /** The instance it replicates from (a configured name), or null: none or not one of ours. */
  source?: string | null;
  /** true when it replicates at all (source may still be a stranger). */
  replicating?: boolean;
  ioRunning?: 'Yes' | 'No' | 'Connecting';
  sqlRunning?: 'Yes' | 'No';
  lagSeconds?: number | null;
  lastError?: string;
  gtid?: string;
}

export interface Observation {
  cluster: string;
  at: number;
  instances: InstanceObservation[];
}

export type InstanceHealth = 'primary' | 'replicating' | 'lagging' | 'disconnected' | 'broken' | 'orphan' | 'unreachable';

/**
 * The cluster as the monitor judges it:
 * - `healthy`: one writable primary that answers;
 * - `primary_unreachable`: the monitor missed the primary, fewer than failureThreshold rounds yet;
 * - `monitor_partition`: missed for failureThreshold rounds, but a replica still streams from it;
 * - `unconfirmed`: missed for failureThreshold rounds and no reachable replica can confirm;
 * - `primary_dead`: missed for failureThreshold rounds and every reachable replica lost it too;
 * - `no_primary`: nobody is writable and nobody is missing (all read-only: a fenced cluster);
 * - `split_brain`: more than one writable primary.
 */
export type Verdict = 'healthy' | 'primary_unreachable' | 'monitor_partition' | 'unconfirmed' | 'primary_dead' | 'no_primary' | 'split_brain';

export interface MonitorState {
  /** The primary the monitor follows: the last one seen writable (or the one the replicas name). */
  primary: string | null;
  /** Consecutive rounds in which that primary did not answer. */
  misses: number;
  /** When the first of those rounds probed (epoch ms): the start of the detection time. */
  missingSince?: number;
  verdict: Verdict;
  health: Record<string, InstanceHealth>;
}

export const INITIAL_STATE: MonitorState = { primary: null, misses: 0, verdict: 'healthy', health: {} };

export type ChangeSeverity = 'info' | 'warning' | 'critical';

export interface StateChange {
  /** An instance name, or the cluster's name for a change of verdict. */
  subject: string;
  from: string;
  to: string;
  severity: ChangeSeverity;
  /** One line, for the log row, the message and the timeline. */
  summary: string;
  /** Whether people are told (primary lost, lag over threshold, replication broken, instance back). */
  notify: boolean;
}

export interface MonitorSettings {
  failureThreshold: number;
  maxLagSeconds: number;
}

export function instanceHealth(i: InstanceObservation, maxLagSeconds: number): InstanceHealth {
  if (!i.reachable) return 'unreachable';
  if (!i.replicating) return i.readOnly === false ? 'primary' : 'orphan';
  if (i.sqlRunning !== 'Yes' || i.ioRunning === 'No') return 'broken';
  if (i.ioRunning === 'Connecting') return 'disconnected';
  if (i.lagSeconds === null || i.lagSeconds === undefined || i.lagSeconds > maxLagSeconds) return 'lagging';
  return 'replicating';
}

function describeInstance(i: InstanceObservation | undefined, health: InstanceHealth): string {
  if (!i) return health;
  switch (health) {
    case 'unreachable':
      return `unreachable${i.error ? ` (${i.error.slice(0, 120)})` : ''}`;
    case 'lagging':
      return `lagging ${i.lagSeconds ?? 'unknown'} s behind ${i.source ?? 'its source'}`;
    case 'broken':
      return `replication broken (IO ${i.ioRunning}, SQL ${i.sqlRunning}${i.lastError ? `: ${i.lastError.slice(0, 120)}` : ''})`;
    case 'disconnected':
      return `IO thread lost ${i.source ?? 'its source'} (Connecting)`;
    case 'replicating':
      return `replicating from ${i.source ?? 'a stranger'}, lag ${i.lagSeconds} s`;
    default:
      return health;
  }
}

/** Which instance-level changes people hear about: trouble starting, and an instance coming back. */
function instanceChange(subject: string, from: InstanceHealth, to: InstanceHealth, summary: string): StateChange {
  const severity: ChangeSeverity = to === 'broken' || to === 'unreachable' ? 'warning' : to === 'lagging' || to === 'disconnected' ? 'warning' : 'info';
  const back = from === 'unreachable' && to !== 'unreachable';
  const notify = to === 'broken' || to === 'lagging' || back;
  return { subject, from, to, severity, summary, notify };
}

/** One round: the new state and what changed since the last round (nothing at all when nothing did). */
export function assess(prev: MonitorState, obs: Observation, s: MonitorSettings): { state: MonitorState; changes: StateChange[] } {
  const byName = new Map(obs.instances.map((i) => [i.instance, i]));
  const health: Record<string, InstanceHealth> = Object.fromEntries(obs.instances.map((i) => [i.instance, instanceHealth(i, s.maxLagSeconds)]));
  const writable = obs.instances.filter((i) => health[i.instance] === 'primary').map((i) => i.instance);

  let primary = prev.primary;
  let misses = prev.misses;
  let missingSince = prev.missingSince;
  if (writable.length === 1) {
    primary = writable[0]!;
    misses = 0;
    missingSince = undefined;
  } else {
    // Nobody writable: follow the last primary, else the one every replica names.
    if (!primary || !byName.has(primary)) {
      const sources = [...new Set(obs.instances.filter((i) => i.reachable && i.source).map((i) => i.source!))];
      primary = sources.length === 1 ? sources[0]! : null;
    }
    if (primary && !byName.get(primary)?.reachable) {
      misses += 1;
      missingSince ??= obs.at;
    } else {
      misses = 0;
      missingSince = undefined;
    }
  }

  let verdict: Verdict;
  if (writable.length > 1) verdict = 'split_brain';
  else if (writable.length === 1) verdict = 'healthy';
  else if (!primary || misses === 0) verdict = 'no_primary';
  else if (misses < s.failureThreshold) verdict = 'primary_unreachable';
  else {
    const followers = obs.instances.filter((i) => i.reachable && i.source === primary);
    if (!followers.length) verdict = 'unconfirmed';
    else if (followers.some((f) => f.ioRunning === 'Yes')) verdict = 'monitor_partition';
    else verdict = 'primary_dead';
  }

  const state: MonitorState = { primary, misses, missingSince, verdict, health };
  const changes: StateChange[] = [];
  const first = Object.keys(prev.health).length === 0;
  if (!first) {
    for (const i of obs.instances) {
      const before = prev.health[i.instance];
      const now = health[i.instance]!;
      if (before === now) continue;
      changes.push(instanceChange(i.instance, before ?? 'unknown' as InstanceHealth, now, `${i.instance}: ${before ?? 'unknown'} → ${describeInstance(i, now)}`));
    }
  }
  if (first || prev.verdict !== verdict || (verdict === 'healthy' && prev.primary !== primary)) {
    changes.push(verdictChange(prev, state, obs, s, first));
  }
  return { state, changes };
}

function verdictChange(prev: MonitorState, state: MonitorState, obs: Observation, s: MonitorSettings, first: boolean): StateChange {
  const base = { subject: obs.cluster, from: first ? 'unknown' : prev.verdict, to: state.verdict };
  const p = state.primary;
  const followers = obs.instances.filter((i) => i.reachable && i.source === p);
  const missed = `${p} did not answer ${state.misses} consecutive probe(s)`;
  switch (state.verdict) {
    case 'healthy': {
      const replicas = obs.instances.filter((i) => i.instance !== p).map((i) => `${i.instance} ${state.health[i.instance]}`);
      const what = first ? 'monitoring' : prev.primary && prev.primary !== p ? `new primary ${p} (was ${prev.primary})` : `primary ${p} answers again`;
      return { ...base, severity: 'info', notify: !first, summary: `${obs.cluster}: ${what}; primary ${p}${replicas.length ? `, ${replicas.join(', ')}` : ''}` };
    }
    case 'primary_unreachable':
      return { ...base, severity: 'warning', notify: false, summary: `${obs.cluster}: ${missed} (threshold ${s.failureThreshold})` };
    case 'monitor_partition': {
      const streaming = followers.filter((f) => f.ioRunning === 'Yes').map((f) => f.instance);
      return {
        ...base,
        severity: 'critical',
        notify: true,
        summary: `${obs.cluster}: monitor-side partition: ${missed}, but ${streaming.join(', ')} still replicate from it: no failover; check the monitor's network path to ${p}`,
      };
    }
    case 'unconfirmed':
      return { ...base, severity: 'critical', notify: true, summary: `${obs.cluster}: primary ${p} lost: ${missed} and no reachable replica can confirm it: no automatic failover` };
    case 'primary_dead':
      return {
        ...base,
        severity: 'critical',
        notify: true,
        summary: `${obs.cluster}: primary ${p} dead: ${missed} and every reachable replica lost it (${followers.map((f) => `${f.instance} IO ${f.ioRunning}`).join(', ')})`,
      };
    case 'no_primary':
      return { ...base, severity: 'critical', notify: true, summary: `${obs.cluster}: no writable primary (${obs.instances.map((i) => `${i.instance} ${state.health[i.instance]}`).join(', ')})` };
    case 'split_brain':
      return {
        ...base,
        severity: 'critical',
        notify: true,
        summary: `${obs.cluster}: more than one writable primary: ${obs.instances.filter((i) => state.health[i.instance] === 'primary').map((i) => i.instance).join(', ')}`,
      };
  }
}

// ---------------------------------------------------------------------------------------------
// What to do about a dead primary

export type AutoFailoverPolicy = 'off' | 'notify' | 'auto';

/** A maintenance window: `target` is the cluster's name or one of its instances. */
export interface Downtime {
  target: string;
  until: number;
  reason: string;
  by: string;
  since: number;
}

/** The anti-flapping block an automatic failover leaves: lifted only by `runbook ack`. */
export interface RecoveryBlock {
  incidentId: string;
  workflowId: string;
  since: number;
  /** The failover still runs: the block cannot be acknowledged away meanwhile. */
  running: boolean;
  primary: string;
  outcome?: string;
}

export type DeadPrimaryAction =
  | { kind: 'failover' }
  | { kind: 'page'; because: 'policy' | 'blocked'; message: string }
  | { kind: 'record'; message: string }
  | { kind: 'suppressed'; downtime: Downtime };

/** The downtime covering the cluster or this instance right now, if any. */
export function activeDowntime(downtimes: Downtime[], cluster: string, instance: string | null, now: number): Downtime | undefined {
  return downtimes.find((d) => d.until > now && (d.target === cluster || (instance !== null && d.target === instance)));
}

export function deadPrimaryAction(input: { cluster: string; primary: string; policy: AutoFailoverPolicy; block?: RecoveryBlock; downtimes: Downtime[]; now: number }): DeadPrimaryAction {
  const downtime = activeDowntime(input.downtimes, input.cluster, input.primary, input.now);
  if (downtime) return { kind: 'suppressed', downtime };
  const manual = `runbook failover ${input.cluster} --emergency --reason "…" --as YOUR_NAME`;
  if (input.policy === 'off') return { kind: 'record', message: `automatic failover is off for ${input.cluster}` };
  if (input.policy === 'notify') return { kind: 'page', because: 'policy', message: `policy notify: a human decides; to fail over: ${manual}` };
  if (input.block) {
    const b = input.block;
    return {
      kind: 'page',
      because: 'blocked',
      message:
        `no automatic failover: ${input.cluster} already failed over automatically (incident ${b.incidentId}, ${b.workflowId}${b.running ? ', still running' : `, ${b.outcome ?? 'ended'}`}) ` +
        `and that incident is not acknowledged; a human decides: ${manual}; then runbook ack ${input.cluster} --as YOUR_NAME --comment "…"`,
    };
  }
  return { kind: 'failover' };
}

/** What an observer in another region saw of a primary the monitor found dead. */
export interface ObserverVote {
  region: string;
  taskQueue: string;
  /** agree: it cannot reach the primary either, and no replica it reaches streams from it. */
  vote: 'agree' | 'disagree' | 'no_answer';
  summary: string;
}

/** An observer's vote from its own round of probes (run on its worker, from its region). */
export function observerVote(obs: Observation, primary: string, observer: { region: string; taskQueue: string }): ObserverVote {
  const p = obs.instances.find((i) => i.instance === primary);
  const streaming = obs.instances.filter((i) => i.reachable && i.source === primary && i.ioRunning === 'Yes').map((i) => i.instance);
  if (p?.reachable) return { ...observer, vote: 'disagree', summary: `${observer.region} reaches ${primary}${p.readOnly === false ? ' (writable)' : ''}` };
  if (streaming.length) return { ...observer, vote: 'disagree', summary: `${observer.region} sees ${streaming.join(', ')} still streaming from ${primary}` };
  return { ...observer, vote: 'agree', summary: `${observer.region} cannot reach ${primary} either${p?.error ? ` (${p.error.slice(0, 120)})` : ''}` };
}

/** The monitor acts only when every observer agrees; a vote not given (timed out) is no agreement. */
export function observersAgree(votes: ObserverVote[]): { agree: boolean; summary: string } {
  const against = votes.filter((v) => v.vote !== 'agree');
  const list = votes.map((v) => `${v.region}: ${v.vote === 'no_answer' ? 'no answer' : v.vote}`).join(', ');
  return against.length
    ? { agree: false, summary: `observers do not all agree (${list}): ${against.map((v) => v.summary).join('; ')}` }
    : { agree: true, summary: `every observer agrees (${list})` };
}

/** Whether `ack` may lift the block now; a refusal says why (never while the recovery runs). */
export function ackProblem(block: RecoveryBlock | undefined, cluster: string): string | undefined {
  if (!block) return `nothing to acknowledge: no automatic recovery of ${cluster} is blocking the next one`;
  if (block.running) return `the automatic failover ${block.workflowId} (incident ${block.incidentId}) still runs: acknowledge it once it has ended`;
  return undefined;
}

/** One of the monitor's own rows in failover_log, as far as its memory needs it. */
export interface MonitorEvent {
  status: string;
  at: number;
  detail: Record<string, unknown>;
}

/**
 * What a monitor must not forget when it is stopped and started again, rebuilt from its own rows
 * in failover_log (oldest first, every run of the workflow `monitor-<cluster>`): the anti-flapping
 * block of an automatic failover not yet acknowledged, and the downtimes still in force. The rows
 * are what the monitor wrote when each of these changed, so this is exact: a block ends only with
 * an `acknowledged` row naming its incident, a downtime with its `ended` row or its end time.
 * A downtime that lapsed while no monitor ran is returned too: the monitor logs its end as usual.
 * Whether a failover found still running has ended since is for the caller to ask Temporal.
 */
export function recallMonitorMemory(events: MonitorEvent[]): { block?: RecoveryBlock; downtimes: Downtime[] } {
  let block: RecoveryBlock | undefined;
  const downtimes = new Map<string, Downtime>();
  const text = (v: unknown) => (typeof v === 'string' ? v : undefined);
  for (const e of events) {
    const d = e.detail ?? {};
    const incidentId = text(d.incidentId);
    if (e.status === 'state_change' && incidentId && text(d.workflowId)) {
      if (d.outcome === undefined && text(d.primary)) {
        block = { incidentId, workflowId: text(d.workflowId)!, since: e.at, running: true, primary: text(d.primary)! };
      } else if (text(d.outcome) && block?.incidentId === incidentId) {
        block = { ...block, running: false, outcome: text(d.outcome) };
      }
    } else if (e.status === 'acknowledged' && incidentId && block?.incidentId === incidentId) {
      block = undefined;
    } else if (e.status === 'downtime' && text(d.target)) {
      const target = text(d.target)!;
      if (d.ended === true) {
        if (downtimes.get(target)?.since === d.since) downtimes.delete(target);
      } else if (typeof d.until === 'number' && typeof d.since === 'number') {
        downtimes.set(target, { target, until: d.until, reason: text(d.reason) ?? '', by: text(d.by) ?? '', since: d.since });
      }
    }
  }
  return { ...(block ? { block } : {}), downtimes: [...downtimes.values()] };
}

/** Downtimes still in force, and the ones that just ended (each logged once). */
export function expireDowntimes(downtimes: Downtime[], now: number): { active: Downtime[]; ended: Downtime[] } {
  return { active: downtimes.filter((d) => d.until > now), ended: downtimes.filter((d) => d.until <= now) };
}

/** `30m`, `2h`, `45s`, `1h30m` → ms; at most a week (a longer window is a decommission, not maintenance). */
export const DOWNTIME_MAX_MS = 7 * 24 * 3600 * 1000;
export function parseDowntimeDuration(text: string): { ms: number } | { problem: string } {
  const bad = { problem: `--for must be a duration like 30m, 2h, 1h30m or 90s (at most 7 days), got "${text.length > 20 ? `${text.slice(0, 20)}…` : text}"` };
  if (typeof text !== 'string' || text.length === 0 || text.length > 20 || !/^([0-9]{1,6}[dhms]){1,4}$/.test(text)) return bad;
  const unit: Record<string, number> = { d: 86_400_000, h: 3_600_000, m: 60_000, s: 1000 };
  let ms = 0;
  for (const part of text.match(/[0-9]{1,6}[dhms]/g) ?? []) ms += Number(part.slice(0, -1)) * unit[part.slice(-1)]!;
  if (ms < 1000 || ms > DOWNTIME_MAX_MS) return bad;
  return { ms };
}

/** A round of probes in the compact shape the monitor keeps (from the probe adapter's topology). */
export function observationOf(t: Topology): Observation {
  return {
    cluster: t.cluster,
    at: t.probedAt,
    instances: t.instances.map((i) => {
      const r = i.replication;
      return {
        instance: i.instance,
        region: i.region,
        reachable: i.reachable,
        ...(i.reachable ? {} : { error: (i.error ?? 'unreachable').slice(0, 200) }),
        readOnly: i.readOnly,
        replicating: Boolean(r),
        source: r ? r.sourceInstance : null,
        ...(r
          ? { ioRunning: r.ioRunning, sqlRunning: r.sqlRunning, lagSeconds: r.lagSeconds, ...(r.lastIoError || r.lastSqlError ? { lastError: (r.lastIoError || r.lastSqlError).slice(0, 200) } : {}) }
          : {}),
        gtid: i.gtid?.currentPos ?? i.gtid?.executed,
      };
    }),
  };
}
