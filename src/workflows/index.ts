/** Every workflow the worker registers. */
export { healthCheck } from './healthCheck';
export { runbookStateQuery } from './runbook';
export { failover } from './failover';
export { approveSignal, rejectSignal, decideUpdate } from './approval';
export { backup } from './backup';
export { restore, restorePrune } from './restore';
export { flashback } from './flashback';
export { binlogArchive } from './binlogArchive';
export { consistency } from './consistency';
