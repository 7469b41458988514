/**
 * The runbooks, in one list. Each names its workflow types (exported by src/workflows/index.ts,
 * which the worker bundles), the activity groups it uses (src/activities/index.ts), and how its
 * commands join the CLI (loaded lazily: `runbook --help` must answer at once). The worker, the CLI
 * and the README's command table follow it (test/unit/registry.test.ts checks that they do).
 *
 * Adding a runbook: src/workflows/<name>.ts, src/activities/<name>.ts (a group in
 * activities/index.ts), src/cli/<name>.ts, and one entry here. See src/workflows/README.md.
 */
import type { ActivityGroup } from './activities';
import type { CliContext } from './cli/context';

export interface RunbookEntry {
  /** The runbook's name, as audit rows and search attributes carry it (`RunbookType`). */
  name: string;
  /** Its workflow types (the functions src/workflows/index.ts exports). */
  workflows: string[];
  /** The activity groups it calls, besides the ones every runbook uses (audit, notify, policy). */
  activities: ActivityGroup[];
  /** The CLI commands it adds (top-level names), and how to add them. */
  commands: string[];
  cli?: () => Promise<(ctx: CliContext) => void>;
}

/** Every runbook uses these: the step helper's audit, notifications, the cluster's policy. */
export const COMMON_ACTIVITY_GROUPS: ActivityGroup[] = ['audit', 'notify', 'policy'];

export const RUNBOOKS: RunbookEntry[] = [
  {
    name: 'failover',
    workflows: ['failover'],
    activities: ['mysql', 'traffic'],
    commands: ['failover'],
    cli: async () => (await import('./cli/failover')).registerFailoverCommands,
  },
  { name: 'health-check', workflows: ['healthCheck'], activities: ['mysql'], commands: [] },
  {
    name: 'backup',
    workflows: ['backup'],
    activities: ['backup', 'mysql'],
    commands: ['backup'],
    cli: async () => (await import('./cli/backup')).registerBackupCommands,
  },
  {
    name: 'binlog-archive',
    workflows: ['binlogArchive'],
    activities: ['archive'],
    commands: ['archive'],
    cli: async () => (await import('./cli/archive')).registerArchiveCommands,
  },
  {
    name: 'restore',
    workflows: ['restore', 'restorePrune'],
    activities: ['binlog', 'restore', 'restoreVerify', 'backup', 'mysql', 'traffic'],
    commands: ['restore'],
    cli: async () => (await import('./cli/restore')).registerRestoreCommands,
  },
  {
    name: 'flashback',
    workflows: ['flashback'],
    activities: ['binlog', 'mysql'],
    commands: ['flashback'],
    cli: async () => (await import('./cli/flashback')).registerFlashbackCommands,
  },
  {
    name: 'revoke',
    workflows: ['revoke', 'revokeUndo'],
    activities: ['revoke'],
    commands: ['revoke'],
    cli: async () => (await import('./cli/revoke')).registerRevokeCommands,
  },
  {
    name: 'consistency',
    workflows: ['consistency'],
    activities: ['consistency'],
    commands: ['consistency', 'consistency-report'],
    cli: async () => (await import('./cli/consistency')).registerConsistencyCommands,
  },
  {
    name: 'monitor',
    workflows: ['monitor'],
    activities: ['monitor'],
    commands: ['monitor', 'ack', 'downtime'],
    cli: async () => (await import('./cli/monitor')).registerMonitorCommands,
  },
  {
    name: 'failback',
    workflows: ['failback'],
    activities: ['failback', 'mysql', 'traffic', 'backup', 'consistency'],
    commands: ['failback'],
    cli: async () => (await import('./cli/failback')).registerFailbackCommands,
  },
];
