/**
 * Types of the failover runbook that cross the workflow/activity boundary. Workflow-safe.
 */
import type { ApprovalChannel, ApprovalRule, Thresholds } from './configSchema';

export type FailoverMode = 'planned' | 'emergency';

/** The non-secret part of a cluster's config a runbook needs to decide (no hosts' passwords). */
export interface ClusterPolicy {
  cluster: string;
  instances: { name: string; region: string; address: string; promotion: 'prefer' | 'neutral' | 'never' }[];
  thresholds: Thresholds;
  /** The approval rule for this runbook and mode (falls back to the runbook's, then the cluster's default). */
  approval: ApprovalPolicy;
  trafficHooks: string[];
  fencingHooks: string[];
  /** The config has a reseed.physical template (failback's reseed-physical can copy). */
  reseedPhysical?: boolean;
}

/**
 * An approval rule with what the approval gate needs to tell who decides: how a CLI decision's
 * identity is established, and the OS logins of the cluster's people. Missing fields mean the
 * strict choice (every channel, identities from logins, no login known).
 */
export type ApprovalPolicy = Omit<ApprovalRule, 'channels'> & {
  channels?: ApprovalChannel[];
  cliIdentity?: 'login' | 'declared';
  /** OS login → person (people[].login). */
  logins?: Record<string, string>;
};

export interface PlannedInstance {
  instance: string;
  region: string;
  address: string;
}

export interface FailoverPlan {
  mode: FailoverMode;
  cluster: string;
  from: PlannedInstance;
  to: PlannedInstance;
  /** Replicas other than the candidate, to be repointed to it. */
  others: string[];
  /** The candidate's measured lag behind the primary when planned (seconds). */
  lagSeconds: number | null;
  positions: { primary: string; candidate: string };
  /** Things a human approving this should know (not blocking). */
  risks: string[];
  /** Emergency only: what the candidate lacks of the old primary's last known position. */
  expectedLoss?: ExpectedLoss;
}

export interface ExpectedLoss {
  primaryLastKnown: string | null;
  candidate: string;
  /** Per replication domain: how many transactions the candidate is behind what was last seen. */
  missing: { domain: number; primarySeq: number; candidateSeq: number; transactions: number }[];
  /** One sentence for the approval request and the log. */
  summary: string;
}

export type PlanResult = { ok: true; plan: FailoverPlan } | { ok: false; refusals: string[] };
