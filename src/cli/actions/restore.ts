/** `runbook restore`: point-in-time recovery, and `--prune` of what earlier restores kept. */
import { getCluster } from '../../config/load';
import { gtidProblem, nameProblem, tableProblem } from '../../core/inputs';
import { temporalSettings } from '../../adapters/temporal/client';
import type { restore, RestoreInput, RestorePruneInput, RestoreTarget, restorePrune } from '../../workflows/restore';
import { compileStatementPattern } from '../../core/binlogEvents';
import { parsePointInTime, refuseFuturePoint } from '../../core/coverage';
import { formatDuration } from '../../core/format';
import { failureMessage, follow } from './follow';
import { printJson } from './output';
import { checkIncidentOptions, cliConfig, newIncidentId, startIncidentRunbook, verifiedCliUser, withClient, type BadEventCliOptions, type IncidentCliOptions } from './common';
import type { RunbookConfig } from '../../config/load';

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

/** The command as typed: `--prune`, or a recovery (its options checked against the cluster first). */
export async function restoreCommand(config: RunbookConfig, cluster: string, opts: Omit<RestoreCliOptions, 'cluster'> & { prune?: boolean; olderThan?: number }): Promise<number> {
  const c = getCluster(config, cluster);
  if (opts.prune) return pruneRestores({ cluster, olderThanDays: opts.olderThan ?? 7, as: opts.as, dryRun: opts.dryRun, json: opts.json });
  if (opts.olderThan !== undefined) throw new Error('--older-than goes with --prune');
  if (!opts.reason) throw new Error("required option '--reason <text>' not specified");
  if (opts.recoverOn && c.recovery?.name !== opts.recoverOn) {
    throw new Error(`--recover-on: ${cluster} has no recovery host "${opts.recoverOn}"; ${c.recovery ? `its recovery host is ${c.recovery.name}` : `configure clusters.${cluster}.recovery`}`);
  }
  return startRestore({ cluster, ...opts });
}
