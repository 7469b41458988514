/** `runbook monitor …`, `runbook ack`, `runbook downtime`: the commands; what they do is in actions/monitor.ts. */
import type { CliContext } from './context';

export function registerMonitorCommands(ctx: CliContext): void {
  const monitor = ctx.program.command('monitor').description('continuous health checks of a cluster, automatic failover by policy, state changes in failover_log');
  monitor
    .command('start [cluster]')
    .description('start the monitor of a cluster (or of every cluster with --all); one per cluster, already running is fine')
    .option('--all', 'every cluster of the config')
    .requiredOption('--as <name>', 'who starts it (logged)')
    .action(async (cluster: string | undefined, opts) => {
      const { monitorStartCommand } = await import('./actions/monitor');
      console.log(await monitorStartCommand(await ctx.config(), { cluster, all: Boolean(opts.all), as: opts.as }));
    });
  monitor
    .command('stop [cluster]')
    .description('stop the monitor of a cluster (or of every cluster with --all); a failover it started carries on')
    .option('--all', 'every cluster of the config')
    .requiredOption('--as <name>', 'who stops it (logged)')
    .option('--reason <text>', 'why (logged)')
    .action(async (cluster: string | undefined, opts) => {
      const { monitorStopCommand } = await import('./actions/monitor');
      console.log(await monitorStopCommand(await ctx.config(), { cluster, all: Boolean(opts.all), as: opts.as, reason: opts.reason }));
    });
  monitor
    .command('status [cluster]')
    .description("what each monitor sees: verdict, primary, every instance's health, the block, downtimes")
    .addOption(ctx.json())
    .action(async (cluster: string | undefined, opts) => {
      const { monitorStatusCommand } = await import('./actions/monitor');
      process.exitCode = await monitorStatusCommand(await ctx.config(), cluster, Boolean(opts.json));
    });
  ctx.program
    .command('ack <cluster>')
    .description('acknowledge the automatic failover of a cluster: the monitor may recover it automatically again (refused while that failover runs)')
    .requiredOption('--as <name>', 'who acknowledges (logged)')
    .requiredOption('--comment <text>', 'what was checked (logged)')
    .action(async (cluster: string, opts) => {
      const { ackCommand } = await import('./actions/monitor');
      process.exitCode = await ackCommand(await ctx.config(), cluster, opts.as, opts.comment);
    });
  ctx.program
    .command('downtime <target>')
    .description('a maintenance window on a cluster or one instance: no automatic action, no alert, until it ends by itself (logged)')
    .requiredOption('--for <duration>', 'how long: 30m, 2h, 1h30m, 90s (at most 7 days)')
    .requiredOption('--reason <text>', 'why (logged)')
    .requiredOption('--as <name>', 'who sets it (logged)')
    .action(async (target: string, opts) => {
      const { downtimeCommand } = await import('./actions/monitor');
      process.exitCode = await downtimeCommand(await ctx.config(), target, { for: opts.for, reason: opts.reason, as: opts.as });
    });
}
