/** `runbook flashback`: undo one UPDATE/DELETE on the primary. */
import { getCluster } from '../config/load';
import type { flashback, FlashbackInput } from '../workflows/flashback';
import { type BadEventQuery } from '../core/binlogEvents';
import { checkIncidentOptions, cliConfig, newIncidentId, startIncidentRunbook, verifiedCliUser, withClient, type BadEventCliOptions, type IncidentCliOptions } from './common';
import { restoreTargetOf } from './restore';
import type { CliContext } from './context';

export type FlashbackCliOptions = IncidentCliOptions & BadEventCliOptions;

/** The bad event the options name (table, statement pattern, window with zoned times), as restore reads them. */
export function flashbackEventOf(o: FlashbackCliOptions): BadEventQuery {
  if (!o.table && !o.statement && !o.notStatement && !o.from && !o.to && !o.event) throw new Error('name the bad event: --table and/or --statement, optionally --from/--to, or --event <gtid>');
  const target = restoreTargetOf({ cluster: o.cluster, table: o.table, statement: o.statement, notStatement: o.notStatement, from: o.from, to: o.to, event: o.event, reason: o.reason, as: o.as });
  if (target.kind !== 'before-event') throw new Error('flashback undoes one located event: name it with --table/--statement, --from/--to');
  return target.event;
}

/** Undo one UPDATE/DELETE by flashback after approval, and (unless detached) follow it; returns the exit code. */
export async function startFlashback(o: FlashbackCliOptions): Promise<number> {
  checkIncidentOptions(o);
  const event = flashbackEventOf(o);
  const { config, configFingerprint } = cliConfig();
  const requester = verifiedCliUser(config, o.cluster, o.as);
  return withClient(async (c) => {
    const incidentId = o.incident ?? newIncidentId();
    const input: FlashbackInput = { cluster: o.cluster, event, requester, reason: o.reason, incidentId, dryRun: o.dryRun, configFingerprint };
    return startIncidentRunbook<typeof flashback>(c, {
      type: 'flashback',
      workflowId: `flashback-${o.cluster}-${incidentId}`,
      input,
      cluster: o.cluster,
      incidentId,
      summary: `flashback ${o.cluster}${o.table ? ` ${o.table}` : ''}${o.dryRun ? ' (dry run)' : ''} by ${requester}`,
      options: { ...o, as: requester },
      print: (result) => {
        const e = result.event;
        console.log(`\n${result.status}: ${e.gtid} at ${e.file}:${e.startPosition}: ${e.statements[0] ?? e.kind}`);
        const tables = result.check.tables.join(', ');
        if (result.flashbackGtid) console.log(`undone by ${result.flashbackGtid} on ${result.check.primary}: ${result.rows} row(s) of ${tables}`);
        else console.log(`${result.rows} row(s) of ${tables} would be written back (${result.check.bytes} bytes of flashback); ${result.check.conflicts.transactionsRead} later transaction(s) checked, none touch them`);
        if (result.verification) console.log(`verified: ${result.verification.note}`);
      },
    });
  });
}

/** The command(s), on the program. */
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
      getCluster(ctx.config(), cluster);
      process.exitCode = await startFlashback({ cluster, ...opts });
    });
}
