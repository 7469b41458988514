/**
 * What the monitor workflow and its clients (the CLI's `monitor`, `ack` and `downtime`) share:
 * its workflow id, its state query and the updates it accepts, defined once for both sides.
 */
import * as wf from '@temporalio/workflow';
import type { LagPoint } from './lagHistory';
import type { AutoFailoverPolicy, Downtime, InstanceObservation, MonitorState, ObserverVote, RecoveryBlock } from './monitor';

/** One monitor per cluster: its workflow id is the cluster's, so starting it twice finds the first. */
export function monitorWorkflowId(cluster: string): string {
  return `monitor-${cluster}`;
}

export interface MonitorSettingsView {
  intervalSeconds: number;
  failureThreshold: number;
  autoFailover: AutoFailoverPolicy;
  maxLagSeconds: number;
  instances: string[];
  contact?: string;
  /** Monitor workers in other regions that must agree before it acts (may be absent: none). */
  observers?: { region: string; taskQueue: string }[];
  observerTimeoutSeconds?: number;
}

export interface MonitorSnapshot {
  cluster: string;
  settings: MonitorSettingsView;
  state: MonitorState;
  lastRound?: { at: number; instances: InstanceObservation[] };
  /** Rounds whose probes could not run at all (the worker died mid-round): not counted as misses. */
  skippedRounds: number;
  rounds: number;
  block?: RecoveryBlock;
  downtimes: Downtime[];
  /** The last confirmed primary failure: when it started to be missed, when confirmed, what was done. */
  lastFailure?: FailureRecord;
  /**
   * Per replica, its lag over the last hour as the monitor measured it (`[epoch ms, seconds]`, at
   * most 120 points each, null where unknown; src/core/lagHistory.ts). Absent from older monitors.
   */
  lagHistory?: Record<string, LagPoint[]>;
}

export interface FailureRecord {
  primary: string;
  missingSince: number;
  confirmedAt: number;
  detectionMs: number;
  /** failover: the child was started; paged; suppressed (downtime); recorded (policy off). */
  handled?: 'failover' | 'paged' | 'recorded';
  pagedBecause?: 'policy' | 'blocked' | 'observers';
  /** The observers' votes on this failure, when observers are configured. */
  votes?: ObserverVote[];
  suppressedBy?: string;
  incidentId?: string;
}

export interface AckInput {
  operator: string;
  comment: string;
  channel?: string;
}

export interface DowntimeInput {
  /** The cluster's name or one of its instances. */
  target: string;
  seconds: number;
  reason: string;
  operator: string;
}

export interface StopInput {
  operator: string;
  reason?: string;
}

export interface MonitorVerdict {
  accepted: boolean;
  reason?: string;
  detail?: string;
}

export const monitorStateQuery = wf.defineQuery<MonitorSnapshot>('monitorState');
/** Lift the anti-flapping block of an automatic recovery (`runbook ack`). */
export const ackUpdate = wf.defineUpdate<MonitorVerdict, [AckInput]>('ack');
/** A maintenance window: no automatic action, no alert, until it ends by itself (`runbook downtime`). */
export const downtimeUpdate = wf.defineUpdate<MonitorVerdict, [DowntimeInput]>('downtime');
/** End the monitor (`runbook monitor stop`). */
export const stopMonitorUpdate = wf.defineUpdate<MonitorVerdict, [StopInput]>('stopMonitor');
