/**
 * The monitor's side effects: one round of probes (which also keeps sync_status current and the
 * worker's Prometheus gauges up to date, since metrics live in the worker process and the workflow
 * cannot set them), and the settings it decides with. Reads only; safe to run any number of times.
 */
import { getClient, log } from '@temporalio/activity';
import { listSyncStatus, monitorMemoryEvents, upsertSyncStatus, withControl } from '../adapters/control/store';
import { runState } from '../adapters/temporal/runState';
import { probeTopology } from '../adapters/mysql/probe';
import { getCluster } from '../config/load';
import { observationOf, observerVote, recallMonitorMemory, type Downtime, type Observation, type ObserverVote, type RecoveryBlock } from '../core/monitor';
import { monitorWorkflowId } from '../core/monitorDefinitions';
import type { MonitorSettingsView } from '../core/monitorDefinitions';
import { syncStatusRows } from '../core/syncStatus';
import type { ActivityDeps } from './deps';
import { ensureControlSchema } from './audit';
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

    /**
     * An observer's vote (run on the observer's own worker, in its region, through its own task
     * queue): one round of probes from here, and whether it agrees the primary is dead. Reads only.
     */
    async observePrimary(input: { cluster: string; primary: string; region: string; taskQueue: string }): Promise<ObserverVote> {
      const topology = await probeTopology(config, input.cluster);
      return observerVote(observationOf(topology), input.primary, { region: input.region, taskQueue: input.taskQueue });
    },

    /**
     * What a monitor started afresh must remember from the runs before it (`monitor stop` then
     * `start`): the anti-flapping block not yet acknowledged and the downtimes, rebuilt from its own
     * rows in failover_log. Throws while the control database does not answer (the monitor waits:
     * starting without its memory would re-arm automatic failover under an unacknowledged incident).
     */
    async recallMonitor(input: { cluster: string }): Promise<{ block?: RecoveryBlock; downtimes: Downtime[] }> {
      await ensureControlSchema(config);
      const memory = recallMonitorMemory(await withControl(config, (conn) => monitorMemoryEvents(conn, monitorWorkflowId(input.cluster))));
      if (memory.block?.running) {
        const outcome = await failoverOutcome(memory.block.workflowId);
        if (outcome) memory.block = { ...memory.block, running: false, outcome };
      }
      return memory;
    },

    /**
     * How an automatic failover the monitor no longer waits on as its child ended (it was started by
     * an earlier run of the monitor): undefined while it runs, else its outcome (the runbook's own
     * status, or Temporal's: `terminated`, `gone`, …). Not knowing is "still running".
     */
    async automaticFailoverOutcome(input: { workflowId: string }): Promise<string | undefined> {
      return failoverOutcome(input.workflowId);
    },

    /** What the monitor measured about a failure and its recovery, for the worker's metrics endpoint. */
    async recordMonitorMeasure(input: { cluster: string; detectionMs?: number; failover?: { at: number; outcome: string; rtoMs?: number; lostTransactions?: number } }): Promise<void> {
      const m = monitorMetrics();
      if (input.detectionMs !== undefined) m.detection(input.cluster, input.detectionMs);
      if (input.failover) m.failover(input.cluster, input.failover);
    },
  };
}

/** undefined while the run goes on (or cannot be asked), else how it ended. */
async function failoverOutcome(workflowId: string): Promise<string | undefined> {
  let s: Awaited<ReturnType<typeof runState>>;
  try {
    s = await runState(getClient(), workflowId);
  } catch (err) {
    log.warn('cannot tell whether the automatic failover still runs; the block stays', { workflowId, error: (err as Error).message });
    return undefined;
  }
  if (s.status === 'RUNNING') return undefined;
  return s.status === 'COMPLETED' && s.runbookStatus ? s.runbookStatus : s.status.toLowerCase();
}
