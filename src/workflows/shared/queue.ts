/**
 * An ordered background sender for workflow code: items are queued in workflow state and sent in
 * order, a batch at a time, without the runbook waiting; `drain` waits until everything queued
 * was handed over. Runs outside any step's context (its activities are not the step's) and in a
 * non-cancellable scope (what was queued is delivered even when the run is cancelled).
 */
import * as wf from '@temporalio/workflow';
import { stepContext } from './interceptors';

export class OrderedSender<T> {
  private readonly queue: T[] = [];
  private sending: Promise<void> | undefined;

  constructor(
    private readonly send: (batch: T[]) => Promise<void>,
    private readonly batchSize: number,
  ) {}

  get pending(): number {
    return this.queue.length;
  }

  push(item: T): void {
    this.queue.push(item);
    this.kick();
  }

  private kick(): void {
    if (this.sending || !this.queue.length) return;
    this.sending = stepContext
      .exit(() =>
        wf.CancellationScope.nonCancellable(async () => {
          while (this.queue.length) {
            const batch = this.queue.slice(0, this.batchSize);
            await this.send(batch);
            this.queue.splice(0, batch.length);
          }
        }),
      )
      .finally(() => {
        this.sending = undefined;
        this.kick();
      });
  }

  async drain(): Promise<void> {
    while (this.queue.length || this.sending) {
      this.kick();
      await this.sending;
    }
  }
}
