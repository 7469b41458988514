/**
 * Restore runbook (point-in-time recovery), as a DBA runs it after a DROP TABLE or an UPDATE
 * without WHERE (seed 004 §1.1, §2.1, §2.2, §3.1):
 *
 *   locate target → choose backup → check binlog coverage → prepare recovery instance
 *   → replay to the target (→ skip the bad event → replay the rest) → verify
 *   → approval → cut over (copy the recovered tables back) → stop scratch instances → record
 *
 * Everything before approval happens on scratch instances; production is only read. A dry run
 * stops after the coverage check and prints the plan. `cutover: 'none'` recovers and verifies only.
 */
import * as wf from '@temporalio/workflow';
import { ApplicationFailure } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { ResolvedTarget, RestoreTarget } from '../activities/binlog';
import type { ReplayMethod, Verification } from '../activities/restore';
import type { BackupKind, BackupManifest } from '../backup/manifest';
import { formatDuration } from '../shared/format';
import { parseMariaGtidList } from '../mysql/dialect';
import { ApprovalGate } from './approval';
import { runRunbook, type Runbook } from './runbook';

export type { RestoreTarget, ReplayMethod };
export type CutoverMode = 'none' | 'copy-tables';

export interface RestoreInput {
  cluster: string;
  target: RestoreTarget;
  /** With a `before-event` target: skip that event and replay everything after it. */
  skip?: boolean;
  /** Restore only from this kind of backup (default: the newest of either kind). */
  backupKind?: BackupKind;
  /** `sql-thread` (default, resumable) or the `mariadb-binlog | mariadb` fallback. */
  replayMethod?: ReplayMethod;
  /** What to do with the result once verified (default `none`: recover and verify only). */
  cutover?: CutoverMode;
  /** More tables to compare with production (`db.table`); the bad event's tables always are. */
  compare?: string[];
  requester: string;
  reason: string;
  incidentId: string;
  dryRun?: boolean;
}

export interface RestorePhase {
  step: string;
  ms: number;
}

export interface RestoreResult {
  status: 'succeeded' | 'dry_run' | 'rejected' | 'timed_out';
  target: ResolvedTarget;
  backupId: string;
  /** The last transaction applied on the recovery instance: the achieved recovery point. */
  recoveryPoint?: string;
  verification?: Verification;
  cutover?: Awaited<ReturnType<Activities['cutOverTables']>>;
  phases: RestorePhase[];
}

const act = wf.proxyActivities<Activities>({ startToCloseTimeout: '2m', retry: { maximumAttempts: 3 } });
// Loading, replaying and scanning run for as long as the data needs; a dead worker is noticed by heartbeat.
const long = wf.proxyActivities<Activities>({ startToCloseTimeout: '12h', heartbeatTimeout: '10s', retry: { initialInterval: '1s', maximumAttempts: 5 } });

const domainSeq = (pos: string, domain: number) => parseMariaGtidList(pos).find((g) => g.domain === domain)?.seq ?? 0;

export async function restore(input: RestoreInput): Promise<RestoreResult> {
  const meta = { runbook: 'restore', cluster: input.cluster, operator: input.requester, incidentId: input.incidentId, reason: input.reason };
  return runRunbook(meta, async (rb) => {
    const method = input.replayMethod ?? 'sql-thread';
    const cutover = input.cutover ?? 'none';
    const target = await rb.step(
      'locate target',
      async () => {
        checkInput(input);
        return long.locateTarget({ cluster: input.cluster, target: input.target });
      },
      { note: (t) => t.description, detail: (t) => ({ target: t }) },
    );
    const skip = Boolean(input.skip && target.event);
    const replayEnd = skip ? target.archiveEnd : target.stopAt;
    const backup = await rb.step('choose backup', () => chooseBackup(input, target.stopAt), { note: (m) => `${m.id} (${m.kind}, from ${m.instance}) at ${m.gtid}` });
    const coverage = await rb.step('check binlog coverage', () => long.checkBinlogCoverage({ cluster: input.cluster, from: backup.gtid, to: replayEnd }), {
      note: (c) => (c.transactions ? `${c.transactions} transaction(s) ${c.first} … ${c.last} in ${c.files.join(', ')}` : 'the backup is the target: nothing to replay'),
    });
    const plan = describe(input, target, backup, coverage.transactions, skip, method, cutover);
    rb.details.plan = { target, backup: backup.id, coverage, skip, method, cutover };
    if (input.dryRun) {
      for (const s of stepsAfterPlan(skip, cutover)) rb.skip(s, 'dry run: nothing changed');
      rb.outcome = 'dry_run';
      return { status: 'dry_run', target, backupId: backup.id, phases: phases(rb) };
    }
    rb.open({
      title: `restore ${input.cluster}: ${target.description.slice(0, 80)} by ${input.requester}`,
      severity: 'L2',
      plan,
      impact: cutover === 'none' ? 'none: production is only read' : 'recovered tables are swapped into production after approval',
      eta: 'depends on the backup size and binlog volume',
      rootCause: input.reason,
    });

    const ref = { cluster: input.cluster, restoreId: wf.workflowInfo().workflowId.replace(/[^A-Za-z0-9_.-]/g, '_') };
    await rb.step('prepare recovery instance', () => long.prepareRecovery({ ...ref, backupId: backup.id, method }), {
      note: (p) => `${p.kind} backup ${backup.id} restored at ${p.backupGtid}${p.loadMs ? ` in ${formatDuration(p.loadMs)}` : ' (earlier attempt)'}`,
    });
    const replay = (name: string, after: string, until: string) =>
      rb.step(name, () => long.replayTo({ ...ref, method, after, until, timeoutSeconds: 6 * 3600 }), { note: (r) => `at ${r.appliedTo} (${method})` });
    let recoveryPoint = (await replay(target.event ? 'replay to just before the bad event' : 'replay to the target', backup.gtid, target.stopAt)).appliedTo;
    if (skip) {
      const bad = target.event!;
      await rb.step('skip the bad event', () => act.skipTransaction({ ...ref, method, gtid: bad.gtid, previous: target.stopAt }), { note: () => `${bad.gtid}: ${bad.statements[0] ?? bad.kind}` });
      recoveryPoint = (await replay('replay the rest', bad.gtid, target.archiveEnd)).appliedTo;
    }

    const topology = await act.probeTopology(input.cluster);
    if (!topology.primary) throw ApplicationFailure.nonRetryable(`cannot verify: ${input.cluster} has no single primary (${topology.problems.join('; ')})`, 'NoPrimary');
    const primary = topology.primary;
    const eventTables = target.event?.tables ?? [];
    const verification = await rb.step(
      'verify',
      async () => {
        const v = await long.verifyRecovery({ ...ref, method, primary, expected: replayEnd, tables: [...new Set([...eventTables, ...(input.compare ?? [])])], event: target.event, skipped: skip });
        if (v.problems.length) throw ApplicationFailure.nonRetryable(v.problems.join('; '), 'VerificationFailed');
        return v;
      },
      {
        note: (v) => `at ${v.appliedTo}; ${v.tables.map((t) => `${t.table}: ${t.recovery?.rows ?? 'missing'} row(s)${t.equal ? ' = production' : ''}`).join(', ')}${v.productionMovedOn ? ' (production moved on)' : ''}`,
        detail: (v) => ({ verification: v }),
      },
    );

    let cut: RestoreResult['cutover'];
    if (cutover === 'copy-tables') {
      const policy = await act.clusterPolicy({ cluster: input.cluster, runbook: 'restore', mode: cutover });
      const gate = new ApprovalGate(rb, policy.approval, input.requester);
      const decision = await rb.step('approval', () => gate.request(), { note: (d) => d });
      if (decision === 'rejected' || decision === 'timed_out') {
        rb.skip('cut over', `approval ${decision}: production untouched; the recovery instance's datadir is kept`);
        await stopScratch(rb, ref);
        rb.outcome = decision;
        return { status: decision, target, backupId: backup.id, recoveryPoint, verification, phases: phases(rb) };
      }
      const tables = eventTables.map((t) => ({ table: t, productionChecksum: verification.tables.find((v) => v.table === t)?.production?.checksum ?? null }));
      const lock = { cluster: input.cluster, workflowId: wf.workflowInfo().workflowId };
      await rb.step('lock cluster', () => act.acquireClusterLock({ ...lock, runbook: 'restore', operator: input.requester }));
      try {
        cut = await rb.step('cut over', () => long.cutOverTables({ ...ref, primary, tables }), {
          note: (c) => c.tables.map((t) => `${t.table}: ${t.action}`).join('; '),
          detail: (c) => ({ cutover: c }),
        });
      } finally {
        await wf.CancellationScope.nonCancellable(() => rb.step('unlock cluster', () => act.releaseClusterLock(lock)));
      }
    }
    await stopScratch(rb, ref);
    const result: RestoreResult = { status: 'succeeded', target, backupId: backup.id, recoveryPoint, verification, cutover: cut, phases: phases(rb) };
    await rb.step('record', async () => result, {
      note: (r) => `recovery point ${r.recoveryPoint}; ${r.phases.map((p) => `${p.step} ${formatDuration(p.ms)}`).join(', ')}`,
      detail: (r) => ({ recoveryPoint: r.recoveryPoint, phases: r.phases, backupId: r.backupId, target: r.target.stopAt }),
    });
    rb.updateNotice({ plan: `${plan}\n\n**Recovered to ${recoveryPoint}.** ${cut ? cut.tables.map((t) => `${t.table}: ${t.action}`).join('; ') : 'Production untouched.'}\n\n${result.phases.map((p) => `- ${p.step}: ${formatDuration(p.ms)}`).join('\n')}` });
    return result;
  });
}

/** Bad input is refused before anything is read or changed, in one line. */
function checkInput(input: RestoreInput): void {
  const refuse = (m: string) => {
    throw ApplicationFailure.nonRetryable(m, 'BadInput');
  };
  if (!input.target || !['before-event', 'gtid', 'time'].includes(input.target.kind)) refuse('target must be one of before-event, gtid, time');
  if (input.skip && input.target.kind !== 'before-event') refuse('skip needs a before-event target: only a located event can be skipped');
  if (input.replayMethod && !['sql-thread', 'pipe'].includes(input.replayMethod)) refuse(`replayMethod must be sql-thread or pipe, got ${input.replayMethod}`);
  if (input.cutover && !['none', 'copy-tables'].includes(input.cutover)) refuse(`cutover must be none or copy-tables, got ${input.cutover} (promoting the recovery instance is not built yet)`);
  if (input.cutover === 'copy-tables' && input.target.kind !== 'before-event') refuse('copy-tables needs a before-event target: it copies back the tables that event damaged');
  for (const t of input.compare ?? []) if (!/^[^.\s]+\.[^.\s]+$/.test(t)) refuse(`compare: "${t}" is not db.table`);
}

/** The newest backup taken at or before the target whose files still match their checksum. */
async function chooseBackup(input: RestoreInput, stopAt: string): Promise<BackupManifest> {
  const target = parseMariaGtidList(stopAt)[0]!;
  const candidates = (await act.listBackups({ cluster: input.cluster }))
    .filter((m) => (!input.backupKind || m.kind === input.backupKind) && m.gtid && domainSeq(m.gtid, target.domain) <= target.seq)
    .reverse();
  const refused: string[] = [];
  for (const m of candidates) {
    const check = await long.verifyBackup({ cluster: input.cluster, backupId: m.id });
    if (check.ok) return m;
    refused.push(`${m.id} fails its checksum`);
  }
  throw ApplicationFailure.nonRetryable(`no ${input.backupKind ?? ''}${input.backupKind ? ' ' : ''}backup of ${input.cluster} taken at or before ${stopAt}${refused.length ? ` passes verification (${refused.join('; ')})` : ''}`, 'NoBackup');
}

function stepsAfterPlan(skip: boolean, cutover: CutoverMode): string[] {
  return [
    'prepare recovery instance',
    ...(skip ? ['replay to just before the bad event', 'skip the bad event', 'replay the rest'] : ['replay to the target']),
    'verify',
    ...(cutover === 'copy-tables' ? ['approval', 'cut over'] : []),
    'stop the scratch instances',
  ];
}

async function stopScratch(rb: Runbook, ref: { cluster: string; restoreId: string }): Promise<void> {
  await rb.step('stop the scratch instances', () => act.stopRecovery(ref));
}

/** How long each step took: what the record and the notification report. */
function phases(rb: Runbook): RestorePhase[] {
  return rb
    .state()
    .steps.filter((s) => s.endedAt !== undefined && s.status === 'succeeded')
    .map((s) => ({ step: s.name, ms: s.endedAt! - s.startedAt }));
}

function describe(input: RestoreInput, target: ResolvedTarget, backup: BackupManifest, transactions: number, skip: boolean, method: ReplayMethod, cutover: CutoverMode): string {
  const bad = target.event;
  return [
    `- **target**: ${target.description}`,
    `- **backup**: ${backup.id} (${backup.kind}, from ${backup.instance}, ended ${backup.endedAt}) at ${backup.gtid}`,
    `- **replay** (${method}): ${backup.gtid} → ${target.stopAt}${skip && bad ? `, skip ${bad.gtid}, then → ${target.archiveEnd}` : ''} (${transactions} transaction(s), no gap)`,
    ...(bad ? [`- **bad event**: ${bad.gtid} at ${bad.file}:${bad.startPosition}-${bad.endPosition}, ${new Date(bad.timestamp).toISOString()}: \`${bad.statements[0] ?? bad.kind}\``] : []),
    `- **cut over**: ${cutover === 'none' ? 'none (recover and verify only)' : `copy ${bad?.tables.join(', ')} back into production after approval`}`,
  ].join('\n');
}
