/**
 * Types that cross the workflow/activity boundary. Type-only: workflow code imports this module,
 * so it must never import I/O.
 */

// The state a server reports about itself and its replication (parsed by the dialect).

export type Flavor = 'mariadb' | 'mysql';

export interface Version {
  major: number;
  minor: number;
  patch: number;
}

export interface GtidPositions {
  binlogPos?: string;
  currentPos?: string;
  slavePos?: string;
  executed?: string;
} // MariaDB sets the first three, MySQL sets executed

export interface ServerVariables {
  serverId: number;
  readOnly: boolean;
  superReadOnly: boolean | null;
  binlogEnabled: boolean;
  logReplicaUpdates: boolean;
  binlogFormat: string | null;
  gtidStrictMode: boolean;
  gtid: GtidPositions;
  /** @@hostname, when the row carried it. */
  hostname?: string;
  /** @@port, when the row carried it. */
  port?: number;
}

export interface ReplicaStatus {
  sourceHost: string | null;
  sourcePort: number | null;
  ioRunning: 'Yes' | 'No' | 'Connecting';
  sqlRunning: 'Yes' | 'No';
  lagSeconds: number | null;
  lastIoErrno: number;
  lastIoError: string;
  lastSqlErrno: number;
  lastSqlError: string;
  /**
   * MariaDB: Using_Gtid verbatim ('No' | 'Slave_Pos' | 'Current_Pos').
   * MySQL: 'Auto_Position' when Auto_Position = 1, 'No' when 0.
   * null when neither column is present.
   */
  usingGtid: string | null;
  /** MariaDB Gtid_IO_Pos / MySQL Retrieved_Gtid_Set, whitespace removed. */
  receivedGtid: string | null;
  sqlState: string | null;
}

export type StepStatus = 'started' | 'succeeded' | 'failed' | 'skipped';
/** Single-row events of a run, e.g. approval decisions; each gets its own step sequence number. */
export type EventStatus =
  | 'requested' | 'reminded' | 'approved' | 'rejected' | 'refused' | 'timed_out' | 'auto_approved' | 'notify_failed'
  // A step past the point of no return: still failing and retried; stopped for a human; resumed by one.
  | 'retrying' | 'needs_attention' | 'resumed'
  // The monitor: a change of state it saw, a page, a suppressed action, an acknowledgement, a downtime.
  | 'state_change' | 'paged' | 'suppressed' | 'acknowledged' | 'downtime'
  // An observer's vote on a dead primary (agree, disagree, no answer).
  | 'vote';
/**
 * `needs_attention`: past its point of no return, a step cannot finish by itself; `runbook resume`
 * carries on. `continued`: this run of the workflow handed over to the next (continue-as-new).
 */
export type RunStatus = 'running' | 'needs_attention' | 'succeeded' | 'failed' | 'cancelled' | 'timed_out' | 'rejected' | 'dry_run' | 'continued';

/** One row of `failover_log`; `at` is epoch ms of the event itself, not of the write. */
export interface AuditRow {
  workflowId: string;
  runId: string;
  runbook: string;
  cluster: string;
  incidentId?: string;
  operator?: string;
  reason?: string;
  fromRegion?: string;
  toRegion?: string;
  step: string;
  stepSeq: number;
  /** A part of step `stepSeq` its activity performed and reports with its own time (1, 2, …); absent: the step itself. */
  subStep?: number;
  status: StepStatus | EventStatus | RunStatus;
  attempt?: number;
  at: number;
  detail?: Record<string, unknown>;
}

/** What the audit writer did with rows it could not store as they were. */
export interface AuditWriteReport {
  written: number;
  /** Rows stored with over-long values cut to their column (the full values are in `detail.truncated`). */
  truncated: { stepSeq: number; step: string; status: string; fields: string[] }[];
  /** Rows the database refused: a placeholder row with the same key says so (`detail.unwritable`). */
  rejected: { stepSeq: number; step: string; status: string; error: string }[];
  /** Runs whose final row this write stored first (a run's end, counted once however often it is sent). */
  runsEnded?: { runbook: string; cluster: string; outcome: string }[];
}

/** A run's final row (step `runbook`, sequence 0): how it ended; a hand-over to its next run is no end. */
export function isRunEnd(r: Pick<AuditRow, 'step' | 'stepSeq' | 'status'>): boolean {
  return r.step === 'runbook' && r.stepSeq === 0 && r.status !== 'started' && r.status !== 'continued';
}

export interface SyncStatusRow {
  cluster: string;
  region: string;
  status: string;
  lastSyncTime?: number;
  remark?: string;
  instance?: string;
  role?: string;
  lagSeconds?: number | null;
  gtidPosition?: string;
}

/** Names an instance; activities resolve host and credentials from their own config. */
export interface InstanceRef {
  cluster: string;
  instance: string;
}

/** A replica's link to its source, as SHOW REPLICA STATUS reports it, plus which instance that is. */
export interface ReplicationView extends Omit<ReplicaStatus, 'sqlState'> {
  /** The configured instance the source address belongs to, if any. */
  sourceInstance: string | null;
}

export interface InstanceProbe {
  cluster: string;
  instance: string;
  region: string;
  address: string;
  reachable: boolean;
  error?: string;
  flavor?: 'mariadb' | 'mysql';
  version?: string;
  serverId?: number;
  readOnly?: boolean;
  superReadOnly?: boolean | null;
  binlogEnabled?: boolean;
  logReplicaUpdates?: boolean;
  binlogFormat?: string | null;
  gtidStrictMode?: boolean;
  gtid?: { binlogPos?: string; currentPos?: string; slavePos?: string; executed?: string };
  replication: ReplicationView | null;
  probedAt: number;
  probeMs: number;
}

export type InstanceRole = 'primary' | 'replica' | 'orphan' | 'unreachable';

export interface TopologyInstance extends InstanceProbe {
  role: InstanceRole;
}

export interface Topology {
  cluster: string;
  /** The single writable instance that replicates from nobody, if there is exactly one. */
  primary: string | null;
  instances: TopologyInstance[];
  /** Problems an operator must know before acting: two writers, broken or foreign replication. */
  problems: string[];
  probedAt: number;
}

/** A position in one server's binary log. */
export interface BinlogPosition {
  file: string;
  position: number;
}
