/** Every workflow the worker registers. */
export { healthCheck } from './healthCheck';
export { failover } from './failover';
export { backup } from './backup';
export { restore, restorePrune } from './restore';
export { flashback } from './flashback';
export { binlogArchive } from './binlogArchive';
export { revoke, revokeUndo } from './revoke';
export { consistency } from './consistency';
export { monitor } from './monitor';
export { failback } from './failback';
