/**
 * What a runbook run and its clients (the CLI, the approval endpoint) share: the live state a run
 * answers with, its query, and the approve / reject / decide / resume messages it accepts, defined
 * once and used by both sides (as Temporal's samples share definitions between workflow and
 * client), never named by string.
 */
import * as wf from '@temporalio/workflow';
import type { ApprovalPolicy } from './failover';
import type { VerifiedBy } from './identity';
import type { AccessReportSummary, Severity } from './notifications';
import type { EventStatus, RunStatus, StepStatus } from './types';
import { RUNBOOK_STATE_QUERY } from './stateQuery';

export interface RunbookMeta {
  /** Runbook type: `failover`, `restore`, `health-check`, ... */
  runbook: string;
  cluster: string;
  operator: string;
  incidentId?: string;
  reason?: string;
  /** The fingerprint of the config the CLI started this run with: checked against the worker's first. */
  configFingerprint?: string;
}

/** The failover workflow's id for an incident: the CLI and the monitor (which starts it as a child) both use it. */
export function failoverWorkflowId(cluster: string, incidentId: string): string {
  return `failover-${cluster}-${incidentId}`;
}

/** What a runbook started from the CLI carries besides its own fields. */
export interface StartedFromCli {
  /** See src/config/fingerprint.ts; absent for runs started otherwise (schedules, tests). */
  configFingerprint?: string;
}

/** An audit row the control database could not store as it was (cut to fit, or refused). */
export interface AuditProblem {
  stepSeq: number;
  step: string;
  status: string;
  problem: 'truncated' | 'not stored';
  detail: string;
}

export interface StepRecord {
  seq: number;
  name: string;
  status: StepStatus | EventStatus;
  startedAt: number;
  endedAt?: number;
  attempt?: number;
  note?: string;
  error?: string;
  classification?: FailureKind;
}

export interface RunbookState {
  meta: RunbookMeta;
  status: RunStatus;
  currentStep: string | null;
  steps: StepRecord[];
  /** Audit rows not yet written to failover_log (control database unreachable). */
  auditPending: number;
  /** Rows failover_log holds only cut to fit, or as a placeholder (the database refused them). */
  auditProblems: AuditProblem[];
  /** Runbook-specific live facts (a failover's plan, its pending approval). */
  details: Record<string, unknown>;
}

export const runbookStateQuery = wf.defineQuery<RunbookState>(RUNBOOK_STATE_QUERY);

/** What a run in `needs_attention` waits on: the step that cannot finish by itself, why, and what is left. */
export interface Attention {
  step: string;
  error: string;
  /** Every step still to run, that one first. */
  left: string[];
  since: number;
}

export interface ResumeInput {
  /** Who resumes it (logged). */
  operator: string;
  /** Where from: cli, … */
  channel?: string;
  comment?: string;
}

export interface ResumeVerdict {
  accepted: boolean;
  status: RunStatus;
  reason?: string;
}

/** Carry on with a run in `needs_attention` (the CLI's `runbook resume`): the step is tried again. */
export const resumeUpdate = wf.defineUpdate<ResumeVerdict, [ResumeInput]>('resume');

/** What people are told when a runbook opens an incident (seed §7.3 notice fields). */
export interface IncidentNotice {
  title: string;
  severity: Severity;
  plan?: string;
  impact?: string;
  eta?: string;
  rootCause?: string;
  followUp?: string[];
  /** A revoke run's access report, summarised (both locales render it). */
  accessReport?: AccessReportSummary;
}

export type FailureKind = 'precondition' | 'timeout' | 'cancelled' | 'error';

export interface DecisionInput {
  /** Slack, email: the person the endpoint verified. CLI: the `--as` given, if any (see `login`). */
  approver?: string;
  /** Where the decision came from: cli, slack, email. */
  channel?: string;
  /** CLI: the OS login of the user who typed it. */
  login?: string;
  comment?: string;
}

export interface DecisionRecord extends DecisionInput {
  decision: 'approve' | 'reject';
  at: number;
  accepted: boolean;
  refusedBecause?: string;
  /** Who decided, as verified (undefined when that could not be established). */
  identity?: string;
  verifiedBy?: VerifiedBy;
}

export type ApprovalStatus = 'not_requested' | 'pending' | 'approved' | 'auto_approved' | 'rejected' | 'timed_out';

export interface ApprovalState {
  status: ApprovalStatus;
  requester: string;
  rule: ApprovalPolicy;
  /** Why a human is needed even though the policy says auto (e.g. fencing not confirmed). */
  forcedBecause?: string;
  requestedAt?: number;
  deadline?: number;
  decisions: DecisionRecord[];
}

export interface DecisionVerdict {
  accepted: boolean;
  status: ApprovalStatus;
  reason?: string;
}

export const approveSignal = wf.defineSignal<[DecisionInput]>('approve');
export const rejectSignal = wf.defineSignal<[DecisionInput]>('reject');
export const decideUpdate = wf.defineUpdate<DecisionVerdict, [DecisionInput & { decision: 'approve' | 'reject' }]>('decide');
