/**
 * Every activity the worker registers, in groups by the system (or runbook) it serves. Activity
 * names are one namespace in Temporal: a name two groups define would silently override the
 * other, so the groups are merged only after checking that no name is defined twice.
 */
import { createArchiveActivities } from './archive';
import { createAuditActivities } from './audit';
import { createBackupActivities } from './backup';
import { createBinlogActivities } from './binlog';
import { createConsistencyActivities } from './consistency';
import { createFailbackActivities } from './failback';
import type { ActivityDeps } from './deps';
import { createMonitorActivities } from './monitor';
import { createMysqlActivities } from './mysql';
import { createNotifyActivities, type Notifier } from './notify';
import { createPolicyActivities } from './policy';
import { createRestoreActivities } from './restore';
import { createRestoreVerifyActivities } from './restoreVerify';
import { createRevokeActivities } from './revoke';
import { createTrafficActivities } from './traffic';

function activityGroups(deps: ActivityDeps & { notifiers?: Notifier[] }) {
  return {
    archive: createArchiveActivities(deps),
    audit: createAuditActivities(deps),
    backup: createBackupActivities(deps),
    binlog: createBinlogActivities(deps),
    mysql: createMysqlActivities(deps),
    policy: createPolicyActivities(deps),
    restore: createRestoreActivities(deps),
    restoreVerify: createRestoreVerifyActivities(deps),
    traffic: createTrafficActivities(deps),
    notify: createNotifyActivities(deps),
    revoke: createRevokeActivities(deps),
    consistency: createConsistencyActivities(deps),
    monitor: createMonitorActivities(deps),
    failback: createFailbackActivities(deps),
  };
}

export type ActivityGroup = keyof ReturnType<typeof activityGroups>;

type UnionToIntersection<U> = (U extends unknown ? (x: U) => void : never) extends (x: infer I) => void ? I : never;
type Merged<G> = UnionToIntersection<G[keyof G]>;

/** Merge activity groups into one set of activities, refusing a name that two groups define. */
export function mergeActivityGroups<G extends Record<string, Record<string, unknown>>>(groups: G): Merged<G> {
  const merged: Record<string, unknown> = {};
  const owner = new Map<string, string>();
  for (const [group, activities] of Object.entries(groups)) {
    for (const [name, fn] of Object.entries(activities)) {
      const other = owner.get(name);
      if (other) throw new Error(`activity "${name}" is defined by both the ${other} and the ${group} activities: rename one (Temporal would run only one of them)`);
      owner.set(name, group);
      merged[name] = fn;
    }
  }
  return merged as Merged<G>;
}

export function createActivities(deps: ActivityDeps & { notifiers?: Notifier[] }) {
  return mergeActivityGroups(activityGroups(deps));
}

/** The groups' names, and which group defines each activity (the registry and its test use them). */
export function activityOwners(deps: ActivityDeps): Record<string, ActivityGroup> {
  return Object.fromEntries(Object.entries(activityGroups(deps)).flatMap(([group, acts]) => Object.keys(acts).map((name) => [name, group as ActivityGroup])));
}

export type Activities = ReturnType<typeof createActivities>;
export type { ActivityDeps };
