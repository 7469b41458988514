/**
 * Restore runbook (point-in-time recovery), as a DBA runs it after a DROP TABLE or an UPDATE
 * without WHERE (seed 004 §1.1, §2.1, §2.2, §3.1):
 *
 *   locate target → choose backup → check binlog coverage → prepare recovery instance
 *   → replay to the target (→ skip the bad event → replay the rest) → verify
 *   → approval → cut over → stop scratch instances → record
 *
 * The recovery instance is a scratch instance on the worker's host, or the cluster's configured
 * recovery host (`recoverOn`). Everything before approval happens there; production is only read.
 * A dry run stops after the coverage check and prints the plan. Cut over:
 * - `none`: recover and verify only;
 * - `copy-tables`: copy the damaged tables back into production (later writes to other tables kept);
 * - `promote`: the recovery host becomes the primary through the failover steps (fence the old
 *   primary, catch up from it, promote, switch traffic, verify); every old member still holds the
 *   bad event and is marked for reseed.
 */
import * as wf from '@temporalio/workflow';
import { ApplicationFailure } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { ResolvedTarget, RestoreTarget } from '../activities/binlog';
import type { ReplayMethod } from '../activities/restore';
import type { CutoverResult, Verification } from '../activities/restoreVerify';
import type { BackupKind, BackupManifest } from '../core/manifest';
import { formatDuration } from '../core/format';
import { parseMariaGtidList } from '../core/gtid';
import { compileStatementPattern } from '../core/binlogEvents';
import { ApprovalGate } from './shared/approval';
import type { Thresholds } from '../core/configSchema';
import { fenceCatchUpPromote, rollForwardPastPromotion, sideOf, type Promotion as SharedPromotion } from './shared/promotion';
import { runRunbook, type Runbook } from './shared/runbook';
import { type StartedFromCli } from '../core/runbookDefinitions';
import { gtidProblem, tableProblem } from '../core/inputs';

export type { RestoreTarget, ReplayMethod };
export type CutoverMode = 'none' | 'copy-tables' | 'promote';

export interface RestoreInput extends StartedFromCli {
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
  /** The cluster's configured recovery host (by name) instead of a scratch instance. */
  recoverOn?: string;
  /** More tables to compare with production (`db.table`); the bad event's tables always are. */
  compare?: string[];
  requester: string;
  reason: string;
  incidentId: string;
  dryRun?: boolean;
}

export interface Promotion {
  promoted: string;
  oldPrimary: string;
  needReseed: string[];
}

export interface RestorePhase {
  step: string;
  ms: number;
}

export interface RestoreResult {
  /** `needs_attention`: the cut-over left rows that production changed after the mistake (listed). */
  status: 'succeeded' | 'dry_run' | 'rejected' | 'timed_out' | 'needs_attention';
  target: ResolvedTarget;
  backupId: string;
  /** The last transaction applied on the recovery instance: the achieved recovery point. */
  recoveryPoint?: string;
  verification?: Verification;
  cutover?: CutoverResult;
  /** `promote`: the recovery host that became the primary, and the old members to reseed. */
  promotion?: Promotion;
  phases: RestorePhase[];
}

const act = wf.proxyActivities<Activities>({ startToCloseTimeout: '2m', retry: { maximumAttempts: 3 } });
// Waits that heartbeat (catch-up, verification): a dead worker is noticed within seconds.
const waits = wf.proxyActivities<Activities>({ startToCloseTimeout: '10m', heartbeatTimeout: '5s', retry: { initialInterval: '500ms', maximumAttempts: 3 } });
// Loading, replaying and scanning run for as long as the data needs; a dead worker is noticed by heartbeat.
const long = wf.proxyActivities<Activities>({ startToCloseTimeout: '12h', heartbeatTimeout: '10s', retry: { initialInterval: '1s', maximumAttempts: 5 } });

const domainSeq = (pos: string, domain: number) => parseMariaGtidList(pos).find((g) => g.domain === domain)?.seq ?? 0;

export async function restore(input: RestoreInput): Promise<RestoreResult> {
  const meta = { runbook: 'restore', cluster: input.cluster, operator: input.requester, incidentId: input.incidentId, reason: input.reason, configFingerprint: input.configFingerprint };
  return runRunbook(meta, async (rb) => {
    const method = input.replayMethod ?? 'sql-thread';
    const cutover = input.cutover ?? 'none';
    // Asked first, taken later: refused at once, not after an hour of recovery and an approval.
    if (cutover !== 'none' && !input.dryRun) {
      await rb.step('check the cluster lock', () => act.checkClusterLock({ cluster: input.cluster, workflowId: wf.workflowInfo().workflowId }), {
        note: (l) => (l.heldBy ? `free: the lock of ${l.heldBy}` : 'free: taken before the cut-over'),
      });
    }
    const target = await rb.step(
      'locate target',
      async () => {
        checkInput(input);
        return long.locateTarget({ cluster: input.cluster, target: input.target, after: await oldestBackupPosition(input) });
      },
      { note: (t) => [t.description, ...(t.warnings ?? []).map((w) => `warning: ${w}`)].join('; '), detail: (t) => ({ target: t }) },
    );
    const skip = Boolean(input.skip && target.event);
    const replayEnd = skip ? target.archiveEnd : target.stopAt;
    const backup = await rb.step('choose backup', () => chooseBackup(input, target.stopAt), { note: (m) => `${m.id} (${m.kind}, from ${m.instance}) at ${m.gtid}` });
    const coverage = await rb.step('check binlog coverage', () => long.checkBinlogCoverage({ cluster: input.cluster, archive: target.archive, from: backup.gtid, to: replayEnd }), {
      note: (c) => (c.transactions ? `${c.transactions} transaction(s) ${c.first} … ${c.last} in ${c.files.join(', ')}` : 'the backup is the target: nothing to replay'),
    });
    if (skip && target.event!.kind === 'trans') {
      await rb.step('check the skip is exact', async () => long.checkSkipIsExact({ cluster: input.cluster, archive: target.archive, primary: await currentPrimary(input.cluster), event: target.event! }), { note: (c) => c.note });
    }
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
      impact:
        cutover === 'none'
          ? 'none: production is only read'
          : cutover === 'copy-tables'
            ? 'recovered tables are swapped into production after approval'
            : `after approval ${input.recoverOn} becomes the primary: writes pause while it catches up; every old member needs a reseed`,
      eta: 'depends on the backup size and binlog volume',
      rootCause: input.reason,
    });

    const ref = { cluster: input.cluster, restoreId: wf.workflowInfo().workflowId.replace(/[^A-Za-z0-9_.-]/g, '_'), recoverOn: input.recoverOn, archive: target.archive };
    // One restore at a time may wipe and load a recovery host.
    const hostLock = input.recoverOn && { cluster: `${input.cluster}/${input.recoverOn}`, workflowId: wf.workflowInfo().workflowId };
    if (hostLock) await rb.step('lock recovery host', () => act.acquireClusterLock({ ...hostLock, runbook: 'restore', operator: input.requester }));
    try {
      return await recoverAndCutOver(rb, input, { ref, target, backup, plan, skip, method, cutover, replayEnd });
    } catch (err) {
      // A failed run stops the servers it started (their datadirs stay for inspection): left
      // running, they would hold their ports against the next restore.
      await wf.CancellationScope.nonCancellable(() => rb.step('stop the scratch instances (after the failure)', () => act.stopRecovery(ref))).catch(() => undefined);
      throw err;
    } finally {
      if (hostLock) await wf.CancellationScope.nonCancellable(() => rb.step('unlock recovery host', () => act.releaseClusterLock(hostLock)));
    }
  });
}

type Ref = { cluster: string; restoreId: string; recoverOn?: string; archive?: string };

async function recoverAndCutOver(
  rb: Runbook,
  input: RestoreInput,
  { ref, target, backup, plan, skip, method, cutover, replayEnd }: { ref: Ref; target: ResolvedTarget; backup: BackupManifest; plan: string; skip: boolean; method: ReplayMethod; cutover: CutoverMode; replayEnd: string },
): Promise<RestoreResult> {
  const policy = await rb.step('load policy', () => act.clusterPolicy({ cluster: input.cluster, runbook: 'restore', mode: cutover }), {
    note: (p) => `approval ${p.approval.mode}, replay within ${p.thresholds.replayTimeoutSeconds} s, catch-up ${p.thresholds.catchUpTimeoutSeconds} s`,
  });
  const thresholds = policy.thresholds;
  await rb.step('prepare recovery instance', () => long.prepareRecovery({ ...ref, backupId: backup.id, method }), {
    note: (p) => `${p.kind} backup ${backup.id} restored at ${p.backupGtid}${p.loadMs ? ` in ${formatDuration(p.loadMs)}` : ' (earlier attempt)'}`,
  });
  const replay = (name: string, after: string, until: string) =>
    rb.step(name, () => long.replayTo({ ...ref, method, after, until, timeoutSeconds: thresholds.replayTimeoutSeconds }), { note: (r) => `at ${r.appliedTo} (${method})` });
  let recoveryPoint = (await replay(target.event ? 'replay to just before the bad event' : 'replay to the target', backup.gtid, target.stopAt)).appliedTo;
  if (skip) {
    const bad = target.event!;
    await rb.step('skip the bad event', () => act.skipTransaction({ ...ref, method, gtid: bad.gtid, previous: target.stopAt }), { note: () => `${bad.gtid}: ${bad.statements[0] ?? bad.kind}` });
    recoveryPoint = (await replay('replay the rest', bad.gtid, target.archiveEnd)).appliedTo;
  }

  const topology = await rb.step(
    'probe topology',
    async () => {
      const t = await act.probeTopology(input.cluster);
      if (!t.primary) throw ApplicationFailure.nonRetryable(`cannot verify: ${input.cluster} has no single primary (${t.problems.join('; ')})`, 'NoPrimary');
      return t;
    },
    { note: (t) => `primary ${t.primary}` },
  );
  const primary = topology.primary!;
  const eventTables = target.event?.tables ?? [];
  // Production is compared at one position: a consistent snapshot on the primary, which the recovery catches up to.
  const verification = await rb.step(
    'verify',
    async () => {
      const v = await long.verifyRecovery({ ...ref, method, primary, expected: replayEnd, tables: [...new Set([...eventTables, ...(input.compare ?? [])])], event: target.event, skipped: skip });
      if (v.problems.length) throw ApplicationFailure.nonRetryable(v.problems.join('; '), 'VerificationFailed');
      return v;
    },
    {
      note: (v) => `${v.comparedAt ? `at ${v.comparedAt}, ${primary}'s snapshot` : `at ${v.appliedTo}`}: ${v.tables.map((t) => t.note).join('; ')}`,
      detail: (v) => ({ verification: v }),
    },
  );

  let cut: RestoreResult['cutover'];
  let promotion: Promotion | undefined;
  if (cutover !== 'none') {
    const gate = new ApprovalGate(rb, policy.approval, input.requester);
    const decision = await rb.step('approval', () => gate.request(), { note: (d) => d });
    if (decision === 'rejected' || decision === 'timed_out') {
      rb.skip('cut over', `approval ${decision}: production untouched; the recovery instance's datadir is kept`);
      await stopScratch(rb, ref);
      rb.outcome = decision;
      return { status: decision, target, backupId: backup.id, recoveryPoint, verification, phases: phases(rb) };
    }
    const lock = { cluster: input.cluster, workflowId: wf.workflowInfo().workflowId };
    await rb.step('lock cluster', () => act.acquireClusterLock({ ...lock, runbook: 'restore', operator: input.requester }));
    try {
      if (cutover === 'copy-tables') {
        cut = await rb.step('cut over', () => long.cutOverTables({ ...ref, primary, tables: eventTables }), {
          note: (c) => c.tables.map((t) => `${t.table}: ${t.action}`).join('; '),
          detail: (c) => ({ cutover: c }),
        });
      } else {
        promotion = await promoteRecoveryHost(rb, input, ref, { primary, members: topology.instances.map((i) => ({ instance: i.instance, region: i.region })), method, badEvent: target.event!.gtid, thresholds: policy.thresholds });
      }
    } finally {
      await wf.CancellationScope.nonCancellable(() => rb.step('unlock cluster', () => act.releaseClusterLock(lock)));
    }
  }
  await stopScratch(rb, ref);
  // Rows production changed after the mistake were not overwritten: someone must decide them.
  const left = cut?.tables.reduce((n, t) => n + (t.leftAsTheyAre ?? 0), 0) ?? 0;
  const status = left ? 'needs_attention' : 'succeeded';
  if (left) rb.outcome = 'needs_attention';
  const result: RestoreResult = { status, target, backupId: backup.id, recoveryPoint, verification, cutover: cut, promotion, phases: phases(rb) };
  await rb.step('record', async () => result, {
    note: (r) => `recovery point ${r.recoveryPoint}; ${r.phases.map((p) => `${p.step} ${formatDuration(p.ms)}`).join(', ')}`,
    detail: (r) => ({ recoveryPoint: r.recoveryPoint, phases: r.phases, backupId: r.backupId, target: r.target.stopAt }),
  });
  rb.updateNotice({ plan: `${plan}\n\n**Recovered to ${recoveryPoint}.** ${describeCutover(cut, promotion)}${left ? `\n\n**${left} row(s) need a decision**: production changed them after the mistake, so they were left as they are (listed in ${cut!.leftFile}).` : ''}\n\n${result.phases.map((p) => `- ${p.step}: ${formatDuration(p.ms)}`).join('\n')}` });
  return result;
}

/**
 * The failover machinery, with the recovery host as the candidate: fence the old primary, let the
 * recovery host catch up from it (it resumes after the skipped event, so it receives every write
 * production took since), promote it; a catch-up that fails unfences the old primary, and
 * production is then as it was. Past the promotion there is no way back: the rest (new lineage,
 * traffic, marking the old members, verification) rolls forward through the same pieces as a
 * failover's (shared/promotion.ts: the same fence, catch-up with its undo, promotion and roll-forward): retried until done, or waiting in
 * `needs_attention` for `runbook resume`, never half switched. The old members all hold the bad
 * event: they stay read-only and are marked for reseed, never repointed.
 */
async function promoteRecoveryHost(
  rb: Runbook,
  input: RestoreInput,
  ref: Ref,
  o: { primary: string; members: { instance: string; region: string }[]; method: ReplayMethod; badEvent: string; thresholds: Thresholds },
): Promise<Promotion> {
  const { cluster } = input;
  const host = input.recoverOn!;
  const workflowId = wf.workflowInfo().workflowId;
  // Where both are, for the traffic hooks (RUNBOOK_OLD_PRIMARY / _NEW_PRIMARY, the regions).
  const [from, to] = await rb.step('locate both sides', () => Promise.all([act.probeInstance({ cluster, instance: o.primary }), act.probeInstance({ cluster, instance: host })]), {
    note: ([f, t]) => `${f.instance} at ${f.address} (${f.region}) → ${t.instance} at ${t.address} (${t.region})`,
  });
  const promotion: SharedPromotion = { cluster, mode: 'restore', incidentId: input.incidentId, from: sideOf(from), to: sideOf(to), promoteStep: 'promote recovery host' };
  await fenceCatchUpPromote(rb, promotion, {
    step: 'catch up from the old primary',
    run: async (fence) => {
      await act.replicateRecoveryFrom({ ...ref, method: o.method, source: o.primary });
      return waits.waitForCatchUp({ cluster, instance: host, position: fence.finalPosition, timeoutSeconds: o.thresholds.catchUpTimeoutSeconds });
    },
  });
  const needReseed = o.members.map((m) => m.instance);
  const steps = PROMOTE_STEPS.slice(PROMOTE_STEPS.indexOf('start a new backup lineage'));
  await rollForwardPastPromotion(rb, promotion, {
    thresholds: o.thresholds,
    steps,
    before: (forward) =>
      forward.step('start a new backup lineage', () => act.startBackupLineage({ cluster, promoted: host, skipped: o.badEvent, workflowId, stale: needReseed }), {
        note: (l) => `backups ended before ${l.since} hold ${o.badEvent}: restores will not use them, and ${needReseed.join(', ')} are not backed up until reseeded`,
      }).then(() => undefined),
    after: async (forward, endpoint) => {
      await forward.step('mark old members for reseed', async () => {
        for (const m of o.members) {
          await act.markNeedsFailback({ cluster, region: m.region, instance: m.instance, role: m.instance === o.primary ? 'old_primary' : 'replica', remark: `holds ${o.badEvent}, skipped by restore ${input.incidentId}: reseed from ${host}` });
        }
      }, { note: () => `${needReseed.join(', ')} hold ${o.badEvent}: reseed them from ${host}` });
      await forward.step(
        'verify promotion',
        async () => {
          const v = await waits.verifyCluster({ cluster, primary: host, replicas: [], workflowId, timeoutSeconds: o.thresholds.verifyTimeoutSeconds });
          return { ...v, endpoint: await endpoint.written('5s') };
        },
        { note: (v) => `heartbeat ${v.heartbeatPosition} written on ${host}; the only writable instance; writer endpoint generation ${v.endpoint.generation}` },
      );
    },
  });
  return { promoted: host, oldPrimary: o.primary, needReseed };
}

/** A promote cut-over's steps in order (the roll-forward names what is left from any of them). */
const PROMOTE_STEPS = ['locate both sides', 'fence old primary', 'catch up from the old primary', 'promote recovery host', 'start a new backup lineage', 'switch traffic', 'mark old members for reseed', 'verify promotion'];

/** The cluster's primary now (the skip check reads its tables' shapes). */
async function currentPrimary(cluster: string): Promise<string> {
  const topology = await act.probeTopology(cluster);
  if (!topology.primary) throw ApplicationFailure.nonRetryable(`${cluster} has no single primary (${topology.problems.join('; ')})`, 'NoPrimary');
  return topology.primary;
}

function describeCutover(cut: RestoreResult['cutover'], promotion: Promotion | undefined): string {
  if (promotion) return `${promotion.promoted} is the primary (was ${promotion.oldPrimary}); reseed ${promotion.needReseed.join(', ')} from it.`;
  return cut ? cut.tables.map((t) => `${t.table}: ${t.action}`).join('; ') : 'Production untouched.';
}

/** Bad input is refused before anything is read or changed, in one line. */
function checkInput(input: RestoreInput): void {
  const refuse = (m: string) => {
    throw ApplicationFailure.nonRetryable(m, 'BadInput');
  };
  if (!input.target || !['before-event', 'gtid', 'time'].includes(input.target.kind)) refuse('target must be one of before-event, gtid, time');
  if (input.skip && input.target.kind !== 'before-event') refuse('skip needs a before-event target: only a located event can be skipped');
  if (input.replayMethod && !['sql-thread', 'pipe'].includes(input.replayMethod)) refuse(`replayMethod must be sql-thread or pipe, got ${input.replayMethod}`);
  if (input.cutover && !['none', 'copy-tables', 'promote'].includes(input.cutover)) refuse(`cutover must be none, copy-tables or promote, got ${input.cutover}`);
  if (input.cutover === 'copy-tables' && input.target.kind !== 'before-event') refuse('copy-tables needs a before-event target: it copies back the tables that event damaged');
  if (input.cutover === 'promote' && !input.recoverOn) refuse("promote needs recoverOn (the cluster's recovery host): a scratch instance on the worker's host cannot become the primary");
  if (input.cutover === 'promote' && !input.skip) refuse('promote needs skip: without it, catching up from the old primary would bring the bad event back');
  if (input.recoverOn && input.backupKind === 'physical') refuse(`a physical backup is copied back into a datadir on the worker's host, not into recovery host ${input.recoverOn}: use a logical backup`);
  const t = input.target as Partial<{ gtid: string; event: { table?: string; gtid?: string; statement?: string; statementNot?: string } }>;
  const format = [tableProblem('target.event.table', t.event?.table), gtidProblem('target.event.gtid', t.event?.gtid), gtidProblem('target.gtid', t.gtid), ...(input.compare ?? []).map((c) => tableProblem('compare', c, { qualified: true }))].find(Boolean);
  if (format) refuse(format);
  // A pattern that cannot compile (or would backtrack) is refused here, not after retries in an activity.
  try {
    if (t.event?.statement) compileStatementPattern(t.event.statement, 'target.event.statement');
    if (t.event?.statementNot) compileStatementPattern(t.event.statementNot, 'target.event.statementNot');
  } catch (err) {
    refuse((err as Error).message);
  }
}

/** The backups this restore may use, oldest first, and the lineage that limits them. */
async function usableBackups(input: RestoreInput) {
  // After a promote cut-over, older backups hold the event it skipped (see startBackupLineage).
  const lineage = await act.backupLineage({ cluster: input.cluster });
  const backups = (await act.listBackups({ cluster: input.cluster }))
    .filter((m) => !lineage || (m.endedAt > lineage.since && !lineage.stale?.includes(m.instance)))
    // A recovery host is loaded over the network: only a logical backup can be.
    .filter((m) => (!input.backupKind || m.kind === input.backupKind) && (!input.recoverOn || m.kind === 'logical') && m.gtid);
  return { backups, lineage };
}

/** The oldest usable backup's position: archived binlogs wholly before it need not be searched. */
async function oldestBackupPosition(input: RestoreInput): Promise<string | undefined> {
  return (await usableBackups(input)).backups.reduce<BackupManifest | undefined>((old, m) => (!old || m.endedAt < old.endedAt ? m : old), undefined)?.gtid;
}

/** The newest backup taken at or before the target whose files still match their checksum. */
async function chooseBackup(input: RestoreInput, stopAt: string): Promise<BackupManifest> {
  const target = parseMariaGtidList(stopAt)[0]!;
  const { backups, lineage } = await usableBackups(input);
  const candidates = backups.filter((m) => domainSeq(m.gtid, target.domain) <= target.seq).reverse();
  const refused: string[] = [];
  for (const m of candidates) {
    const check = await long.verifyBackup({ cluster: input.cluster, backupId: m.id });
    if (check.ok) return m;
    refused.push(`${m.id} fails its checksum`);
  }
  const kind = input.backupKind ?? (input.recoverOn ? 'logical' : undefined);
  const since = lineage ? ` since ${lineage.promoted} was promoted (${lineage.since}; older backups hold the skipped ${lineage.skipped})` : '';
  throw ApplicationFailure.nonRetryable(`no ${kind ?? ''}${kind ? ' ' : ''}backup of ${input.cluster} taken${since} at or before ${stopAt}${refused.length ? ` passes verification (${refused.join('; ')})` : ''}`, 'NoBackup');
}

function stepsAfterPlan(skip: boolean, cutover: CutoverMode): string[] {
  return [
    ...(cutover !== 'none' ? ['check the cluster lock'] : []),
    'load policy',
    'prepare recovery instance',
    ...(skip ? ['replay to just before the bad event', 'skip the bad event', 'replay the rest'] : ['replay to the target']),
    'probe topology',
    'verify',
    ...(cutover === 'copy-tables' ? ['approval', 'lock cluster', 'cut over', 'unlock cluster'] : []),
    ...(cutover === 'promote' ? ['approval', 'lock cluster', ...PROMOTE_STEPS, 'unlock cluster'] : []),
    'stop the scratch instances',
    'record',
  ];
}

async function stopScratch(rb: Runbook, ref: Ref): Promise<void> {
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
    ...(target.warnings ?? []).map((w) => `- **warning**: ${w}`),
    `- **backup**: ${backup.id} (${backup.kind}, from ${backup.instance}, ended ${backup.endedAt}) at ${backup.gtid}`,
    `- **replay** (${method}): ${backup.gtid} → ${target.stopAt}${skip && bad ? `, skip ${bad.gtid}, then → ${target.archiveEnd}` : ''} (${transactions} transaction(s), no gap)`,
    ...(bad ? [`- **bad event**: ${bad.gtid} at ${bad.file}:${bad.startPosition}-${bad.endPosition}, ${new Date(bad.timestamp).toISOString()}: \`${bad.statements[0] ?? bad.kind}\``] : []),
    `- **recover on**: ${input.recoverOn ? `recovery host ${input.recoverOn} (wiped first)` : "a scratch instance on the worker's host"}`,
    `- **cut over**: ${
      cutover === 'none'
        ? 'none (recover and verify only)'
        : cutover === 'copy-tables'
          ? `copy ${bad?.tables.join(', ')} back into production after approval`
          : `after approval, fence the primary, let ${input.recoverOn} catch up from it and promote it; every old member then needs a reseed`
    }`,
  ].join('\n');
}

export interface RestorePruneInput {
  cluster: string;
  olderThanDays: number;
  requester: string;
  dryRun?: boolean;
}

/**
 * `runbook restore <cluster> --prune`: remove what earlier restores kept (their recovery datadirs,
 * 350-500 MB each, and staging schemas on the primary) once older than N days; a run that is still
 * going keeps its own. Audited like any runbook; `dryRun` lists only.
 */
export async function restorePrune(input: RestorePruneInput) {
  return runRunbook({ runbook: 'restore-prune', cluster: input.cluster, operator: input.requester, reason: `prune restores older than ${input.olderThanDays} day(s)` }, async (rb) => {
    const topology = await rb.step('probe topology', () => act.probeTopology(input.cluster), { note: (t) => `primary ${t.primary ?? 'NONE'}` });
    const pruned = await rb.step(input.dryRun ? 'list old restores (dry run)' : 'prune old restores', () => act.pruneRestores({ cluster: input.cluster, olderThanDays: input.olderThanDays, primary: topology.primary ?? undefined, dryRun: Boolean(input.dryRun) }), {
      note: (p) => `${p.directories.length} director${p.directories.length === 1 ? 'y' : 'ies'} (${Math.round(p.directories.reduce((n, d) => n + d.bytes, 0) / 1048576)} MiB), ${p.schemas.length} staging schema(s)${p.kept.length ? `; kept ${p.kept.length} in use` : ''}`,
      detail: (p) => ({ pruned: p }),
    });
    if (input.dryRun) rb.outcome = 'dry_run';
    return pruned;
  });
}

