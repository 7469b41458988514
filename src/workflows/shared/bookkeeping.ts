/**
 * The step helper's bookkeeping: audit rows for `failover_log` and notifications for people, queued
 * in workflow state and sent in the background, so the runbook never waits for either.
 *
 * Why one activity per step boundary: in the Temporal UI every activity is a row. Sending each
 * audit batch and each notification on its own made two rows in three bookkeeping; a step's end
 * and the next step's start happen in the same workflow activation, so everything queued in one
 * activation travels together in one `recordAndNotify` after the activation settles, beside the
 * next step's own activity: at most one bookkeeping row per step.
 *
 * Why not local activities: a workflow task with a local activity outstanding is not completed, so
 * the next step's activity would not be scheduled until the write or the Slack call returned; a
 * control database that is down (3 s connect timeout) or a slow Slack (up to 30 s) would stall the
 * runbook itself. Here they never do:
 * - the audit part of `recordAndNotify` makes one bounded attempt; when the control database does
 *   not answer, the rows go to `recordAudit`, one activity that Temporal retries until it does
 *   (the history does not grow while it retries), while notifications keep going on their own;
 * - rows are keyed (workflow, run, step, status), so a batch sent twice is stored once.
 * Both run outside any step's context and in a non-cancellable scope (what was queued is
 * delivered even when the run is cancelled).
 */
import * as wf from '@temporalio/workflow';
import type { Activities } from '../../activities';
import type { BookkeepingResult, NotifyThread, RunbookNotification } from '../../core/notifications';
import type { AuditRow, AuditWriteReport } from '../../core/types';
import { stepContext } from './interceptors';

// The fallback while the control database is down: retried without limit, the run waits for it only at its end.
const { recordAudit } = wf.proxyActivities<Activities>({
  startToCloseTimeout: '5s',
  retry: { initialInterval: '500ms', backoffCoefficient: 2, maximumInterval: '10s' },
});

// Bounded, so Slack or SMTP being down never holds the bookkeeping for long (a notifier gets 30 s per send).
// It heartbeats every second: a batch lost with its worker is sent again within seconds.
const { recordAndNotify } = wf.proxyActivities<Activities>({
  startToCloseTimeout: '40s',
  heartbeatTimeout: '5s',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumAttempts: 3 },
});

const ROWS_PER_BATCH = 100;
const NOTICES_PER_BATCH = 5;

/**
 * Resolves once the current activation has run everything it can (its microtasks drained): the
 * SDK evaluates blocked conditions only then. The first evaluation is the eager one, at the call.
 */
function activationSettled(): Promise<void> {
  let evaluated = false;
  return wf.condition(() => {
    const ready = evaluated;
    evaluated = true;
    return ready;
  });
}

export interface BookkeepingHooks {
  /** What the control database stored differently from what was written (cut, or a placeholder). */
  onAuditReport(report: AuditWriteReport): void;
  /** A notifier failed a notice (never fatal: the step helper logs it). */
  onNoticeFailed(n: RunbookNotification, failed: { notifier: string; error: string }[]): void;
}

export class Bookkeeping {
  private readonly rows: AuditRow[] = [];
  private readonly notices: RunbookNotification[] = [];
  private thread: NotifyThread = {};
  private pumping: Promise<void> | undefined;
  /** Set while a `recordAndNotify` is scheduled and not yet answered. */
  private inFlight = false;
  /** Steps running alone (see `hold`): nothing new is sent while any is. */
  private holds = 0;
  /** Set while `recordAudit` retries rows the control database did not take. */
  private recovering: Promise<void> | undefined;

  constructor(private readonly hooks: BookkeepingHooks) {}

  /** Audit rows not yet stored. */
  get pendingRows(): number {
    return this.rows.length;
  }

  record(row: AuditRow): void {
    this.rows.push(row);
    this.kick();
  }

  tell(n: RunbookNotification): void {
    this.notices.push(n);
    this.kick();
  }

  /**
   * Hold back new batches until the returned release is called (once), and wait (at most `maxWaitMs`) for
   * a batch already in flight: a step that blocks writes runs with no bookkeeping beside it on the
   * worker's cores (measured: the planned switchover's write window stretched from ~12 to ~18 ms
   * p50, p95 19 → 41–59 ms, when the step's own start row was written at the same time as its
   * fence). What is queued meanwhile goes as soon as the step ends; a control database that is
   * down is never waited for longer than `maxWaitMs`.
   */
  async hold(maxWaitMs: number): Promise<() => void> {
    this.holds++;
    if (this.inFlight) await wf.condition(() => !this.inFlight, maxWaitMs);
    return () => {
      this.holds--;
      this.kick();
    };
  }

  /** Wait until every row is stored and every notice handed over. */
  async drain(): Promise<void> {
    await wf.condition(() => this.holds === 0);
    while (this.rows.length || this.notices.length || this.pumping || this.recovering) {
      this.kick();
      await Promise.all([this.pumping, this.recovering]);
    }
  }

  private sendable(): boolean {
    if (this.holds > 0) return false;
    return this.notices.length > 0 || (this.rows.length > 0 && !this.recovering);
  }

  private kick(): void {
    if (this.pumping || !this.sendable()) return;
    this.pumping = stepContext
      .exit(() =>
        wf.CancellationScope.nonCancellable(async () => {
          for (;;) {
            await activationSettled();
            if (!this.sendable()) return;
            await this.sendBatch();
          }
        }),
      )
      .finally(() => {
        this.pumping = undefined;
        this.kick();
      });
  }

  private async sendBatch(): Promise<void> {
    const rows = this.recovering ? [] : this.rows.slice(0, ROWS_PER_BATCH);
    const notices = this.notices.slice(0, NOTICES_PER_BATCH);
    let result: BookkeepingResult;
    this.inFlight = true;
    try {
      result = await recordAndNotify.executeWithOptions(
        { summary: summaryOf(rows, notices), startToCloseTimeout: `${10 + 35 * notices.length}s` },
        [{ rows, notices, thread: this.thread }],
      );
    } catch (err) {
      const error = err instanceof wf.ActivityFailure && err.cause ? err.cause.message : (err as Error).message;
      result = { audit: rows.length ? { error } : undefined, thread: this.thread, notices: notices.map(() => ({ failed: [{ notifier: 'all', error }] })) };
    } finally {
      this.inFlight = false;
    }
    this.notices.splice(0, notices.length);
    this.thread = result.thread;
    if (rows.length) {
      if (result.audit && 'report' in result.audit) {
        this.rows.splice(0, rows.length);
        this.hooks.onAuditReport(result.audit.report);
      } else {
        wf.log.warn(`audit rows not written (${result.audit && 'error' in result.audit ? result.audit.error : 'no answer'}): retrying until the control database answers`);
        this.recover();
      }
    }
    notices.forEach((n, i) => {
      const failed = result.notices[i]?.failed ?? [];
      if (failed.length) this.hooks.onNoticeFailed(n, failed);
    });
  }

  /** Hand the queued rows to `recordAudit`, which Temporal retries until the control database answers. */
  private recover(): void {
    if (this.recovering) return;
    this.recovering = stepContext
      .exit(() =>
        wf.CancellationScope.nonCancellable(async () => {
          while (this.rows.length) {
            const batch = this.rows.slice(0, ROWS_PER_BATCH);
            const report = await recordAudit.executeWithOptions({ summary: `audit: ${batch.length} row(s) to failover_log (retrying until the control database answers)` }, [batch]);
            this.rows.splice(0, batch.length);
            this.hooks.onAuditReport(report);
          }
        }),
      )
      .finally(() => {
        this.recovering = undefined;
        this.kick();
      });
  }
}

/** One line for the Temporal UI: what this bookkeeping row carried. */
function summaryOf(rows: AuditRow[], notices: RunbookNotification[]): string {
  const parts: string[] = [];
  if (rows.length) {
    const steps = [...new Set(rows.map((r) => r.stepSeq))].filter((s) => s > 0);
    parts.push(`failover_log: ${rows.length} row(s)${steps.length ? ` (step ${steps.length > 1 ? `${steps[0]}–${steps[steps.length - 1]}` : steps[0]})` : ''}`);
  }
  if (notices.length) parts.push(`notify: ${notices.map((n) => (n.step ? `${n.step.name} ${n.step.status}` : n.kind)).join(', ')}`);
  return parts.join(' · ');
}
