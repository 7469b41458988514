/**
 * Whether a workflow run is still going, as Temporal sees it: what both the lock activity (taking
 * over a finished run's lock) and `runbook unlock` (refusing while the holder runs) ask.
 */
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { RunbookStatus } from '../../core/searchAttributes';

/**
 * Its status name (`RUNNING`, `TERMINATED`, …), or `GONE` when Temporal no longer knows it; other
 * errors are thrown. `runbookStatus` is how the runbook itself ended (`rejected`, `succeeded`, …).
 */
export async function runState(client: Client, workflowId: string): Promise<{ status: string; type?: string; runbookStatus?: string }> {
  try {
    const d = await client.workflow.getHandle(workflowId).describe();
    const runbookStatus = d.typedSearchAttributes.get(RunbookStatus);
    return { status: d.status.name, type: d.type, ...(runbookStatus ? { runbookStatus } : {}) };
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return { status: 'GONE' };
    throw err;
  }
}
