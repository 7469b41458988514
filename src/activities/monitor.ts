/**
 * The monitor's side effects: one round of probes (which also keeps sync_status current and the
 * worker's Prometheus gauges up to date, since metrics live in the worker process and the workflow
 * cannot set them), and the settings it decides with. Reads only; safe to run any number of times.
 */
import { log } from '@temporalio/activity';
import { listSyncStatus, upsertSyncStatus, withControl } from '../adapters/control/store';
import { probeTopology } from '../adapters/mysql/probe';
import { getCluster } from '../config/load';
import { observationOf, type Observation } from '../core/monitor';
import type { MonitorSettingsView } from '../core/monitorDefinitions';
import { syncStatusRows } from '../core/syncStatus';
import type { ActivityDeps } from './deps';
import { monitorMetrics } from '../adapters/metrics/registry';

export function createMonitorActivities({ config }: ActivityDeps) {
  return {
    async monitorSettings(input: { cluster: string }): Promise<MonitorSettingsView> {
      const c = getCluster(config, input.cluster);
      return { ...c.monitor, maxLagSeconds: c.thresholds.maxLagSeconds, instances: c.instances.map((i) => i.name), contact: c.notify.contact };
    },

    /**
     * Probe every instance once. sync_status is written for every region except one an emergency
     * failover marked `needs_failback` (only a failback clears that); a control database that does
     * not answer costs the round nothing but a warning.
     */
    async monitorRound(input: { cluster: string }): Promise<Observation> {
      const topology = await probeTopology(config, input.cluster);
      monitorMetrics().observeTopology(topology);
      const c = getCluster(config, input.cluster);
      try {
        await withControl(
          config,
          async (conn) => {
            const stored = new Map((await listSyncStatus(conn, input.cluster)).map((r) => [String(r.region), String(r.status)]));
            for (const row of syncStatusRows(topology, c.thresholds.maxLagSeconds)) {
              if (stored.get(row.region) === 'needs_failback') continue;
              await upsertSyncStatus(conn, row);
            }
          },
          2000,
        );
      } catch (err) {
        log.warn('sync_status not updated this round', { cluster: input.cluster, error: (err as Error).message });
      }
      return observationOf(topology);
    },

    /** What the monitor measured about a failure and its recovery, for the worker's metrics endpoint. */
    async recordMonitorMeasure(input: { cluster: string; detectionMs?: number; failover?: { at: number; outcome: string; rtoMs?: number; lostTransactions?: number } }): Promise<void> {
      const m = monitorMetrics();
      if (input.detectionMs !== undefined) m.detection(input.cluster, input.detectionMs);
      if (input.failover) m.failover(input.cluster, input.failover);
    },
  };
}
