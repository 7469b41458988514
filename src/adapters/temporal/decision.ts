/**
 * Sending an approve / reject to a run, the same way from the CLI and from the approval endpoint:
 * through the `decide` update, whose verdict (accepted, or why not) comes back at once. A run that
 * is over is reported as over, with how it ended, not as unknown.
 */
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { decideUpdate, type DecisionInput, type DecisionVerdict } from '../../core/runbookDefinitions';
import { runState } from './runState';

export type SentDecision = DecisionVerdict & { runOver?: string };

export async function sendDecision(client: Client, workflowId: string, input: DecisionInput & { decision: 'approve' | 'reject' }): Promise<SentDecision> {
  try {
    return await client.workflow.getHandle(workflowId).executeUpdate(decideUpdate, { args: [input] });
  } catch (err) {
    // An update to a closed run fails as if the run did not exist: ask what became of it.
    const run = await runState(client, workflowId).catch(() => undefined);
    if (run?.status === 'GONE' || (!run && err instanceof WorkflowNotFoundError)) return { accepted: false, status: 'not_requested', reason: `no runbook ${workflowId}` };
    if (run && run.status !== 'RUNNING') {
      const ended = run.runbookStatus ?? run.status.toLowerCase();
      return { accepted: false, status: 'not_requested', runOver: ended, reason: `${workflowId} is over: it ended ${ended}` };
    }
    throw err;
  }
}
