/**
 * Following a runbook from the terminal: each step as it starts and ends, with elapsed time, the
 * pending approval with what to type, and the outcome.
 */
import type { Client, WorkflowHandle } from '@temporalio/client';
import { WorkflowFailedError } from '@temporalio/client';
import type { FailoverPlan } from '../../core/failover';
import { clipText } from '../../core/timeline';
import { COMPACT_WIDTH } from './output';
import type { ApprovalState } from '../../core/runbookDefinitions';
import { runbookStateQuery, type Attention, type RunbookState, type StepRecord } from '../../core/runbookDefinitions';

const ICON: Record<string, string> = {
  started: '…',
  succeeded: '✔',
  failed: '✘',
  skipped: '-',
  requested: '?',
  reminded: '!',
  approved: '✔',
  auto_approved: '✔',
  rejected: '✘',
  refused: '⛔',
  timed_out: '⌛',
  retrying: '↻',
  needs_attention: '‼',
  resumed: '▶',
};

function line(start: number, s: StepRecord): string {
  const at = ((s.endedAt ?? s.startedAt) - start) / 1000;
  const took = s.endedAt !== undefined && s.status !== 'started' && s.endedAt > s.startedAt ? ` (${s.endedAt - s.startedAt} ms)` : '';
  const text = `[${at.toFixed(1).padStart(6)}s] ${ICON[s.status] ?? ' '} ${s.name} ${s.status}${took}`;
  // An error is shown whole (it says what to do); a note is cut to the compact width (`runbook log --wide` has it all).
  if (s.error) return `${text} — ${s.error}`;
  return s.note ? clipText(`${text} — ${s.note}`, COMPACT_WIDTH) : text;
}

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

/** Print the run's progress until it ends; returns the result or throws the failure. */
/** How long a state query may wait for a worker to answer (Temporal's own wait is 30 s or more). */
export const QUERY_TIMEOUT_MS = 10_000;

/** The run's state from its `runbookState` query, or an error that says why not, in one line. */
export async function queryRunbookState(handle: WorkflowHandle): Promise<RunbookState> {
  const deadline = Date.now() + QUERY_TIMEOUT_MS;
  try {
    return await handle.client.connection.withDeadline(deadline, () => handle.query(runbookStateQuery));
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

/**
 * Print the run's progress until it ends; returns the result or throws the failure. A state query
 * that fails is said (each distinct error once, and when it answers again): the run goes on, but
 * the operator knows the progress shown is not current.
 */
export async function follow<T>(handle: WorkflowHandle, print: (s: string) => void = console.log): Promise<T> {
  const printed = new Map<number, string>();
  let start: number | undefined;
  let approvalShown = false;
  let attentionShown: number | undefined;
  let done = false;
  let queryFailing: string | undefined;
  const reported = new Set<string>();
  const result = handle.result().finally(() => (done = true));
  const poll = async () => {
    let state: RunbookState;
    try {
      state = await queryRunbookState(handle);
    } catch (err) {
      if (done) return; // closed meanwhile: the result says how it ended
      queryFailing = (err instanceof Error ? err.message : String(err)).split('\n')[0]!;
      if (!reported.has(queryFailing)) {
        reported.add(queryFailing);
        print(`cannot read the run's progress (state query failed): ${queryFailing}`);
      }
      return;
    }
    if (queryFailing) {
      queryFailing = undefined;
      print('the run answers again:');
    }
    start ??= state.steps[0]?.startedAt;
    // A run that continued as new numbers its steps from 1 again: its details say which run it is.
    const run = Number(state.details.segment ?? 0);
    for (const s of state.steps) {
      const key = `${s.status}`;
      const at = run * 1_000_000 + s.seq;
      if (printed.get(at) === key) continue;
      if (s.status === 'started' && printed.has(at)) continue;
      printed.set(at, key);
      print(line(start ?? s.startedAt, s));
    }
    const approval = state.details.approval as ApprovalState | undefined;
    if (approval?.status === 'pending' && !approvalShown) {
      approvalShown = true;
      print(describeApproval(handle.workflowId, approval, state.details.plan));
    }
    const attention = state.details.attention as Attention | undefined;
    if (attention && attentionShown !== attention.since) {
      attentionShown = attention.since;
      print(describeAttention(handle.workflowId, attention));
    }
  };
  while (!done) {
    await poll();
    await Promise.race([result.catch(() => undefined), new Promise((r) => setTimeout(r, 250))]);
  }
  await poll();
  return result as Promise<T>;
}

/** Warn when nothing polls the task queue: a started run would wait for a worker forever. */
export async function workerPresent(client: Client, taskQueue: string): Promise<boolean> {
  const res = await client.workflowService.describeTaskQueue({
    namespace: client.options.namespace,
    taskQueue: { name: taskQueue },
    taskQueueType: 1, // workflow
  });
  return (res.pollers?.length ?? 0) > 0;
}

export function failureMessage(err: unknown): string {
  if (err instanceof WorkflowFailedError) return err.cause?.message ?? err.message;
  return err instanceof Error ? err.message : String(err);
}
