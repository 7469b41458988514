/** Every activity the worker registers, grouped by the system it touches. */
import { createAuditActivities } from './audit';
import type { ActivityDeps } from './deps';
import { createMysqlActivities } from './mysql';

export function createActivities(deps: ActivityDeps) {
  return {
    ...createAuditActivities(deps),
    ...createMysqlActivities(deps),
  };
}

export type Activities = ReturnType<typeof createActivities>;
export type { ActivityDeps };
