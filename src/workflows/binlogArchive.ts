/**
 * Continuous binlog archiving of one cluster, for as long as it runs (one per cluster: the
 * workflow id is `binlog-archive-<cluster>`):
 *
 *   archive the primary's binlogs  (until the primary is fenced by a failover)
 *   → archive the new primary's binlogs → …
 *
 * Each segment is a step in failover_log, so the audit shows when archiving followed a new
 * primary. The activity heartbeats the archive's progress and lag (`runbook archive status` reads
 * it); a worker that dies is noticed by the heartbeat and the segment resumes on another worker
 * where the archive ends. After many segments the run continues as a new one (history stays small).
 */
import * as wf from '@temporalio/workflow';
import type { Activities } from '../activities';
import { runRunbook } from './shared/runbook';

export interface BinlogArchiveInput {
  cluster: string;
  requester: string;
}

export const binlogArchiveWorkflowId = (cluster: string) => `binlog-archive-${cluster}`;

/** Segments (primaries followed, or restarts) before the run continues as a new one. */
const SEGMENTS_PER_RUN = 50;

const { streamBinlogArchive } = wf.proxyActivities<Activities>({
  // It runs until the primary changes; a dead worker is noticed by the heartbeat within seconds,
  // and its progress (which `runbook archive status` reads) is at most ~4 s old (0.8 × the timeout).
  startToCloseTimeout: '3650 days',
  heartbeatTimeout: '5s',
  // A primary that is down, a broken connection: tried again for as long as archiving runs.
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '10s' },
  // Stopped means stopped: the run ends only once the stream has (a restore may rely on it).
  cancellationType: wf.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
});

export async function binlogArchive(input: BinlogArchiveInput): Promise<void> {
  const more = await runRunbook({ runbook: 'binlog-archive', cluster: input.cluster, operator: input.requester, reason: 'continuous binlog archiving' }, async (rb) => {
    for (let segment = 0; segment < SEGMENTS_PER_RUN; segment++) {
      await rb.step("archive the primary's binlogs", () => streamBinlogArchive({ cluster: input.cluster, workflowId: wf.workflowInfo().workflowId }), {
        note: (s) => `${s.primary} archived through ${s.archivedTo ?? 'nothing yet'}: ${s.reason}`,
      });
    }
    return true;
  });
  if (more) await wf.continueAsNew<typeof binlogArchive>(input);
}
