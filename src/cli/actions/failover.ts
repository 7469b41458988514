/** `runbook failover`: start a planned switchover or an emergency failover and follow it. */
import { type Client } from '@temporalio/client';
import { clusterPolicyOf } from '../../activities/policy';
import { probeTopology } from '../../adapters/mysql/probe';
import { lastKnownPrimary } from '../../core/failedPrimary';
import { describePlan, planSwitchover } from '../../core/plan';
import { loadConfig, configPathFromEnv } from '../../config/load';
import { nameProblem } from '../../core/inputs';
import { failoverWorkflowId } from '../../core/runbookDefinitions';
import type { failover, FailoverInput } from '../../workflows/failover';
import { checkIncidentOptions, cliConfig, newIncidentId, startIncidentRunbook, verifiedCliUser, withClient, type IncidentCliOptions } from './common';

export { failoverWorkflowId };

export interface FailoverCliOptions extends IncidentCliOptions {
  to?: string;
  emergency?: boolean;
}

/**
 * `region-a → region-b` for the run's static summary in the Temporal UI, from the CLI's own look at
 * the topology. Only a label: the workflow's preflight decides, and may decide otherwise.
 */
export async function intendedRoute(o: FailoverCliOptions, mode: 'planned' | 'emergency'): Promise<string> {
  try {
    const config = loadConfig(configPathFromEnv());
    const topology = await probeTopology(config, o.cluster);
    const regionOf = (name: string) => topology.instances.find((i) => i.instance === name)?.region ?? name;
    if (mode === 'planned') {
      const r = planSwitchover(topology, clusterPolicyOf(config, { cluster: o.cluster, runbook: 'failover', mode }), o.to);
      if (r.ok) return `${r.plan.from.region} → ${r.plan.to.region} `;
    } else {
      const failed = lastKnownPrimary(topology);
      if (failed.ok) return `${regionOf(failed.primary)} → ${o.to ?? '?'} `;
    }
  } catch {
    /* the label is best effort */
  }
  return o.to ? `→ ${o.to} ` : '';
}

/** Start a failover and (unless detached) follow it; returns the exit code. */
export async function startFailover(o: FailoverCliOptions, client?: Client): Promise<number> {
  checkIncidentOptions(o, [nameProblem('--to', o.to)]);
  const { config, configFingerprint } = cliConfig();
  const requester = verifiedCliUser(config, o.cluster, o.as);
  const run = async (c: Client) => {
    const incidentId = o.incident ?? newIncidentId();
    const mode = o.emergency ? 'emergency' : 'planned';
    const input: FailoverInput = { cluster: o.cluster, mode, target: o.to, reason: o.reason, requester, incidentId, dryRun: o.dryRun, configFingerprint };
    return startIncidentRunbook<typeof failover>(c, {
      type: 'failover',
      workflowId: failoverWorkflowId(o.cluster, incidentId),
      input,
      cluster: o.cluster,
      incidentId,
      summary: `failover ${o.cluster}: ${await intendedRoute(o, mode)}(${mode}${o.dryRun ? ', dry run' : ''}) by ${requester}`,
      options: { ...o, as: requester },
      print: (result) => {
        if (result.status === 'dry_run') console.log(`\n${describePlan(result.plan)}`);
        console.log(`\n${result.status}: ${result.plan.from.instance} (${result.plan.from.region}) → ${result.plan.to.instance} (${result.plan.to.region})`);
      },
    });
  };
  return client ? run(client) : withClient(run);
}
