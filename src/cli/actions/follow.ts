/**
 * Following a runbook from the terminal: each step as it starts and ends, with elapsed time, the
 * pending approval with what to type, and the outcome.
 */
import type { Client, WorkflowHandle } from '@temporalio/client';
import { WorkflowFailedError } from '@temporalio/client';
import { clipText } from '../../core/timeline';
import { COMPACT_WIDTH } from './output';
import type { ApprovalState } from '../../core/runbookDefinitions';
import { runbookStateQuery, type Attention, type RunbookState, type StepRecord } from '../../core/runbookDefinitions';
import { askRunbookState, describeApproval, describeAttention } from './runView';

export { describeApproval, describeAttention } from './runView';

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

/** The run's state from its `runbookState` query, or an error that says why not, in one line. */
export function queryRunbookState(handle: WorkflowHandle): Promise<RunbookState> {
  return askRunbookState((deadline) => handle.client.connection.withDeadline(deadline, () => handle.query(runbookStateQuery)));
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
