/**
 * Flashback runbook: the fast path for an UPDATE or DELETE mistake (seed 004 §2.1), when the
 * binlog is ROW format with full row images and nothing has touched those rows since:
 *
 *   locate the bad event → check flashback is possible → approval → lock cluster
 *   → apply flashback on the primary → verify → unlock cluster → record
 *
 * `mariadb-binlog --flashback` over exactly that transaction writes the rows back as they were.
 * It cannot undo DDL (over a DROP TABLE it outputs nothing), statement-logged changes or partial
 * row images, and it would silently undo a later write to the same rows: the check refuses all of
 * these before anyone is asked, and says to use restore instead. A dry run stops after the check.
 */
import * as wf from '@temporalio/workflow';
import { ApplicationFailure } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { FlashbackOutcome, FlashbackVerification } from '../activities/binlog';
import { compileStatementPattern, describeRowEvents, type BadEventQuery, type BinlogEventGroup } from '../core/binlogEvents';
import { ApprovalGate } from './shared/approval';
import { runRunbook } from './shared/runbook';
import { type StartedFromCli } from '../core/runbookDefinitions';
import { gtidProblem, tableProblem } from '../core/inputs';

export interface FlashbackInput extends StartedFromCli {
  cluster: string;
  /** The bad event: it must match exactly one transaction in the archived binlogs. */
  event: BadEventQuery;
  requester: string;
  reason: string;
  incidentId: string;
  dryRun?: boolean;
}

export interface FlashbackResult {
  status: 'succeeded' | 'dry_run' | 'rejected' | 'timed_out';
  /** The located event group. */
  event: BinlogEventGroup;
  /** The transaction that undid it (succeeded only). */
  flashbackGtid?: string;
  /** Rows written back (succeeded), or that would be (dry run, rejected, timed out). */
  rows: number;
  /** What the check found: statement, rows, bytes, later transactions read. */
  check: FlashbackOutcome;
  verification?: FlashbackVerification;
}

const act = wf.proxyActivities<Activities>({ startToCloseTimeout: '2m', retry: { maximumAttempts: 3 } });
// Reading binlogs runs as long as there is binlog to read; a dead worker is noticed by heartbeat.
// Applying is retry-safe: a retry finds an earlier attempt's flashback instead of applying twice.
const long = wf.proxyActivities<Activities>({ startToCloseTimeout: '2h', heartbeatTimeout: '10s', retry: { initialInterval: '1s', maximumAttempts: 5 } });

const STEPS_AFTER_CHECK = ['approval', 'lock cluster', 'apply flashback', 'verify', 'unlock cluster', 'record'];

export async function flashback(input: FlashbackInput): Promise<FlashbackResult> {
  const meta = { runbook: 'flashback', cluster: input.cluster, operator: input.requester, incidentId: input.incidentId, reason: input.reason, configFingerprint: input.configFingerprint };
  return runRunbook(meta, async (rb) => {
    const target = await rb.step(
      'locate the bad event',
      async () => {
        checkInput(input);
        return long.locateTarget({ cluster: input.cluster, target: { kind: 'before-event', event: input.event } });
      },
      { note: (t) => t.description, detail: (t) => ({ event: t.event }) },
    );
    const event = target.event!;
    const at = { cluster: input.cluster, archive: target.archive, gtid: event.gtid, file: event.file, startPosition: event.startPosition, endPosition: event.endPosition };

    const check = await rb.step('check flashback is possible', async () => long.flashbackTransaction({ ...at, instance: await primaryOf(input.cluster), apply: false }), {
      note: (c) =>
        `\`${c.statements[0] ?? event.kind}\`: ${c.rows} row(s) of ${c.tables.join(', ')}, ${c.bytes} bytes of flashback; ` +
        `none of the ${c.conflicts.transactionsRead} later transaction(s) on ${c.primary} touch these rows`,
      detail: (c) => ({ check: c }),
    });
    const plan = describe(event, check);
    // Not `plan`: the CLI reads that key as a failover plan when it shows a pending approval.
    rb.details.flashback = { event, check };
    if (input.dryRun) {
      for (const s of STEPS_AFTER_CHECK) rb.skip(s, 'dry run: nothing changed');
      rb.outcome = 'dry_run';
      return { status: 'dry_run', event, rows: check.rows, check };
    }
    rb.open({
      title: `flashback ${input.cluster}: undo ${event.gtid} by ${input.requester}`,
      severity: 'L2',
      plan,
      impact: `${check.rows} row(s) of ${check.tables.join(', ')} are written back on the primary as they were before ${event.gtid}; other rows and later writes are kept`,
      eta: 'seconds once approved',
      rootCause: input.reason,
    });

    const policy = await act.clusterPolicy({ cluster: input.cluster, runbook: 'flashback', mode: 'default' });
    const gate = new ApprovalGate(rb, policy.approval, input.requester);
    const decision = await rb.step('approval', () => gate.request(), { note: (d) => d });
    if (decision === 'rejected' || decision === 'timed_out') {
      rb.skip('apply flashback', `approval ${decision}: nothing changed`);
      rb.outcome = decision;
      return { status: decision, event, rows: check.rows, check };
    }

    const lock = { cluster: input.cluster, workflowId: wf.workflowInfo().workflowId };
    await rb.step('lock cluster', () => act.acquireClusterLock({ ...lock, runbook: 'flashback', operator: input.requester }));
    let applied: FlashbackOutcome;
    let verification: FlashbackVerification;
    try {
      // The primary now, not at the check: the activity refuses if the event is not in its binlogs.
      applied = await rb.step('apply flashback', async () => long.flashbackTransaction({ ...at, instance: await primaryOf(input.cluster), apply: true }), {
        note: (a) => `${a.flashbackGtid} on ${a.primary}: ${a.rows} row(s) of ${a.tables.join(', ')} back as before ${event.gtid}${a.alreadyApplied ? ' (applied by an earlier attempt)' : ''}`,
        detail: (a) => ({ flashback: a }),
      });
      verification = await rb.step(
        'verify',
        async () => {
          const v = await long.verifyFlashback({ ...at, instance: applied.primary, flashbackGtid: applied.flashbackGtid!, appliedFrom: applied.appliedFrom! });
          if (v.problems.length) throw ApplicationFailure.nonRetryable(`after ${applied.flashbackGtid}: ${v.problems.join('; ')}`, 'VerificationFailed');
          return v;
        },
        { note: (v) => v.note, detail: (v) => ({ verification: v }) },
      );
    } finally {
      await wf.CancellationScope.nonCancellable(() => rb.step('unlock cluster', () => act.releaseClusterLock(lock)));
    }

    const result: FlashbackResult = { status: 'succeeded', event, flashbackGtid: applied.flashbackGtid, rows: applied.rows, check, verification };
    await rb.step('record', async () => result, {
      note: (r) => `${event.gtid} undone by ${r.flashbackGtid}: ${r.rows} row(s) of ${check.tables.join(', ')}`,
      detail: (r) => ({ recovery: { method: 'flashback', event: event.gtid, flashbackGtid: r.flashbackGtid, rows: r.rows, tables: check.tables, primary: applied.primary } }),
    });
    rb.updateNotice({ plan: `${plan}\n\n**Undone by ${applied.flashbackGtid}** on ${applied.primary}: ${verification.note}.` });
    return result;
  });
}

/** Bad input is refused before anything is read or changed, in one line. */
function checkInput(input: FlashbackInput): void {
  const refuse = (m: string) => {
    throw ApplicationFailure.nonRetryable(m, 'BadInput');
  };
  const e = input.event as BadEventQuery | undefined;
  if (!e || typeof e !== 'object') refuse('event must name the bad event: table, statement, from, to');
  if (!e!.table && !e!.statement && e!.from === undefined && e!.to === undefined) refuse('name the bad event: a table, a statement pattern or a time window (from/to)');
  for (const k of ['from', 'to'] as const) if (e![k] !== undefined && !Number.isFinite(e![k])) refuse(`event.${k} must be a time (epoch ms), got ${String(e![k])}`);
  if (e!.from !== undefined && e!.to !== undefined && e!.from > e!.to) refuse(`event window is empty: from ${new Date(e!.from).toISOString()} is after to ${new Date(e!.to).toISOString()}`);
  try {
    if (e!.statement) compileStatementPattern(e!.statement, 'event.statement');
    if (e!.statementNot) compileStatementPattern(e!.statementNot, 'event.statementNot');
  } catch (err) {
    refuse((err as Error).message);
  }
  const format = tableProblem('event.table', e!.table) ?? gtidProblem('event.gtid', e!.gtid);
  if (format) refuse(format);
  if (!input.requester?.trim()) refuse('requester is required: who asks (they may not approve their own run)');
  if (!input.reason?.trim()) refuse('reason is required (it goes to the audit log)');
}

/** The cluster's one primary, as probed now; without exactly one, nothing is applied. */
async function primaryOf(cluster: string): Promise<string> {
  const topology = await act.probeTopology(cluster);
  if (!topology.primary) throw ApplicationFailure.nonRetryable(`${cluster} has no single primary (${topology.problems.join('; ') || 'none writable'}): flashback needs the primary`, 'NoPrimary');
  return topology.primary;
}

function describe(event: BinlogEventGroup, check: FlashbackOutcome): string {
  return [
    `- **bad event**: ${event.gtid} at ${event.file}:${event.startPosition}-${event.endPosition}, ${new Date(event.timestamp).toISOString()}: \`${event.statements[0] ?? event.kind}\``,
    `- **rows**: ${describeRowEvents(event)}`,
    `- **flashback**: \`mariadb-binlog --flashback\` over exactly that transaction (${check.bytes} bytes), applied on ${check.primary} after approval`,
    `- **checked**: ${check.conflicts.transactionsRead} later transaction(s) in ${check.primary}'s binlog; none touch these rows`,
  ].join('\n');
}
