/** `runbook failover`: the command; what it does is in actions/failover.ts, loaded when it runs. */
import type { CliContext } from './context';

export function registerFailoverCommands(ctx: CliContext): void {
  ctx.program
    .command('failover <cluster>')
    .description('planned switchover (default) or emergency failover; follows the run until it ends')
    .option('--to <target>', 'region or instance to promote (default: the most advanced eligible replica)')
    .option('--emergency', 'the primary is down: emergency failover')
    .option('--dry-run', 'preflight only: print the plan, change nothing')
    .requiredOption('--reason <text>', 'why (goes to the audit log)')
    .requiredOption('--as <name>', 'who is asking (the requester; may not approve their own run)')
    .option('--incident <id>', 'incident id (default: generated); the workflow id is failover-<cluster>-<incident>')
    .option('--detach', 'start it and return at once')
    .addOption(ctx.json())
    .action(async (cluster: string, opts) => {
      await ctx.cluster(cluster);
      const { startFailover } = await import('./actions/failover');
      process.exitCode = await startFailover({ cluster, ...opts });
    });
}
