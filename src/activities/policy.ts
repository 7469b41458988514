/** The non-secret policy a runbook decides with, read from the worker's own config. */
import { getCluster, type RunbookConfig } from '../config/load';
import type { ApprovalRule } from '../config/schema';
import type { ClusterPolicy } from '../shared/failover';
import type { ActivityDeps } from './deps';

/** When a cluster says nothing about a runbook, a human decides: the safe default. */
const REQUIRE_A_HUMAN: ApprovalRule = { mode: 'required', approvers: [], fourEyes: true, timeoutMinutes: 15, remindEveryMinutes: 5 };

export function clusterPolicyOf(config: RunbookConfig, input: { cluster: string; runbook: string; mode: string }): ClusterPolicy {
      const c = getCluster(config, input.cluster);
      const a = c.approval;
      const approval = a[input.runbook]?.[input.mode] ?? a[input.runbook]?.default ?? a.default?.[input.mode] ?? a.default?.default ?? REQUIRE_A_HUMAN;
      return {
        cluster: input.cluster,
        instances: c.instances.map((i) => ({ name: i.name, region: i.region, address: `${i.host}:${i.port}`, promotion: i.promotion })),
        thresholds: c.thresholds,
        approval,
        trafficHooks: c.traffic.hooks.map((h) => h.name),
        fencingHooks: c.fencing.hooks.map((h) => h.name),
      };
}

export function createPolicyActivities({ config }: ActivityDeps) {
  return {
    async clusterPolicy(input: { cluster: string; runbook: string; mode: string }): Promise<ClusterPolicy> {
      return clusterPolicyOf(config, input);
    },
  };
}
