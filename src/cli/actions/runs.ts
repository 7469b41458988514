/** What the commands about one run do (approve, reject, resume, unlock; status is status.ts): see ../runs.ts. */
import { WorkflowNotFoundError } from '@temporalio/client';
import { dropLock, insertLogEvent, lockHolder, withControl } from '../../adapters/control/store';
import { connectClient } from '../../adapters/temporal/client';
import { runState } from '../../adapters/temporal/runState';
import { loadConfig, configPathFromEnv, getCluster } from '../../config/load';
import { identityProblem, INPUT_LIMITS, textProblem } from '../../core/inputs';
import { sendDecision } from '../../adapters/temporal/decision';
import { resumeUpdate } from '../../core/runbookDefinitions';
import { queryRunbookState } from './follow';
import type { ApprovalState } from '../../core/runbookDefinitions';
import { osLogin, verifiedCliUser, withClient } from './common';
import type { RunbookConfig } from '../../config/load';

/**
 * Approve or reject through the `decide` update: the verdict (accepted or why not) comes back at
 * once. The decision carries the OS login; the run's approval gate decides who that is (and
 * whether a `--as` naming someone else counts), with the worker's own policy.
 */
export async function decide(workflowId: string, decision: 'approve' | 'reject', as: string | undefined, comment?: string): Promise<number> {
  const problem = [textProblem('workflow id', workflowId, INPUT_LIMITS.workflowId, { required: true }), identityProblem('--as', as), textProblem('--comment', comment, INPUT_LIMITS.comment)].find(Boolean);
  if (problem) throw new Error(problem);
  return withClient(async (c) => {
    const verdict = await sendDecision(c, workflowId, { decision, approver: as, channel: 'cli', login: osLogin(), comment });
    if (!verdict.accepted) {
      console.error(`runbook: ${decision} refused: ${verdict.reason}`);
      return 1;
    }
    // Who it was recorded as is the run's to say (the OS login, or a declared --as where allowed).
    const state = await queryRunbookState(c.workflow.getHandle(workflowId)).catch(() => undefined);
    const recorded = (state?.details.approval as ApprovalState | undefined)?.decisions.filter((d) => d.accepted).at(-1);
    const who = recorded?.identity ? ` as ${recorded.identity} (${recorded.verifiedBy})` : as ? ` as ${as}` : '';
    console.log(`${decision === 'approve' ? 'approved' : 'rejected'} ${workflowId}${who}`);
    return 0;
  });
}

/**
 * Carry on with a run waiting in needs_attention (the `resume` update): the verdict comes back at
 * once. Idempotent: a run that is not waiting refuses, and says why; every answer is logged.
 */
export async function resume(workflowId: string, operator: string, comment?: string): Promise<number> {
  return withClient(async (c) => {
    const handle = c.workflow.getHandle(workflowId);
    const { status } = await handle.describe().catch((err) => {
      if (err instanceof WorkflowNotFoundError) throw new Error(`no runbook ${workflowId}`);
      throw err;
    });
    if (status.name !== 'RUNNING') {
      const reason = `${workflowId} is over (${status.name}): nothing to resume`;
      // The run can no longer log it: the refusal goes to failover_log from here, as unlock's do.
      await withControl(loadConfig(configPathFromEnv()), (conn) =>
        insertLogEvent(conn, { status: 'refused', runbook: 'cli', step: `resume by ${operator} via cli`, operator, workflowId, detail: { reason, comment } }),
      ).catch((err: Error) => console.error(`warning: the refusal is not in failover_log: ${err.message.split('\n')[0]}`));
      console.error(`runbook: resume refused: ${reason}`);
      return 1;
    }
    const verdict = await handle.executeUpdate(resumeUpdate, { args: [{ operator, channel: 'cli', comment }] });
    if (!verdict.accepted) {
      console.error(`runbook: resume refused: ${verdict.reason}`);
      return 1;
    }
    console.log(`resumed ${workflowId} as ${operator}: the step that stopped it is tried again`);
    return 0;
  });
}

/** Refuse to release a lock whose holding workflow is still running (or cannot be asked about). */
async function refuseWhileRunning(lock: string, workflowId: string): Promise<void> {
  const cannotTell = (err: Error) => new Error(`cannot tell whether ${workflowId}, which holds ${lock}'s lock, is over (Temporal: ${err.message.split('\n')[0]}); --force releases it anyway`);
  const client = await connectClient().catch((err: Error) => Promise.reject(cannotTell(err)));
  const run = await runState(client, workflowId)
    .catch((err: Error) => Promise.reject(cannotTell(err)))
    .finally(() => client.connection.close());
  if (run.status === 'RUNNING') {
    throw new Error(`${lock}'s lock is held by ${workflowId} (${run.type}), which is still running: cancel it, or terminate it in the Temporal UI, first; --force releases the lock anyway`);
  }
}


/** `unlock <cluster>[/<recovery host>]`: release a lock left by a run that is over (audited). */
export async function unlockCommand(cfg: RunbookConfig, cluster: string, as: string, force: boolean): Promise<string> {
  const [name, host] = cluster.split('/');
  const c = getCluster(cfg, name!);
  if (host !== undefined && c.recovery?.name !== host) throw new Error(`${name} has no recovery host "${host}"`);
  const operator = verifiedCliUser(cfg, name!, as);
  const holder = await withControl(cfg, async (c) => {
    const row = await lockHolder(c, cluster);
    if (!row) return undefined;
    // The lock is what keeps two runbooks off one cluster: a run that is still going keeps it.
    if (!force) await refuseWhileRunning(cluster, row.workflow_id);
    await dropLock(c, cluster, row.workflow_id);
    await insertLogEvent(c, { status: 'unlocked', runbook: 'cli', cluster, step: 'cluster lock released by hand', operator, workflowId: row.workflow_id, detail: { heldBy: row.workflow_id } });
    return row.workflow_id;
  });
  return holder ? `released ${cluster}'s lock (held by ${holder})` : `${cluster} is not locked`;
}
