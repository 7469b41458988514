/**
 * The consistency check's lag and load limits, on real servers: while the primary runs more
 * statements than `--max-threads-running`, or a replica lags more than the cluster's
 * `maxLagSeconds`, the check waits between chunks (saying why in its heartbeat), and carries on,
 * to a correct result, once the cause is gone. The causes are real: sessions sleeping on the
 * primary, and a row lock on the replica that its SQL thread must wait for.
 */
import type { WorkflowHandle } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunbookConfig } from '../../src/config/load';
import type { Sandbox } from '../../src/adapters/mariadbd/sandbox';
import { connect, instanceEndpoint, type Conn } from '../../src/adapters/mysql/connect';
import type { ConsistencyInput, ConsistencyResult } from '../../src/workflows/consistency';
import { replicasCaughtUp } from '../support/consistency';
import { eventually, startTestSandbox } from '../support/sandbox';
import { rowsOn, sql, startInProcessWorker, type InProcessWorker } from '../support/stack';

const BASE = 29300;
const taskQueue = `consistency-throttle-${process.pid}`;
let config: RunbookConfig;
let sandbox: Sandbox;
let stack: InProcessWorker;
let counter = 0;

beforeAll(async () => {
  ({ config, sandbox } = await startTestSandbox('consistency-throttle', BASE, (doc) => {
    doc.clusters.orders.thresholds.maxLagSeconds = 1;
  }));
  stack = await startInProcessWorker(config, taskQueue);
  await sql(config, 'orders-a', 'CREATE DATABASE th', 'CREATE TABLE th.t (id INT PRIMARY KEY, v INT NOT NULL)', 'INSERT INTO th.t SELECT seq, 0 FROM mysql.seq_1_to_3000');
  await replicasCaughtUp(config);
}, 120_000);

afterAll(async () => {
  await stack?.stop();
  await sandbox?.destroy();
});

function start(over: Partial<ConsistencyInput>): Promise<WorkflowHandle> {
  return stack.client.workflow.start('consistency', {
    taskQueue,
    workflowId: `consistency-orders-throttle-${Date.now()}-${++counter}`,
    args: [{ cluster: 'orders', requester: 'alice', reason: 'throttle test', table: 'th.t', chunkRows: 500, ...over } satisfies ConsistencyInput],
  });
}

/** The reasons the running compare activity last heartbeated for waiting, if it is waiting. */
async function waitingBecause(handle: WorkflowHandle): Promise<string[] | undefined> {
  const d = await handle.describe();
  for (const a of d.raw.pendingActivities ?? []) {
    const payload = a.heartbeatDetails?.payloads?.[0];
    const beat = payload ? (defaultPayloadConverter.fromPayload(payload) as { phase?: string; reasons?: string[] }) : undefined;
    if (beat?.phase === 'waiting' && beat.reasons?.length) return beat.reasons;
  }
  return undefined;
}

/** Every copy's counts are zero (or it has none). */
const noDifferences = (d: Record<string, Record<string, number>>) => Object.values(d).every((c) => Object.values(c).every((n) => n === 0));

const admin = (instance: string) => connect(instanceEndpoint(config, 'orders', instance));

describe('lag and load limits', () => {
  it('waits while the primary runs more statements than the limit, says so, and finishes once they end', async () => {
    const busy: Conn[] = await Promise.all(Array.from({ length: 6 }, () => admin('orders-a')));
    // Each sleeps on the server until it is killed: a busy primary, for as long as the test needs.
    const sleeping = busy.map((c) => c.query('SELECT SLEEP(600)').catch(() => undefined));
    let handle: WorkflowHandle | undefined;
    try {
      await eventually('the sleepers running', async () => Number(((await rowsOn(config, 'orders-a', "SHOW GLOBAL STATUS LIKE 'Threads_running'")) as { Value: string }[])[0]!.Value) >= 7);
      handle = await start({ maxThreadsRunning: 4 });
      const reasons = await eventually('the check waiting for the load', () => waitingBecause(handle!), 60_000);
      expect(reasons.join('; ')).toMatch(/orders-a has \d+ threads running \(limit 4\)/);
    } finally {
      const ids = busy.map((c) => c.threadId);
      await sql(config, 'orders-a', ...ids.map((id) => `KILL QUERY ${id}`));
      await Promise.all(sleeping);
      for (const c of busy) c.destroy();
    }
    const result = (await handle!.result()) as ConsistencyResult;
    expect(result.status).toBe('succeeded');
    expect(result.report.throttledMs).toBeGreaterThan(0);
    expect(result.report.throttleReasons.join('; ')).toMatch(/threads running \(limit 4\)/);
    const table = result.report.tables.find((t) => t.table === 'th.t')!;
    expect(table.rowsCompared).toBeGreaterThanOrEqual(3000);
    expect(noDifferences(table.differences)).toBe(true);
  }, 180_000);

  it('waits while a replica lags more than maxLagSeconds, says so, and finishes once it has caught up', async () => {
    // A row lock on the replica: its SQL thread waits on the next change to that row, and lags.
    const blocker = await admin('orders-b');
    let handle: WorkflowHandle | undefined;
    try {
      await blocker.query('START TRANSACTION');
      await blocker.query('SELECT * FROM th.t WHERE id = 1 FOR UPDATE');
      await sql(config, 'orders-a', 'UPDATE th.t SET v = v + 1 WHERE id = 1');
      await eventually('orders-b lagging', async () => {
        const [s] = await rowsOn(config, 'orders-b', 'SHOW SLAVE STATUS');
        return Number(s?.Seconds_Behind_Master ?? 0) >= 2;
      }, 60_000);
      handle = await start({ replicas: ['orders-b'] });
      const reasons = await eventually('the check waiting for the lag', () => waitingBecause(handle!), 60_000);
      expect(reasons.join('; ')).toMatch(/orders-b lags \d+ s \(limit 1\)/);
    } finally {
      await blocker.query('ROLLBACK').catch(() => undefined);
      blocker.destroy();
    }
    const result = (await handle!.result()) as ConsistencyResult;
    expect(result.status).toBe('succeeded');
    expect(result.report.throttledMs).toBeGreaterThan(0);
    expect(result.report.throttleReasons.join('; ')).toMatch(/orders-b lags \d+ s \(limit 1\)/);
    expect(noDifferences(result.report.tables.find((t) => t.table === 'th.t')!.differences)).toBe(true);
  }, 180_000);
});
