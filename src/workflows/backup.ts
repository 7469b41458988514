/**
 * Backup runbook: choose source → take logical backup → take physical backup → archive binlogs →
 * verify checksums.
 *
 * The source is the requested instance, else a healthy replica (sparing the primary), else the
 * primary. Binlogs are archived from the primary: its binlogs are the authoritative stream a
 * point-in-time recovery replays from the backup's GTID on. Backup ids are `<kind>-<yyyymmddHHMMSS>`
 * from the workflow's start time, so a retried or replayed step takes (or finds) the same backup.
 */
import * as wf from '@temporalio/workflow';
import { ApplicationFailure } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { BackupActivities } from '../activities/backup';
import { backupIdFor, chooseBackupSource, type BackupKind, type BackupManifest, type BinlogArchiveEntry } from '../core/manifest';
import { runRunbook } from './shared/runbook';
import { type StartedFromCli } from '../core/runbookDefinitions';

export interface BackupInput extends StartedFromCli {
  cluster: string;
  /** The instance to back up; default: a healthy replica, else the primary. */
  instance?: string;
  kind: BackupKind | 'both';
  requester: string;
  reason?: string;
}

export interface BackupResult {
  manifests: BackupManifest[];
  binlogs: BinlogArchiveEntry[];
}

const quick = wf.proxyActivities<Activities>({
  startToCloseTimeout: '30s',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumAttempts: 3 },
});
// Long work that heartbeats (bytes so far): a dead worker is noticed within 30 s and the step
// starts over elsewhere; the activities make a second attempt safe.
const long = wf.proxyActivities<BackupActivities>({
  startToCloseTimeout: '30m',
  heartbeatTimeout: '30s',
  retry: { initialInterval: '5s', backoffCoefficient: 2, maximumAttempts: 3 },
});

const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;

export async function backup(input: BackupInput): Promise<BackupResult> {
  const kinds: BackupKind[] = input.kind === 'both' ? ['logical', 'physical'] : [input.kind];
  const startedAt = wf.workflowInfo().startTime;
  return runRunbook({ runbook: 'backup', cluster: input.cluster, operator: input.requester, reason: input.reason, configFingerprint: input.configFingerprint }, async (rb) => {
    const choice = await rb.step(
      'choose source',
      async () => {
        const [policy, topology] = await Promise.all([
          quick.clusterPolicy({ cluster: input.cluster, runbook: 'backup', mode: 'default' }),
          quick.probeTopology(input.cluster),
        ]);
        try {
          return chooseBackupSource(topology, policy.thresholds.maxLagSeconds, input.instance);
        } catch (err) {
          throw ApplicationFailure.nonRetryable((err as Error).message, 'NoBackupSource');
        }
      },
      { note: (c) => c.reason, detail: (c) => ({ source: c.source, primary: c.primary }) },
    );
    rb.details.source = choice.source;

    const manifests: BackupManifest[] = [];
    for (const kind of kinds) {
      const backupId = backupIdFor(kind, startedAt);
      const manifest = await rb.step(`take ${kind} backup`, () => long.takeBackup({ cluster: input.cluster, instance: choice.source, kind, backupId }), {
        summary: `backup ${input.cluster}: ${kind} backup ${backupId} of ${choice.source}`,
        note: (m) => `${m.id}: ${mib(m.sizeBytes)} at ${m.gtid || 'empty GTID'} (${m.binlog.file}:${m.binlog.position})`,
        detail: (m) => ({ backupId: m.id, instance: m.instance, gtid: m.gtid, binlog: m.binlog, sizeBytes: m.sizeBytes, sha256: m.sha256 }),
      });
      manifests.push(manifest);
      rb.details.manifests = manifests.map((m) => m.id);
    }

    let binlogs: BinlogArchiveEntry[] = [];
    if (choice.primary) {
      const primary = choice.primary;
      binlogs = await rb.step('archive binlogs', () => long.archiveBinlogs({ cluster: input.cluster, instance: primary }), {
        summary: `backup ${input.cluster}: archive binlogs of ${primary}`,
        note: (b) => `${b.length} file(s) from ${primary}, up to ${b[b.length - 1]?.file ?? 'none'}`,
        detail: (b) => ({ instance: primary, files: b.map((e) => e.file), current: b.find((e) => !e.complete)?.file }),
      });
    } else {
      rb.skip('archive binlogs', 'no single primary to copy binlogs from');
    }

    await rb.step(
      'verify checksums',
      async () => {
        const results = [];
        for (const m of manifests) results.push({ id: m.id, ...(await long.verifyBackup({ cluster: input.cluster, backupId: m.id })) });
        const bad = results.filter((r) => !r.ok);
        if (bad.length) {
          throw ApplicationFailure.nonRetryable(bad.map((r) => `${r.id}: sha256 ${r.actual}, manifest says ${r.expected}`).join('; '), 'ChecksumMismatch');
        }
        return results;
      },
      { note: (r) => `${r.length} backup(s) verified` },
    );
    return { manifests, binlogs };
  });
}
