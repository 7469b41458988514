/** Commands about one run, whatever its runbook: approve, reject, resume, status. */
import { WorkflowNotFoundError } from '@temporalio/client';
import { failoverHistory, insertLogEvent, withControl } from '../adapters/control/store';
import { loadConfig, configPathFromEnv, getCluster } from '../config/load';
import { identityProblem, INPUT_LIMITS, textProblem } from '../core/inputs';
import { sendDecision } from '../adapters/temporal/decision';
import { resumeUpdate, type Attention } from '../core/runbookDefinitions';
import { describeApproval, describeAttention, queryRunbookState } from './follow';
import { printHistory, printJson } from './output';
import type { ApprovalState } from '../core/runbookDefinitions';
import { osLogin, verifiedCliUser, withClient } from './common';
import type { CliContext } from './context';
import { dropLock, lockHolder } from '../adapters/control/store';

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
export async function showStatus(workflowId: string, json: boolean): Promise<number> {
  return withClient(async (c) => {
    const handle = c.workflow.getHandle(workflowId);
    const description = await handle.describe().catch((err) => {
      if (err instanceof WorkflowNotFoundError) throw new Error(`no runbook ${workflowId}`);
      throw err;
    });
    const errors: string[] = [];
    const state = await queryRunbookState(handle).catch((err) => void errors.push(`cannot query the run's state: ${oneLine(err)}`));
    const rows = await withControl(loadConfig(configPathFromEnv()), (conn) => failoverHistory(conn, { workflowId, pageSize: 200 })).catch(
      (err) => void errors.push(`cannot read failover_log from the control database: ${oneLine(err)}`),
    );
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
      if (rows) printHistory(rows.reverse(), 1);
    }
    for (const e of errors) console.error(`runbook: ${e}`);
    return errors.length ? 1 : 0;
  });
}

/** The command(s), on the program. */
export function registerRunCommands(ctx: CliContext): void {
  for (const decision of ['approve', 'reject'] as const) {
    ctx.program
      .command(`${decision} <workflowId>`)
      .description(`${decision} a runbook waiting for approval`)
      .option('--as <name>', "who you are: must be the person your OS login is (people[].login), unless the cluster allows declared identities")
      .option('--comment <text>')
      .action(async (workflowId: string, opts) => {
        process.exitCode = await decide(workflowId, decision, opts.as, opts.comment);
      });
  }

  ctx.program
    .command('resume <workflowId>')
    .description('carry on with a run that waits in needs_attention (past its point of no return), once the cause is fixed')
    .requiredOption('--as <name>', 'who resumes it (logged)')
    .option('--comment <text>', 'what was fixed (logged)')
    .action(async (workflowId: string, opts) => {
      process.exitCode = await resume(workflowId, opts.as, opts.comment);
    });

  ctx.program
    .command('status <workflowId>')
    .description('state of a runbook: steps, plan, pending approval, outcome')
    .addOption(ctx.json())
    .action(async (workflowId: string, opts) => {
      process.exitCode = await showStatus(workflowId, Boolean(opts.json));
    });

  /** Refuse to release a lock whose holding workflow is still running (or cannot be asked about). */
  async function refuseWhileRunning(lock: string, workflowId: string): Promise<void> {
    const { connectClient } = await import('../adapters/temporal/client');
    const { runState } = await import('../adapters/temporal/runState');
    const cannotTell = (err: Error) => new Error(`cannot tell whether ${workflowId}, which holds ${lock}'s lock, is over (Temporal: ${err.message.split('\n')[0]}); --force releases it anyway`);
    const client = await connectClient().catch((err: Error) => Promise.reject(cannotTell(err)));
    const run = await runState(client, workflowId)
      .catch((err: Error) => Promise.reject(cannotTell(err)))
      .finally(() => client.connection.close());
    if (run.status === 'RUNNING') {
      throw new Error(`${lock}'s lock is held by ${workflowId} (${run.type}), which is still running: cancel it, or terminate it in the Temporal UI, first; --force releases the lock anyway`);
    }
  }

  ctx.program
    .command('unlock <cluster>')
    .description("release a cluster's runbook lock left by a run that is over (terminated, lost); <cluster>/<recovery host> releases a recovery host's")
    .requiredOption('--as <name>', 'who releases it (logged)')
    .option('--force', 'release it without asking Temporal whether the holding run is over')
    .action(async (cluster: string, opts) => {
      const cfg = ctx.config();
      const [name, host] = cluster.split('/');
      const c = getCluster(cfg, name!);
      if (host !== undefined && c.recovery?.name !== host) throw new Error(`${name} has no recovery host "${host}"`);
      const operator = verifiedCliUser(cfg, name!, opts.as);
      const holder = await withControl(cfg, async (c) => {
        const row = await lockHolder(c, cluster);
        if (!row) return undefined;
        // The lock is what keeps two runbooks off one cluster: a run that is still going keeps it.
        if (!opts.force) await refuseWhileRunning(cluster, row.workflow_id);
        await dropLock(c, cluster, row.workflow_id);
        await insertLogEvent(c, { status: 'unlocked', runbook: 'cli', cluster, step: 'cluster lock released by hand', operator, workflowId: row.workflow_id, detail: { heldBy: row.workflow_id } });
        return row.workflow_id;
      });
      console.log(holder ? `released ${cluster}'s lock (held by ${holder})` : `${cluster} is not locked`);
    });
}
