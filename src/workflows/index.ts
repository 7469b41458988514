/** Every workflow the worker registers. */
export { healthCheck } from './healthCheck';
export { runbookStateQuery } from './runbook';
