/**
 * Monitor: one long-running run per cluster (workflow id `monitor-<cluster>`).
 *
 * Every `monitor.intervalSeconds`: probe every instance → judge the cluster (src/core/monitor.ts:
 * a primary is dead only after `failureThreshold` missed rounds AND every reachable replica lost it)
 * → record each CHANGE of state in failover_log and tell people → act on a dead primary by policy:
 * `auto` starts the emergency failover as a child (its approval and fencing rules unchanged),
 * `notify` pages a human, `off` records. After an automatic failover the cluster is blocked from
 * the next one until a human acknowledges the incident (`runbook ack`); never while it still runs.
 * Downtimes silence alerts and actions until they end by themselves.
 *
 * The monitor takes no cluster lock (the failover it starts holds it), so it never waits on it.
 * It hands over to a fresh run (continue-as-new) before its history grows large, carrying its
 * state, never while a failover it started is still running.
 */
import * as wf from '@temporalio/workflow';
import type { Activities } from '../activities';
import {
  ackProblem,
  activeDowntime,
  assess,
  deadPrimaryAction,
  expireDowntimes,
  INITIAL_STATE,
  observersAgree,
  type Downtime,
  type ObserverVote,
  type MonitorState,
  type Observation,
  type RecoveryBlock,
  type StateChange,
} from '../core/monitor';
import {
  ackUpdate,
  downtimeUpdate,
  monitorStateQuery,
  stopMonitorUpdate,
  type FailureRecord,
  type MonitorSettingsView,
  type MonitorSnapshot,
  type StopInput,
} from '../core/monitorDefinitions';
import { failoverWorkflowId, type StartedFromCli } from '../core/runbookDefinitions';
import { lagSeriesOf, recordLag, type LagMemory } from '../core/lagHistory';
import { identityProblem, INPUT_LIMITS, nameProblem, textProblem } from '../core/inputs';
import { failover, type FailoverInput, type FailoverResult } from './failover';
import { runRunbook, type Runbook } from './shared/runbook';

export interface MonitorCarry {
  state: MonitorState;
  block?: RecoveryBlock;
  downtimes: Downtime[];
  lastFailure?: FailureRecord;
  /** The failure being handled now (the primary that is dead), until the cluster is healthy again. */
  failure?: FailureRecord & { acted: boolean; paged?: boolean; suppressed?: boolean };
  rounds: number;
  skippedRounds: number;
  incidents: number;
  lastRound?: Observation;
  /** The last hour of each replica's lag, bounded (src/core/lagHistory.ts): the status panel draws it. */
  lag?: LagMemory;
}

export interface MonitorInput extends StartedFromCli {
  cluster: string;
  /** Who started it (failover_log.operator of its rows). */
  operator: string;
  /** What the previous run handed over (continue-as-new). */
  carried?: MonitorCarry;
  /** Hand over after this many history events (default 4000; tests use less). */
  historyLimit?: number;
}

const settingsOnce = wf.proxyActivities<Activities>({ startToCloseTimeout: '10s', retry: { initialInterval: '1s', maximumInterval: '10s' } });
// Measures for the metrics endpoint: best effort, never holds the monitor.
const measures = wf.proxyActivities<Activities>({ startToCloseTimeout: '5s', retry: { maximumAttempts: 2 } });

export async function monitor(input: MonitorInput): Promise<void> {
  // Handlers before anything awaits (a query or an update may come with the first task); they
  // answer once the run has its step helper and settings.
  let m: Monitor | undefined;
  const ready = async () => {
    await wf.condition(() => m?.ready === true);
    return m!;
  };
  wf.setHandler(monitorStateQuery, () => {
    if (!m?.ready) throw new Error(`the monitor of ${input.cluster} is starting: ask again in a moment`);
    return m.snapshot();
  });
  const who = (operator: unknown, text: unknown, field: string, required: boolean) =>
    must([identityProblem('--as', operator, { required: true }), textProblem(field, text, INPUT_LIMITS.reason, { required })]);
  wf.setHandler(ackUpdate, async (a) => (await ready()).ack(a.operator, a.comment, a.channel), { validator: (a) => who(a?.operator, a?.comment, '--comment', true) });
  wf.setHandler(downtimeUpdate, async (d) => (await ready()).downtime(d), {
    validator: (d) => {
      who(d?.operator, d?.reason, '--reason', true);
      must([nameProblem('target', d?.target, { required: true }), Number.isFinite(d?.seconds) && d.seconds >= 1 && d.seconds <= 7 * 24 * 3600 ? undefined : 'the downtime lasts from 1 s to 7 days']);
    },
  });
  wf.setHandler(stopMonitorUpdate, async (s) => (await ready()).stop(s), { validator: (s) => who(s?.operator, s?.reason, '--reason', false) });

  const meta = { runbook: 'monitor', cluster: input.cluster, operator: input.operator, reason: 'continuous health checks', configFingerprint: input.configFingerprint };
  return runRunbook(meta, async (rb) => {
    const settings = await settingsOnce.monitorSettings({ cluster: input.cluster });
    // A monitor started afresh remembers what its earlier runs left: an unacknowledged block, the
    // downtimes (from its own rows in failover_log). It waits for them rather than start without.
    const memory = input.carried ? undefined : await settingsOnce.recallMonitor.executeWithOptions({ summary: `monitor ${input.cluster}: recall the block and downtimes` }, [{ cluster: input.cluster }]);
    m = new Monitor(rb, input, settings, memory);
    // A round of probes: bounded (a probe times out on its own); not retried, since a missed round is
    // simply not counted, and the next one comes an interval later.
    const probe = wf.proxyActivities<Activities>({ startToCloseTimeout: `${settings.intervalSeconds + 15}s`, retry: { maximumAttempts: 1 } });
    await m.run(probe);
  });
}

class Monitor {
  private carry: MonitorCarry;
  private stopRequest: StopInput | undefined;
  private readonly cluster: string;
  /** The failover this run started as its child (it learns of its end by itself). */
  private ownChild: string | undefined;
  /** A failure the observers must vote on before the monitor acts (asked right after the round). */
  private voteFor: FailureRecord | undefined;

  readonly ready = true;

  constructor(
    private readonly rb: Runbook,
    private readonly input: MonitorInput,
    private readonly settings: MonitorSettingsView,
    memory?: { block?: RecoveryBlock; downtimes: Downtime[] },
  ) {
    this.cluster = input.cluster;
    this.carry = input.carried ?? { state: INITIAL_STATE, block: memory?.block, downtimes: memory?.downtimes ?? [], rounds: 0, skippedRounds: 0, incidents: 0 };
  }

  stop(s: StopInput): { accepted: boolean } {
    this.stopRequest = s;
    return { accepted: true };
  }

  async run(probe: ReturnType<typeof wf.proxyActivities<Activities>>): Promise<void> {
    const s = this.settings;
    if (!this.input.carried) {
      const { block, downtimes } = this.carry;
      const remembered = [
        ...(block ? [`automatic failover ${block.incidentId} not acknowledged (${block.running ? 'still running' : block.outcome}): no automatic recovery until runbook ack`] : []),
        ...downtimes.map((d) => `downtime ${d.target} until ${new Date(d.until).toISOString()}`),
      ];
      this.rb.event(
        'monitor started',
        'state_change',
        { ...s, ...(remembered.length ? { remembered: { block, downtimes } } : {}) },
        `every ${s.intervalSeconds} s, dead after ${s.failureThreshold} missed rounds, automatic failover ${s.autoFailover}${remembered.length ? `; remembered: ${remembered.join('; ')}` : ''}`,
      );
    }
    const limit = this.input.historyLimit ?? 4000;
    for (;;) {
      this.expireDowntimes();
      await this.followEarlierFailover();
      let obs: Observation | undefined;
      try {
        obs = await probe.monitorRound.executeWithOptions({ summary: `monitor ${this.cluster}: round ${this.carry.rounds + 1}` }, [{ cluster: this.cluster }]);
      } catch {
        // The round itself did not run (worker gone, activity timed out): that says nothing about
        // the instances, so it is not counted as a miss.
        this.carry.skippedRounds++;
      }
      if (obs) this.round(obs);
      if (this.voteFor) await this.askObservers(this.voteFor);
      if (this.stopRequest) break;
      const info = wf.workflowInfo();
      if ((info.continueAsNewSuggested || info.historyLength > limit) && !this.carry.block?.running && wf.allHandlersFinished()) {
        await wf.continueAsNew<typeof monitor>({ ...this.input, carried: this.carry });
      }
      await wf.condition(() => this.stopRequest !== undefined, s.intervalSeconds * 1000);
      if (this.stopRequest) break;
    }
    const by = this.stopRequest!;
    this.rb.event(`monitor stopped by ${by.operator}`, 'state_change', { operator: by.operator, reason: by.reason }, by.reason);
  }

  /**
   * A failover an earlier run of the monitor started and left running (the monitor was stopped
   * meanwhile) is no child of this run: ask Temporal each round how it is, and log its end as the
   * run that started it would have.
   */
  private async followEarlierFailover(): Promise<void> {
    const block = this.carry.block;
    if (!block?.running || block.workflowId === this.ownChild) return;
    const outcome = await measures.automaticFailoverOutcome({ workflowId: block.workflowId }).catch(() => undefined);
    if (!outcome || this.carry.block !== block) return;
    block.running = false;
    block.outcome = outcome;
    this.rb.event(
      `automatic failover ${block.incidentId} ${outcome}`,
      'state_change',
      { incidentId: block.incidentId, workflowId: block.workflowId, outcome },
      `${outcome} (started by an earlier run of this monitor); acknowledge with: runbook ack ${this.cluster} --as NAME --comment "…"`,
    );
  }

  private round(obs: Observation): void {
    this.carry.rounds++;
    this.carry.lastRound = obs;
    const { state, changes } = assess(this.carry.state, obs, this.settings);
    this.carry.state = state;
    this.carry.lag = recordLag(this.carry.lag, obs, state.primary);
    for (const c of changes) this.recordChange(c, obs.at);
    if (state.verdict === 'primary_dead' && state.primary) this.onDeadPrimary(state, obs.at);
    else if (state.verdict === 'healthy') this.carry.failure = undefined;
  }

  private recordChange(c: StateChange, at: number): void {
    const muted = activeDowntime(this.carry.downtimes, this.cluster, c.subject === this.cluster ? this.carry.state.primary : c.subject, at);
    this.rb.event(
      `${c.subject}: ${c.from} → ${c.to}`,
      'state_change',
      { subject: c.subject, from: c.from, to: c.to, severity: c.severity, summary: c.summary, note: c.summary, ...(muted ? { silencedBy: muted.reason } : {}) },
      c.summary,
    );
    if (c.notify && !muted) this.rb.alert({ title: `monitor ${this.cluster}`, severity: c.severity === 'critical' ? 'L1' : c.severity === 'warning' ? 'L2' : 'L3', status: c.summary, contact: this.settings.contact });
  }

  private onDeadPrimary(state: MonitorState, at: number): void {
    const primary = state.primary!;
    if (!this.carry.failure || this.carry.failure.primary !== primary) {
      const missingSince = state.missingSince ?? at;
      this.carry.failure = { primary, missingSince, confirmedAt: at, detectionMs: at - missingSince, acted: false };
      this.carry.lastFailure = this.carry.failure;
      void measures.recordMonitorMeasure({ cluster: this.cluster, detectionMs: at - missingSince }).catch(() => undefined);
    }
    const f = this.carry.failure;
    if (f.acted) return;
    const action = deadPrimaryAction({ cluster: this.cluster, primary, policy: this.settings.autoFailover, block: this.carry.block, downtimes: this.carry.downtimes, now: at });
    const detected = `detected in ${(f.detectionMs / 1000).toFixed(1)} s (first missed probe to confirmation)`;
    switch (action.kind) {
      case 'suppressed':
        if (!f.suppressed) {
          f.suppressed = true;
          f.suppressedBy = action.downtime.reason;
          this.rb.event(`${primary}: automatic action suppressed`, 'suppressed', { downtime: action.downtime }, `downtime on ${action.downtime.target} until ${new Date(action.downtime.until).toISOString()}: ${action.downtime.reason}`);
        }
        return;
      case 'record':
        f.acted = true;
        f.handled = 'recorded';
        return;
      case 'page':
        if (!f.paged) {
          f.paged = true;
          f.handled = 'paged';
          f.pagedBecause = action.because;
          this.rb.event(`page: ${primary} dead`, 'paged', { because: action.because, detectionMs: f.detectionMs }, `${detected}; ${action.message}`);
          this.rb.alert({ title: `PAGE: ${this.cluster} primary ${primary} dead`, severity: 'L1', status: `${detected}; ${action.message}`, contact: this.settings.contact });
        }
        // A page for policy is all it will do; a page because of the block waits for `ack`.
        if (action.because === 'policy') f.acted = true;
        return;
      case 'failover': {
        const observers = this.settings.observers ?? [];
        if (observers.length && !f.votes) {
          this.voteFor = f; // asked right after this round; then decided again with their votes
          return;
        }
        const verdict = f.votes ? observersAgree(f.votes) : undefined;
        if (verdict && !verdict.agree) {
          // Not every observer saw it dead (or one did not answer): a human decides.
          f.acted = true;
          f.paged = true;
          f.handled = 'paged';
          f.pagedBecause = 'observers';
          const message = `${verdict.summary}: no automatic failover; if ${primary} is really down, a human decides: runbook failover ${this.cluster} --emergency --reason "…" --as YOUR_NAME`;
          this.rb.event(`page: ${primary} dead`, 'paged', { because: 'observers', votes: f.votes, detectionMs: f.detectionMs }, `${detected}; ${message}`);
          this.rb.alert({ title: `PAGE: ${this.cluster} primary ${primary} dead to the monitor, not to every observer`, severity: 'L1', status: `${detected}; ${message}`, contact: this.settings.contact });
          return;
        }
        f.acted = true;
        f.handled = 'failover';
        this.startFailover(f, verdict ? `${detected}; ${verdict.summary}` : detected);
      }
    }
  }

  /**
   * Ask every observer (a monitor worker in another region, on its own task queue) to probe the
   * primary and its replicas from where it is, all at once and each within
   * `observerTimeoutSeconds`; record every vote; then decide again with them. An observer that
   * does not answer in time votes `no_answer`, which is no agreement.
   */
  private async askObservers(f: FailureRecord): Promise<void> {
    const observers = this.settings.observers ?? [];
    const timeout = `${this.settings.observerTimeoutSeconds ?? 10}s`;
    const votes: ObserverVote[] = await Promise.all(
      observers.map(async (o) => {
        const ask = wf.proxyActivities<Activities>({ taskQueue: o.taskQueue, scheduleToCloseTimeout: timeout, retry: { maximumAttempts: 1 } });
        try {
          return await ask.observePrimary.executeWithOptions({ summary: `monitor ${this.cluster}: observer ${o.region}, is ${f.primary} dead?` }, [
            { cluster: this.cluster, primary: f.primary, region: o.region, taskQueue: o.taskQueue },
          ]);
        } catch (err) {
          const why = err instanceof wf.ActivityFailure && err.cause ? err.cause.message : (err as Error).message;
          return { region: o.region, taskQueue: o.taskQueue, vote: 'no_answer' as const, summary: `${o.region} gave no answer within ${timeout} (${why}): counted as no agreement` };
        }
      }),
    );
    this.voteFor = undefined;
    f.votes = votes;
    for (const v of votes) this.rb.event(`observer ${v.region}: ${v.vote === 'no_answer' ? 'no answer' : v.vote}`, 'vote', { ...v, primary: f.primary }, v.summary);
    // The cluster may have changed while they answered: decide only if it is still this failure.
    if (this.carry.failure === f && this.carry.state.verdict === 'primary_dead') this.onDeadPrimary(this.carry.state, Date.now());
  }

  private startFailover(f: FailureRecord, detected: string): void {
    const incidentId = `auto-${stamp(Date.now())}-${++this.carry.incidents}`;
    const workflowId = failoverWorkflowId(this.cluster, incidentId);
    f.incidentId = incidentId;
    const block: RecoveryBlock = { incidentId, workflowId, since: Date.now(), running: true, primary: f.primary };
    this.carry.block = block;
    this.ownChild = workflowId;
    this.rb.event(`automatic failover ${incidentId} started`, 'state_change', { incidentId, workflowId, primary: f.primary, detectionMs: f.detectionMs, ...(f.votes ? { votes: f.votes } : {}) }, `${f.primary} dead, ${detected}: ${workflowId}`);
    this.rb.alert({ title: `${this.cluster}: automatic failover (incident ${incidentId})`, severity: 'L1', status: `${f.primary} dead, ${detected}; emergency failover ${workflowId} started; further automatic recovery is blocked until: runbook ack ${this.cluster} --as NAME --comment "…"`, incidentId, contact: this.settings.contact });
    // Its confirmation goes with it: the run need not probe for seconds what was just confirmed.
    const args: FailoverInput = { cluster: this.cluster, mode: 'emergency', reason: `monitor: ${f.primary} dead (${detected})`, requester: 'monitor', incidentId, confirmedDead: { primary: f.primary, atMs: Date.now() } };
    const ended = (outcome: string, error?: string, result?: FailoverResult) => {
      block.running = false;
      block.outcome = outcome;
      // RTO as the monitor can date it: from the first missed round (the failure happened at most one
      // interval before) to the end of the failover; RPO: what the failover's plan says was lost.
      const rtoMs = outcome === 'succeeded' ? Date.now() - f.missingSince : undefined;
      const lostTransactions = result?.plan.expectedLoss?.missing.reduce((n, m) => n + m.transactions, 0);
      this.rb.event(
        `automatic failover ${incidentId} ${outcome}`,
        'state_change',
        { incidentId, workflowId, outcome, error, rtoMs, lostTransactions },
        error ?? `${outcome}${rtoMs !== undefined ? ` ${(rtoMs / 1000).toFixed(1)} s after the first missed round` : ''}; acknowledge with: runbook ack ${this.cluster} --as NAME --comment "…"`,
      );
      void measures.recordMonitorMeasure({ cluster: this.cluster, failover: { at: Date.now(), outcome, rtoMs, lostTransactions } }).catch(() => undefined);
    };
    // Abandoned, not cancelled, if the monitor stops: a failover past its point of no return must finish.
    wf.startChild(failover, { workflowId, args: [args], parentClosePolicy: wf.ParentClosePolicy.ABANDON })
      .then((child) => child.result())
      .then(
        (r: FailoverResult) => ended(r.status, undefined, r),
        (err: unknown) => ended('failed', (err as Error)?.cause instanceof Error ? ((err as Error).cause as Error).message : (err as Error)?.message),
      );
  }

  ack(operator: string, comment: string, channel = 'cli'): { accepted: boolean; reason?: string } {
    const problem = ackProblem(this.carry.block, this.cluster);
    if (problem) {
      this.rb.event(`ack by ${operator} via ${channel}`, 'refused', { operator, comment, reason: problem }, problem);
      return { accepted: false, reason: problem };
    }
    const block = this.carry.block!;
    this.carry.block = undefined;
    this.rb.event(`ack by ${operator} via ${channel}`, 'acknowledged', { operator, comment, incidentId: block.incidentId, workflowId: block.workflowId }, `incident ${block.incidentId} acknowledged: ${comment}`);
    return { accepted: true };
  }

  downtime(d: { target: string; seconds: number; reason: string; operator: string }): { accepted: boolean; reason?: string } {
    if (d.target !== this.cluster && !this.settings.instances.includes(d.target)) {
      return { accepted: false, reason: `${d.target} is neither ${this.cluster} nor one of its instances` };
    }
    const since = Date.now();
    const downtime: Downtime = { target: d.target, until: since + d.seconds * 1000, reason: d.reason, by: d.operator, since };
    this.carry.downtimes = [...this.carry.downtimes.filter((x) => x.target !== d.target), downtime];
    this.rb.event(`downtime ${d.target} by ${d.operator}`, 'downtime', { ...downtime }, `until ${new Date(downtime.until).toISOString()}: ${d.reason}`);
    return { accepted: true };
  }

  private expireDowntimes(): void {
    const { active, ended } = expireDowntimes(this.carry.downtimes, Date.now());
    if (!ended.length) return;
    this.carry.downtimes = active;
    for (const d of ended) this.rb.event(`downtime ${d.target} ended`, 'downtime', { ...d, ended: true }, `ended by itself: ${d.reason}`);
  }

  snapshot(): MonitorSnapshot {
    const { failure: _, lastRound, lag, ...rest } = this.carry;
    return { cluster: this.cluster, settings: this.settings, ...rest, ...(lastRound ? { lastRound: { at: lastRound.at, instances: lastRound.instances } } : {}), lagHistory: lagSeriesOf(lag) };
  }
}

function must(problems: (string | undefined)[]): void {
  const found = problems.filter((p): p is string => p !== undefined);
  if (found.length) throw new Error(found.join('; '));
}

/** `20261202T112533Z`-style, from workflow time: unique per monitor run with the incident counter. */
function stamp(now: number): string {
  return new Date(now).toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
}
