/** `runbook restore`: the command; what it does is in actions/restore.ts, loaded when it runs. */
import { Option } from 'commander';
import type { CliContext } from './context';

export function registerRestoreCommands(ctx: CliContext): void {
  ctx.program
    .command('restore <cluster>')
    .description('point-in-time recovery into a recovery instance: just before a bad event (optionally skipping it), to a GTID or to a time')
    .option('--table <db.table>', 'the bad event touched this table')
    .option('--statement <regex>', "the bad event's statement matches this (case-insensitive, RE2 syntax, the whole statement), e.g. 'DROP TABLE'")
    .option('--not-statement <regex>', "and does not match this, e.g. --statement '^UPDATE' --not-statement 'WHERE'")
    .option('--from <time>', 'the bad event happened at or after this RFC 3339 time (with an offset: Z or +08:00)')
    .option('--to <time>', 'the bad event happened at or before this RFC 3339 time (with an offset)')
    .option('--event <gtid>', 'the bad event is this transaction: confirms one of the candidates a search listed')
    .option('--gtid <gtid>', 'recover through this transaction instead')
    .option('--at <time>', 'recover through the last transaction at or before this RFC 3339 time (with an offset) instead')
    .option('--confirm-late', "accept an --at after the end of the archived binlogs (the archive stops short of it: recovery ends at the archive's end)")
    .option('--skip', 'skip the bad event and replay everything after it')
    .addOption(new Option('--backup-kind <kind>', 'restore only from this kind of backup').choices(['logical', 'physical']))
    .addOption(new Option('--replay <method>', 'how to apply the binlogs').choices(['sql-thread', 'pipe']).default('sql-thread'))
    .addOption(new Option('--cutover <mode>', 'after verification and approval: copy the damaged tables back, or promote the recovery host').choices(['none', 'copy-tables', 'promote']).default('none'))
    .option('--recover-on <name>', "restore into the cluster's configured recovery host (wiped first) instead of a scratch instance on this host")
    .option('--compare <db.table...>', 'more tables to compare with production')
    .option('--reason <text>', 'why (goes to the audit log); required unless --prune')
    .requiredOption('--as <name>', 'who is asking (the requester; may not approve their own run)')
    .option('--incident <id>', 'incident id (default: generated); the workflow id is restore-<cluster>-<incident>')
    .option('--dry-run', 'locate the target, choose the backup, check the binlogs; change nothing')
    .option('--prune', "instead: delete what earlier restores kept (recovery datadirs, staging schemas) older than --older-than days")
    .option('--older-than <days>', 'with --prune: age in days (default 7)', (v: string) => {
      if (!/^\d{1,4}$/.test(v)) throw new Error(`--older-than must be a whole number of days, got "${v}"`);
      return Number(v);
    })
    .option('--detach', 'start it and return at once')
    .addOption(ctx.json())
    .action(async (cluster: string, opts) => {
      const { restoreCommand } = await import('./actions/restore');
      process.exitCode = await restoreCommand(await ctx.config(), cluster, opts);
    });
}
