/**
 * Telling people what a runbook is doing. Notifiers are pluggable (Slack and email come later);
 * the log notifier is always there. A notification never fails a runbook: every notifier's error
 * is reported back, never thrown.
 */
import { asyncLocalStorage, heartbeat, log } from '@temporalio/activity';
import type { BookkeepingBatch, BookkeepingResult, NotifyResult, NotifyThread, RunbookNotification } from '../core/notifications';
import type { ActivityDeps } from './deps';
import { writeAuditRows } from './audit';
import type { Notifier } from '../adapters/notify/notifier';

export type { Notifier };

export type { RunbookNotification, NotifyThread, NotifyResult };


/** One line per notification: to the activity logger inside an activity, else to the console. */
export class LogNotifier implements Notifier {
  readonly name = 'log';

  static format(n: RunbookNotification): string {
    const oneLine = (s: string) => s.replace(/\s*\r?\n\s*/g, ' | ').trim();
    const incident = n.incidentId ? ` incident=${n.incidentId}` : '';
    const what = n.step ? `${n.step.name} ${n.step.status}${n.step.note ? ` (${n.step.note})` : ''}` : n.status;
    return `[notify ${n.kind}] ${n.cluster}/${n.runbook} workflow=${n.workflowId}${incident}: ${oneLine(n.title)} - ${oneLine(what)}`;
  }

  async send(n: RunbookNotification): Promise<void> {
    const line = LogNotifier.format(n);
    if (asyncLocalStorage.getStore() !== undefined) {
      log.info(line, { notification: n.kind, cluster: n.cluster, runbook: n.runbook, workflowId: n.workflowId, incidentId: n.incidentId });
    } else {
      console.log(line);
    }
  }
}

/** A notifier that hangs must not hold the runbook: each send gets this long (ms). */
// Above a Slack call's own retry budget (honouring Retry-After), so a late success is never cut off.
const DEFAULT_SEND_TIMEOUT_MS = 30_000;

export function createNotifyActivities(deps: ActivityDeps & { notifiers?: Notifier[]; sendTimeoutMs?: number }) {
  const notifiers = deps.notifiers ?? [new LogNotifier()];
  const timeoutMs = deps.sendTimeoutMs ?? DEFAULT_SEND_TIMEOUT_MS;

  const sendOne = async (notifier: Notifier, n: RunbookNotification, thread: NotifyThread): Promise<NotifyThread | void> => {
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        // Promise.resolve().then: a notifier that throws synchronously is caught like one that rejects.
        Promise.resolve().then(() => notifier.send(n, thread)),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  };

  /** Send to every notifier at once; report who got it and who failed, and never throw. */
  async function notify(n: RunbookNotification, thread: NotifyThread = {}): Promise<NotifyResult> {
      const outcomes = await Promise.allSettled(notifiers.map((notifier) => sendOne(notifier, n, thread)));
      let next: NotifyThread = { ...thread };
      const delivered: string[] = [];
      const failed: { notifier: string; error: string }[] = [];
      outcomes.forEach((o, i) => {
        const name = notifiers[i]!.name;
        if (o.status === 'fulfilled') {
          delivered.push(name);
          if (o.value) next = { ...next, ...o.value };
        }
        else failed.push({ notifier: name, error: o.reason instanceof Error ? o.reason.message : String(o.reason) });
      });
      for (const f of failed) {
        const line = `notification ${n.kind} for ${n.workflowId} not delivered by ${f.notifier}: ${f.error}`;
        if (asyncLocalStorage.getStore() !== undefined) log.warn(line);
        else console.warn(line);
      }
      return { thread: next, delivered, failed };
  }

  return {
    notify,

    /**
     * The step helper's bookkeeping at a step boundary, in one activity: the audit rows (one write
     * attempt, bounded: a control database that is down is reported, and the step helper hands the
     * rows to `recordAudit`, which retries) while the notifications go out in order, each moving the
     * Slack thread along. Neither waits for the other's failure, and nothing here throws.
     * It heartbeats while it works: a batch taken by a worker that then died is sent again within the
     * heartbeat timeout, not after the start-to-close timeout (up to minutes with slow notifiers),
     * and the run, which ends only once its rows are stored, does not wait that long.
     */
    async recordAndNotify(batch: BookkeepingBatch): Promise<BookkeepingResult> {
      heartbeat();
      const beat = setInterval(() => heartbeat(), 1000);
      try {
        return await recordAndNotifyOnce(batch);
      } finally {
        clearInterval(beat);
      }
    },
  };

  async function recordAndNotifyOnce(batch: BookkeepingBatch): Promise<BookkeepingResult> {
    const audit = batch.rows.length
      ? writeAuditRows(deps.config, batch.rows).then(
          (report) => ({ report }),
          (err: unknown) => ({ error: err instanceof Error ? err.message : String(err) }),
        )
      : Promise.resolve(undefined);
    let thread = batch.thread;
    const notices: BookkeepingResult['notices'] = [];
    for (const n of batch.notices) {
      const result = await notify(n, thread);
      thread = result.thread;
      notices.push({ failed: result.failed });
    }
    return { audit: await audit, thread, notices };
  }
}
