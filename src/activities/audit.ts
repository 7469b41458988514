/**
 * Activities that touch the control database: the step audit and sync_status. Both writes are
 * idempotent (unique keys), so Temporal running an attempt twice changes nothing.
 */
import { getClient, log } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { dropLock, insertAuditRows, insertLogEvent, lockHolder, migrateControl, takeLock, upsertSyncStatus, withControl, type AuditWriteReport } from '../adapters/control/store';
import { getCluster } from '../config/load';
import { runState } from '../adapters/temporal/runState';
import { syncStatusRows } from '../core/syncStatus';
import type { AuditRow, Topology } from '../core/types';
import type { RunbookConfig } from '../config/load';
import type { ActivityDeps } from './deps';
import { monitorMetrics } from '../adapters/metrics/registry';

const migrated = new WeakMap<RunbookConfig, Promise<unknown>>();

/** Migrate the control database once per worker process and config, on first use; a failure is retried with the write. */
export function ensureControlSchema(config: RunbookConfig): Promise<unknown> {
  let done = migrated.get(config);
  if (!done) {
    done = migrateControl(config).catch((err) => (migrated.delete(config), Promise.reject(err)));
    migrated.set(config, done);
  }
  return done;
}

/**
 * The one audit writer: rows go in by their unique key (workflow, run, step, status), so a batch
 * written twice stores each row once. Throws when the control database cannot be reached (the
 * caller retries); rows it cannot store as written are reported, never retried forever.
 */
export async function writeAuditRows(config: RunbookConfig, rows: AuditRow[]): Promise<AuditWriteReport> {
  await ensureControlSchema(config);
  const report = await withControl(config, (conn) => insertAuditRows(conn, rows), 3000);
  // Every runbook's end passes here once: the one place runs are counted for the metrics endpoint.
  for (const r of report.runsEnded ?? []) monitorMetrics().runEnded(r);
  if (report.truncated.length || report.rejected.length) log.warn('audit rows not stored as written', { truncated: report.truncated, rejected: report.rejected });
  log.debug('audit rows written', { count: rows.length });
  return report;
}

/**
 * Whether a lock holder's run is over, as Temporal sees it: its closed status (`TERMINATED`, …),
 * `GONE` when Temporal no longer knows it, undefined while it runs or when Temporal cannot be asked
 * (then the lock stays: only a run known to be over loses it).
 */
export async function runIsOver(workflowId: string): Promise<string | undefined> {
  try {
    const { status } = await runState(getClient(), workflowId);
    return status === 'RUNNING' ? undefined : status;
  } catch (err) {
    log.warn('cannot tell whether the lock holder is over; the lock stays', { heldBy: workflowId, error: (err as Error).message });
    return undefined;
  }
}

export function createAuditActivities({ config }: ActivityDeps) {
  const ensureSchema = () => ensureControlSchema(config);

  return {
    /**
     * The step helper's fallback while the control database is down (retried by Temporal until it
     * answers); rows normally travel with the notifications in `recordAndNotify` (notify.ts).
     */
    async recordAudit(rows: AuditRow[]): Promise<AuditWriteReport> {
      return writeAuditRows(config, rows);
    },

    /** One sync_status row per region of the probed topology (seed §3.1 upsert, keyed by cluster+region). */
    async recordSyncStatus(topology: Topology): Promise<void> {
      const rows = syncStatusRows(topology, getCluster(config, topology.cluster).thresholds.maxLagSeconds);
      await ensureSchema();
      await withControl(config, async (conn) => {
        for (const row of rows) await upsertSyncStatus(conn, row);
      });
    },

    /**
     * Take the cluster's lock for a runbook that changes it. Holding it already is success (a
     * retried or resumed run); another run holding it is a refusal naming that run, unless Temporal
     * says that run is over (terminated, timed out, failed while the lock release could not run,
     * or gone): then the lock is taken over, and failover_log says so. A run that is over never
     * blocks the next incident; one that may still act on the cluster always does.
     */
    async acquireClusterLock(input: { cluster: string; workflowId: string; runbook: string; operator: string }): Promise<void> {
      await ensureSchema();
      await withControl(config, async (conn) => {
        const take = () => takeLock(conn, input);
        let holder = await take();
        const over = holder && holder.workflow_id !== input.workflowId ? await runIsOver(holder.workflow_id) : undefined;
        if (holder && over) {
          // Only that holder's row goes: a third run that took the lock meanwhile keeps it.
          await dropLock(conn, input.cluster, holder.workflow_id);
          await insertLogEvent(conn, {
            status: 'unlocked', runbook: input.runbook, cluster: input.cluster, step: 'cluster lock taken over from a run that is over', operator: input.operator, workflowId: input.workflowId,
            detail: { heldBy: holder.workflow_id, heldByRunbook: holder.runbook, holderState: over, since: holder.acquired_at },
          });
          log.warn('cluster lock taken over from a run that is over', { lock: input.cluster, heldBy: holder.workflow_id, holderState: over });
          holder = await take();
        }
        if (holder && holder.workflow_id !== input.workflowId) {
          throw ApplicationFailure.nonRetryable(
            `cluster ${input.cluster} is locked by ${holder.runbook} run ${holder.workflow_id} (${holder.operator}, since ${holder.acquired_at} UTC); if that run is over, release it with: runbook unlock ${input.cluster} --as <your name>`,
            'ClusterLocked',
          );
        }
      });
    },

    /**
     * Whether this run could take the cluster's lock now, without taking it: a long runbook (a
     * restore loads and replays for an hour before it changes anything) asks first, so that it is
     * refused at once rather than after the work and the approval. The lock itself is taken later,
     * just before production is changed, so the check cannot block a failover meanwhile.
     */
    async checkClusterLock(input: { cluster: string; workflowId: string }): Promise<{ free: boolean; heldBy?: string }> {
      await ensureSchema();
      const holder = await withControl(config, (conn) => lockHolder(conn, input.cluster));
      if (!holder || holder.workflow_id === input.workflowId) return { free: true };
      const over = await runIsOver(holder.workflow_id);
      if (over) return { free: true, heldBy: `${holder.workflow_id} (${over}: its lock will be taken over)` };
      throw ApplicationFailure.nonRetryable(
        `cluster ${input.cluster} is locked by ${holder.runbook} run ${holder.workflow_id} (${holder.operator}, since ${holder.acquired_at} UTC): wait for it to end; if it is over, release it with: runbook unlock ${input.cluster} --as <your name>`,
        'ClusterLocked',
      );
    },

    /** Release the cluster's lock if this run holds it (safe to repeat). */
    async releaseClusterLock(input: { cluster: string; workflowId: string }): Promise<void> {
      await withControl(config, (conn) => dropLock(conn, input.cluster, input.workflowId));
    },

    /** The old primary of an emergency failover: its region's sync_status says it needs a failback. */
    async markNeedsFailback(input: { cluster: string; region: string; instance: string; remark: string; role?: 'old_primary' | 'replica' }): Promise<void> {
      await ensureSchema();
      await withControl(config, (conn) =>
        upsertSyncStatus(conn, { cluster: input.cluster, region: input.region, instance: input.instance, role: input.role ?? 'old_primary', status: 'needs_failback', remark: input.remark }),
      );
    },
  };
}
