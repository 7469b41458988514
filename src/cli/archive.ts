/** `runbook archive …`: the commands; what they do is in actions/archive.ts, loaded when one runs. */
import type { CliContext } from './context';

export function registerArchiveCommands(ctx: CliContext): void {
  const archive = ctx.program.command('archive').description("continuous binlog archiving of a cluster's primary (what point-in-time recovery replays)");
  archive
    .command('start <cluster>')
    .description('archive the primary\'s binlogs as it writes them, following it across failovers (one per cluster; already running is fine)')
    .requiredOption('--as <name>', 'who starts it (logged)')
    .action(async (cluster: string, opts) => {
      const { archiveStartCommand } = await import('./actions/archive');
      console.log(await archiveStartCommand(await ctx.config(), cluster, opts.as));
    });
  archive
    .command('stop <cluster>')
    .description('stop continuous archiving (what was archived stays)')
    .requiredOption('--as <name>', 'who stops it (logged)')
    .action(async (cluster: string, opts) => {
      const { archiveStopCommand } = await import('./actions/archive');
      console.log(await archiveStopCommand(await ctx.config(), cluster, opts.as));
    });
  archive
    .command('status <cluster>')
    .description('how far the archive is behind the primary')
    .addOption(ctx.json())
    .action(async (cluster: string, opts) => {
      await ctx.cluster(cluster);
      const { archiveStatus, printArchiveStatus } = await import('./actions/archive');
      printArchiveStatus(await archiveStatus(cluster), Boolean(opts.json));
    });
}
