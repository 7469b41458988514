/**
 * `runbook archive start|stop|status <cluster>`: continuous binlog archiving (the `binlog-archive`
 * workflow, one per cluster). Status comes from Temporal alone (the workflow and its activity's
 * last heartbeat), so it answers wherever the CLI runs.
 */
import { WorkflowExecutionAlreadyStartedError, WorkflowIdConflictPolicy, WorkflowNotFoundError, type Client } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import type { ArchiveProgress } from '../../activities/archive';
import { Cluster, Operator, RunbookType } from '../../core/searchAttributes';
import { temporalSettings } from '../../adapters/temporal/client';
import { binlogArchiveWorkflowId, type binlogArchive, type BinlogArchiveInput } from '../../workflows/binlogArchive';
import { workerPresent } from './follow';
import { printJson } from './output';
import { verifiedCliUser, withClient } from './common';
import type { RunbookConfig } from '../../config/load';

export interface ArchiveStatus {
  cluster: string;
  workflowId: string;
  /** RUNNING, or how it ended; NOT_STARTED when there is none. */
  status: string;
  progress?: ArchiveProgress;
  /** The last attempt's failure, while it is being retried (the primary down, say). */
  lastFailure?: string;
  attempt?: number;
}

/** Start archiving a cluster's binlogs; already running is success (one per cluster). */
export async function startArchive(cluster: string, requester: string, client?: Client): Promise<{ workflowId: string; started: boolean }> {
  const run = async (c: Client) => {
    const { taskQueue } = temporalSettings();
    if (!(await workerPresent(c, taskQueue))) console.error(`warning: no worker polls task queue "${taskQueue}"; start one with: bin/runbook worker`);
    const workflowId = binlogArchiveWorkflowId(cluster);
    try {
      const handle = await c.workflow.start<typeof binlogArchive>('binlogArchive', {
        taskQueue,
        workflowId,
        args: [{ cluster, requester } satisfies BinlogArchiveInput],
        workflowIdConflictPolicy: WorkflowIdConflictPolicy.FAIL,
        staticSummary: `binlog archive ${cluster} (started by ${requester})`,
        typedSearchAttributes: [
          { key: RunbookType, value: 'binlog-archive' },
          { key: Cluster, value: cluster },
          { key: Operator, value: requester },
        ],
      });
      return { workflowId: handle.workflowId, started: true };
    } catch (err) {
      if (err instanceof WorkflowExecutionAlreadyStartedError) return { workflowId, started: false };
      throw err;
    }
  };
  return client ? run(client) : withClient(run);
}

/** `archive start` as typed: who asks is verified as for every other command, then it starts. */
export async function archiveStartCommand(config: RunbookConfig, cluster: string, as: string): Promise<string> {
  const r = await startArchive(cluster, verifiedCliUser(config, cluster, as));
  return r.started ? `started ${r.workflowId}` : `${r.workflowId} is already running`;
}

/** Stop archiving (the activity ends its stream; what was archived stays). */
export async function stopArchive(cluster: string, client?: Client): Promise<boolean> {
  const run = async (c: Client) => {
    const handle = c.workflow.getHandle(binlogArchiveWorkflowId(cluster));
    try {
      const d = await handle.describe();
      if (d.status.name !== 'RUNNING') return false;
      await handle.cancel();
      return true;
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) return false;
      throw err;
    }
  };
  return client ? run(client) : withClient(run);
}

/** `archive stop` as typed: who asks is verified (an archive that stops leaves PITR to backups alone). */
export async function archiveStopCommand(config: RunbookConfig, cluster: string, as: string): Promise<string> {
  verifiedCliUser(config, cluster, as);
  return (await stopArchive(cluster)) ? `stopping binlog archiving of ${cluster}` : `binlog archiving of ${cluster} is not running`;
}

/** Where archiving stands: from the workflow and its activity's last heartbeat. */
export async function archiveStatus(cluster: string, client?: Client): Promise<ArchiveStatus> {
  const run = async (c: Client): Promise<ArchiveStatus> => {
    const workflowId = binlogArchiveWorkflowId(cluster);
    let d;
    try {
      d = await c.workflow.getHandle(workflowId).describe();
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) return { cluster, workflowId, status: 'NOT_STARTED' };
      throw err;
    }
    // Progress is what the running archiver last heartbeated; a stopped one reports none.
    const pending = d.status.name === 'RUNNING' ? d.raw.pendingActivities?.[0] : undefined;
    const payload = pending?.heartbeatDetails?.payloads?.[0];
    const progress = payload ? (defaultPayloadConverter.fromPayload(payload) as ArchiveProgress) : undefined;
    return {
      cluster,
      workflowId,
      status: d.status.name,
      progress,
      lastFailure: pending?.lastFailure?.message ?? undefined,
      attempt: pending?.attempt ?? undefined,
    };
  };
  return client ? run(client) : withClient(run);
}

export function printArchiveStatus(s: ArchiveStatus, json: boolean): void {
  if (json) return printJson(s);
  if (s.status === 'NOT_STARTED') {
    console.log(`${s.cluster}: binlogs are archived only by backups (start continuous archiving with: runbook archive start ${s.cluster} --as <your name>)`);
    return;
  }
  const p = s.progress;
  console.log(`${s.workflowId}: ${s.status}${s.status === 'RUNNING' ? '' : ` (binlogs are archived only by backups now; start again with: runbook archive start ${s.cluster} --as <your name>)`}`);
  if (p) {
    console.log(`  primary ${p.primary}, archived through ${p.archivedTo ?? 'nothing yet'}${p.archivedAt ? ` (committed ${p.archivedAt})` : ''}`);
    console.log(`  the primary is at ${p.primaryAt ?? '?'}: ${p.lagSeconds === 0 ? 'nothing left to archive' : `${p.lagSeconds} s behind`} (as of ${p.updatedAt})`);
  } else if (s.status === 'RUNNING') console.log('  no progress reported yet');
  if (s.lastFailure) console.log(`  retrying (attempt ${s.attempt ?? '?'}): ${s.lastFailure}`);
}
