/**
 * Past a runbook's point of no return (a failover's promotion: the new primary takes writes) there
 * is nothing safe to undo, and the cluster is consistent again only once every remaining step is
 * done. Such steps roll forward:
 *
 * - a step is retried until it succeeds (each try with its activities' own retry budget), backing
 *   off up to 30 s between tries; while it fails, failover_log and people are told (`retrying`,
 *   then a reminder every `rollForwardRemindMinutes`);
 * - a failure that needs a human (a broken precondition, a hook that failed: not retried blindly)
 *   or a step still failing after `rollForwardMinutes` stops the run in `needs_attention`, naming
 *   the step, the error and every step left; `runbook resume` then tries that step again and the
 *   run carries on. The run never ends half switched: it finishes, or it waits.
 *
 * Each such step is still one step: one `started` and one `succeeded` row, whatever it took.
 */
import * as wf from '@temporalio/workflow';
import { classifyFailure, type Runbook, type StepOptions } from './runbook';

export interface RollForwardPolicy {
  rollForwardMinutes: number;
  rollForwardRemindMinutes: number;
}

const MAX_BACKOFF_MS = 30_000;

export class RollForward {
  constructor(
    private readonly rb: Runbook,
    private readonly policy: RollForwardPolicy,
    /** Every step still to run when `step` cannot finish, `step` first. */
    private readonly stepsLeft: (step: string) => string[],
  ) {}

  /** A step after the point of no return: `attempt` is tried until it succeeds (see above). */
  step<T>(name: string, attempt: () => Promise<T>, opts: StepOptions<T> = {}): Promise<T> {
    return this.rb.step(name, () => this.untilDone(name, attempt), opts);
  }

  private async untilDone<T>(name: string, attempt: () => Promise<T>): Promise<T> {
    const windowMs = this.policy.rollForwardMinutes * 60_000;
    const remindMs = this.policy.rollForwardRemindMinutes * 60_000;
    let since = Date.now(); // workflow time
    let tries = 0;
    let reminded: number | undefined;
    for (;;) {
      try {
        return await attempt();
      } catch (err) {
        const failure = classifyFailure(err);
        if (failure.kind === 'cancelled') throw err;
        tries++;
        const left = since + windowMs - Date.now();
        if (failure.kind === 'precondition' || left <= 0) {
          const why = failure.kind === 'precondition' ? failure.message : `still failing after ${this.policy.rollForwardMinutes} min (${tries} tries): ${failure.message}`;
          await this.rb.needsAttention({ step: name, error: why, left: this.stepsLeft(name) });
          since = Date.now();
          tries = 0;
          reminded = undefined;
          continue;
        }
        if (reminded === undefined || Date.now() - reminded >= remindMs) {
          reminded = Date.now();
          this.rb.retrying(name, failure.message, { tries, sinceMs: Date.now() - since });
        }
        await wf.sleep(Math.min(MAX_BACKOFF_MS, 1000 * 2 ** (tries - 1), left));
      }
    }
  }
}
