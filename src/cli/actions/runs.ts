/** What the commands about one run do (approve, reject, resume, status, unlock): see ../runs.ts. */
import { WorkflowNotFoundError } from '@temporalio/client';
import { dropLock, failoverHistory, insertLogEvent, lockHolder, withControl } from '../../adapters/control/store';
import { connectClient } from '../../adapters/temporal/client';
import { runState } from '../../adapters/temporal/runState';
import { loadConfig, configPathFromEnv, getCluster } from '../../config/load';
import { identityProblem, INPUT_LIMITS, textProblem } from '../../core/inputs';
import { sendDecision } from '../../adapters/temporal/decision';
import { resumeUpdate, type Attention } from '../../core/runbookDefinitions';
import { describeApproval, describeAttention, queryRunbookState } from './follow';
import { printHistory, printJson } from './output';
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

/** The first line of an error, for a one-line report. */
const oneLine = (err: unknown) => (err instanceof Error ? err.message : String(err)).split('\n')[0]!;

/**
 * The state of a run: Temporal's status, the run's own (query), its failover_log trail. What could
 * not be read is said, one line each on stderr, and makes the exit code 1: an unanswered query or
 * an unreachable control database is never shown as "no state, empty history".
 */
export async function showStatus(workflowId: string, json: boolean, wide = false): Promise<number> {
  // The three reads go out at once (an engineer runs this dozens of times in an incident): the
  // trail from the control database, Temporal's description of the run, and the run's own state.
  const trail = withControl(loadConfig(configPathFromEnv()), (conn) => failoverHistory(conn, { workflowId, pageSize: 200 })).catch((err: unknown) => err as Error);
  return withClient(async (c) => {
    const handle = c.workflow.getHandle(workflowId);
    const query = queryRunbookState(handle).catch((err: unknown) => err as Error);
    const description = await handle.describe().catch((err) => {
      if (err instanceof WorkflowNotFoundError) throw new Error(`no runbook ${workflowId}`);
      throw err;
    });
    const [answer, read] = [await query, await trail];
    const errors: string[] = [];
    const state = answer instanceof Error ? void errors.push(`cannot query the run's state: ${oneLine(answer)}`) : answer;
    const rows = read instanceof Error ? void errors.push(`cannot read failover_log from the control database: ${oneLine(read)}`) : read;
    if (json) {
      printJson({ workflowId, runId: description.runId, status: description.status.name, state: state ?? null, log: rows ?? null, errors });
    } else {
      console.log(`${workflowId}: ${description.status.name}${state ? ` (${state.status}${state.currentStep ? `, now: ${state.currentStep}` : ''})` : ''}`);
      const approval = state?.details.approval as ApprovalState | undefined;
      if (approval?.status === 'pending') console.log(describeApproval(workflowId, approval, state!.details.plan));
      const attention = state?.details.attention as Attention | undefined;
      if (attention) console.log(describeAttention(workflowId, attention));
      if (state?.auditPending) console.log(`${state.auditPending} audit row(s) waiting for the control database`);
      for (const p of state?.auditProblems ?? []) console.log(`audit row #${p.stepSeq} ${p.step} (${p.status}) ${p.problem === 'truncated' ? 'stored cut to fit' : 'NOT stored as written'}: ${p.detail}`);
      if (rows) printHistory(rows.reverse(), 1, wide);
    }
    for (const e of errors) console.error(`runbook: ${e}`);
    return errors.length ? 1 : 0;
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
