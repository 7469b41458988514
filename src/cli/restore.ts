/** `runbook restore`: point-in-time recovery, and `--prune` of what earlier restores kept. */
import { getCluster } from '../config/load';
import { gtidProblem, nameProblem, tableProblem } from '../core/inputs';
import { temporalSettings } from '../adapters/temporal/client';
import type { restore, RestoreInput, RestorePruneInput, RestoreTarget, restorePrune } from '../workflows/restore';
import { compileStatementPattern } from '../core/binlogEvents';
import { parsePointInTime, refuseFuturePoint } from '../core/coverage';
import { formatDuration } from '../core/format';
import { failureMessage, follow } from './follow';
import { printJson } from './output';
import { checkIncidentOptions, cliConfig, newIncidentId, startIncidentRunbook, verifiedCliUser, withClient, type BadEventCliOptions, type IncidentCliOptions } from './common';
import { Option } from 'commander';
import type { CliContext } from './context';

export interface RestoreCliOptions extends IncidentCliOptions, BadEventCliOptions {
  gtid?: string;
  at?: string;
  /** Accept an `--at` after the archive's end (recovery then stops at the end of the archive). */
  confirmLate?: boolean;
  skip?: boolean;
  backupKind?: 'logical' | 'physical';
  replay?: 'sql-thread' | 'pipe';
  cutover?: 'none' | 'copy-tables' | 'promote';
  recoverOn?: string;
  compare?: string[];
}

/** What the options name as the recovery target: exactly one of an event, a GTID, a point in time. */
export function restoreTargetOf(o: RestoreCliOptions, nowMs = Date.now()): RestoreTarget {
  const event = o.table || o.statement || o.notStatement || o.from || o.to || o.event;
  const given = [event ? 'an event' : '', o.gtid ? '--gtid' : '', o.at ? '--at' : ''].filter(Boolean);
  if (given.length !== 1) throw new Error(`name exactly one target: an event (--table/--statement, --from/--to, --event), --gtid or --at${given.length ? `; got ${given.join(' and ')}` : ''}`);
  const format = [
    tableProblem('--table', o.table),
    gtidProblem('--event', o.event),
    gtidProblem('--gtid', o.gtid),
    ...(o.compare ?? []).map((t) => tableProblem('--compare', t, { qualified: true })),
    nameProblem('--recover-on', o.recoverOn),
  ].find(Boolean);
  if (format) throw new Error(format);
  if (o.gtid) return { kind: 'gtid', gtid: o.gtid };
  if (o.at) {
    // Refused here, in one line, before anything starts.
    refuseFuturePoint(parsePointInTime(o.at, '--at'), nowMs, '--at');
    return { kind: 'time', at: o.at, ...(o.confirmLate ? { confirmLate: true } : {}) };
  }
  if (o.statement) compileStatementPattern(o.statement, '--statement');
  if (o.notStatement) compileStatementPattern(o.notStatement, '--not-statement');
  return {
    kind: 'before-event',
    event: {
      table: o.table, statement: o.statement, ...(o.notStatement ? { statementNot: o.notStatement } : {}),
      from: o.from ? parsePointInTime(o.from, '--from') : undefined, to: o.to ? parsePointInTime(o.to, '--to') : undefined,
      ...(o.event ? { gtid: o.event } : {}),
    },
  };
}

/** Start a point-in-time recovery and (unless detached) follow it; returns the exit code. */
export async function startRestore(o: RestoreCliOptions): Promise<number> {
  checkIncidentOptions(o);
  const target = restoreTargetOf(o);
  const { config, configFingerprint } = cliConfig();
  const requester = verifiedCliUser(config, o.cluster, o.as);
  return withClient(async (c) => {
    const incidentId = o.incident ?? newIncidentId();
    const input: RestoreInput = {
      cluster: o.cluster, target, skip: o.skip, backupKind: o.backupKind, replayMethod: o.replay, cutover: o.cutover, recoverOn: o.recoverOn, compare: o.compare,
      requester, reason: o.reason, incidentId, dryRun: o.dryRun, configFingerprint,
    };
    return startIncidentRunbook<typeof restore>(c, {
      type: 'restore',
      workflowId: `restore-${o.cluster}-${incidentId}`,
      input,
      cluster: o.cluster,
      incidentId,
      summary: `restore ${o.cluster} (${target.kind}${o.skip ? ', skip' : ''}${o.dryRun ? ', dry run' : ''}) by ${requester}`,
      options: { ...o, as: requester },
      print: (result) => {
        console.log(`\n${result.status}: ${result.target.description}`);
        console.log(`backup ${result.backupId}${result.recoveryPoint ? `; recovered to ${result.recoveryPoint}` : ''}`);
        for (const t of result.verification?.tables ?? []) console.log(`  ${t.table}: ${t.note}`);
        for (const t of result.cutover?.tables ?? []) console.log(`  cut over ${t.table}: ${t.action}`);
        if (result.promotion) console.log(`  ${result.promotion.promoted} is the primary now; reseed ${result.promotion.needReseed.join(', ')} from it`);
        for (const p of result.phases) console.log(`  ${p.step}: ${formatDuration(p.ms)}`);
      },
    });
  });
}

/** `restore <cluster> --prune`: what earlier restores kept, older than N days, removed (audited). */
export async function pruneRestores(o: { cluster: string; olderThanDays: number; as: string; dryRun?: boolean; json?: boolean }): Promise<number> {
  return withClient(async (c) => {
    const { taskQueue } = temporalSettings();
    const input: RestorePruneInput = { cluster: o.cluster, olderThanDays: o.olderThanDays, requester: o.as, dryRun: o.dryRun };
    const workflowId = `restore-prune-${o.cluster}-${newIncidentId().slice(4)}`;
    const handle = await c.workflow.start<typeof restorePrune>('restorePrune', { taskQueue, workflowId, args: [input], staticSummary: `prune restores of ${o.cluster} older than ${o.olderThanDays} day(s) by ${o.as}` });
    try {
      const r = (await follow(handle, (line) => console.error(line))) as Awaited<ReturnType<typeof restorePrune>>;
      if (o.json) printJson(r);
      else {
        const verb = o.dryRun ? 'would delete' : 'deleted';
        for (const d of r.directories) console.log(`${verb} ${d.path} (${d.ageDays} day(s) old, ${Math.round(d.bytes / 1048576)} MiB)`);
        for (const s of r.schemas) console.log(`${verb} staging schema ${s}`);
        for (const k of r.kept) console.log(`kept ${k}`);
        if (!r.directories.length && !r.schemas.length) console.log(`nothing older than ${o.olderThanDays} day(s)`);
      }
      return 0;
    } catch (err) {
      console.error(`runbook: ${workflowId} failed: ${failureMessage(err)}`);
      return 1;
    }
  });
}

/** The command(s), on the program. */
export function registerRestoreCommands(ctx: CliContext): void {
  ctx.program
    .command('restore <cluster>')
    .description('point-in-time recovery into a recovery instance: just before a bad event (optionally skipping it), to a GTID or to a time')
    .option('--table <db.table>', 'the bad event touched this table')
    .option('--statement <regex>', "the bad event's statement matches this (case-insensitive, RE2 syntax, the whole statement), e.g. 'DROP TABLE'")
    .option('--not-statement <regex>', "and does not match this, e.g. --statement '^UPDATE' --not-statement 'WHERE'")
    .option('--from <time>', 'the bad event happened at or after this RFC 3339 time (with an offset: Z or +08:00)')
    .option('--to <time>', 'the bad event happened at or before this RFC 3339 time (with an offset)')
    .option('--event <gtid>', 'the bad event is this transaction: confirms one of the candidates a search listed')
    .option('--gtid <gtid>', 'recover through this transaction instead')
    .option('--at <time>', 'recover through the last transaction at or before this RFC 3339 time (with an offset) instead')
    .option('--confirm-late', "accept an --at after the end of the archived binlogs (the archive stops short of it: recovery ends at the archive's end)")
    .option('--skip', 'skip the bad event and replay everything after it')
    .addOption(new Option('--backup-kind <kind>', 'restore only from this kind of backup').choices(['logical', 'physical']))
    .addOption(new Option('--replay <method>', 'how to apply the binlogs').choices(['sql-thread', 'pipe']).default('sql-thread'))
    .addOption(new Option('--cutover <mode>', 'after verification and approval: copy the damaged tables back, or promote the recovery host').choices(['none', 'copy-tables', 'promote']).default('none'))
    .option('--recover-on <name>', "restore into the cluster's configured recovery host (wiped first) instead of a scratch instance on this host")
    .option('--compare <db.table...>', 'more tables to compare with production')
    .option('--reason <text>', 'why (goes to the audit log); required unless --prune')
    .requiredOption('--as <name>', 'who is asking (the requester; may not approve their own run)')
    .option('--incident <id>', 'incident id (default: generated); the workflow id is restore-<cluster>-<incident>')
    .option('--dry-run', 'locate the target, choose the backup, check the binlogs; change nothing')
    .option('--prune', "instead: delete what earlier restores kept (recovery datadirs, staging schemas) older than --older-than days")
    .option('--older-than <days>', 'with --prune: age in days (default 7)', (v: string) => {
      if (!/^\d{1,4}$/.test(v)) throw new Error(`--older-than must be a whole number of days, got "${v}"`);
      return Number(v);
    })
    .option('--detach', 'start it and return at once')
    .addOption(ctx.json())
    .action(async (cluster: string, opts) => {
      const c = getCluster(ctx.config(), cluster);
      if (opts.prune) {
        process.exitCode = await pruneRestores({ cluster, olderThanDays: opts.olderThan ?? 7, as: opts.as, dryRun: opts.dryRun, json: opts.json });
        return;
      }
      if (opts.olderThan !== undefined) throw new Error('--older-than goes with --prune');
      if (!opts.reason) throw new Error("required option '--reason <text>' not specified");
      if (opts.recoverOn && c.recovery?.name !== opts.recoverOn) {
        throw new Error(`--recover-on: ${cluster} has no recovery host "${opts.recoverOn}"; ${c.recovery ? `its recovery host is ${c.recovery.name}` : `configure clusters.${cluster}.recovery`}`);
      }
      process.exitCode = await startRestore({ cluster, ...opts });
    });
}
