/**
 * The real worker process SIGKILLed right after fencing, after promoting and after repointing,
 * then restarted: the switchover finishes, exactly one promotion happened, and failover_log has
 * each step once.
 */
import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { RunbookConfig } from '../../src/config/load';
import type { Sandbox } from '../../src/sandbox/sandbox';
import type { FailoverResult } from '../../src/workflows/failover';
import { shape, startFailover, stepLog } from '../support/failover';
import { startTestSandbox } from '../support/sandbox';
import { killWorkerProcesses, startWorkerProcess } from '../support/workerProcess';
import { prepareLoadSchema, WriteLoad } from '../support/writeLoad';

const taskQueue = `failover-crash-${process.pid}`;
let config: RunbookConfig;
let sandbox: Sandbox;
let client: Client;

beforeAll(async () => {
  ({ config, sandbox } = await startTestSandbox('failover-crash', 25000));
  await prepareLoadSchema(config, 'orders', 'orders-a');
  client = new Client({ connection: await Connection.connect({ address: inject('temporalAddress') }) });
});

afterAll(async () => {
  killWorkerProcesses();
  await client?.connection.close();
  await sandbox?.destroy();
});

describe('worker crash during a switchover', () => {
  it.each(['fenceOldPrimary', 'promoteCandidate', 'repointReplica'])('SIGKILL right after %s, restart: the run finishes with one promotion', async (activity) => {
    const primary = (await shape(config)).primary!;
    const target = primary === 'orders-a' ? 'orders-b' : 'orders-a';
    const load = new WriteLoad(config, 'orders', primary);
    load.start();
    const doomed = await startWorkerProcess(config, taskQueue, { CRASH_AFTER_ACTIVITY: activity });
    const handle = await startFailover(client, taskQueue, { target, reason: `crash after ${activity}` });
    // The run must not end before the crash (a refusal would make this wait forever).
    await Promise.race([doomed.exited, handle.result().then((r) => Promise.reject(new Error(`run ended before the crash: ${JSON.stringify(r)}`)))]);
    expect(await doomed.exited).toBeNull(); // killed by signal
    expect(doomed.proc.signalCode).toBe('SIGKILL');

    const survivor = await startWorkerProcess(config, taskQueue);
    const result = (await handle.result()) as FailoverResult;
    expect(result.status).toBe('succeeded');
    await load.stop();

    const history = await handle.fetchHistory();
    const completed = history.events!.filter((e) => e.activityTaskCompletedEventAttributes).map((e) => e.activityTaskCompletedEventAttributes!.scheduledEventId!.toString());
    const promotions = history.events!.filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'promoteCandidate' && completed.includes(e.eventId!.toString()));
    expect(promotions).toHaveLength(1);

    const log = await stepLog(config, handle.workflowId);
    const keys = log.map((r) => `${r.seq}:${r.status}`);
    expect(new Set(keys).size).toBe(keys.length);
    expect(log.filter((r) => r.status === 'succeeded').map((r) => r.step)).toEqual([
      'load policy', 'lock cluster', 'preflight', 'approval', 'fence old primary', 'wait for catch-up', 'promote candidate', 'switch traffic',
      `repoint ${target === 'orders-a' ? 'orders-b' : 'orders-a'}`, 'repoint orders-c', 'verify', 'record', 'unlock cluster', 'runbook',
    ]);
    expect(await shape(config)).toMatchObject({ primary: target, writable: [target], problems: [] });
    expect(await load.missingOn(target)).toEqual([]);
    survivor.proc.kill('SIGTERM'); // the next case's doomed worker must be the only one polling
    expect(await survivor.exited).toBe(0);
  });
});
