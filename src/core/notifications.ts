/**
 * What runbooks tell people, as data: one event shape for every channel (log, Slack, email), built
 * in workflow code (no I/O, no secrets) and rendered by each notifier in the cluster's locale.
 */
import type { AccessReportSummary } from './grants';

export type { AccessReportSummary };

export type NotificationKind =
  | 'incident-opened' // a run started
  | 'approval-needed'
  | 'approval-reminder'
  | 'approval-decided'
  | 'step' // a step ended (succeeded, failed, skipped), or is being retried
  | 'needs-attention' // past its point of no return, the run waits for a human: `runbook resume`
  | 'completed' // the run succeeded (recovery completed)
  | 'failed'
  | 'aborted' // rejected, timed out, cancelled, dry run
  | 'alert'; // the monitor: a state change people should know of, or a page (severity L1)

export type Severity = 'L1' | 'L2' | 'L3';

export interface TimelineEntry {
  seq: number;
  name: string;
  status: string;
  startedAt: number;
  durationMs?: number;
  note?: string;
}

export interface RunbookNotification {
  kind: NotificationKind;
  cluster: string;
  runbook: string;
  workflowId: string;
  incidentId?: string;
  /** One line, e.g. `failover orders: region-a → region-b (planned) by alice`. */
  title: string;
  /** Seed §7.3 impact level: L1 most severe. */
  severity: Severity;
  requester: string;
  reason: string;
  /** The run's status right now, one line (`waiting for approval`, `promoting orders-b`, …). */
  status: string;
  /** What the run will do or did, markdown (the failover plan). */
  plan?: string;
  /** Seed §7.3 fields; absent ones are left out of the message. */
  impact?: string;
  eta?: string;
  contact?: string;
  rootCause?: string;
  followUp?: string[];
  /** A revoke run's access report, summarised: who accessed the objects, and where no evidence exists. */
  accessReport?: AccessReportSummary;
  timeline: TimelineEntry[];
  /** For `step`: the step that just ended. */
  step?: TimelineEntry;
  /** For `approval-needed` / `approval-reminder`. */
  approval?: { approvers: string[]; fourEyes: boolean; deadline: number; forcedBecause?: string };
  /** For `needs-attention`: the step that cannot finish by itself, why, what is left, how to resume. */
  attention?: { step: string; error: string; left: string[]; resume: string };
  /** For `approval-decided`. */
  decision?: { decision: 'approve' | 'reject'; approver: string; channel: string; comment?: string };
  startedAt: number;
  endedAt?: number;
}

/** Per-run state a notifier keeps between messages (the Slack root message), held by the workflow. */
export interface NotifyThread {
  slack?: { channel: string; ts: string };
}

export interface NotifyResult {
  thread: NotifyThread;
  delivered: string[];
  failed: { notifier: string; error: string }[];
}

/**
 * What the step helper hands the worker in one activity at a step boundary: the audit rows and the
 * notifications queued since the last one (one Temporal UI row for both, instead of one each).
 */
export interface BookkeepingBatch {
  rows: import('./types').AuditRow[];
  notices: RunbookNotification[];
  thread: NotifyThread;
}

export interface BookkeepingResult {
  /** Undefined when no rows were sent; `error` when the control database could not take them (they are sent again). */
  audit?: { report: import('./types').AuditWriteReport } | { error: string };
  thread: NotifyThread;
  /** One entry per notice, in order: the notifiers that failed it. */
  notices: { failed: { notifier: string; error: string }[] }[];
}
