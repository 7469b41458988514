/**
 * What `runbook status` and a followed run show of a run's state (the pending approval with what to
 * type, a run waiting for a human), and how a state query that was not answered is said. Apart from
 * follow.ts, which needs Temporal's client: `status` loads this without it (quickReads.ts).
 */
import type { FailoverPlan } from '../../core/failover';
import type { ApprovalState, Attention, RunbookState } from '../../core/runbookDefinitions';

function isFailoverPlan(p: unknown): p is FailoverPlan {
  const x = p as Partial<FailoverPlan> | undefined;
  return typeof x?.from?.instance === 'string' && typeof x?.to?.instance === 'string' && Array.isArray(x.risks) && typeof x.positions === 'object';
}

export function describeApproval(workflowId: string, a: ApprovalState, details?: unknown): string {
  const lines = ['', '  approval needed' + (a.forcedBecause ? ` (${a.forcedBecause})` : '') + ':'];
  // Only a failover's plan has a from/to route; a restore's plan is its own shape (its steps say it).
  const plan = isFailoverPlan(details) ? details : undefined;
  if (plan) {
    lines.push(`    ${plan.from.instance} (${plan.from.region}) → ${plan.to.instance} (${plan.to.region}), lag ${plan.lagSeconds ?? 'n/a'} s`);
    lines.push(`    GTID: primary ${plan.positions.primary}, candidate ${plan.positions.candidate}`);
    if (plan.expectedLoss) lines.push(`    expected loss: ${plan.expectedLoss.summary}`);
    for (const r of plan.risks) lines.push(`    risk: ${r}`);
  }
  lines.push(`    approvers: ${a.rule.approvers.join(', ') || 'anyone'}${a.rule.fourEyes ? `, not ${a.requester}` : ''}`);
  lines.push(`    bin/runbook approve ${workflowId} --as NAME    |    bin/runbook reject ${workflowId} --as NAME`, '');
  return lines.join('\n');
}

/** A run waiting for a human past its point of no return: what cannot finish, what is left, what to type. */
export function describeAttention(workflowId: string, a: Attention): string {
  return [
    '',
    `  needs attention since ${new Date(a.since).toISOString().slice(11, 19)} UTC: the run cannot finish by itself and waits (it does not undo)`,
    `    ${a.step}: ${a.error}`,
    `    left: ${a.left.join(', ')}`,
    `    when the cause is fixed: bin/runbook resume ${workflowId} --as NAME`,
    '',
  ].join('\n');
}

/** How long a state query may wait for a worker to answer (Temporal's own wait is 30 s or more). */
export const QUERY_TIMEOUT_MS = 10_000;

/**
 * The run's state from its `runbookState` query (`ask` sends it with the deadline it is given), or
 * an error that says why not, in one line.
 */
export async function askRunbookState(ask: (deadline: number) => Promise<RunbookState>): Promise<RunbookState> {
  const deadline = Date.now() + QUERY_TIMEOUT_MS;
  try {
    return await ask(deadline);
  } catch (err) {
    const e = err as Error & { cause?: { code?: number; details?: string; message?: string } };
    // gRPC DEADLINE_EXCEEDED: no worker took the query (none polls the task queue, or all are busy or
    // stuck). The server learns the same deadline and, when its timer fires first (a loaded machine),
    // resets the stream instead: the client then sees CANCELLED ("Call cancelled") at the deadline.
    const timedOut = e.cause?.code === 4 || (e.cause?.code === 1 && Date.now() >= deadline - 500);
    const why = timedOut ? `no worker answered within ${QUERY_TIMEOUT_MS / 1000} s` : (e.cause?.details ?? e.cause?.message);
    throw new Error(`${e.message.split('\n')[0]}${why ? `: ${why.split('\n')[0]}` : ''}`);
  }
}
