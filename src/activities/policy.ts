/** The non-secret policy a runbook decides with, read from the worker's own config. */
import { getCluster, type RunbookConfig } from '../config/load';
import { APPROVAL_CHANNELS, type ApprovalRule, type ClusterConfig } from '../core/configSchema';
import type { CliIdentityPolicy } from '../core/identity';
import type { ClusterPolicy } from '../core/failover';
import type { ActivityDeps } from './deps';
import { ApplicationFailure } from '@temporalio/common';
import { configFingerprint } from '../config/fingerprint';

/** When a cluster says nothing about a runbook, a human decides: the safe default. */
const REQUIRE_A_HUMAN: ApprovalRule = { mode: 'required', approvers: [], channels: [...APPROVAL_CHANNELS], fourEyes: true, timeoutMinutes: 15, remindEveryMinutes: 5 };

/** How a CLI user's identity is established on a cluster (see src/core/identity.ts). */
export function cliIdentityPolicyOf(c: ClusterConfig): Required<CliIdentityPolicy> {
  return { cliIdentity: c.cliIdentity, logins: Object.fromEntries(c.people.filter((p) => p.login).map((p) => [p.login!, p.name])) };
}

export function clusterPolicyOf(config: RunbookConfig, input: { cluster: string; runbook: string; mode: string }): ClusterPolicy {
      const c = getCluster(config, input.cluster);
      const a = c.approval;
      const rule = a[input.runbook]?.[input.mode] ?? a[input.runbook]?.default ?? a.default?.[input.mode] ?? a.default?.default ?? REQUIRE_A_HUMAN;
      const approval = { ...rule, ...cliIdentityPolicyOf(c) };
      return {
        cluster: input.cluster,
        instances: c.instances.map((i) => ({ name: i.name, region: i.region, address: `${i.host}:${i.port}`, promotion: i.promotion })),
        thresholds: c.thresholds,
        approval,
        trafficHooks: c.traffic.hooks.map((h) => h.name),
        fencingHooks: c.fencing.hooks.map((h) => h.name),
        reseedPhysical: !!c.reseed?.physical,
      };
}

export function createPolicyActivities({ config }: ActivityDeps) {
  const fingerprint = configFingerprint(config);
  return {
    /**
     * The run was started with the config whose fingerprint it carries: refused (before anything
     * is done) when that is not the config this worker runs, since every decision would then be
     * taken on clusters, policies and people other than the ones the operator was shown.
     */
    async checkConfig(input: { fingerprint: string }): Promise<string> {
      if (input.fingerprint !== fingerprint) {
        throw ApplicationFailure.nonRetryable(
          `the CLI's config (${input.fingerprint}) is not the worker's (${fingerprint}, ${config.files.join(', ')}): start the runbook with the config the worker runs, or restart the worker with yours`,
          'ConfigMismatch',
        );
      }
      return fingerprint;
    },

    async clusterPolicy(input: { cluster: string; runbook: string; mode: string }): Promise<ClusterPolicy> {
      return clusterPolicyOf(config, input);
    },
  };
}
