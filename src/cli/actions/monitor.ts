/**
 * `runbook monitor start|stop|status`, `runbook ack`, `runbook downtime`: the monitor workflow,
 * one per cluster (workflow id `monitor-<cluster>`), started idempotently and spoken to through
 * the updates and the query src/core/monitorDefinitions.ts defines.
 */
import { WorkflowIdConflictPolicy, WorkflowNotFoundError, type Client } from '@temporalio/client';
import type { RunbookConfig } from '../../config/load';
import { configFingerprint } from '../../config/fingerprint';
import { identityProblem, INPUT_LIMITS, nameProblem, textProblem } from '../../core/inputs';
import { parseDowntimeDuration } from '../../core/monitor';
import { ackUpdate, downtimeUpdate, monitorStateQuery, monitorWorkflowId, stopMonitorUpdate, type MonitorSnapshot } from '../../core/monitorDefinitions';
import { Cluster, Operator, RunbookType } from '../../core/searchAttributes';
import { temporalSettings } from '../../adapters/temporal/client';
import type { monitor, MonitorInput } from '../../workflows/monitor';
import { workerPresent } from './follow';
import { printJson } from './output';
import { verifiedCliUser, withClient } from './common';

function firstProblem(problems: (string | undefined)[]): void {
  const p = problems.find(Boolean);
  if (p) throw new Error(p);
}

/** The clusters a start/stop names: one (checked against the config), or every one with --all. */
function clustersOf(config: RunbookConfig, o: { cluster?: string; all: boolean }): string[] {
  if (o.all === Boolean(o.cluster)) throw new Error('name one cluster, or --all');
  if (o.all) return Object.keys(config.clusters);
  firstProblem([nameProblem('cluster', o.cluster, { required: true })]);
  if (!config.clusters[o.cluster!]) throw new Error(`unknown cluster "${o.cluster}" (known: ${Object.keys(config.clusters).join(', ')})`);
  return [o.cluster!];
}

/** Start a cluster's monitor; one already running is success (the workflow id is the cluster's). */
export async function startMonitor(c: Client, config: RunbookConfig, cluster: string, operator: string, taskQueue = temporalSettings().taskQueue): Promise<{ workflowId: string; started: boolean }> {
  const running = await c.workflow
    .getHandle(monitorWorkflowId(cluster))
    .describe()
    .then((d) => d.status.name === 'RUNNING', () => false);
  if (running) return { workflowId: monitorWorkflowId(cluster), started: false };
  // Two starts at once: USE_EXISTING makes the second find the first rather than fail.
  const handle = await c.workflow.start<typeof monitor>('monitor', {
    taskQueue,
    workflowId: monitorWorkflowId(cluster),
    args: [{ cluster, operator, configFingerprint: configFingerprint(config) } satisfies MonitorInput],
    workflowIdConflictPolicy: WorkflowIdConflictPolicy.USE_EXISTING,
    staticSummary: `monitor ${cluster} (started by ${operator})`,
    typedSearchAttributes: [
      { key: RunbookType, value: 'monitor' },
      { key: Cluster, value: cluster },
      { key: Operator, value: operator },
    ],
  });
  return { workflowId: handle.workflowId, started: true };
}

export async function monitorStartCommand(config: RunbookConfig, o: { cluster?: string; all: boolean; as: string }): Promise<string> {
  const clusters = clustersOf(config, o);
  const who = clusters.map((c) => verifiedCliUser(config, c, o.as));
  return withClient(async (c) => {
    const { taskQueue } = temporalSettings();
    if (!(await workerPresent(c, taskQueue))) console.error(`warning: no worker polls task queue "${taskQueue}"; start one with: bin/runbook worker`);
    const lines: string[] = [];
    for (const [i, cluster] of clusters.entries()) {
      const r = await startMonitor(c, config, cluster, who[i]!, taskQueue);
      lines.push(`${r.workflowId}: ${r.started ? 'started' : 'already running'}`);
    }
    return lines.join('\n');
  });
}

export async function monitorStopCommand(config: RunbookConfig, o: { cluster?: string; all: boolean; as: string; reason?: string }): Promise<string> {
  const clusters = clustersOf(config, o);
  firstProblem([textProblem('--reason', o.reason, INPUT_LIMITS.reason)]);
  const who = clusters.map((c) => verifiedCliUser(config, c, o.as));
  return withClient(async (c) => {
    const lines: string[] = [];
    for (const [i, cluster] of clusters.entries()) {
      const handle = c.workflow.getHandle(monitorWorkflowId(cluster));
      try {
        if ((await handle.describe()).status.name !== 'RUNNING') {
          lines.push(`${handle.workflowId}: not running`);
          continue;
        }
        await handle.executeUpdate(stopMonitorUpdate, { args: [{ operator: who[i]!, reason: o.reason }] });
        lines.push(`${handle.workflowId}: stopping`);
      } catch (err) {
        if (err instanceof WorkflowNotFoundError) lines.push(`${handle.workflowId}: not running`);
        else throw err;
      }
    }
    return lines.join('\n');
  });
}

export async function monitorSnapshot(c: Client, cluster: string): Promise<{ status: string; snapshot?: MonitorSnapshot }> {
  const handle = c.workflow.getHandle(monitorWorkflowId(cluster));
  try {
    const d = await handle.describe();
    if (d.status.name !== 'RUNNING') return { status: d.status.name };
    return { status: 'RUNNING', snapshot: await handle.query(monitorStateQuery) };
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return { status: 'NOT_STARTED' };
    throw err;
  }
}

export async function monitorStatusCommand(config: RunbookConfig, cluster: string | undefined, json: boolean): Promise<number> {
  const clusters = cluster ? clustersOf(config, { cluster, all: false }) : Object.keys(config.clusters);
  return withClient(async (c) => {
    const all = [];
    for (const name of clusters) all.push({ cluster: name, ...(await monitorSnapshot(c, name)) });
    if (json) {
      printJson(all);
      return 0;
    }
    for (const m of all) {
      if (!m.snapshot) {
        console.log(`${m.cluster}: monitor ${m.status === 'NOT_STARTED' ? 'not started' : m.status} (start it with: runbook monitor start ${m.cluster} --as <your name>)`);
        continue;
      }
      const s = m.snapshot;
      console.log(`${m.cluster}: ${s.state.verdict}, primary ${s.state.primary ?? 'none'}${s.state.misses ? `, missed ${s.state.misses} round(s)` : ''} — every ${s.settings.intervalSeconds} s, threshold ${s.settings.failureThreshold}, automatic failover ${s.settings.autoFailover}, ${s.rounds} round(s)`);
      for (const i of s.lastRound?.instances ?? []) console.log(`  ${i.instance.padEnd(20)} ${s.state.health[i.instance] ?? '?'}${i.lagSeconds !== undefined && i.lagSeconds !== null ? `, lag ${i.lagSeconds} s` : ''}${i.error ? ` (${i.error})` : ''}`);
      if (s.block) console.log(`  blocked: automatic failover ${s.block.workflowId} (incident ${s.block.incidentId}, ${s.block.running ? 'running' : s.block.outcome}): runbook ack ${m.cluster} --as <your name> --comment "…"`);
      for (const d of s.downtimes) console.log(`  downtime ${d.target} until ${new Date(d.until).toISOString()} by ${d.by}: ${d.reason}`);
      if (s.lastFailure) console.log(`  last failure: ${s.lastFailure.primary} detected in ${(s.lastFailure.detectionMs / 1000).toFixed(1)} s, ${s.lastFailure.handled ?? 'not handled'}${s.lastFailure.pagedBecause ? ` (${s.lastFailure.pagedBecause})` : ''}${s.lastFailure.incidentId ? ` (incident ${s.lastFailure.incidentId})` : ''}`);
      for (const v of s.lastFailure?.votes ?? []) console.log(`    observer ${v.region} (${v.taskQueue}): ${v.vote === 'no_answer' ? 'no answer' : v.vote}: ${v.summary}`);
      if (s.settings.observers?.length && !s.lastFailure?.votes) console.log(`  observers: ${s.settings.observers.map((o) => `${o.region} (${o.taskQueue})`).join(', ')}: asked before acting on a dead primary`);
    }
    return 0;
  });
}

/** `runbook ack`: lift the block an automatic failover left; exit 1 when refused (and why). */
export async function ackCommand(config: RunbookConfig, cluster: string, as: string, comment: string, client?: Client): Promise<number> {
  clustersOf(config, { cluster, all: false });
  firstProblem([identityProblem('--as', as, { required: true }), textProblem('--comment', comment, INPUT_LIMITS.comment, { required: true })]);
  const operator = verifiedCliUser(config, cluster, as);
  const run = async (c: Client) => {
    const v = await c.workflow.getHandle(monitorWorkflowId(cluster)).executeUpdate(ackUpdate, { args: [{ operator, comment, channel: 'cli' }] });
    console.log(v.accepted ? `${cluster}: acknowledged; automatic recovery is armed again` : `${cluster}: not acknowledged: ${v.reason}`);
    return v.accepted ? 0 : 1;
  };
  return client ? run(client) : withClient(run);
}

/** The cluster a downtime target belongs to: the cluster itself, or the one with that instance. */
export function downtimeCluster(config: RunbookConfig, target: string): string {
  firstProblem([nameProblem('downtime target', target, { required: true })]);
  if (config.clusters[target]) return target;
  const owner = Object.entries(config.clusters).find(([, c]) => c.instances.some((i) => i.name === target));
  if (!owner) throw new Error(`"${target}" is neither a cluster nor an instance of the config`);
  return owner[0];
}

export async function downtimeCommand(config: RunbookConfig, target: string, o: { for: string; reason: string; as: string }, client?: Client): Promise<number> {
  const cluster = downtimeCluster(config, target);
  const duration = parseDowntimeDuration(o.for);
  if ('problem' in duration) throw new Error(duration.problem);
  firstProblem([textProblem('--reason', o.reason, INPUT_LIMITS.reason, { required: true }), identityProblem('--as', o.as, { required: true })]);
  const operator = verifiedCliUser(config, cluster, o.as);
  const run = async (c: Client) => {
    const v = await c.workflow.getHandle(monitorWorkflowId(cluster)).executeUpdate(downtimeUpdate, { args: [{ target, seconds: duration.ms / 1000, reason: o.reason, operator }] });
    console.log(v.accepted ? `${target}: downtime for ${o.for} (no automatic action, no alert); it ends by itself` : `${target}: refused: ${v.reason}`);
    return v.accepted ? 0 : 1;
  };
  return client ? run(client) : withClient(run);
}
