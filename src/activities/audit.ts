/**
 * Activities that touch the control database: the step audit and sync_status. Both writes are
 * idempotent (unique keys), so Temporal running an attempt twice changes nothing.
 */
import { log } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { migrateControl, insertAuditRows, upsertSyncStatus, withControl } from '../control/store';
import { getCluster } from '../config/load';
import { syncStatusRows } from '../shared/syncStatus';
import type { AuditRow, Topology } from '../shared/types';
import type { ActivityDeps } from './deps';

export function createAuditActivities({ config }: ActivityDeps) {
  let migrated: Promise<unknown> | undefined;
  // Migrate once per worker process, on first use; a failure is retried with the write.
  const ensureSchema = () => (migrated ??= migrateControl(config).catch((err) => ((migrated = undefined), Promise.reject(err))));

  return {
    async recordAudit(rows: AuditRow[]): Promise<number> {
      await ensureSchema();
      await withControl(config, (conn) => insertAuditRows(conn, rows), 3000);
      log.debug('audit rows written', { count: rows.length });
      return rows.length;
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
     * retried or resumed run); another run holding it is a refusal naming that run.
     */
    async acquireClusterLock(input: { cluster: string; workflowId: string; runbook: string; operator: string }): Promise<void> {
      await ensureSchema();
      await withControl(config, async (conn) => {
        await conn.query('INSERT IGNORE INTO runbook_lock (cluster, workflow_id, runbook, operator) VALUES (?, ?, ?, ?)', [input.cluster, input.workflowId, input.runbook, input.operator]);
        const [rows] = await conn.query('SELECT workflow_id, runbook, operator, acquired_at FROM runbook_lock WHERE cluster = ?', [input.cluster]);
        const holder = (rows as { workflow_id: string; runbook: string; operator: string; acquired_at: string }[])[0];
        if (holder && holder.workflow_id !== input.workflowId) {
          throw ApplicationFailure.nonRetryable(
            `cluster ${input.cluster} is locked by ${holder.runbook} run ${holder.workflow_id} (${holder.operator}, since ${holder.acquired_at} UTC); if that run is over, release it with: runbook unlock ${input.cluster}`,
            'ClusterLocked',
          );
        }
      });
    },

    /** Release the cluster's lock if this run holds it (safe to repeat). */
    async releaseClusterLock(input: { cluster: string; workflowId: string }): Promise<void> {
      await withControl(config, (conn) => conn.query('DELETE FROM runbook_lock WHERE cluster = ? AND workflow_id = ?', [input.cluster, input.workflowId]));
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
