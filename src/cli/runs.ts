/**
 * Commands about one run, whatever its runbook: approve, reject, resume, status, unlock. What they
 * do is in actions/runs.ts (status: actions/status.ts), loaded when one runs.
 */
import type { CliContext } from './context';

export function registerRunCommands(ctx: CliContext): void {
  for (const decision of ['approve', 'reject'] as const) {
    ctx.program
      .command(`${decision} <workflowId>`)
      .description(`${decision} a runbook waiting for approval`)
      .option('--as <name>', "who you are: must be the person your OS login is (people[].login), unless the cluster allows declared identities")
      .option('--comment <text>')
      .action(async (workflowId: string, opts) => {
        process.exitCode = await (await import('./actions/runs')).decide(workflowId, decision, opts.as, opts.comment);
      });
  }

  ctx.program
    .command('resume <workflowId>')
    .description('carry on with a run that waits in needs_attention (past its point of no return), once the cause is fixed')
    .requiredOption('--as <name>', 'who resumes it (logged)')
    .option('--comment <text>', 'what was fixed (logged)')
    .action(async (workflowId: string, opts) => {
      process.exitCode = await (await import('./actions/runs')).resume(workflowId, opts.as, opts.comment);
    });

  ctx.program
    .command('status <workflowId>')
    .description('state of a runbook: steps, plan, pending approval, outcome')
    .option('--wide', 'the audit trail with every row and column (default: one line per step, 120 columns)')
    .addOption(ctx.json())
    .action(async (workflowId: string, opts) => {
      // Built on its own and run with V8's code cache (actions/codeCache.ts); Temporal's client is
      // loaded only if status hands a read over to it.
      const viaClient = async (id: string) => (await import('./actions/statusClient')).clientReader(id);
      process.exitCode = await (await import('./actions/codeCache')).runQuickCommand('status', () => import('./actions/status'), (status) =>
        status.showStatus(workflowId, Boolean(opts.json), Boolean(opts.wide), viaClient),
      );
    });

  ctx.program
    .command('unlock <cluster>')
    .description("release a cluster's runbook lock left by a run that is over (terminated, lost); <cluster>/<recovery host> releases a recovery host's")
    .requiredOption('--as <name>', 'who releases it (logged)')
    .option('--force', 'release it without asking Temporal whether the holding run is over')
    .action(async (cluster: string, opts) => {
      const { unlockCommand } = await import('./actions/runs');
      console.log(await unlockCommand(await ctx.config(), cluster, opts.as, Boolean(opts.force)));
    });
}
