/** Running failover workflows from tests: start, answer the approval request, wait. */
import type { Client, WorkflowHandle } from '@temporalio/client';
import type { RunbookConfig } from '../../src/config/load';
import { failoverHistory, withControl } from '../../src/adapters/control/store';
import { probeTopology } from '../../src/adapters/mysql/probe';
import type { DecisionVerdict } from '../../src/core/runbookDefinitions';
import type { FailoverInput, FailoverResult } from '../../src/workflows/failover';
import type { RunbookState } from '../../src/core/runbookDefinitions';
import { eventually } from './sandbox';

let counter = 0;

export async function startFailover(client: Client, taskQueue: string, input: Partial<FailoverInput> & { cluster?: string }): Promise<WorkflowHandle> {
  const incidentId = input.incidentId ?? `T${Date.now()}-${++counter}`;
  return client.workflow.start('failover', {
    taskQueue,
    workflowId: `failover-${input.cluster ?? 'orders'}-${incidentId}`,
    args: [{ cluster: 'orders', mode: 'planned', reason: 'test', requester: 'carol', ...input, incidentId } satisfies FailoverInput],
  });
}

export async function stateOf(handle: WorkflowHandle): Promise<RunbookState> {
  return handle.query<RunbookState>('runbookState');
}

export async function waitForApprovalRequest(handle: WorkflowHandle, timeoutMs = 30_000): Promise<RunbookState> {
  return eventually('approval request', async () => {
    const s = await stateOf(handle);
    return (s.details.approval as { status: string } | undefined)?.status === 'pending' ? s : undefined;
  }, timeoutMs);
}

export async function decide(handle: WorkflowHandle, decision: 'approve' | 'reject', approver: string): Promise<DecisionVerdict> {
  return handle.executeUpdate<DecisionVerdict, [unknown]>('decide', { args: [{ decision, approver, channel: 'cli' }] });
}

/** Run a failover to its end, approving as `approver` when asked. */
export async function runFailover(client: Client, taskQueue: string, input: Partial<FailoverInput>, approver = 'bob'): Promise<{ result: FailoverResult; workflowId: string }> {
  const handle = await startFailover(client, taskQueue, input);
  const result = handle.result() as Promise<FailoverResult>;
  const approve = (async () => {
    const s = await waitForApprovalRequest(handle).catch(() => undefined);
    if (s) await decide(handle, 'approve', approver);
  })();
  const outcome = await Promise.race([result, approve.then(() => result)]);
  return { result: outcome, workflowId: handle.workflowId };
}

/** A one-line picture of who replicates from whom, who is writable, and the positions. */
export async function shape(config: RunbookConfig): Promise<{ primary: string | null; writable: string[]; sources: Record<string, string | null>; problems: string[] }> {
  const t = await probeTopology(config, 'orders');
  return {
    primary: t.primary,
    writable: t.instances.filter((i) => i.reachable && !i.readOnly).map((i) => i.instance),
    sources: Object.fromEntries(t.instances.map((i) => [i.instance, i.replication?.sourceInstance ?? null])),
    problems: t.problems,
  };
}

/** A run's failover_log rows in order; `sub` numbers a sub-step of step `seq` (absent on a step's own rows). */
export async function stepLog(config: RunbookConfig, workflowId: string): Promise<{ seq: number | null; sub?: number; step: string | null; status: string }[]> {
  const rows = await withControl(config, (c) => failoverHistory(c, { workflowId, pageSize: 500 }));
  return rows.reverse().map((r) => ({ seq: r.step_seq, ...(r.sub_step ? { sub: r.sub_step } : {}), step: r.step, status: r.status }));
}

/** Each run of an activity type in a workflow's history: its input, the attempt that completed it, and its result. */
export async function activityRuns(handle: WorkflowHandle, type: string): Promise<{ input: any; attempt: number | null; result: any }[]> {
  const events = (await handle.fetchHistory()).events!;
  const json = (p: { data?: Uint8Array | null } | undefined) => (p?.data ? JSON.parse(Buffer.from(p.data).toString('utf8')) : undefined);
  const unwrap = (v: any) => (v && typeof v === 'object' && '__runbookStep' in v ? v.value : v);
  return events
    .filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === type)
    .map((scheduled) => {
      const id = scheduled.eventId!.toString();
      const started = events.find((e) => e.activityTaskStartedEventAttributes?.scheduledEventId?.toString() === id);
      const completed = events.find((e) => e.activityTaskCompletedEventAttributes?.scheduledEventId?.toString() === id);
      return {
        input: json(scheduled.activityTaskScheduledEventAttributes!.input?.payloads?.[0]),
        attempt: started?.activityTaskStartedEventAttributes?.attempt ?? null,
        result: unwrap(json(completed?.activityTaskCompletedEventAttributes?.result?.payloads?.[0])),
      };
    });
}
