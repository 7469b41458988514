/**
 * What the status panel shows, read fresh for each page: live topology (probes), sync_status, the
 * writer endpoint and failover_log from the control database, running and recent runbooks from
 * Temporal visibility (by the runbooks' search attributes) and, for running ones, their own state
 * (the `runbookState` query: pending approvals), and each cluster's monitor through its
 * `monitorState` query: its verdict, block and downtimes, and the last hour of each replica's lag
 * as the monitor measured it. Read-only: nothing here changes anything.
 *
 * The view is built field by field from what the panel needs, never by passing a config or a
 * probe result through: no password, token or key can reach the page.
 */
import type { Client } from '@temporalio/client';
import type { RunbookConfig } from '../../config/load';
import { failoverHistory, listSyncStatus, readWriterEndpoint, withControl, type HistoryRow } from '../../adapters/control/store';
import { probeTopology } from '../../adapters/mysql/probe';
import type { ApprovalState, RunbookState } from '../../core/runbookDefinitions';
import { logTimeMs, runTimelines, type RunTimeline } from '../../core/timeline';
import { monitorStateQuery, monitorWorkflowId, type MonitorSnapshot } from '../../core/monitorDefinitions';

export interface InstanceView {
  instance: string;
  region: string;
  role: string;
  reachable: boolean;
  readOnly: boolean | null;
  source: string | null;
  lagSeconds: number | null;
  gtid: string;
  error: string;
}

export interface ClusterView {
  name: string;
  primary: string | null;
  primaryRegion: string | null;
  regions: string[];
  instances: InstanceView[];
  problems: string[];
  sync: { region: string; instance: string; role: string; status: string; lagSeconds: string; lastInSync: string; remark: string }[];
  writer: { instance: string; region: string; address: string; generation: number } | null;
  lastFailover: { workflowId: string; status: string; at: string; route: string; rtoMs: number | null; rpo: string } | null;
  /** The cluster's monitor (`runbook monitor start`): null when none runs or it cannot be asked. */
  monitor: MonitorView | null;
  error?: string;
}

export interface MonitorView {
  verdict: string;
  autoFailover: string;
  intervalSeconds: number;
  /** An automatic failover's anti-flapping block, until `runbook ack`. */
  block: { incidentId: string; since: string; running: boolean } | null;
  downtimes: { target: string; until: string; reason: string; by: string }[];
}

export interface ApprovalView {
  workflowId: string;
  cluster: string;
  runbook: string;
  requester: string;
  approvers: string[];
  fourEyes: boolean;
  channels: { name: string; via: string[] }[];
  deadline: string | null;
  forcedBecause?: string;
}

export interface IncidentView {
  workflowId: string;
  /** Temporal's run id (empty for a run known only from failover_log without one). */
  runId: string;
  runbook: string;
  cluster: string;
  incidentId: string;
  operator: string;
  status: string;
  temporalStatus: string;
  startedAt: string;
  reason: string;
  uiLink: string | null;
  timeline: RunTimeline | null;
  currentStep: string | null;
}

/** A replica's lag over the last hour, as its cluster's monitor measured it (its `monitorState` query). */
export interface LagSeries {
  cluster: string;
  instance: string;
  samples: { at: number; lag: number | null }[];
}

export interface PanelView {
  generatedAt: number;
  clusters: ClusterView[];
  incidents: IncidentView[];
  approvals: ApprovalView[];
  lag: LagSeries[];
  problems: string[];
}

export interface PanelSources {
  config: RunbookConfig;
  client: Client;
  /** Temporal Web UI base (TEMPORAL_UI_URL), for links to a workflow. */
  uiUrl?: string;
  namespace?: string;
  now?: () => number;
}

const HOUR_MS = 3600_000;

const text = (v: unknown) => (v === null || v === undefined ? '' : String(v));
const firstLine = (e: unknown) => (e instanceof Error ? e.message : String(e)).split('\n')[0]!.slice(0, 300);

function lastFailoverOf(rows: HistoryRow[]): ClusterView['lastFailover'] {
  const run = runTimelines(rows.filter((r) => r.runbook === 'failover'))
    .filter((r) => r.status !== 'running')
    .at(-1);
  if (!run) return null;
  const step = (name: string) => run.steps.find((s) => s.step === name);
  // Writes stop when the old primary is fenced (planned) or failed (emergency: the run's start is
  // the earliest the engine knew), and resume when traffic points at the new primary.
  const from = step('hand over writes') ?? step('fence old primary') ?? run.steps[0];
  const traffic = step('switch traffic');
  const rtoMs = from && traffic && traffic.status === 'succeeded' && traffic.durationMs !== undefined ? logTimeMs(traffic.at) + traffic.durationMs - logTimeMs(from.at) : null;
  const catchUp = step('hand over writes') ?? step('wait for catch-up');
  const rpo = catchUp?.status === 'succeeded' ? 'none: the candidate applied every transaction of the fenced primary' : traffic ? 'see the plan\'s expected loss in the run' : 'n/a (not promoted)';
  return { workflowId: run.workflowId ?? '', status: run.status, at: run.endedAt ?? run.startedAt, route: `${run.fromRegion ?? '?'} → ${run.toRegion ?? '?'}`, rtoMs, rpo };
}

const MAX_LAG_POINTS = 240; // the monitor keeps 120 a replica; more is not a monitor's answer

/** The lag history in the monitor's answer, bounded and checked: its replicas only, numbers only. */
function lagSeriesOf(cluster: string, instances: string[], history: MonitorSnapshot['lagHistory']): LagSeries[] {
  const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : null);
  return instances
    .filter((name) => Array.isArray(history?.[name]))
    .map((name) => ({
      cluster,
      instance: name,
      samples: history![name]!.slice(-MAX_LAG_POINTS).flatMap((p) => (Array.isArray(p) && num(p[0]) !== null ? [{ at: num(p[0])!, lag: num(p[1]) }] : [])),
    }));
}

/** The monitor's own answer (its query), field by field; none running (or not answering) is null. */
async function monitorView(src: PanelSources, cluster: string): Promise<{ view: MonitorView; lag: LagSeries[] } | null> {
  const handle = src.client.workflow.getHandle(monitorWorkflowId(cluster));
  const running = await handle.describe().then((d) => d.status.name === 'RUNNING', () => false);
  if (!running) return null;
  const snap = await src.client.connection.withDeadline(Date.now() + 2000, () => handle.query(monitorStateQuery)).catch(() => undefined);
  if (!snap) return null;
  const iso = (ms: number) => new Date(ms).toISOString();
  const instances = src.config.clusters[cluster]!.instances.map((i) => i.name);
  return { view: monitorFields(snap, iso), lag: lagSeriesOf(cluster, instances, snap.lagHistory) };
}

function monitorFields(snap: MonitorSnapshot, iso: (ms: number) => string): MonitorView {
  return {
    verdict: text(snap.state.verdict),
    autoFailover: text(snap.settings.autoFailover),
    intervalSeconds: Number(snap.settings.intervalSeconds),
    block: snap.block ? { incidentId: text(snap.block.incidentId), since: iso(snap.block.since), running: Boolean(snap.block.running) } : null,
    downtimes: snap.downtimes.map((d) => ({ target: text(d.target), until: iso(d.until), reason: text(d.reason).slice(0, 200), by: text(d.by) })),
  };
}

async function clusterView(src: PanelSources, name: string, lag: LagSeries[]): Promise<ClusterView> {
  const cfg = src.config.clusters[name]!;
  const view: ClusterView = { name, primary: null, primaryRegion: null, regions: [], instances: [], problems: [], sync: [], writer: null, lastFailover: null, monitor: null };
  const [topology, control, monitor] = await Promise.all([
    probeTopology(src.config, name).catch((err) => err as Error),
    withControl(
      src.config,
      async (c) => ({
        sync: await listSyncStatus(c, name),
        writer: await readWriterEndpoint(c, name),
        history: await failoverHistory(c, { cluster: name, pageSize: 500 }),
      }),
      3000,
    ).catch((err) => err as Error),
    monitorView(src, name),
  ]);
  view.monitor = monitor?.view ?? null;
  lag.push(...(monitor?.lag ?? []));
  const regionOf = new Map(cfg.instances.map((i) => [i.name, i.region ?? '']));
  if (topology instanceof Error) view.error = `cannot probe the cluster: ${firstLine(topology)}`;
  else {
    view.primary = topology.primary;
    view.primaryRegion = topology.primary ? (regionOf.get(topology.primary) ?? null) : null;
    view.problems = topology.problems.map((p) => text(p));
    view.instances = topology.instances.map((i) => ({
      instance: i.instance,
      region: i.region ?? '',
      role: i.role,
      reachable: i.reachable,
      readOnly: i.reachable ? Boolean(i.readOnly) : null,
      source: i.replication ? (i.replication.sourceInstance ?? `${i.replication.sourceHost}:${i.replication.sourcePort}`) : null,
      lagSeconds: i.replication?.lagSeconds ?? null,
      gtid: text(i.gtid?.currentPos || i.gtid?.executed || i.gtid?.binlogPos || ''),
      error: i.reachable ? '' : firstLine(i.error ?? 'unreachable'),
    }));
  }
  view.regions = [...new Set([...cfg.instances.map((i) => i.region ?? ''), ...view.instances.map((i) => i.region)])].filter(Boolean).sort();
  if (control instanceof Error) view.error = [view.error, `cannot read the control database: ${firstLine(control)}`].filter(Boolean).join('; ');
  else {
    view.sync = control.sync.map((r) => ({
      region: text(r.region), instance: text(r.instance), role: text(r.role), status: text(r.status), lagSeconds: text(r.lag_seconds), lastInSync: text(r.last_sync_time), remark: text(r.remark).slice(0, 200),
    }));
    const w = control.writer;
    view.writer = w ? { instance: w.instance, region: w.region, address: `${w.host}:${w.port}`, generation: w.generation } : null;
    view.lastFailover = lastFailoverOf(control.history);
  }
  return view;
}

type RecentRun = { id: string; runId: string; status: string; start: Date; sa: Record<string, string> };

/**
 * Running runbooks, then those closed in the last day, newest first (Temporal visibility). A
 * workflow id has at most one open run, so when visibility, which lags, still shows the run that
 * just continued as new as running beside its successor, only the newest is kept.
 */
async function recentRuns(src: PanelSources, now: number): Promise<RecentRun[]> {
  const since = new Date(now - 24 * HOUR_MS).toISOString();
  // A run that continued as new (the monitor hands over every few thousand events) is its successor.
  const query = `RunbookType IS NOT NULL AND ExecutionStatus != 'ContinuedAsNew' AND (ExecutionStatus = 'Running' OR CloseTime > '${since}')`;
  const runs: RecentRun[] = [];
  for await (const w of src.client.workflow.list({ query, pageSize: 50 })) {
    const sa: Record<string, string> = {};
    for (const p of w.typedSearchAttributes.getAll()) sa[p.key.name] = text(p.value);
    runs.push({ id: w.workflowId, runId: w.runId, status: w.status.name, start: w.startTime, sa });
    if (runs.length >= 25) break;
  }
  runs.sort((a, b) => Number(b.status === 'RUNNING') - Number(a.status === 'RUNNING') || b.start.getTime() - a.start.getTime());
  return runs.filter((r, i) => r.status !== 'RUNNING' || !runs.slice(0, i).some((x) => x.status === 'RUNNING' && x.id === r.id));
}

function approvalView(src: PanelSources, workflowId: string, cluster: string, runbook: string, a: ApprovalState): ApprovalView {
  const people = src.config.clusters[cluster]?.people ?? [];
  const channels = a.rule.channels ?? [];
  const approvers = a.rule.approvers.filter((p) => !(a.rule.fourEyes && p === a.requester));
  return {
    workflowId,
    cluster,
    runbook,
    requester: a.requester,
    approvers: a.rule.approvers,
    fourEyes: a.rule.fourEyes,
    // Which of the allowed channels each approver can use: the config says who has Slack or email.
    channels: (approvers.length ? approvers : ['anyone']).map((name) => {
      const p = people.find((x) => x.name === name);
      const via = channels.filter((c) => c === 'cli' || (c === 'slack' && p?.slack) || (c === 'email' && p?.email) || name === 'anyone');
      return { name, via: [...via] };
    }),
    deadline: a.deadline ? new Date(a.deadline).toISOString() : null,
    forcedBecause: a.forcedBecause,
  };
}

export async function collectPanel(src: PanelSources): Promise<PanelView> {
  const now = (src.now ?? Date.now)();
  const problems: string[] = [];
  const lag: LagSeries[] = [];
  const clusters = await Promise.all(Object.keys(src.config.clusters).map((name) => clusterView(src, name, lag)));
  lag.sort((a, b) => a.cluster.localeCompare(b.cluster) || a.instance.localeCompare(b.instance));
  const incidents: IncidentView[] = [];
  const approvals: ApprovalView[] = [];
  let runs: Awaited<ReturnType<typeof recentRuns>> = [];
  try {
    runs = await recentRuns(src, now);
  } catch (err) {
    problems.push(`cannot list runbooks from Temporal: ${firstLine(err)}`);
  }
  const rows = runs.length
    ? await withControl(src.config, (c) => Promise.all(runs.map((r) => failoverHistory(c, { workflowId: r.id, pageSize: 200 }))), 3000).catch((err) => {
        problems.push(`cannot read failover_log: ${firstLine(err)}`);
        return runs.map(() => [] as HistoryRow[]);
      })
    : [];
  await Promise.all(
    runs.map(async (r, i) => {
      let state: RunbookState | undefined;
      if (r.status === 'RUNNING') {
        state = await src.client.workflow
          .getHandle(r.id)
          .query<RunbookState>('runbookState')
          .catch(() => undefined);
      }
      // The trail is read by workflow id: an id reused by an earlier run (a monitor stopped and
      // started again) has that run's rows too. Each run gets its own; the newest run of an id
      // also gets the newest trail when none carries its run id (its predecessor's, continued as new).
      const trails = runTimelines(rows[i] ?? []);
      const newestOfId = runs.findIndex((x) => x.id === r.id) === i;
      const timeline = trails.find((t) => t.runId === r.runId) ?? (newestOfId ? trails.at(-1) : undefined) ?? null;
      const cluster = r.sa.Cluster ?? '';
      const runbook = r.sa.RunbookType ?? '';
      incidents.push({
        workflowId: r.id,
        runId: r.runId,
        runbook,
        cluster,
        incidentId: r.sa.IncidentId ?? '',
        operator: r.sa.Operator ?? '',
        status: r.sa.RunbookStatus ?? r.status.toLowerCase(),
        temporalStatus: r.status,
        startedAt: r.start.toISOString(),
        reason: text(timeline?.reason ?? state?.meta.reason ?? ''),
        uiLink: src.uiUrl ? `${src.uiUrl.replace(/\/$/, '')}/namespaces/${encodeURIComponent(src.namespace ?? 'default')}/workflows/${encodeURIComponent(r.id)}` : null,
        timeline,
        currentStep: state?.currentStep ?? null,
      });
      const approval = state?.details.approval as ApprovalState | undefined;
      if (approval?.status === 'pending') approvals.push(approvalView(src, r.id, cluster, runbook, approval));
    }),
  );
  const order = new Map(runs.map((r, i) => [`${r.id}|${r.runId}`, i]));
  incidents.sort((a, b) => order.get(`${a.workflowId}|${a.runId}`)! - order.get(`${b.workflowId}|${b.runId}`)!);
  const listed = new Set(runs.map((r) => r.id));
  // Runs failover_log knows and Temporal visibility does not (past its retention, another
  // namespace, or Temporal unreachable): listed after the others, from their audit trail alone.
  const recent = await withControl(src.config, (c) => failoverHistory(c, { pageSize: 500 }), 3000).catch(() => [] as HistoryRow[]);
  const since = now - 24 * HOUR_MS;
  // Only runbook runs (they have the run's own step-0 row), not the endpoint's or the CLI's events.
  const runbookRuns = new Set(recent.filter((r) => r.step_seq === 0 && r.workflow_id).map((r) => r.workflow_id));
  for (const run of runTimelines(recent.filter((r) => r.workflow_id && runbookRuns.has(r.workflow_id) && !listed.has(r.workflow_id) && src.config.clusters[r.cluster ?? ''])).reverse()) {
    if (!run.workflowId || logTimeMs(run.startedAt) < since || incidents.some((i) => i.workflowId === run.workflowId)) continue;
    incidents.push({
      workflowId: run.workflowId,
      runId: run.runId ?? '',
      runbook: run.runbook,
      cluster: run.cluster,
      incidentId: run.incidentId ?? '',
      operator: run.operator ?? '',
      status: run.status,
      temporalStatus: 'not in Temporal visibility',
      startedAt: `${run.startedAt.replace(' ', 'T')}Z`,
      reason: run.reason ?? '',
      uiLink: null,
      timeline: run,
      currentStep: null,
    });
    if (incidents.length >= 40) break;
  }
  return { generatedAt: now, clusters, incidents, approvals, lag, problems };
}
