/** CLI commands that start and steer runbooks through Temporal. */
import { userInfo } from 'node:os';
import { ScheduleOverlapPolicy, WorkflowIdReusePolicy, WorkflowNotFoundError, type Client } from '@temporalio/client';
import type { BackupInput, BackupResult } from '../workflows/backup';
import { cliIdentityPolicyOf, clusterPolicyOf } from '../activities/policy';
import { failoverHistory, withControl } from '../control/store';
import { probeTopology } from '../mysql/probe';
import { lastKnownPrimary } from '../shared/failedPrimary';
import { describePlan, planSwitchover } from '../shared/plan';
import { loadConfig, configPathFromEnv, getCluster, type RunbookConfig } from '../config/load';
import { configFingerprint } from '../config/fingerprint';
import { cliIdentity } from '../shared/identity';
import { gtidProblem, identityProblem, incidentIdProblem, INPUT_LIMITS, nameProblem, tableProblem, textProblem } from '../shared/inputs';
import { sendDecision } from '../temporal/decision';
import { Cluster, IncidentId, Operator, RunbookType } from '../shared/searchAttributes';
import { connectClient, temporalSettings } from '../temporal/client';
import type { FailoverInput, FailoverResult } from '../workflows/failover';
import type { RestoreInput, RestorePruneInput, RestoreResult, RestoreTarget, restorePrune } from '../workflows/restore';
import type { FlashbackInput, FlashbackResult } from '../workflows/flashback';
import { compileStatementPattern, type BadEventQuery } from '../backup/binlogEvents';
import { parsePointInTime, refuseFuturePoint } from '../backup/coverage';
import { formatDuration } from '../shared/format';
import type { Attention, ResumeVerdict } from '../workflows/runbook';
import { describeApproval, describeAttention, failureMessage, follow, queryRunbookState, workerPresent } from './follow';
import { printHistory, printJson } from './output';
import type { ApprovalState } from '../workflows/approval';

/** The OS login of whoever runs this CLI: what a CLI identity is verified with. */
export function osLogin(): string | undefined {
  try {
    return userInfo().username;
  } catch {
    return undefined; // no passwd entry for this uid: then there is no login to map
  }
}

/**
 * Who the CLI user is on `cluster`: the person their OS login maps to (people[].login); `--as`
 * must name that person unless the cluster allows declared identities. Refused in one line.
 */
export function verifiedCliUser(config: RunbookConfig, cluster: string, as: string | undefined): string {
  const problem = identityProblem('--as', as);
  if (problem) throw new Error(problem);
  const who = cliIdentity(cliIdentityPolicyOf(getCluster(config, cluster)), osLogin(), as);
  if (!who.ok) throw new Error(who.refusal);
  return who.identity;
}

/** The bounds of what every incident command takes, checked before anything starts. */
function checkIncidentOptions(o: IncidentCliOptions, more: (string | undefined)[] = []): void {
  const problem = [
    textProblem('--reason', o.reason, INPUT_LIMITS.reason, { required: true }),
    identityProblem('--as', o.as, { required: true }),
    incidentIdProblem('--incident', o.incident),
    ...more,
  ].find(Boolean);
  if (problem) throw new Error(problem);
}

/** The config this CLI was given, and its fingerprint for the worker to compare with its own. */
export function cliConfig(): { config: RunbookConfig; configFingerprint: string } {
  const config = loadConfig(configPathFromEnv());
  return { config, configFingerprint: configFingerprint(config) };
}

export function newIncidentId(): string {
  return `INC-${new Date().toISOString().replace(/[-:T]/g, '').slice(0, 14)}`;
}

export function failoverWorkflowId(cluster: string, incidentId: string): string {
  return `failover-${cluster}-${incidentId}`;
}

/** What every incident runbook's command takes (failover, restore, flashback). */
export interface IncidentCliOptions {
  cluster: string;
  reason: string;
  as: string;
  incident?: string;
  dryRun?: boolean;
  detach?: boolean;
  json?: boolean;
}

/** How a bad event is named on the command line (restore's and flashback's). */
export interface BadEventCliOptions {
  table?: string;
  statement?: string;
  notStatement?: string;
  from?: string;
  to?: string;
  /** The event's GTID, confirming one of the candidates an ambiguous search listed. */
  event?: string;
}

export interface FailoverCliOptions extends IncidentCliOptions {
  to?: string;
  emergency?: boolean;
}

async function withClient<T>(fn: (c: Client) => Promise<T>): Promise<T> {
  const client = await connectClient();
  try {
    return await fn(client);
  } finally {
    await client.connection.close();
  }
}

/**
 * `region-a → region-b` for the run's static summary in the Temporal UI, from the CLI's own look at
 * the topology. Only a label: the workflow's preflight decides, and may decide otherwise.
 */
async function intendedRoute(o: FailoverCliOptions, mode: 'planned' | 'emergency'): Promise<string> {
  try {
    const config = loadConfig(configPathFromEnv());
    const topology = await probeTopology(config, o.cluster);
    const regionOf = (name: string) => topology.instances.find((i) => i.instance === name)?.region ?? name;
    if (mode === 'planned') {
      const r = planSwitchover(topology, clusterPolicyOf(config, { cluster: o.cluster, runbook: 'failover', mode }), o.to);
      if (r.ok) return `${r.plan.from.region} → ${r.plan.to.region} `;
    } else {
      const failed = lastKnownPrimary(topology);
      if (failed.ok) return `${regionOf(failed.primary)} → ${o.to ?? '?'} `;
    }
  } catch {
    /* the label is best effort */
  }
  return o.to ? `→ ${o.to} ` : '';
}

/** Start a failover and (unless detached) follow it; returns the exit code. */
export async function startFailover(o: FailoverCliOptions, client?: Client): Promise<number> {
  checkIncidentOptions(o, [nameProblem('--to', o.to)]);
  const { config, configFingerprint } = cliConfig();
  const requester = verifiedCliUser(config, o.cluster, o.as);
  const run = async (c: Client) => {
    const incidentId = o.incident ?? newIncidentId();
    const mode = o.emergency ? 'emergency' : 'planned';
    const input: FailoverInput = { cluster: o.cluster, mode, target: o.to, reason: o.reason, requester, incidentId, dryRun: o.dryRun, configFingerprint };
    return startIncidentRunbook<FailoverResult>(c, {
      type: 'failover',
      workflowId: failoverWorkflowId(o.cluster, incidentId),
      input,
      cluster: o.cluster,
      incidentId,
      summary: `failover ${o.cluster}: ${await intendedRoute(o, mode)}(${mode}${o.dryRun ? ', dry run' : ''}) by ${requester}`,
      options: { ...o, as: requester },
      print: (result) => {
        if (result.status === 'dry_run') console.log(`\n${describePlan(result.plan)}`);
        console.log(`\n${result.status}: ${result.plan.from.instance} (${result.plan.from.region}) → ${result.plan.to.instance} (${result.plan.to.region})`);
      },
    });
  };
  return client ? run(client) : withClient(run);
}

/**
 * Approve or reject through the `decide` update: the verdict (accepted or why not) comes back at
 * once. The decision carries the OS login; the run's approval gate decides who that is (and
 * whether a `--as` naming someone else counts), with the worker's own policy.
 */
export async function decide(workflowId: string, decision: 'approve' | 'reject', as: string | undefined, comment?: string): Promise<number> {
  const problem = [textProblem('workflow id', workflowId, INPUT_LIMITS.workflowId, { required: true }), identityProblem('--as', as), textProblem('--comment', comment, INPUT_LIMITS.comment)].find(Boolean);
  if (problem) throw new Error(problem);
  return withClient(async (c) => {
    const verdict = await sendDecision(c, workflowId, { decision, approver: as, channel: 'cli', login: osLogin(), comment });
    if (!verdict.accepted) {
      console.error(`runbook: ${decision} refused: ${verdict.reason}`);
      return 1;
    }
    // Who it was recorded as is the run's to say (the OS login, or a declared --as where allowed).
    const state = await queryRunbookState(c.workflow.getHandle(workflowId)).catch(() => undefined);
    const recorded = (state?.details.approval as ApprovalState | undefined)?.decisions.filter((d) => d.accepted).at(-1);
    const who = recorded?.identity ? ` as ${recorded.identity} (${recorded.verifiedBy})` : as ? ` as ${as}` : '';
    console.log(`${decision === 'approve' ? 'approved' : 'rejected'} ${workflowId}${who}`);
    return 0;
  });
}

/**
 * Carry on with a run waiting in needs_attention (the `resume` update): the verdict comes back at
 * once. Idempotent: a run that is not waiting refuses, and says why; every answer is logged.
 */
export async function resume(workflowId: string, operator: string, comment?: string): Promise<number> {
  return withClient(async (c) => {
    const handle = c.workflow.getHandle(workflowId);
    const { status } = await handle.describe().catch((err) => {
      if (err instanceof WorkflowNotFoundError) throw new Error(`no runbook ${workflowId}`);
      throw err;
    });
    if (status.name !== 'RUNNING') {
      const reason = `${workflowId} is over (${status.name}): nothing to resume`;
      // The run can no longer log it: the refusal goes to failover_log from here, as unlock's do.
      await withControl(loadConfig(configPathFromEnv()), (conn) =>
        conn.query("INSERT INTO failover_log (status, runbook, step, operator, workflow_id, detail) VALUES ('refused', 'cli', ?, ?, ?, ?)", [
          `resume by ${operator} via cli`, operator, workflowId, JSON.stringify({ reason, comment }),
        ]),
      ).catch((err: Error) => console.error(`warning: the refusal is not in failover_log: ${err.message.split('\n')[0]}`));
      console.error(`runbook: resume refused: ${reason}`);
      return 1;
    }
    const verdict = await handle.executeUpdate<ResumeVerdict, [unknown]>('resume', { args: [{ operator, channel: 'cli', comment }] });
    if (!verdict.accepted) {
      console.error(`runbook: resume refused: ${verdict.reason}`);
      return 1;
    }
    console.log(`resumed ${workflowId} as ${operator}: the step that stopped it is tried again`);
    return 0;
  });
}

/** The first line of an error, for a one-line report. */
const oneLine = (err: unknown) => (err instanceof Error ? err.message : String(err)).split('\n')[0]!;

/**
 * The state of a run: Temporal's status, the run's own (query), its failover_log trail. What could
 * not be read is said, one line each on stderr, and makes the exit code 1: an unanswered query or
 * an unreachable control database is never shown as "no state, empty history".
 */
export async function showStatus(workflowId: string, json: boolean): Promise<number> {
  return withClient(async (c) => {
    const handle = c.workflow.getHandle(workflowId);
    const description = await handle.describe().catch((err) => {
      if (err instanceof WorkflowNotFoundError) throw new Error(`no runbook ${workflowId}`);
      throw err;
    });
    const errors: string[] = [];
    const state = await queryRunbookState(handle).catch((err) => void errors.push(`cannot query the run's state: ${oneLine(err)}`));
    const rows = await withControl(loadConfig(configPathFromEnv()), (conn) => failoverHistory(conn, { workflowId, pageSize: 200 })).catch(
      (err) => void errors.push(`cannot read failover_log from the control database: ${oneLine(err)}`),
    );
    if (json) {
      printJson({ workflowId, runId: description.runId, status: description.status.name, state: state ?? null, log: rows ?? null, errors });
    } else {
      console.log(`${workflowId}: ${description.status.name}${state ? ` (${state.status}${state.currentStep ? `, now: ${state.currentStep}` : ''})` : ''}`);
      const approval = state?.details.approval as ApprovalState | undefined;
      if (approval?.status === 'pending') console.log(describeApproval(workflowId, approval, state!.details.plan));
      const attention = state?.details.attention as Attention | undefined;
      if (attention) console.log(describeAttention(workflowId, attention));
      if (state?.auditPending) console.log(`${state.auditPending} audit row(s) waiting for the control database`);
      for (const p of state?.auditProblems ?? []) console.log(`audit row #${p.stepSeq} ${p.step} (${p.status}) ${p.problem === 'truncated' ? 'stored cut to fit' : 'NOT stored as written'}: ${p.detail}`);
      if (rows) printHistory(rows.reverse(), 1);
    }
    for (const e of errors) console.error(`runbook: ${e}`);
    return errors.length ? 1 : 0;
  });
}

export interface BackupCliOptions {
  cluster: string;
  kind: 'logical' | 'physical' | 'both';
  instance?: string;
  as: string;
  schedule?: string;
}

/** Take a backup now (following it), or register a Temporal Schedule that takes it by cron. */
export async function backupCommand(o: BackupCliOptions): Promise<number> {
  const problem = [identityProblem('--as', o.as, { required: true }), nameProblem('--instance', o.instance), textProblem('--schedule', o.schedule, 100)].find(Boolean);
  if (problem) throw new Error(problem);
  const { config, configFingerprint } = cliConfig();
  const requester = verifiedCliUser(config, o.cluster, o.as);
  return withClient(async (c) => {
    const { taskQueue } = temporalSettings();
    // A schedule runs with whatever config the worker has when it fires: it carries no fingerprint.
    const input: BackupInput = {
      cluster: o.cluster, kind: o.kind, instance: o.instance, requester, reason: o.schedule ? `scheduled (${o.schedule})` : 'on demand',
      ...(o.schedule ? {} : { configFingerprint }),
    };
    if (o.schedule) {
      const scheduleId = `backup-${o.cluster}-${o.kind}`;
      await c.schedule.create({
        scheduleId,
        spec: { cronExpressions: [o.schedule] },
        action: { type: 'startWorkflow', workflowType: 'backup', args: [input], taskQueue, workflowId: scheduleId },
        // A backup still running when the next is due is not doubled up.
        policies: { overlap: ScheduleOverlapPolicy.SKIP },
      });
      console.log(`schedule ${scheduleId} created: ${o.schedule} (UTC); see it in the Temporal UI under Schedules`);
      return 0;
    }
    const workflowId = `backup-${o.cluster}-${newIncidentId().slice(4)}`;
    if (!(await workerPresent(c, taskQueue))) console.error(`warning: no worker polls task queue "${taskQueue}"; start one with: bin/runbook worker`);
    const handle = await c.workflow.start('backup', { taskQueue, workflowId, args: [input], staticSummary: `backup ${o.cluster} (${o.kind}) by ${requester}` });
    console.error(`started ${workflowId}`);
    try {
      const result = await follow<BackupResult>(handle, (line) => console.error(line));
      for (const m of result.manifests) console.log(`${m.kind} backup ${m.id} of ${m.instance}: GTID ${m.gtid || '(empty)'}, ${m.binlog.file}:${m.binlog.position}, ${m.sizeBytes} bytes, sha256 ${m.sha256.slice(0, 12)}…`);
      console.log(`${result.binlogs.length} binlog file(s) archived`);
      return 0;
    } catch (err) {
      console.error(`runbook: ${workflowId} failed: ${failureMessage(err)}`);
      return 1;
    }
  });
}

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
    return startIncidentRunbook<RestoreResult>(c, {
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
    const handle = await c.workflow.start('restorePrune', { taskQueue, workflowId, args: [input], staticSummary: `prune restores of ${o.cluster} older than ${o.olderThanDays} day(s) by ${o.as}` });
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
    return startIncidentRunbook<FlashbackResult>(c, {
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

/**
 * Start an incident runbook (failover, restore, flashback) the same way from every command: search
 * attributes, summary, reuse policy; then (unless detached) follow it and print its result.
 * Returns the exit code: 0 succeeded or dry run, 3 ended otherwise (rejected, timed out), 1 failed.
 */
export async function startIncidentRunbook<R extends { status: string }>(
  c: Client,
  r: {
    type: string;
    workflowId: string;
    input: unknown;
    cluster: string;
    incidentId: string;
    summary: string;
    options: { reason: string; as: string; detach?: boolean; json?: boolean };
    print: (result: R) => void;
  },
): Promise<number> {
  const { taskQueue } = temporalSettings();
  const o = r.options;
  if (!(await workerPresent(c, taskQueue))) console.error(`warning: no worker polls task queue "${taskQueue}"; start one with: bin/runbook worker`);
  const handle = await c.workflow.start(r.type, {
    taskQueue,
    workflowId: r.workflowId,
    // A failed run of an incident may be retried; a completed one is never repeated by accident.
    workflowIdReusePolicy: WorkflowIdReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
    args: [r.input],
    staticSummary: r.summary,
    staticDetails: `reason: ${o.reason}\nincident: ${r.incidentId}`,
    typedSearchAttributes: [
      { key: RunbookType, value: r.type },
      { key: Cluster, value: r.cluster },
      { key: IncidentId, value: r.incidentId },
      { key: Operator, value: o.as },
    ],
  });
  console.error(`started ${handle.workflowId} (incident ${r.incidentId})`);
  if (o.detach) {
    if (o.json) printJson({ workflowId: handle.workflowId, incidentId: r.incidentId });
    return 0;
  }
  try {
    const result = await follow<R>(handle, (s) => console.error(s));
    if (o.json) printJson(result);
    else r.print(result);
    return result.status === 'succeeded' || result.status === 'dry_run' ? 0 : 3;
  } catch (err) {
    console.error(`runbook: ${handle.workflowId} failed: ${failureMessage(err)}`);
    return 1;
  }
}
