/** Every activity the worker registers, grouped by the system it touches. */
import { createArchiveActivities } from './archive';
import { createAuditActivities } from './audit';
import { createBackupActivities } from './backup';
import { createBinlogActivities } from './binlog';
import { createConsistencyActivities } from './consistency';
import type { ActivityDeps } from './deps';
import { createMysqlActivities } from './mysql';
import { createNotifyActivities, type Notifier } from './notify';
import { createPolicyActivities } from './policy';
import { createRestoreActivities } from './restore';
import { createRestoreVerifyActivities } from './restoreVerify';
import { createTrafficActivities } from './traffic';

export function createActivities(deps: ActivityDeps & { notifiers?: Notifier[] }) {
  return {
    ...createArchiveActivities(deps),
    ...createAuditActivities(deps),
    ...createBackupActivities(deps),
    ...createBinlogActivities(deps),
    ...createConsistencyActivities(deps),
    ...createMysqlActivities(deps),
    ...createPolicyActivities(deps),
    ...createRestoreActivities(deps),
    ...createRestoreVerifyActivities(deps),
    ...createTrafficActivities(deps),
    ...createNotifyActivities(deps),
  };
}

export type Activities = ReturnType<typeof createActivities>;
export type { ActivityDeps };
