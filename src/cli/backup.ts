/** `runbook backup`: the command; what it does is in actions/backup.ts, loaded when it runs. */
import { Option } from 'commander';
import type { CliContext } from './context';

export function registerBackupCommands(ctx: CliContext): void {
  ctx.program
    .command('backup <cluster>')
    .description('take a backup (logical, physical or both) and archive the binlogs; or schedule it')
    .addOption(new Option('--kind <kind>', 'what to take').choices(['logical', 'physical', 'both']).default('both'))
    .option('--instance <name>', 'back up this instance (default: a healthy replica, else the primary)')
    .requiredOption('--as <name>', 'who asks (logged)')
    .option('--schedule <cron>', 'create a Temporal Schedule instead, e.g. "0 3 * * *" (UTC)')
    .action(async (cluster: string, opts) => {
      await ctx.cluster(cluster);
      const { backupCommand } = await import('./actions/backup');
      process.exitCode = await backupCommand({ cluster, kind: opts.kind, instance: opts.instance, as: opts.as, schedule: opts.schedule });
    });
}
