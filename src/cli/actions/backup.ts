/** `runbook backup`: take a backup now (and follow it) or schedule it. */
import { ScheduleOverlapPolicy } from '@temporalio/client';
import type { backup, BackupInput, BackupResult } from '../../workflows/backup';
import { identityProblem, nameProblem, textProblem } from '../../core/inputs';
import { temporalSettings } from '../../adapters/temporal/client';
import { failureMessage, follow, workerPresent } from './follow';
import { cliConfig, newIncidentId, verifiedCliUser, withClient } from './common';

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
    const handle = await c.workflow.start<typeof backup>('backup', { taskQueue, workflowId, args: [input], staticSummary: `backup ${o.cluster} (${o.kind}) by ${requester}` });
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
