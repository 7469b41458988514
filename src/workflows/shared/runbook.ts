/**
 * The step helper every runbook uses. A runbook is a short sequence of `rb.step(name, fn)` calls;
 * this file does the rest, once, for all of them:
 *
 * - gives each step's activities a readable summary in the Temporal UI;
 * - writes `started / succeeded / failed / skipped` rows to `failover_log`, keyed by workflow id,
 *   run id and step sequence so that a retried or replayed step never duplicates a row;
 * - never lets the audit or the notifications stall the runbook: they queue in workflow state and
 *   travel in the background, at most one activity per step boundary (bookkeeping.ts), retrying
 *   while the control database is down; the run does not complete until every row is written;
 * - keeps the workflow's current details (a live markdown timeline), a `runbookState` query and
 *   the search attributes (RunbookType, Cluster, IncidentId, RunbookStatus, Operator) up to date;
 * - classifies failures (precondition, timeout, cancelled, error) and fails the run with a
 *   message that names the step;
 * - lets a run stop for a human (`needs_attention`, see rollForward.ts) and carry on when someone
 *   sends the `resume` update (`runbook resume`).
 */
import * as wf from '@temporalio/workflow';
import { ActivityFailure, ApplicationFailure, CancelledFailure, ContinueAsNew, TimeoutFailure } from '@temporalio/workflow';
import type { Activities } from '../../activities';
import { attemptFromDetails } from '../../core/stepEnvelope';
import { Cluster, IncidentId, Operator, RunbookStatus, RunbookType } from '../../core/searchAttributes';
import type { AuditRow, AuditWriteReport, EventStatus, RunStatus } from '../../core/types';
import {
  resumeUpdate,
  runbookStateQuery,
  type Attention,
  type AuditProblem,
  type FailureKind,
  type IncidentNotice,
  type ResumeInput,
  type ResumeVerdict,
  type RunbookMeta,
  type RunbookState,
  type StepRecord,
} from '../../core/runbookDefinitions';
import { clip, INPUT_LIMITS, runbookMetaProblems } from '../../core/inputs';
import { stepContext, type StepFrame } from './interceptors';
import { Bookkeeping } from './bookkeeping';
import { formatDuration, STATUS_ICON } from '../../core/format';
import type { RunbookNotification, TimelineEntry } from '../../core/notifications';

export interface StepOptions<T> {
  /** One line for the Temporal UI; defaults to `<runbook> <cluster>: <step>`. */
  summary?: string;
  /** A short human note for the timeline, from the step's result. */
  note?: (result: T) => string;
  /** Structured detail stored with the `succeeded` row. */
  detail?: (result: T) => Record<string, unknown>;
  /**
   * The step blocks writes: its activity runs with no audit or notification activity beside it
   * (its own `started` row and what else is queued go when it ends, with their own times).
   */
  alone?: boolean;
}

// A read of the worker's own config: a local activity, no round trip through the Temporal server.
const { checkConfig } = wf.proxyLocalActivities<Activities>({
  startToCloseTimeout: '5s',
  retry: { initialInterval: '500ms', backoffCoefficient: 2, maximumInterval: '10s' },
});

/** Workflow time: Temporal makes it deterministic (the time of the current workflow task). */
const now = () => Date.now();

export function classifyFailure(err: unknown): { kind: FailureKind; message: string; errorType?: string; attempt?: number } {
  if (err instanceof CancelledFailure) return { kind: 'cancelled', message: err.message || 'cancelled' };
  const cause = err instanceof ActivityFailure ? err.cause : err;
  if (cause instanceof ApplicationFailure) {
    return {
      kind: cause.nonRetryable ? 'precondition' : 'error',
      message: cause.message,
      errorType: cause.type ?? undefined,
      attempt: attemptFromDetails(cause.details),
    };
  }
  if (cause instanceof TimeoutFailure) return { kind: 'timeout', message: `timed out (${cause.timeoutType})` };
  if (cause instanceof CancelledFailure) return { kind: 'cancelled', message: cause.message || 'cancelled' };
  return { kind: 'error', message: err instanceof Error ? err.message : String(err) };
}

function formatTime(ms: number): string {
  return new Date(ms).toISOString().slice(11, 23);
}



export class Runbook {
  private seq = 0;
  private status: RunStatus = 'running';
  private readonly steps: StepRecord[] = [];
  /**
   * Audit rows and notifications, sent in the background at most once per step boundary (one
   * Temporal UI row); rows wait here while the control database is unreachable, the runbook does not.
   */
  private readonly bookkeeping = new Bookkeeping({
    onAuditReport: (report) => this.noteAuditReport(report),
    onNoticeFailed: (n, failed) => {
      for (const f of failed) this.event(`notification ${n.kind} via ${f.notifier}`, 'notify_failed', { kind: n.kind, notifier: f.notifier, error: f.error }, f.error);
    },
  });
  private readonly auditProblems: AuditProblem[] = [];
  /** Set while the run waits for `resume` (status needs_attention). */
  private attention: Attention | undefined;
  /** Set by `open`: this run is an incident people are told about, step by step. */
  private incident: IncidentNotice | undefined;
  private readonly startedAt = now();
  /** The steps running now, in the order they started (a runbook may run independent steps at once). */
  private readonly running: string[] = [];
  private readonly info = wf.workflowInfo();
  /** Set by a runbook once known (a failover's from/to), carried on later rows. */
  regions: { from?: string; to?: string } = {};
  /** Live facts for the `runbookState` query (plan, approval); runbooks fill it. */
  readonly details: Record<string, unknown> = {};
  /**
   * How the run ends when its body returns normally (a rejected approval is not a failure). A run
   * may also end `needs_attention`: done, with something only a human can decide left over (a
   * restore's rows changed after the mistake), unlike a run that waits for `resume`.
   */
  outcome: Exclude<RunStatus, 'running' | 'failed' | 'cancelled'> = 'succeeded';

  constructor(readonly meta: RunbookMeta) {
    wf.setHandler(runbookStateQuery, () => this.state());
    wf.upsertSearchAttributes([
      { key: RunbookType, value: meta.runbook },
      { key: Cluster, value: meta.cluster },
      { key: Operator, value: meta.operator },
      { key: RunbookStatus, value: 'running' },
      ...(meta.incidentId ? [{ key: IncidentId, value: meta.incidentId }] : []),
    ]);
    this.audit({ step: 'runbook', stepSeq: 0, status: 'started', at: now(), detail: { title: this.title() } });
    wf.setHandler(resumeUpdate, (r) => this.resume(r), {
      validator: (r) => {
        if (!r?.operator?.trim()) throw new Error('resume needs the name of who resumes the run');
      },
    });
    this.render();
  }

  /** What the run is doing now: the step running, or the steps running at once (`a + b`). */
  private get currentStep(): string | null {
    return this.running.length ? this.running.join(' + ') : null;
  }

  title(): string {
    return `${this.meta.runbook} ${this.meta.cluster}${this.meta.incidentId ? ` (incident ${this.meta.incidentId})` : ''} by ${this.meta.operator}`;
  }

  state(): RunbookState {
    return {
      meta: this.meta,
      status: this.status,
      currentStep: this.currentStep,
      steps: this.steps.map((s) => ({ ...s })),
      auditPending: this.bookkeeping.pendingRows,
      auditProblems: this.auditProblems.map((p) => ({ ...p })),
      details: this.details,
    };
  }

  /** Run one named step. `fn` calls the step's activities; their results pass through unchanged. */
  async step<T>(name: string, fn: () => Promise<T>, opts: StepOptions<T> = {}): Promise<T> {
    // Held before the `started` row is queued, so that no batch carries it beside the step; released
    // in `finally`, before this activation settles, so the end's rows go with the rest at once.
    const release = opts.alone ? await this.bookkeeping.hold(1000) : undefined;
    const rec: StepRecord = { seq: ++this.seq, name, status: 'started', startedAt: now() };
    this.steps.push(rec);
    this.running.push(name);
    this.audit({ step: name, stepSeq: rec.seq, status: 'started', at: rec.startedAt });
    this.render();
    wf.log.info(`step ${rec.seq} ${name}: started`);
    const frame: StepFrame = { seq: rec.seq, summary: opts.summary ?? `${this.meta.runbook} ${this.meta.cluster}: ${name}` };
    try {
      const result = await stepContext.run(frame, fn);
      Object.assign(rec, { status: 'succeeded', endedAt: now(), attempt: frame.attempt, note: opts.note?.(result) });
      this.audit({
        step: name,
        stepSeq: rec.seq,
        status: 'succeeded',
        at: rec.endedAt!,
        attempt: rec.attempt,
        detail: { durationMs: rec.endedAt! - rec.startedAt, ...(rec.note ? { note: rec.note } : {}), ...opts.detail?.(result) },
      });
      wf.log.info(`step ${rec.seq} ${name}: succeeded${rec.note ? ` (${rec.note})` : ''}`);
      this.notifyStep(rec);
      return result;
    } catch (err) {
      const failure = classifyFailure(err);
      Object.assign(rec, { status: 'failed', endedAt: now(), attempt: failure.attempt ?? frame.attempt, error: failure.message, classification: failure.kind });
      this.audit({
        step: name,
        stepSeq: rec.seq,
        status: 'failed',
        at: rec.endedAt!,
        attempt: rec.attempt,
        detail: { durationMs: rec.endedAt! - rec.startedAt, classification: failure.kind, error: failure.message, errorType: failure.errorType },
      });
      wf.log.warn(`step ${rec.seq} ${name}: failed (${failure.kind}): ${failure.message}`);
      this.notifyStep(rec);
      if (failure.kind === 'cancelled') throw err;
      throw ApplicationFailure.create({
        type: 'StepFailed',
        message: `step "${name}" failed (${failure.kind}): ${failure.message}`,
        nonRetryable: true,
        details: [{ step: name, seq: rec.seq, classification: failure.kind }],
        cause: err instanceof Error ? err : undefined,
      });
    } finally {
      release?.();
      this.running.splice(this.running.indexOf(name), 1);
      this.render();
    }
  }

  /**
   * Open an incident: from here on, people are told (Slack, email, log) when it starts, as each
   * step ends, about approvals, and how it ended. Call again to update the notice (e.g. the plan).
   */
  open(notice: IncidentNotice): void {
    const first = !this.incident;
    this.incident = { ...this.incident, ...notice };
    if (first) this.notify('incident-opened', { status: this.currentStep ? `running: ${this.currentStep}` : 'started' });
  }

  /** Change what the open incident's notices say from now on (the outcome, the timings). */
  updateNotice(notice: Partial<IncidentNotice>): void {
    if (this.incident) this.incident = { ...this.incident, ...notice };
  }

  /** Queue a notification about this run (only once an incident is open). */
  notify(kind: RunbookNotification['kind'], extra: Partial<RunbookNotification> = {}): void {
    const incident = this.incident;
    if (!incident) return;
    this.bookkeeping.tell({
      kind,
      cluster: this.meta.cluster,
      runbook: this.meta.runbook,
      workflowId: this.info.workflowId,
      incidentId: this.meta.incidentId,
      requester: this.meta.operator,
      reason: this.meta.reason ?? '',
      status: this.currentStep ? `running: ${this.currentStep}` : this.status,
      timeline: this.timeline(),
      startedAt: this.startedAt,
      ...incident,
      ...extra,
    });
  }

  /**
   * Tell people something outside an incident (the monitor's state changes and pages): one
   * `alert`, through the same ordered sender and channels as every other notification.
   */
  alert(a: { title: string; severity: RunbookNotification['severity']; status: string; incidentId?: string; contact?: string }): void {
    this.bookkeeping.tell({
      kind: 'alert',
      cluster: this.meta.cluster,
      runbook: this.meta.runbook,
      workflowId: this.info.workflowId,
      requester: this.meta.operator,
      reason: this.meta.reason ?? '',
      timeline: [],
      startedAt: now(),
      ...a,
    });
  }

  private timeline(): TimelineEntry[] {
    return this.steps.map((s) => ({
      seq: s.seq,
      name: s.name,
      status: s.status,
      startedAt: s.startedAt,
      durationMs: s.endedAt === undefined ? undefined : s.endedAt - s.startedAt,
      note: s.error ?? s.note,
    }));
  }

  private notifyStep(rec: StepRecord): void {
    const entry = this.timeline().find((t) => t.seq === rec.seq)!;
    this.notify('step', { step: entry, status: `${rec.name}: ${rec.status}` });
  }

  /** A single-row event with its own sequence number (an approval decision, a reminder). */
  event(name: string, status: EventStatus, detail: Record<string, unknown> = {}, note?: string): StepRecord {
    const at = now();
    const rec: StepRecord = { seq: ++this.seq, name, status, startedAt: at, endedAt: at, note };
    this.steps.push(rec);
    this.audit({ step: name, stepSeq: this.seq, status, at, detail });
    wf.log.info(`event ${this.seq} ${name}: ${status}${note ? ` (${note})` : ''}`);
    this.render();
    return rec;
  }

  /** A step past the point of no return still fails and is being retried: logged, and people are told. */
  retrying(step: string, error: string, detail: Record<string, unknown> = {}): void {
    this.notifyStep(this.event(`${step}: retrying`, 'retrying', { error, ...detail }, error));
  }

  /**
   * Stop for a human: the run's status becomes `needs_attention` (search attribute, timeline,
   * failover_log, a notification naming the step, the error and what is left) until someone sends
   * `resume`; then it is `running` again and the caller tries the step again.
   */
  async needsAttention(a: Omit<Attention, 'since'>): Promise<void> {
    // Steps that run at once may each need a human: one waits for `resume` at a time.
    await wf.condition(() => this.attention === undefined);
    const attention: Attention = { ...a, since: now() };
    this.attention = attention;
    this.details.attention = attention;
    this.setStatus('needs_attention');
    const resume = `runbook resume ${this.info.workflowId} --as YOUR_NAME`;
    this.event(`${a.step}: needs attention`, 'needs_attention', { error: a.error, left: a.left }, `${a.error}; left: ${a.left.join(', ')}`);
    this.notify('needs-attention', { status: `needs attention: ${a.step}`, attention: { step: a.step, error: a.error, left: a.left, resume } });
    await wf.condition(() => this.attention !== attention);
  }

  /** The `resume` update: accepted only while the run waits for it; every answer is logged. */
  private resume(r: ResumeInput): ResumeVerdict {
    const who = `${r.operator.trim()} via ${r.channel ?? 'unknown'}`;
    const waiting = this.attention;
    if (!waiting) {
      const reason = `nothing to resume: the run is ${this.status}${this.currentStep ? ` (now: ${this.currentStep})` : ''}`;
      this.event(`resume by ${who}`, 'refused', { operator: r.operator, channel: r.channel, reason, comment: r.comment }, reason);
      return { accepted: false, status: this.status, reason };
    }
    this.attention = undefined;
    delete this.details.attention;
    this.setStatus('running');
    this.event(`resume by ${who}`, 'resumed', { operator: r.operator, channel: r.channel, step: waiting.step, comment: r.comment }, `retrying ${waiting.step}${r.comment ? `: ${r.comment}` : ''}`);
    return { accepted: true, status: 'running' };
  }

  private setStatus(status: RunStatus): void {
    this.status = status;
    wf.upsertSearchAttributes([{ key: RunbookStatus, value: status }]);
    this.render();
  }

  /** Record a step that was deliberately not run (dry-run, not applicable), with the reason. */
  skip(name: string, reason: string): void {
    const at = now();
    this.steps.push({ seq: ++this.seq, name, status: 'skipped', startedAt: at, endedAt: at, note: reason });
    this.audit({ step: name, stepSeq: this.seq, status: 'skipped', at, detail: { reason } });
    this.render();
  }

  /** Final status: search attribute, timeline, a run-level row, and every audit row delivered. */
  async finish(status: Exclude<RunStatus, 'running'>, error?: unknown): Promise<void> {
    this.setStatus(status);
    const detail: Record<string, unknown> = { steps: this.steps.length };
    if (error) detail.error = classifyFailure(error).message;
    this.audit({ step: 'runbook', stepSeq: 0, status, at: now(), detail });
    this.render();
    if (this.incident && status !== 'continued') {
      const kind = status === 'succeeded' || status === 'needs_attention' ? 'completed' : status === 'failed' ? 'failed' : 'aborted';
      this.notify(kind, { status: detail.error ? `${status}: ${detail.error}` : status, endedAt: now() });
    }
    // Even a cancelled run delivers its audit: the trail matters most when something went wrong.
    await wf.CancellationScope.nonCancellable(() => this.bookkeeping.drain());
  }

  private audit(row: Omit<AuditRow, 'workflowId' | 'runId' | 'runbook' | 'cluster' | 'incidentId' | 'operator' | 'reason'>): void {
    this.bookkeeping.record({
      workflowId: this.info.workflowId,
      runId: this.info.runId,
      runbook: this.meta.runbook,
      cluster: this.meta.cluster,
      incidentId: this.meta.incidentId,
      operator: this.meta.operator,
      reason: this.meta.reason,
      fromRegion: this.regions.from,
      toRegion: this.regions.to,
      ...row,
    });
  }

  /** Keep what the audit writer could not store as it was, for `runbook status` and the timeline. */
  private noteAuditReport(report: AuditWriteReport | undefined): void {
    if (!report || typeof report !== 'object') return; // a worker from before the report existed
    for (const t of report.truncated) this.auditProblems.push({ stepSeq: t.stepSeq, step: t.step, status: t.status, problem: 'truncated', detail: `cut to fit: ${t.fields.join(', ')}` });
    for (const r of report.rejected) this.auditProblems.push({ stepSeq: r.stepSeq, step: r.step, status: r.status, problem: 'not stored', detail: r.error });
    // Bounded: the query result and the timeline stay small whatever happens.
    if (this.auditProblems.length > 50) this.auditProblems.splice(0, this.auditProblems.length - 50);
    if (report.truncated.length || report.rejected.length) this.render();
  }

  /** The live markdown timeline shown as the workflow's current details in the Temporal UI. */
  private render(): void {
    const head = `**${this.title()}** — ${this.status}${this.currentStep ? `, now: ${this.currentStep}` : ''}`;
    const rows = this.steps.map(
      (s) =>
        `| ${s.seq} | ${s.name} | ${STATUS_ICON[s.status]} ${s.status} | ${formatTime(s.startedAt)} | ${formatDuration(s.endedAt === undefined ? undefined : s.endedAt - s.startedAt)} | ${s.attempt ?? ''} | ${(s.error ?? s.note ?? '').replace(/\|/g, '\\|')} |`,
    );
    const pending = this.bookkeeping.pendingRows ? `\n\n_${this.bookkeeping.pendingRows} audit row(s) waiting for the control database_` : '';
    const problems = this.auditProblems.length ? `\n\n_${this.auditProblems.length} audit row(s) not stored as written: see runbook status_` : '';
    wf.setCurrentDetails([head, '', '| # | Step | Status | Started (UTC) | Took | Attempt | Note |', '|---|---|---|---|---|---|---|', ...rows].join('\n') + pending + problems);
  }
}

/** Meta cut to what its columns and search attributes can hold, for a run refused for its input. */
function clipMeta(meta: RunbookMeta): RunbookMeta {
  const text = (v: unknown, max: number) => (v === undefined || v === null ? undefined : clip(String(v), max));
  return {
    ...meta,
    cluster: text(meta.cluster, 64) ?? '',
    operator: text(meta.operator, INPUT_LIMITS.identity) ?? '',
    reason: text(meta.reason, INPUT_LIMITS.reason),
    incidentId: text(meta.incidentId, INPUT_LIMITS.incidentId),
    configFingerprint: text(meta.configFingerprint, 64),
  };
}

function isCancellation(err: unknown): boolean {
  return err instanceof CancelledFailure || (err instanceof ApplicationFailure && err.cause instanceof CancelledFailure) || wf.isCancellation(err);
}

/**
 * Run a runbook body with a step helper; the run's outcome is recorded whatever happens. Its input
 * is checked first (who, why, the incident, and `inputProblems` a runbook adds for its own fields),
 * since a client can start a workflow without the CLI: bad input fails the run before its first
 * step, audited with the values cut to fit. A run started from the CLI then checks that the worker
 * runs the config the CLI was given.
 */
export async function runRunbook<T>(meta: RunbookMeta, body: (rb: Runbook) => Promise<T>, inputProblems: (string | undefined)[] = []): Promise<T> {
  const problems = [...runbookMetaProblems(meta), ...inputProblems.filter((p): p is string => p !== undefined)];
  const rb = new Runbook(problems.length ? clipMeta(meta) : meta);
  let result: T;
  try {
    if (problems.length) throw ApplicationFailure.nonRetryable(`refused before anything was done: ${problems.join('; ')}`, 'BadInput');
    if (meta.configFingerprint !== undefined) {
      await rb.step('check config', () => checkConfig({ fingerprint: meta.configFingerprint! }), { note: (f) => `the worker runs the CLI's config (${f})` });
    }
    result = await body(rb);
  } catch (err) {
    // A long runbook hands over to its next run (continue-as-new): that is no failure.
    if (err instanceof ContinueAsNew) await rb.finish('continued');
    else await rb.finish(isCancellation(err) ? 'cancelled' : 'failed', err);
    throw err;
  }
  await rb.finish(rb.outcome);
  return result;
}

/**
 * Independent steps run at once: waits for every branch to end (none is left running behind the
 * run's back), then fails with the first failure, or returns every result in order.
 */
export async function together<T extends readonly unknown[] | []>(branches: T): Promise<{ -readonly [K in keyof T]: Awaited<T[K]> }> {
  const settled = await Promise.allSettled(branches);
  for (const s of settled) if (s.status === 'rejected') throw s.reason;
  return settled.map((s) => (s as PromiseFulfilledResult<unknown>).value) as { -readonly [K in keyof T]: Awaited<T[K]> };
}
