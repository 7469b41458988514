/** What every runbook command shares: who the CLI user is, the bounds of its options, starting and following a run. */
import { userInfo } from 'node:os';
import { WorkflowIdReusePolicy, type Client } from '@temporalio/client';
import { cliIdentityPolicyOf } from '../../activities/policy';
import { loadConfig, configPathFromEnv, getCluster, type RunbookConfig } from '../../config/load';
import { configFingerprint } from '../../config/fingerprint';
import { cliIdentity } from '../../core/identity';
import { identityProblem, incidentIdProblem, INPUT_LIMITS, textProblem } from '../../core/inputs';
import { Cluster, IncidentId, Operator, RunbookType } from '../../core/searchAttributes';
import { connectClient, temporalSettings } from '../../adapters/temporal/client';
import { failureMessage, follow, workerPresent } from './follow';
import { printJson } from './output';

/** The OS login of whoever runs this CLI: what a CLI identity is verified with. */
export function osLogin(): string | undefined {
  try {
    return userInfo().username;
  } catch {
    return undefined; // no passwd entry for this uid: then there is no login to map
  }
}

/**
 * Who the CLI user is on `cluster`: the person their OS login maps to (people[].login); `--as`
 * must name that person unless the cluster allows declared identities. Refused in one line.
 */
export function verifiedCliUser(config: RunbookConfig, cluster: string, as: string | undefined): string {
  const problem = identityProblem('--as', as);
  if (problem) throw new Error(problem);
  const who = cliIdentity(cliIdentityPolicyOf(getCluster(config, cluster)), osLogin(), as);
  if (!who.ok) throw new Error(who.refusal);
  return who.identity;
}

/** The bounds of what every incident command takes, checked before anything starts. */
export function checkIncidentOptions(o: IncidentCliOptions, more: (string | undefined)[] = []): void {
  const problem = [
    textProblem('--reason', o.reason, INPUT_LIMITS.reason, { required: true }),
    identityProblem('--as', o.as, { required: true }),
    incidentIdProblem('--incident', o.incident),
    ...more,
  ].find(Boolean);
  if (problem) throw new Error(problem);
}

/** The config this CLI was given, and its fingerprint for the worker to compare with its own. */
export function cliConfig(): { config: RunbookConfig; configFingerprint: string } {
  const config = loadConfig(configPathFromEnv());
  return { config, configFingerprint: configFingerprint(config) };
}

export function newIncidentId(): string {
  return `INC-${new Date().toISOString().replace(/[-:T]/g, '').slice(0, 14)}`;
}

/** What every incident runbook's command takes (failover, restore, flashback). */
export interface IncidentCliOptions {
  cluster: string;
  reason: string;
  as: string;
  incident?: string;
  dryRun?: boolean;
  detach?: boolean;
  json?: boolean;
}

/** How a bad event is named on the command line (restore's and flashback's). */
export interface BadEventCliOptions {
  table?: string;
  statement?: string;
  notStatement?: string;
  from?: string;
  to?: string;
  /** The event's GTID, confirming one of the candidates an ambiguous search listed. */
  event?: string;
}

export async function withClient<T>(fn: (c: Client) => Promise<T>): Promise<T> {
  const client = await connectClient();
  try {
    return await fn(client);
  } finally {
    await client.connection.close();
  }
}

/**
 * Start an incident runbook (failover, restore, flashback) the same way from every command: search
 * attributes, summary, reuse policy; then (unless detached) follow it and print its result.
 * Returns the exit code: 0 succeeded or dry run, 3 ended otherwise (rejected, timed out), 1 failed.
 */
export async function startIncidentRunbook<W extends (input: any) => Promise<{ status: string }>>( // eslint-disable-line @typescript-eslint/no-explicit-any
  c: Client,
  r: {
    /** The workflow type: its function's name (the registry's). */
    type: string;
    workflowId: string;
    input: Parameters<W>[0];
    cluster: string;
    incidentId: string;
    summary: string;
    options: { reason: string; as: string; detach?: boolean; json?: boolean };
    print: (result: Awaited<ReturnType<W>>) => void;
  },
): Promise<number> {
  const { taskQueue } = temporalSettings();
  const o = r.options;
  if (!(await workerPresent(c, taskQueue))) console.error(`warning: no worker polls task queue "${taskQueue}"; start one with: bin/runbook worker`);
  const handle = await c.workflow.start<W>(r.type, {
    taskQueue,
    workflowId: r.workflowId,
    // A failed run of an incident may be retried; a completed one is never repeated by accident.
    workflowIdReusePolicy: WorkflowIdReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
    args: [r.input] as Parameters<W>,
    staticSummary: r.summary,
    staticDetails: `reason: ${o.reason}\nincident: ${r.incidentId}`,
    typedSearchAttributes: [
      { key: RunbookType, value: r.type },
      { key: Cluster, value: r.cluster },
      { key: IncidentId, value: r.incidentId },
      { key: Operator, value: o.as },
    ],
  });
  console.error(`started ${handle.workflowId} (incident ${r.incidentId})`);
  if (o.detach) {
    if (o.json) printJson({ workflowId: handle.workflowId, incidentId: r.incidentId });
    return 0;
  }
  try {
    const result = await follow<Awaited<ReturnType<W>>>(handle, (s) => console.error(s));
    if (o.json) printJson(result);
    else r.print(result);
    return result.status === 'succeeded' || result.status === 'dry_run' ? 0 : 3;
  } catch (err) {
    console.error(`runbook: ${handle.workflowId} failed: ${failureMessage(err)}`);
    return 1;
  }
}
