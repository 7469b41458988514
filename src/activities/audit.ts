/**
 * Activities that touch the control database: the step audit and sync_status. Both writes are
 * idempotent (unique keys), so Temporal running an attempt twice changes nothing.
 */
import { log } from '@temporalio/activity';
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

    /** The old primary of an emergency failover: its region's sync_status says it needs a failback. */
    async markNeedsFailback(input: { cluster: string; region: string; instance: string; remark: string }): Promise<void> {
      await ensureSchema();
      await withControl(config, (conn) =>
        upsertSyncStatus(conn, { cluster: input.cluster, region: input.region, instance: input.instance, role: 'old_primary', status: 'needs_failback', remark: input.remark }),
      );
    },
  };
}
