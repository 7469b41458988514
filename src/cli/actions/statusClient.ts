/** `runbook status` through Temporal's client: what status.ts hands over when it cannot read a run itself. */
import { WorkflowNotFoundError } from '@temporalio/client';
import { connectClient } from '../../adapters/temporal/client';
import { queryRunbookState } from './follow';
import type { RunReader } from './status';

/** Through Temporal's client: every connection the environment configuration describes, every error in its words. */
export async function clientReader(workflowId: string): Promise<RunReader> {
  const c = await connectClient();
  const handle = c.workflow.getHandle(workflowId);
  return {
    describe: () =>
      handle.describe().then(
        (d) => ({ runId: d.runId, status: d.status.name }),
        (err) => {
          if (err instanceof WorkflowNotFoundError) throw new Error(`no runbook ${workflowId}`);
          throw err;
        },
      ),
    state: () => queryRunbookState(handle),
    close: () => c.connection.close(),
  };
}
