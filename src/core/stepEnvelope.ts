/**
 * How the attempt number of a step's activity reaches the audit log. Temporal tells the workflow
 * only an activity's final result, not how many attempts it took; the worker-side interceptor
 * wraps the result (or the final failure's details) with the attempt, and the workflow-side
 * interceptor unwraps it before runbook code sees it. Only activities called inside a step (marked
 * by a header) are wrapped, so anything else sees plain values. Workflow-safe.
 */
export const STEP_HEADER = 'runbook-step';

export interface StepEnvelope {
  __runbookStep: 1;
  value: unknown;
  attempt: number;
}

export interface AttemptDetail {
  __runbookAttempt: number;
}

export function isStepEnvelope(v: unknown): v is StepEnvelope {
  return typeof v === 'object' && v !== null && (v as StepEnvelope).__runbookStep === 1;
}

export function attemptFromDetails(details: readonly unknown[] | undefined | null): number | undefined {
  const d = details?.find((x): x is AttemptDetail => typeof x === 'object' && x !== null && '__runbookAttempt' in x);
  return d?.__runbookAttempt;
}
