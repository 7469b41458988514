/**
 * Workflow side of the step envelope (see src/shared/stepEnvelope.ts): activities called inside a
 * step, local ones too, get the step's summary for the Temporal UI and a header asking the worker
 * for the attempt number; the result is unwrapped here so runbook code sees plain values.
 */
import {
  AsyncLocalStorage,
  defaultPayloadConverter,
  type ActivityInput,
  type LocalActivityInput,
  type Next,
  type WorkflowInterceptorsFactory,
  type WorkflowOutboundCallsInterceptor,
} from '@temporalio/workflow';
import { isStepEnvelope, STEP_HEADER } from '../../core/stepEnvelope';

export interface StepFrame {
  seq: number;
  summary: string;
  /** Attempt that produced the latest activity outcome of this step. */
  attempt?: number;
}

export const stepContext = new AsyncLocalStorage<StepFrame>();

class StepOutbound implements WorkflowOutboundCallsInterceptor {
  scheduleActivity(input: ActivityInput, next: Next<WorkflowOutboundCallsInterceptor, 'scheduleActivity'>): Promise<unknown> {
    return inStep(input, (i) => next(i));
  }

  scheduleLocalActivity(input: LocalActivityInput, next: Next<WorkflowOutboundCallsInterceptor, 'scheduleLocalActivity'>): Promise<unknown> {
    return inStep(input, (i) => next(i));
  }
}

async function inStep<I extends ActivityInput | LocalActivityInput>(input: I, next: (input: I) => Promise<unknown>): Promise<unknown> {
  const frame = stepContext.getStore();
  if (!frame) return next(input);
  const result = await next({
    ...input,
    options: { ...input.options, summary: input.options.summary ?? frame.summary },
    headers: { ...input.headers, [STEP_HEADER]: defaultPayloadConverter.toPayload(frame.seq) },
  });
  if (!isStepEnvelope(result)) return result;
  frame.attempt = result.attempt;
  return result.value;
}

export const interceptors: WorkflowInterceptorsFactory = () => ({ outbound: [new StepOutbound()] });
