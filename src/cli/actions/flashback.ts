/** `runbook flashback`: undo one UPDATE/DELETE on the primary. */
import type { flashback, FlashbackInput } from '../../workflows/flashback';
import { type BadEventQuery } from '../../core/binlogEvents';
import { checkIncidentOptions, cliConfig, newIncidentId, startIncidentRunbook, verifiedCliUser, withClient, type BadEventCliOptions, type IncidentCliOptions } from './common';
import { restoreTargetOf } from './restore';

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
