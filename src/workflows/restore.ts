/**
 * Restore runbook (point-in-time recovery), first slice: locate the bad event in the archived
 * binlogs → choose the newest verified backup before it → restore it into a recovery instance →
 * replay up to just before the bad event → skip it (when asked) → replay the rest → verify against
 * production. Nothing here touches production. Not built yet: approval and cut over (copy tables
 * back or promote), physical backups, the pipe fallback, gap checks beyond the archive's own.
 */
import * as wf from '@temporalio/workflow';
import { ApplicationFailure } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { BadEventQuery, BinlogEventGroup } from '../backup/binlogEvents';
import { parseMariaGtidList } from '../mysql/dialect';
import { runRunbook } from './runbook';

export interface RestoreInput {
  cluster: string;
  badEvent: BadEventQuery;
  /** Skip the bad transaction and replay what came after it (else stop just before it). */
  skip: boolean;
  /** Tables to compare with production afterwards (`db.table`). */
  compare: string[];
  requester: string;
  reason: string;
  incidentId: string;
  dryRun?: boolean;
}

export interface RestoreResult {
  status: 'succeeded' | 'dry_run';
  badEvent: BinlogEventGroup;
  backupId: string;
  appliedTo?: string;
  comparison?: Awaited<ReturnType<Activities['compareTables']>>;
}

const act = wf.proxyActivities<Activities>({ startToCloseTimeout: '2m', retry: { maximumAttempts: 3 } });
const long = wf.proxyActivities<Activities>({ startToCloseTimeout: '6h', heartbeatTimeout: '30s', retry: { maximumAttempts: 3 } });

const seqOf = (gtid: string) => parseMariaGtidList(gtid)[0]!;

export async function restore(input: RestoreInput): Promise<RestoreResult> {
  const meta = { runbook: 'restore', cluster: input.cluster, operator: input.requester, incidentId: input.incidentId, reason: input.reason };
  return runRunbook(meta, async (rb) => {
    const bad = await rb.step(
      'locate bad event',
      async () => {
        const found = await long.findBadEvents({ cluster: input.cluster, query: input.badEvent, limit: 10 });
        if (found.length !== 1) {
          const list = found.map((g) => `${g.gtid} ${g.statements[0] ?? ''}`).join('; ');
          throw ApplicationFailure.nonRetryable(`${found.length} events match; narrow the window, table or pattern${list ? `: ${list}` : ''}`, 'AmbiguousEvent');
        }
        return found[0]!;
      },
      { note: (g) => `${g.gtid} ${g.file}:${g.startPosition}-${g.endPosition}: ${g.statements[0] ?? ''}` },
    );
    const badGtid = seqOf(bad.gtid);
    const backup = await rb.step(
      'choose backup',
      async () => {
        const before = (await act.listBackups({ cluster: input.cluster })).filter((m) => {
          const g = m.gtid ? parseMariaGtidList(m.gtid).find((x) => x.domain === badGtid.domain) : undefined;
          return m.kind === 'logical' && (g?.seq ?? 0) < badGtid.seq;
        });
        const chosen = before.at(-1);
        if (!chosen) throw ApplicationFailure.nonRetryable(`no logical backup taken before ${bad.gtid}`, 'NoBackup');
        const check = await long.verifyBackup({ cluster: input.cluster, backupId: chosen.id });
        if (!check.ok) throw ApplicationFailure.nonRetryable(`backup ${chosen.id} fails its checksum (${check.actual} ≠ ${check.expected})`, 'ChecksumMismatch');
        return chosen;
      },
      { note: (m) => `${m.id} at ${m.gtid}` },
    );
    rb.details.plan = { badEvent: bad, backup: backup.id, binlogRange: `${backup.gtid} → ${bad.gtid}${input.skip ? ' (skipped) → end of archive' : ''}` };
    if (input.dryRun) {
      for (const s of ['prepare recovery instance', 'replay to just before the bad event', 'skip the bad event', 'replay the rest', 'verify']) rb.skip(s, 'dry run: nothing changed');
      rb.outcome = 'dry_run';
      return { status: 'dry_run', badEvent: bad, backupId: backup.id };
    }
    const restoreId = wf.workflowInfo().workflowId.replace(/[^A-Za-z0-9_.-]/g, '_');
    const ref = { cluster: input.cluster, restoreId };
    const prepared = await rb.step('prepare recovery instance', () => long.prepareRecovery({ ...ref, backupId: backup.id }), {
      note: (p) => `loaded ${backup.id} at ${p.backupGtid}; archive up to ${p.archivedUpTo}`,
    });
    const previous = `${badGtid.domain}-${badGtid.server}-${badGtid.seq - 1}`;
    let appliedTo = (await rb.step('replay to just before the bad event', () => long.replayTo({ ...ref, until: previous, timeoutSeconds: 3600 }), { note: (r) => `at ${r.appliedTo}` })).appliedTo;
    if (input.skip) {
      await rb.step('skip the bad event', () => act.skipTransaction({ ...ref, gtid: bad.gtid, previous }));
      appliedTo = (await rb.step('replay the rest', () => long.replayTo({ ...ref, until: prepared.archivedUpTo, timeoutSeconds: 3600 }), { note: (r) => `at ${r.appliedTo}` })).appliedTo;
    }
    const topology = await act.probeTopology(input.cluster);
    const comparison = await rb.step(
      'verify',
      async () => {
        const result = await act.compareTables({ ...ref, primary: topology.primary!, tables: [...new Set([...input.compare, ...bad.tables])] });
        const missing = bad.tables.filter((t) => !result.tables.find((x) => x.table === t)?.recovery);
        if (missing.length) throw ApplicationFailure.nonRetryable(`the recovery instance lacks ${missing.join(', ')}`, 'VerificationFailed');
        const differ = result.tables.filter((t) => !bad.tables.includes(t.table) && JSON.stringify(t.recovery) !== JSON.stringify(t.production));
        if (input.skip && differ.length) throw ApplicationFailure.nonRetryable(`tables differ from production: ${differ.map((d) => d.table).join(', ')}`, 'VerificationFailed');
        return result;
      },
      { note: (r) => r.tables.map((t) => `${t.table}: ${t.recovery?.rows ?? 'missing'} row(s)`).join(', '), detail: (r) => ({ comparison: r }) },
    );
    await rb.step('stop the scratch instances', () => act.stopRecovery(ref));
    return { status: 'succeeded', badEvent: bad, backupId: backup.id, appliedTo, comparison };
  });
}
