/** `runbook failback`: the command; what it does is in actions/failback.ts, loaded when it runs. */
import { Option } from 'commander';
import type { CliContext } from './context';

export function registerFailbackCommands(ctx: CliContext): void {
  ctx.program
    .command('failback <cluster>')
    .description('bring an old primary back: read-only first, find and export what only it holds, rejoin (or refuse), catch up, prove 0 differences; --switch-back makes it the primary again')
    .requiredOption('--instance <name>', 'the returning instance (the old primary of an emergency failover, or a member left stale)')
    .option('--switch-back', 'then switch back to it (a planned switchover, refused if the primary changed meanwhile)')
    .addOption(new Option('--method <method>', 'how to bring it back; only a safer way than auto chooses is accepted').choices(['auto', 'rejoin', 'flashback', 'reseed-logical', 'reseed-physical']).default('auto'))
    .requiredOption('--reason <text>', 'why (goes to the audit log)')
    .requiredOption('--as <name>', 'who is asking (the requester; may not approve their own run)')
    .option('--incident <id>', 'incident id (default: generated); the workflow id is failback-<cluster>-<incident>')
    .option('--dry-run', 'fence nothing, change nothing: the errant analysis and the decision only')
    .option('--detach', 'start it and return at once')
    .addOption(ctx.json())
    .action(async (cluster: string, opts) => {
      await ctx.cluster(cluster);
      const { startFailback } = await import('./actions/failback');
      process.exitCode = await startFailback({ cluster, ...opts });
    });
}
