/**
 * Health check: probe every instance of a cluster, derive the live topology, and record each
 * region's replication state in sync_status. The drill runs it; later, the monitor schedules it.
 */
import { proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { Topology } from '../core/types';
import { runRunbook } from './shared/runbook';
import { type StartedFromCli } from '../core/runbookDefinitions';

const { probeTopology, recordSyncStatus } = proxyActivities<Activities>({
  startToCloseTimeout: '30s',
  retry: { maximumAttempts: 3 },
});

export interface HealthCheckInput extends StartedFromCli {
  cluster: string;
  operator: string;
  incidentId?: string;
  reason?: string;
}

export async function healthCheck(input: HealthCheckInput): Promise<Topology> {
  return runRunbook({ runbook: 'health-check', ...input }, async (rb) => {
    const topology = await rb.step('probe topology', () => probeTopology(input.cluster), {
      note: (t) => `primary ${t.primary ?? 'NONE'}, ${t.instances.length} instances, ${t.problems.length} problem(s)`,
      detail: (t) => ({ primary: t.primary, problems: t.problems }),
    });
    await rb.step('record sync status', () => recordSyncStatus(topology));
    return topology;
  });
}
