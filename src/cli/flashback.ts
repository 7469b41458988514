/** `runbook flashback`: the command; what it does is in actions/flashback.ts, loaded when it runs. */
import type { CliContext } from './context';

export function registerFlashbackCommands(ctx: CliContext): void {
  ctx.program
    .command('flashback <cluster>')
    .description('undo one UPDATE/DELETE by mariadb-binlog --flashback on the primary, after approval (refused for DDL, statement format, partial images, later writes to the same rows)')
    .option('--table <db.table>', 'the bad event touched this table')
    .option('--statement <regex>', "the bad event's statement matches this (case-insensitive, RE2 syntax, the whole statement), e.g. '^UPDATE'")
    .option('--not-statement <regex>', "and does not match this, e.g. --statement '^UPDATE' --not-statement 'WHERE'")
    .option('--from <time>', 'the bad event happened at or after this RFC 3339 time (with an offset: Z or +08:00)')
    .option('--to <time>', 'the bad event happened at or before this RFC 3339 time (with an offset)')
    .option('--event <gtid>', 'the bad event is this transaction: confirms one of the candidates a search listed')
    .requiredOption('--reason <text>', 'why (goes to the audit log)')
    .requiredOption('--as <name>', 'who is asking (the requester; may not approve their own run)')
    .option('--incident <id>', 'incident id (default: generated); the workflow id is flashback-<cluster>-<incident>')
    .option('--dry-run', 'locate the event and check flashback is possible; change nothing')
    .option('--detach', 'start it and return at once')
    .addOption(ctx.json())
    .action(async (cluster: string, opts) => {
      await ctx.cluster(cluster);
      const { startFlashback } = await import('./actions/flashback');
      process.exitCode = await startFlashback({ cluster, ...opts });
    });
}
