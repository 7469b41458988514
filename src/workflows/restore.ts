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
import type { ReplayMethod, Verification } from '../activities/restore';
import type { BackupKind, BackupManifest } from '../backup/manifest';
import { formatDuration } from '../shared/format';
import { parseMariaGtidList } from '../mysql/dialect';
import { ApprovalGate } from './approval';
import { runRunbook, type Runbook, type StartedFromCli } from './runbook';
import { gtidProblem, tableProblem } from '../shared/inputs';

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
  status: 'succeeded' | 'dry_run' | 'rejected' | 'timed_out';
  target: ResolvedTarget;
  backupId: string;
  /** The last transaction applied on the recovery instance: the achieved recovery point. */
  recoveryPoint?: string;
  verification?: Verification;
  cutover?: Awaited<ReturnType<Activities['cutOverTables']>>;
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
    const target = await rb.step(
      'locate target',
      async () => {
        checkInput(input);
        return long.locateTarget({ cluster: input.cluster, target: input.target, after: await oldestBackupPosition(input) });
      },
      { note: (t) => t.description, detail: (t) => ({ target: t }) },
    );
    const skip = Boolean(input.skip && target.event);
    const replayEnd = skip ? target.archiveEnd : target.stopAt;
    const backup = await rb.step('choose backup', () => chooseBackup(input, target.stopAt), { note: (m) => `${m.id} (${m.kind}, from ${m.instance}) at ${m.gtid}` });
    const coverage = await rb.step('check binlog coverage', () => long.checkBinlogCoverage({ cluster: input.cluster, archive: target.archive, from: backup.gtid, to: replayEnd }), {
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
  let promotion: Promotion | undefined;
  if (cutover !== 'none') {
    const policy = await act.clusterPolicy({ cluster: input.cluster, runbook: 'restore', mode: cutover });
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
        const tables = eventTables.map((t) => ({ table: t, productionChecksum: verification.tables.find((v) => v.table === t)?.production?.checksum ?? null }));
        cut = await rb.step('cut over', () => long.cutOverTables({ ...ref, primary, tables }), {
          note: (c) => c.tables.map((t) => `${t.table}: ${t.action}`).join('; '),
          detail: (c) => ({ cutover: c }),
        });
      } else {
        promotion = await promoteRecoveryHost(rb, input, ref, { primary, members: topology.instances.map((i) => ({ instance: i.instance, region: i.region })), method, badEvent: target.event!.gtid, catchUpSeconds: policy.thresholds.catchUpTimeoutSeconds });
      }
    } finally {
      await wf.CancellationScope.nonCancellable(() => rb.step('unlock cluster', () => act.releaseClusterLock(lock)));
    }
  }
  await stopScratch(rb, ref);
  const result: RestoreResult = { status: 'succeeded', target, backupId: backup.id, recoveryPoint, verification, cutover: cut, promotion, phases: phases(rb) };
  await rb.step('record', async () => result, {
    note: (r) => `recovery point ${r.recoveryPoint}; ${r.phases.map((p) => `${p.step} ${formatDuration(p.ms)}`).join(', ')}`,
    detail: (r) => ({ recoveryPoint: r.recoveryPoint, phases: r.phases, backupId: r.backupId, target: r.target.stopAt }),
  });
  rb.updateNotice({ plan: `${plan}\n\n**Recovered to ${recoveryPoint}.** ${describeCutover(cut, promotion)}\n\n${result.phases.map((p) => `- ${p.step}: ${formatDuration(p.ms)}`).join('\n')}` });
  return result;
}

/**
 * The failover machinery, with the recovery host as the candidate: fence the old primary, let the
 * recovery host catch up from it (it resumes after the skipped event, so it receives every write
 * production took since), promote it, switch traffic, verify. A catch-up that fails unfences the
 * old primary: production is then as it was. The old members all hold the bad event: they stay
 * read-only and are marked for reseed from the new primary, never repointed.
 */
async function promoteRecoveryHost(
  rb: Runbook,
  input: RestoreInput,
  ref: Ref,
  o: { primary: string; members: { instance: string; region: string }[]; method: ReplayMethod; badEvent: string; catchUpSeconds: number },
): Promise<Promotion> {
  const { cluster } = input;
  const host = input.recoverOn!;
  const old = { cluster, instance: o.primary };
  const fence = await rb.step('fence old primary', () => act.fenceOldPrimary(old), { note: (f) => `${o.primary} read-only at ${f.finalPosition}, ${f.killedSessions} session(s) ended` });
  try {
    await rb.step('catch up from the old primary', async () => {
      await act.replicateRecoveryFrom({ ...ref, method: o.method, source: o.primary });
      return waits.waitForCatchUp({ cluster, instance: host, position: fence.finalPosition, timeoutSeconds: o.catchUpSeconds });
    }, { note: (w) => `${host} at ${w.appliedPosition} after ${w.waitedMs} ms` });
  } catch (err) {
    await wf.CancellationScope.nonCancellable(() => rb.step('unfence old primary (compensation)', () => act.unfencePrimary(old)));
    throw err;
  }
  await rb.step('promote recovery host', () => act.promoteCandidate({ cluster, instance: host, expectedSource: o.primary }), { note: (p) => `${host} writable at ${p.position}` });
  const stale = o.members.map((m) => m.instance);
  await rb.step('start a new backup lineage', () => act.startBackupLineage({ cluster, promoted: host, skipped: o.badEvent, workflowId: wf.workflowInfo().workflowId, stale }), {
    note: (l) => `backups ended before ${l.since} hold ${o.badEvent}: restores will not use them, and ${stale.join(', ')} are not backed up until reseeded`,
  });
  await rb.step('switch traffic', async () => {
    const endpoint = await act.setWriterEndpoint({ cluster, instance: host, workflowId: wf.workflowInfo().workflowId, incidentId: input.incidentId });
    const hooks = await act.runHooks({
      cluster,
      kind: 'traffic',
      env: { cluster, mode: 'restore', oldInstance: o.primary, newInstance: host, oldPrimary: '', newPrimary: '', oldRegion: '', newRegion: '', incidentId: input.incidentId, workflowId: wf.workflowInfo().workflowId },
    });
    return { endpoint, hooks };
  }, { note: (r) => `writer endpoint generation ${r.endpoint.generation}${r.hooks.length ? `, hooks: ${r.hooks.map((h) => `${h.name} ${h.ok ? 'ok' : 'FAILED'}`).join(', ')}` : ''}` });
  const needReseed = o.members.map((m) => m.instance);
  await rb.step('mark old members for reseed', async () => {
    for (const m of o.members) {
      await act.markNeedsFailback({ cluster, region: m.region, instance: m.instance, role: m.instance === o.primary ? 'old_primary' : 'replica', remark: `holds ${o.badEvent}, skipped by restore ${input.incidentId}: reseed from ${host}` });
    }
  }, { note: () => `${needReseed.join(', ')} hold ${o.badEvent}: reseed them from ${host}` });
  await rb.step('verify promotion', () => waits.verifyCluster({ cluster, primary: host, replicas: [], workflowId: wf.workflowInfo().workflowId, timeoutSeconds: 30 }), {
    note: (v) => `heartbeat ${v.heartbeatPosition} written on ${host}; the only writable instance`,
  });
  return { promoted: host, oldPrimary: o.primary, needReseed };
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
  for (const t of input.compare ?? []) if (!/^[^.\s]+\.[^.\s]+$/.test(t)) refuse(`compare: "${t}" is not db.table`);
  const t = input.target as Partial<{ gtid: string; event: { table?: string; gtid?: string } }>;
  const format = [tableProblem('target.event.table', t.event?.table), gtidProblem('target.event.gtid', t.event?.gtid), gtidProblem('target.gtid', t.gtid), ...(input.compare ?? []).map((c) => tableProblem('compare', c, { qualified: true }))].find(Boolean);
  if (format) refuse(format);
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
    'prepare recovery instance',
    ...(skip ? ['replay to just before the bad event', 'skip the bad event', 'replay the rest'] : ['replay to the target']),
    'verify',
    ...(cutover === 'copy-tables' ? ['approval', 'cut over'] : []),
    ...(cutover === 'promote' ? ['approval', 'fence old primary', 'catch up from the old primary', 'promote recovery host', 'start a new backup lineage', 'switch traffic', 'mark old members for reseed', 'verify promotion'] : []),
    'stop the scratch instances',
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
