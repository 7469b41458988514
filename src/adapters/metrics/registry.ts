/**
 * The engine's own Prometheus metrics (prom-client), served by the worker on its metrics endpoint
 * beside the Temporal SDK's (src/worker/metricsServer.ts). They live in the worker process: the
 * activities that probe set the per-instance gauges; workflow code cannot (it must stay
 * deterministic), so what a workflow measures reaches them through an activity.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { parseMariaGtidList } from '../../core/gtid';
import { appliedLag } from '../../core/lagHistory';
import type { Topology } from '../../core/types';

const ROLE_VALUE = { primary: 1, replica: 2, orphan: 3, unreachable: 0 } as const;

export class MonitorMetrics {
  readonly registry = new Registry();
  private readonly up = new Gauge({ name: 'runbook_instance_up', help: '1 when the instance answered the last probe', labelNames: ['cluster', 'instance', 'region'], registers: [this.registry] });
  private readonly role = new Gauge({
    name: 'runbook_instance_role',
    help: 'role from what the server says: 1 primary, 2 replica, 3 orphan (read-only, no source), 0 unreachable',
    labelNames: ['cluster', 'instance'],
    registers: [this.registry],
  });
  private readonly readOnly = new Gauge({ name: 'runbook_instance_read_only', help: '1 when read_only is ON', labelNames: ['cluster', 'instance'], registers: [this.registry] });
  private readonly ioRunning = new Gauge({ name: 'runbook_replication_io_running', help: '1 Yes, 0.5 Connecting, 0 No', labelNames: ['cluster', 'instance'], registers: [this.registry] });
  private readonly sqlRunning = new Gauge({ name: 'runbook_replication_sql_running', help: '1 when the SQL thread runs', labelNames: ['cluster', 'instance'], registers: [this.registry] });
  private readonly lag = new Gauge({
    name: 'runbook_replication_lag_seconds',
    help: "seconds since the newest primary position (as probed round by round) that this replica has applied: rises while its SQL thread is stopped, unlike Seconds_Behind_Master",
    labelNames: ['cluster', 'instance'],
    registers: [this.registry],
  });
  private readonly secondsBehind = new Gauge({ name: 'runbook_replication_seconds_behind_master', help: 'Seconds_Behind_Master as the replica reports it (absent when NULL)', labelNames: ['cluster', 'instance'], registers: [this.registry] });
  /** Per cluster, the primary's position round by round (newest last), to date what a replica has applied. */
  private readonly primaryPositions = new Map<string, { at: number; position: string }[]>();
  private readonly gtidSeq = new Gauge({ name: 'runbook_gtid_sequence', help: 'the instance\'s GTID sequence per replication domain', labelNames: ['cluster', 'instance', 'domain'], registers: [this.registry] });
  private readonly probeSeconds = new Gauge({ name: 'runbook_probe_duration_seconds', help: 'how long the last probe took', labelNames: ['cluster', 'instance'], registers: [this.registry] });
  private readonly primary = new Gauge({ name: 'runbook_cluster_primary', help: '1 for the cluster\'s current primary (as probed)', labelNames: ['cluster', 'instance'], registers: [this.registry] });
  private readonly lastFailover = new Gauge({ name: 'runbook_last_failover_timestamp_seconds', help: 'when the last automatic failover ended', labelNames: ['cluster', 'outcome'], registers: [this.registry] });
  private readonly rto = new Gauge({ name: 'runbook_last_failover_rto_seconds', help: 'the last automatic failover: first missed probe to the new primary writable', labelNames: ['cluster'], registers: [this.registry] });
  private readonly rpo = new Gauge({ name: 'runbook_last_failover_rpo_transactions', help: 'the last failover: transactions known to the old primary missing on the new one', labelNames: ['cluster'], registers: [this.registry] });
  private readonly detectionLatency = new Histogram({
    name: 'runbook_monitor_detection_seconds',
    help: 'first missed probe of a primary to its confirmed failure',
    labelNames: ['cluster'],
    buckets: [1, 2, 3, 5, 8, 13, 21, 34, 60],
    registers: [this.registry],
  });
  /** Counted by the one audit writer, by the write that stores a run's final row first (src/activities/audit.ts). */
  private readonly runs = new Counter({
    name: 'runbook_runs_total',
    help: 'runbook runs ended, by type and outcome (counted by the worker that stored the run\'s final audit row: sum over workers)',
    labelNames: ['runbook', 'cluster', 'outcome'],
    registers: [this.registry],
  });
  /** Read from failover_log at each scrape (see `countPendingApprovals`): the same on every worker. */
  private readonly pendingApprovals = new Gauge({
    name: 'runbook_pending_approvals',
    help: 'runs waiting for an approval now, read from failover_log at each scrape (the same on every worker: max over workers)',
    labelNames: ['cluster'],
    registers: [this.registry],
  });
  private readonly pendingApprovalsRead = new Gauge({
    name: 'runbook_pending_approvals_read_ok',
    help: '1 when the last scrape could read the pending approvals from the control database',
    registers: [this.registry],
  });
  private pendingSource: { clusters: string[]; read: () => Promise<{ cluster: string; runs: number }[]> } | undefined;

  /** Where the pending approvals are read from at each scrape (the worker's control database). */
  countPendingApprovals(clusters: string[], read: () => Promise<{ cluster: string; runs: number }[]>): void {
    this.pendingSource = { clusters, read };
  }

  /** Refresh what is read at scrape time; a control database that does not answer leaves the gauge empty. */
  async beforeScrape(): Promise<void> {
    const source = this.pendingSource;
    if (!source) return;
    this.pendingApprovals.reset();
    try {
      const counts = await source.read();
      for (const c of source.clusters) this.pendingApprovals.set({ cluster: c }, 0);
      for (const c of counts) this.pendingApprovals.set({ cluster: c.cluster }, c.runs);
      this.pendingApprovalsRead.set(1);
    } catch {
      this.pendingApprovalsRead.set(0);
    }
  }

  runEnded(r: { runbook: string; cluster: string; outcome: string }): void {
    this.runs.inc(r);
  }

  observeTopology(t: Topology): void {
    this.notePrimaryPosition(t);
    for (const i of t.instances) {
      const labels = { cluster: t.cluster, instance: i.instance };
      this.up.set({ ...labels, region: i.region }, i.reachable ? 1 : 0);
      this.role.set(labels, ROLE_VALUE[i.role]);
      this.primary.set(labels, t.primary === i.instance ? 1 : 0);
      this.probeSeconds.set(labels, i.probeMs / 1000);
      if (!i.reachable) continue; // the last known values stay: an outage must not look like a recovery
      this.readOnly.set(labels, i.readOnly ? 1 : 0);
      const r = i.replication;
      if (r) {
        this.ioRunning.set(labels, r.ioRunning === 'Yes' ? 1 : r.ioRunning === 'Connecting' ? 0.5 : 0);
        this.sqlRunning.set(labels, r.sqlRunning === 'Yes' ? 1 : 0);
        if (r.lagSeconds === null) this.secondsBehind.remove(labels);
        else this.secondsBehind.set(labels, r.lagSeconds);
        const lag = this.appliedLagSeconds(t, i.gtid?.currentPos ?? i.gtid?.slavePos);
        if (lag !== undefined) this.lag.set(labels, lag);
      } else {
        this.ioRunning.remove(labels);
        this.sqlRunning.remove(labels);
        this.secondsBehind.remove(labels);
        this.lag.remove(labels);
      }
      const pos = i.gtid?.currentPos ?? i.gtid?.binlogPos;
      if (pos) for (const g of safeGtids(pos)) this.gtidSeq.set({ ...labels, domain: String(g.domain) }, g.seq);
    }
  }

  private notePrimaryPosition(t: Topology): void {
    const p = t.instances.find((i) => i.instance === t.primary);
    const position = p?.gtid?.binlogPos ?? p?.gtid?.currentPos;
    if (!position) return;
    const list = this.primaryPositions.get(t.cluster) ?? [];
    list.push({ at: t.probedAt, position });
    if (list.length > 900) list.splice(0, list.length - 900);
    this.primaryPositions.set(t.cluster, list);
  }

  /**
   * How far behind a replica is, dated by the primary's own positions: the time since the newest
   * round whose primary position the replica holds entirely (pt-heartbeat's idea, at the monitor's
   * resolution, without writing a heartbeat; the one reckoning in src/core/lagHistory.ts, which the
   * monitor's lag history shares). Unknown without a primary position to compare with.
   */
  private appliedLagSeconds(t: Topology, replicaPosition: string | undefined): number | undefined {
    const list = this.primaryPositions.get(t.cluster) ?? [];
    const lag = appliedLag(list.map((e) => [e.at, e.position] as const), replicaPosition, t.probedAt);
    return lag && (lag.atMost ?? lag.atLeast); // behind everything we remember: at least this
  }

  detection(cluster: string, ms: number): void {
    this.detectionLatency.observe({ cluster }, ms / 1000);
  }

  failover(cluster: string, f: { at: number; outcome: string; rtoMs?: number; lostTransactions?: number }): void {
    this.lastFailover.set({ cluster, outcome: f.outcome }, f.at / 1000);
    if (f.rtoMs !== undefined) this.rto.set({ cluster }, f.rtoMs / 1000);
    if (f.lostTransactions !== undefined) this.rpo.set({ cluster }, f.lostTransactions);
  }
}

function safeGtids(pos: string): { domain: number; seq: number }[] {
  try {
    return parseMariaGtidList(pos).map((g) => ({ domain: g.domain, seq: Number(g.seq) }));
  } catch {
    return [];
  }
}

let instance: MonitorMetrics | undefined;

/** The worker's one set of engine metrics. */
export function monitorMetrics(): MonitorMetrics {
  return (instance ??= new MonitorMetrics());
}
