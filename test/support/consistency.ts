/** Running the consistency runbook from tests, and the replica states its tests look at. */
import type { Client, WorkflowHandle } from '@temporalio/client';
import type { RunbookConfig } from '../../src/config/load';
import type { ConsistencyInput, ConsistencyResult } from '../../src/workflows/consistency';
import { decide, waitForApprovalRequest } from './failover';
import { rowsOn, sql } from './stack';

let counter = 0;

/** Start a run on `orders` and wait for its end, approving as `approver` when it asks. */
export async function runConsistency(client: Client, taskQueue: string, over: Partial<ConsistencyInput>, approver = 'bob'): Promise<{ handle: WorkflowHandle; result: ConsistencyResult }> {
  const handle = await client.workflow.start('consistency', {
    taskQueue,
    workflowId: `consistency-orders-T${Date.now()}-${++counter}`,
    args: [{ cluster: 'orders', requester: 'alice', reason: 'consistency test', ...over } satisfies ConsistencyInput],
  });
  const result = handle.result() as Promise<ConsistencyResult>;
  const approve = (async () => {
    const s = await waitForApprovalRequest(handle, 110_000).catch(() => undefined);
    if (s) await decide(handle, 'approve', approver);
  })();
  return { handle, result: await Promise.race([result, approve.then(() => result)]) };
}

/** Every replica has applied what the primary (orders-a unless named) has written so far, at any depth. */
export async function replicasCaughtUp(config: RunbookConfig, replicas = ['orders-b', 'orders-c'], primary = 'orders-a'): Promise<void> {
  const p = ((await rowsOn(config, primary, 'SELECT @@gtid_binlog_pos AS p')) as { p: string }[])[0]!.p;
  for (const r of replicas) {
    const [{ w }] = (await rowsOn(config, r, `SELECT MASTER_GTID_WAIT('${p}', 60) AS w`)) as [{ w: number | string }];
    // -1: not there within 60 s. Say so here rather than let a later comparison blame the data.
    if (Number(w) !== 0) throw new Error(`${r} did not apply ${primary}'s position ${p} within 60 s`);
  }
}

/** Both threads running, and no UNTIL left behind (that would stop it at the next event). */
export async function replicating(config: RunbookConfig, instance: string): Promise<boolean> {
  const [s] = await rowsOn(config, instance, 'SHOW SLAVE STATUS');
  return s?.Slave_IO_Running === 'Yes' && s?.Slave_SQL_Running === 'Yes' && s?.Until_Condition === 'None';
}

/** Write on one instance only, unlogged (no GTID of its own): drift, as a rogue or sql_log_bin=0 write makes it. */
export const onlyOn = (config: RunbookConfig, instance: string, ...statements: string[]) => sql(config, instance, 'SET SESSION sql_log_bin = 0', ...statements);
