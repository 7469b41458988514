/**
 * The critical section of a planned switchover as ONE activity: check both servers (and the
 * control database) → fence the old primary → wait for the candidate to apply its final position →
 * promote the candidate → point the writer endpoint at it. Writes are unavailable from the fence to
 * the promotion; done as separate activities each sub-step cost a round trip through the Temporal
 * server plus its audit, most of the window. Here the statements follow each other on connections
 * opened and checked before the fence, and nothing else runs between them.
 *
 * What is kept of the separate steps:
 * - each sub-step is reported with its own times: in the heartbeat details as it ends (the Temporal
 *   UI shows them on the pending activity), then as `started` / `succeeded` (or `failed`) rows in
 *   failover_log, written once by the audit writer (`insertAuditRows`) under the step's sequence
 *   number with `sub_step` 1, 2, … after the writes have moved;
 * - idempotency: every sub-step checks the servers before it acts, so a retry after a crash at any
 *   point resumes from what the servers say (already read-only, already caught up, already
 *   promoted, endpoint already there) and finishes;
 * - the undo: a catch-up that fails fails the activity before any promotion; the workflow then
 *   unfences the old primary under a fresh deadline (shared/promotion.ts), refusing to if the
 *   candidate took writes meanwhile;
 * - cancellation: honoured up to the promotion, never after it (the point of no return).
 */
import { CancelledFailure, Context, heartbeat, log } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { getInstance, type RunbookConfig } from '../config/load';
import { connectControl, insertAuditRows, writeWriterEndpoint } from '../adapters/control/store';
import type { Conn } from '../adapters/mysql/connect';
import { addressOf, fenceWrites, isPromoted, openSession, position, promoteReplica, refuse, sameAddress, waitForApplied, type Fenced, type Session } from '../adapters/mysql/switchover';
import type { AuditRow } from '../core/types';

/** The sub-steps, in order; their number in failover_log's `sub_step` is the index + 1. */
export const HAND_OVER_SUB_STEPS = ['check connections', 'fence old primary', 'wait for catch-up', 'promote candidate', 'writer endpoint'] as const;
export type HandOverSubStep = (typeof HAND_OVER_SUB_STEPS)[number];

export interface HandOverInput {
  cluster: string;
  /** The primary to fence. */
  from: string;
  /** The replica to promote. */
  to: string;
  catchUpTimeoutSeconds: number;
  /** For the writer endpoint row. */
  incidentId?: string;
  /** The audit columns of the run (its runbook, operator, reason, regions) and the step's sequence number. */
  audit: Pick<AuditRow, 'runbook' | 'operator' | 'reason' | 'incidentId' | 'fromRegion' | 'toRegion'> & { stepSeq: number };
}

export interface SubStepReport {
  subStep: number;
  name: HandOverSubStep;
  startedAt: number;
  endedAt: number;
  note: string;
  detail?: Record<string, unknown>;
}

export interface HandOverResult {
  fence: Fenced;
  catchUp: { waitedMs: number; appliedPosition: string };
  promotion: { alreadyPromoted: boolean; position: string };
  /** The writer endpoint row, or why it is left to `switch traffic` (the control database did not answer). */
  endpoint: { changed: boolean; generation: number } | { deferred: string };
  subSteps: SubStepReport[];
  /** Fence to promotion, as the servers saw it: the write-unavailability this activity caused. */
  writesBlockedMs: number;
  /** Sub-step rows the control database did not take: the workflow stores them with the step. */
  auditNotWritten?: AuditRow[];
}

interface Progress {
  subSteps: SubStepReport[];
}

export async function handOverWrites(config: RunbookConfig, input: HandOverInput): Promise<HandOverResult> {
  const ctx = Context.current();
  const { attempt } = ctx.info;
  const workflowExecution = ctx.info.workflowExecution ?? { workflowId: 'unknown', runId: 'unknown' }; // always set for a workflow's activity
  // Sub-steps an earlier attempt reported before it died keep the times they really happened.
  const earlier = ((ctx.info.heartbeatDetails as Progress | undefined)?.subSteps ?? []).filter((s) => HAND_OVER_SUB_STEPS.includes(s.name));
  const progress: Progress = { subSteps: [] };
  const cancelled = () => ctx.cancellationSignal.aborted;
  // A statement may take seconds (a fence waiting for a running write): keep the heartbeat going
  // so a short heartbeat timeout notices a dead worker, never a slow statement.
  const beat = () => heartbeat({ subSteps: [...progress.subSteps] } satisfies Progress);
  const keepAlive = setInterval(beat, 1000);
  beat();
  let failed: { name: HandOverSubStep; startedAt: number; at: number; error: string } | undefined;

  const subStep = async <T>(name: HandOverSubStep, run: () => Promise<T>, note: (r: T) => string, detail?: (r: T) => Record<string, unknown>): Promise<T> => {
    const startedAt = Date.now();
    let result: T;
    try {
      result = await run();
    } catch (err) {
      failed = { name, at: Date.now(), startedAt, error: (err as Error).message };
      throw err;
    }
    const before = earlier.find((s) => s.name === name);
    const report: SubStepReport = before
      ? { ...before, note: `${before.note} (attempt ${attempt} found it done)` }
      : { subStep: HAND_OVER_SUB_STEPS.indexOf(name) + 1, name, startedAt, endedAt: Date.now(), note: note(result), detail: detail?.(result) };
    progress.subSteps.push(report);
    beat(); // reported as it ends: a crash from here on still finds it in the next attempt's details
    return result;
  };

  let old: Session | undefined;
  let candidate: Session | undefined;
  let control: Conn | undefined;
  let controlProblem = '';
  try {
    // 1. Everything the critical section touches is opened and checked before anything changes.
    const state = await subStep(
      'check connections',
      async () => {
        const [o, c, ctl] = await Promise.allSettled([
          openSession(config, { cluster: input.cluster, instance: input.from }),
          openSession(config, { cluster: input.cluster, instance: input.to }),
          connectControl(config, 2000).catch((err: Error) => ((controlProblem = err.message), undefined)),
        ]);
        // Kept as soon as opened, so that `finally` closes each even when another failed.
        old = o.status === 'fulfilled' ? o.value : undefined;
        candidate = c.status === 'fulfilled' ? c.value : undefined;
        control = ctl.status === 'fulfilled' ? ctl.value : undefined;
        for (const r of [o, c]) if (r.status === 'rejected') throw r.reason;
        const oldSession = old!;
        const candidateSession = candidate!;
        const [oldReplica, cand] = await Promise.all([oldSession.replica(), isPromoted(candidateSession)]);
        if (oldReplica) throw refuse(`${input.from} replicates from ${oldReplica.sourceHost}:${oldReplica.sourcePort}: it is not the primary, refusing to fence it`);
        if (cand.promoted) {
          // An earlier attempt got past the promotion: the fence must still hold, else two writers.
          if (!(await oldSession.vars()).readOnly) throw refuse(`${input.to} is already writable and ${input.from} is writable too: two writers, a human must decide`, 'TwoWriters');
          return { resumedAfterPromotion: true, candidate: cand };
        }
        const r = cand.replica;
        if (!r || !sameAddress(r, addressOf(config, input.cluster, input.from))) {
          throw refuse(`${input.to} does not replicate from ${input.from}${r ? ` (it replicates from ${r.sourceHost}:${r.sourcePort})` : ''}: refusing to promote it`);
        }
        if (r.sqlRunning !== 'Yes' || r.ioRunning === 'No') {
          throw refuse(`replication on ${input.to} is broken (IO ${r.ioRunning}, SQL ${r.sqlRunning}${r.lastIoError || r.lastSqlError ? `: ${r.lastIoError || r.lastSqlError}` : ''}): refusing to fence ${input.from}`, 'ReplicationBroken');
        }
        return { resumedAfterPromotion: false, candidate: cand };
      },
      (s) =>
        `${input.from} and ${input.to} connected${s.resumedAfterPromotion ? `; ${input.to} already promoted` : `, ${input.to} replicating from ${input.from}`}; control database ${control ? 'connected' : `unreachable (${controlProblem}): the writer endpoint waits for switch traffic`}`,
    );
    if (!state.resumedAfterPromotion && cancelled()) throw new CancelledFailure('cancelled before the fence');

    // 2-4. The window: fence → catch-up → promote, on the open connections.
    const fence = await subStep(
      'fence old primary',
      async () => (state.resumedAfterPromotion ? { alreadyReadOnly: true, killedSessions: 0, finalPosition: position(await old!.vars()) } : fenceWrites(old!)),
      (f) => `${input.from} read-only at ${f.finalPosition || '(empty GTID position)'}, ${f.killedSessions} session(s) ended${f.alreadyReadOnly ? ' (already read-only)' : ''}`,
      (f) => f,
    );
    const deadline = Date.now() + input.catchUpTimeoutSeconds * 1000;
    const catchUp = await subStep(
      'wait for catch-up',
      async () =>
        state.resumedAfterPromotion
          ? { waitedMs: 0, appliedPosition: position(state.candidate.vars) }
          : waitForApplied(candidate!, fence.finalPosition, deadline, { timeoutSeconds: input.catchUpTimeoutSeconds, cancelled, reportTarget: true }),
      (w) => `${input.to} at ${w.appliedPosition || '(empty GTID position)'} after ${w.waitedMs} ms`,
      (w) => w,
    );
    if (!state.resumedAfterPromotion && cancelled()) throw new CancelledFailure('cancelled before the promotion');
    const promotion = await subStep(
      'promote candidate',
      () =>
        promoteReplica(
          candidate!,
          { instance: input.from, ...addressOf(config, input.cluster, input.from) },
          // Checked in `check connections` on this session; a resumed attempt checks it again there.
          state.resumedAfterPromotion || !state.candidate.replica ? undefined : { replica: state.candidate.replica },
        ),
      (p) => `${input.to} writable at ${p.position || '(empty GTID position)'}${p.alreadyPromoted ? ' (already promoted)' : ''}`,
      (p) => p,
    );
    // Past the point of no return: nothing below may fail the activity.
    const endpoint = await subStep(
      'writer endpoint',
      async (): Promise<HandOverResult['endpoint']> => {
        if (!control) return { deferred: controlProblem || 'no control database connection' };
        const inst = getInstance(config, input.cluster, input.to);
        try {
          const w = await writeWriterEndpoint(control, { cluster: input.cluster, instance: inst.name, region: inst.region, host: inst.host, port: inst.port, workflowId: workflowExecution.workflowId, incidentId: input.incidentId });
          return { changed: w.changed, generation: w.generation };
        } catch (err) {
          return { deferred: (err as Error).message };
        }
      },
      (e) => ('deferred' in e ? `left to switch traffic: ${e.deferred}` : `writer endpoint → ${input.to}, generation ${e.generation}${e.changed ? '' : ' (already there)'}`),
      (e) => e,
    );
    const fenced = progress.subSteps.find((s) => s.name === 'fence old primary')!;
    const promoted = progress.subSteps.find((s) => s.name === 'promote candidate')!;
    const result: HandOverResult = { fence, catchUp, promotion, endpoint, subSteps: progress.subSteps, writesBlockedMs: promoted.endedAt - fenced.startedAt };
    const rows = auditRows(input, workflowExecution, attempt, progress.subSteps);
    const notWritten = await writeAudit(control, rows);
    if (notWritten) result.auditNotWritten = notWritten;
    return result;
  } catch (err) {
    // The sub-steps done and the one that failed, in failover_log before the workflow undoes the fence.
    const rows = auditRows(input, workflowExecution, attempt, progress.subSteps, failed);
    await writeAudit(control, rows);
    if (cancelled() && !(err instanceof CancelledFailure)) throw new CancelledFailure(`cancelled during ${failed?.name ?? 'the hand-over'}: ${(err as Error).message}`);
    throw err instanceof ApplicationFailure || err instanceof CancelledFailure || !failed ? err : ApplicationFailure.retryable(`${failed.name}: ${(err as Error).message}`, 'HandOverFailed');
  } finally {
    clearInterval(keepAlive);
    old?.close();
    candidate?.close();
    (control as Conn | undefined)?.destroy();
  }
}

function auditRows(
  input: HandOverInput,
  run: { workflowId: string; runId: string },
  attempt: number,
  done: SubStepReport[],
  failed?: { name: HandOverSubStep; startedAt: number; at: number; error: string },
): AuditRow[] {
  const base = { ...input.audit, workflowId: run.workflowId, runId: run.runId, cluster: input.cluster, stepSeq: input.audit.stepSeq, attempt };
  const rows: AuditRow[] = done.flatMap((s) => [
    { ...base, step: s.name, subStep: s.subStep, status: 'started' as const, at: s.startedAt },
    { ...base, step: s.name, subStep: s.subStep, status: 'succeeded' as const, at: s.endedAt, detail: { durationMs: s.endedAt - s.startedAt, note: s.note, ...s.detail } },
  ]);
  if (failed) {
    const subStep = HAND_OVER_SUB_STEPS.indexOf(failed.name) + 1;
    rows.push(
      { ...base, step: failed.name, subStep, status: 'started', at: failed.startedAt },
      { ...base, step: failed.name, subStep, status: 'failed', at: failed.at, detail: { durationMs: failed.at - failed.startedAt, error: failed.error } },
    );
  }
  return rows;
}

/** Rows written once (the unique key); those the control database did not take are returned. */
async function writeAudit(control: Conn | undefined, rows: AuditRow[]): Promise<AuditRow[] | undefined> {
  if (!rows.length) return undefined;
  if (!control) return rows;
  try {
    await insertAuditRows(control, rows);
    return undefined;
  } catch (err) {
    log.warn('sub-step audit rows not written: the workflow keeps them with the step', { error: (err as Error).message });
    return rows;
  }
}
