/** Watching the monitor from tests: its rows in failover_log, its state, the failovers it started. */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Client } from '@temporalio/client';
import type { RunbookConfig } from '../../src/config/load';
import { withControl } from '../../src/adapters/control/store';
import type { Sandbox } from '../../src/adapters/mariadbd/sandbox';
import { monitorStateQuery, monitorWorkflowId, type MonitorSnapshot } from '../../src/core/monitorDefinitions';
import { eventually } from './sandbox';

export interface MonitorRow {
  runId: string;
  seq: number;
  step: string;
  status: string;
  detail: Record<string, unknown>;
}

export async function monitorRows(config: RunbookConfig, cluster = 'orders'): Promise<MonitorRow[]> {
  return withControl(config, async (c) => {
    const [rows] = await c.query('SELECT run_id, step_seq, step, status, detail FROM failover_log WHERE workflow_id = ? ORDER BY id', [monitorWorkflowId(cluster)]);
    return (rows as Record<string, unknown>[]).map((r) => ({
      runId: String(r.run_id),
      seq: Number(r.step_seq),
      step: String(r.step),
      status: String(r.status),
      detail: (typeof r.detail === 'string' ? JSON.parse(r.detail) : r.detail) ?? {},
    }));
  });
}

/** Wait for a monitor row matching `test`, appearing after `after` rows (the count before the action). */
export async function waitForRow(config: RunbookConfig, test: (r: MonitorRow) => boolean, after = 0, timeoutMs = 60_000): Promise<MonitorRow> {
  try {
    return await eventually('monitor row', async () => (await monitorRows(config)).slice(after).find(test), timeoutMs);
  } catch (err) {
    // Say what the monitor did record: the failure is then readable without the database.
    const seen = (await monitorRows(config).catch(() => [])).slice(after).map((r) => `${r.status} ${r.step}`);
    throw new Error(`${(err as Error).message}; rows since: ${seen.slice(-20).join(' | ') || 'none'}`);
  }
}

/** The failover runs the monitor started for a cluster (incident ids `auto-…`), oldest first. */
export async function automaticFailovers(config: RunbookConfig, cluster = 'orders'): Promise<string[]> {
  return withControl(config, async (c) => {
    const [rows] = await c.query(
      "SELECT workflow_id, MIN(id) AS first FROM failover_log WHERE runbook = 'failover' AND cluster = ? AND incident_id LIKE 'auto-%' GROUP BY workflow_id ORDER BY first",
      [cluster],
    );
    return (rows as { workflow_id: string }[]).map((r) => r.workflow_id);
  });
}

export async function snapshotOf(client: Client, cluster = 'orders'): Promise<MonitorSnapshot> {
  return client.workflow.getHandle(monitorWorkflowId(cluster)).query(monitorStateQuery);
}

/**
 * A STONITH stand-in that really fences: SIGKILLs the old primary's mariadbd (pid files written by
 * `writePidFiles`) and succeeds only once that process is gone.
 */
export function stonithHook(dir: string) {
  const pidFile = `${dir}/$RUNBOOK_OLD_INSTANCE.pid`;
  return { name: 'stonith', command: `kill -9 $(cat ${pidFile}) 2>/dev/null; sleep 0.2; ! kill -0 $(cat ${pidFile}) 2>/dev/null`, timeoutSeconds: 5 };
}

export function writePidFiles(sandbox: Sandbox, dir: string, instances: string[]): void {
  for (const name of instances) writeFileSync(join(dir, `${name}.pid`), String(sandbox.state(sandbox.instance(name)).pid ?? 0));
}

/**
 * Each subject's transitions must chain (the `to` of one is the `from` of the next) across every
 * run of the monitor: a round recorded twice (a replay, a resumed worker) would break the chain.
 * A monitor stopped and started again starts its chains afresh.
 */
export function brokenChains(rows: MonitorRow[]): string[] {
  const last = new Map<string, string>();
  const broken: string[] = [];
  for (const r of rows) {
    // A monitor started afresh (not a continue-as-new) begins from unknown again.
    if (r.step === 'monitor started') last.clear();
    if (r.status !== 'state_change' || typeof r.detail.subject !== 'string') continue;
    const subject = r.detail.subject;
    const before = last.get(subject);
    if (before !== undefined && r.detail.from !== before) broken.push(`${r.step} (after ${subject} → ${before})`);
    last.set(subject, String(r.detail.to));
  }
  return broken;
}
