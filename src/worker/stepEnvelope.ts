/** Worker side of the step envelope (see src/core/stepEnvelope.ts). */
import { Context } from '@temporalio/activity';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import type { ActivityExecuteInput, ActivityInboundCallsInterceptor, ActivityInterceptorsFactory, Next } from '@temporalio/worker';
import { STEP_HEADER, type StepEnvelope } from '../core/stepEnvelope';

class StepEnvelopeInbound implements ActivityInboundCallsInterceptor {
  constructor(private readonly ctx: Context) {}

  async execute(input: ActivityExecuteInput, next: Next<ActivityInboundCallsInterceptor, 'execute'>): Promise<unknown> {
    if (!input.headers[STEP_HEADER]) return next(input);
    const attempt = this.ctx.info.attempt;
    try {
      const value = await next(input);
      return { __runbookStep: 1, value, attempt } satisfies StepEnvelope;
    } catch (err) {
      if (err instanceof CancelledFailure || !(err instanceof Error)) throw err;
      // Same message, type and retryability as the SDK would report, plus the attempt number.
      const app = err instanceof ApplicationFailure ? err : undefined;
      const failure = ApplicationFailure.create({
        message: err.message,
        type: app?.type ?? err.name,
        nonRetryable: app?.nonRetryable ?? false,
        details: [...(app?.details ?? []), { __runbookAttempt: attempt }],
        nextRetryDelay: app?.nextRetryDelay,
        cause: app?.cause,
      });
      failure.stack = err.stack;
      throw failure;
    }
  }
}

export const stepEnvelopeInterceptor: ActivityInterceptorsFactory = (ctx) => ({ inbound: new StepEnvelopeInbound(ctx) });
