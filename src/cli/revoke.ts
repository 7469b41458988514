/** `runbook revoke`: the command; what it does is in actions/revoke.ts, loaded when it runs. */
import type { CliContext } from './context';

export function registerRevokeCommands(ctx: CliContext): void {
  ctx.program
    .command('revoke <cluster>')
    .description('contain a grant mistake: revoke (rewriting broad grants), optionally lock, end the sessions on every instance, verify; report who accessed what; or --undo an incident')
    .option('--object <db.table,...>', 'the sensitive table(s)')
    .option('--accounts <pattern>', "the exposed accounts to contain: a LIKE pattern on the user, or on user@host ('staff_%'); default every exposed account")
    .option('--lock', 'ACCOUNT LOCK the contained accounts too')
    .option('--grants-file <yaml>', 'converge these accounts to exactly the declared grants afterwards')
    .option('--since <time>', 'access report from this RFC 3339 time (with an offset)')
    .option('--until <time>', 'access report until this RFC 3339 time (default: now)')
    .option('--undo <incident>', "restore that incident's snapshot exactly (after approval)")
    .requiredOption('--reason <text>', 'why (goes to the audit log)')
    .requiredOption('--as <name>', 'who is asking (the requester; may not approve their own run)')
    .option('--incident <id>', 'incident id (default: generated); the workflow id is revoke-<cluster>-<incident>')
    .option('--dry-run', 'assess and plan; change nothing')
    .option('--detach', 'start it and return at once')
    .addOption(ctx.json())
    .action(async (cluster: string, opts) => {
      await ctx.cluster(cluster);
      const { startRevoke } = await import('./actions/revoke');
      process.exitCode = await startRevoke({ cluster, ...opts });
    });
}
