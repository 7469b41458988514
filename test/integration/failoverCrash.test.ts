/**
 * The real worker process SIGKILLed right after the hand-over (fence → catch-up → promote → writer
 * endpoint, one activity) and after repointing, then restarted: the switchover finishes, exactly
 * one promotion happened, and failover_log has each step once. SIGKILLed inside the hand-over at
 * each of its sub-steps, after the sub-step's change is made on the servers and before the
 * heartbeat that reports it or the completion leaves the worker: the retry resumes from what the
 * servers say, with one writer, no acknowledged write lost and each sub-step's rows once. And
 * SIGKILLed inside repointing and setting the writer endpoint, after the change is made and
 * before its completion is reported: the retried activity finds its change done and does not
 * make it again.
 */
import { Client, Connection } from '@temporalio/client';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { readWriterEndpoint } from '../../src/adapters/control/store';
import type { RunbookConfig } from '../../src/config/load';
import { migrateControl, withControl } from '../../src/adapters/control/store';
import { probeTopology } from '../../src/adapters/mysql/probe';
import type { Sandbox } from '../../src/adapters/mariadbd/sandbox';
import type { FailoverResult } from '../../src/workflows/failover';
import { HAND_OVER_SUB_STEPS } from '../../src/activities/handOver';
import { activityRuns, shape, startFailover, stepLog } from '../support/failover';
import { eventually, startTestSandbox } from '../support/sandbox';
import { killWorkerProcesses, startWorkerProcess } from '../support/workerProcess';
import { prepareLoadSchema, WriteLoad } from '../support/writeLoad';

const taskQueue = `failover-crash-${process.pid}`;
let config: RunbookConfig;
let sandbox: Sandbox;
let client: Client;

beforeAll(async () => {
  ({ config, sandbox } = await startTestSandbox('failover-crash', 25000));
  await prepareLoadSchema(config, 'orders', 'orders-a');
  await migrateControl(config); // writer_endpoint exists before any case reads it
  client = new Client({ connection: await Connection.connect({ address: inject('temporalAddress') }) });
});

// A case that failed half way must not leave its worker polling for the next case.
afterEach(() => killWorkerProcesses());

afterAll(async () => {
  killWorkerProcesses();
  await client?.connection.close();
  await sandbox?.destroy();
});

/** The repoints run at once: their order among themselves is not fixed (everything else's is). */
/** The traffic switch and the repoints run at once: their order among themselves is not fixed. */
function repointsSorted(steps: string[]): string[] {
  const together = (s: string) => s.startsWith('repoint ') || s === 'switch traffic';
  const group = steps.filter(together).sort();
  return steps.map((s) => (together(s) ? group.shift()! : s));
}

describe('worker crash during a switchover', () => {
  it.each(['handOverWrites', 'repointReplica'])('SIGKILL right after %s, restart: the run finishes with one promotion', async (activity) => {
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
    const promotions = history.events!.filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'handOverWrites' && completed.includes(e.eventId!.toString()));
    expect(promotions).toHaveLength(1);

    const log = await stepLog(config, handle.workflowId);
    const keys = log.map((r) => `${r.seq}.${r.sub ?? 0}:${r.status}`);
    expect(new Set(keys).size).toBe(keys.length);
    expect(repointsSorted(log.filter((r) => r.status === 'succeeded').map((r) => r.step!))).toEqual(repointsSorted([
      'load policy', 'lock cluster', 'preflight', 'approval',
      'check connections', 'fence old primary', 'wait for catch-up', 'promote candidate', 'writer endpoint', 'hand over writes', 'switch traffic',
      `repoint ${target === 'orders-a' ? 'orders-b' : 'orders-a'}`, 'repoint orders-c', 'verify', 'record', 'unlock cluster', 'runbook',
    ]));
    expect(await shape(config)).toMatchObject({ primary: target, writable: [target], problems: [] });
    expect(await load.missingOn(target)).toEqual([]);
    survivor.proc.kill('SIGTERM'); // the next case's doomed worker must be the only one polling
    expect(await survivor.exited).toBe(0);
  });
});

describe('worker crash inside a side effect (after the change, before its completion is reported)', () => {
  const endpointGeneration = async () => (await withControl(config, (c) => readWriterEndpoint(c, 'orders')))?.generation ?? 0;

  it.each([
    {
      activity: 'handOverWrites',
      changed: async (_from: string, to: string) => {
        const i = (await probeTopology(config, 'orders')).instances.find((x) => x.instance === to)!;
        return i.readOnly === false && i.replication === null;
      },
      retried: { promotion: { alreadyPromoted: true }, endpoint: { changed: false } },
    },
    {
      activity: 'repointReplica',
      // The old primary's repoint (the repoints run at once: the other one may be cut short too).
      when: (from: string) => ({ instance: from }),
      changed: async (from: string, to: string) => (await probeTopology(config, 'orders')).instances.find((i) => i.instance === from)!.replication?.sourceInstance === to,
      retried: { alreadyReplicating: true },
    },
    {
      activity: 'setWriterEndpoint',
      changed: async (_from: string, to: string) => (await withControl(config, (c) => readWriterEndpoint(c, 'orders')))?.instance === to,
      retried: { changed: false },
    },
  ] as { activity: string; when?: (from: string) => Record<string, unknown>; changed: (from: string, to: string) => Promise<boolean>; retried: Record<string, unknown> }[])('SIGKILL inside $activity, restart: the retry finds the change made and does not make it again', async ({ activity, when, changed, retried }) => {
    const from = (await shape(config)).primary!;
    const to = from === 'orders-a' ? 'orders-b' : 'orders-a';
    const generation = await endpointGeneration();
    const load = new WriteLoad(config, 'orders', from);
    load.start();
    const doomed = await startWorkerProcess(config, taskQueue, { CRASH_INSIDE_ACTIVITY: activity, ...(when ? { CRASH_INSIDE_WHEN: JSON.stringify(when(from)) } : {}) });
    const handle = await startFailover(client, taskQueue, { target: to, reason: `crash inside ${activity}` });
    await Promise.race([doomed.exited, handle.result().then((r) => Promise.reject(new Error(`run ended before the crash: ${JSON.stringify(r)}`)))]);
    expect(doomed.proc.signalCode).toBe('SIGKILL');
    // The worker died after the change: it is there on the real servers, unreported.
    expect(await changed(from, to)).toBe(true);

    const survivor = await startWorkerProcess(config, taskQueue);
    const result = (await handle.result()) as FailoverResult;
    expect(result.status).toBe('succeeded');
    await load.stop();

    // The crashed call was run again (attempt 2) and found its change already made.
    const runs = await activityRuns(handle, activity);
    const rerun = runs.filter((r) => r.attempt === 2 && Object.entries(when?.(from) ?? {}).every(([k, v]) => r.input[k] === v));
    expect(rerun).toHaveLength(1);
    expect(rerun[0]!.result).toMatchObject(retried);
    // Exactly one promotion: one completed hand-over, and the writer endpoint moved once.
    expect((await activityRuns(handle, 'handOverWrites')).filter((r) => r.result)).toHaveLength(1);
    expect(await endpointGeneration()).toBe(generation + 1);

    const log = await stepLog(config, handle.workflowId);
    const keys = log.map((r) => `${r.seq}.${r.sub ?? 0}:${r.status}`);
    expect(new Set(keys).size).toBe(keys.length);
    for (const step of [...HAND_OVER_SUB_STEPS, 'hand over writes', 'switch traffic', `repoint ${from}`, 'repoint orders-c', 'verify', 'record']) {
      expect(log.filter((r) => r.step === step).map((r) => r.status), step).toEqual(['started', 'succeeded']);
    }
    expect(await shape(config)).toMatchObject({ primary: to, writable: [to], sources: { [to]: null, [from]: to, 'orders-c': to }, problems: [] });
    expect(await load.missingOn(to)).toEqual([]);
    survivor.proc.kill('SIGTERM');
    expect(await survivor.exited).toBe(0);
  });
});

describe('worker crash inside the hand-over, at each sub-step (done on the servers, not yet reported)', () => {
  const endpointGeneration = async () => (await withControl(config, (c) => readWriterEndpoint(c, 'orders')))?.generation ?? 0;
  const instance = async (name: string) => (await probeTopology(config, 'orders')).instances.find((i) => i.instance === name)!;

  it.each([
    // Connections checked, nothing changed yet: the retry does it all.
    { subStep: 'check connections', changed: async (from: string) => (await instance(from)).readOnly === false, retried: { fence: { alreadyReadOnly: false }, promotion: { alreadyPromoted: false } } },
    { subStep: 'fence old primary', changed: async (from: string) => (await instance(from)).readOnly === true, retried: { fence: { alreadyReadOnly: true }, promotion: { alreadyPromoted: false } } },
    {
      subStep: 'wait for catch-up',
      changed: async (from: string, to: string) => (await instance(from)).readOnly === true && (await instance(to)).replication?.sourceInstance === from,
      retried: { fence: { alreadyReadOnly: true }, promotion: { alreadyPromoted: false } },
    },
    {
      subStep: 'promote candidate',
      changed: async (_from: string, to: string) => (await instance(to)).readOnly === false && (await instance(to)).replication === null,
      retried: { promotion: { alreadyPromoted: true }, endpoint: { changed: true } },
    },
    {
      subStep: 'writer endpoint',
      changed: async (_from: string, to: string) => (await withControl(config, (c) => readWriterEndpoint(c, 'orders')))?.instance === to,
      retried: { promotion: { alreadyPromoted: true }, endpoint: { changed: false } },
    },
  ])('SIGKILL after "$subStep": the retry resumes from the servers, one writer, nothing lost, rows once', async ({ subStep, changed, retried }) => {
    const from = (await shape(config)).primary!;
    const to = from === 'orders-a' ? 'orders-b' : 'orders-a';
    const generation = await endpointGeneration();
    const load = new WriteLoad(config, 'orders', from);
    load.start();
    const doomed = await startWorkerProcess(config, taskQueue, { CRASH_AT_SUB_STEP: `handOverWrites:${subStep}` });
    const handle = await startFailover(client, taskQueue, { target: to, reason: `crash after ${subStep}` });
    await Promise.race([doomed.exited, handle.result().then((r) => Promise.reject(new Error(`run ended before the crash: ${JSON.stringify(r)}`)))]);
    expect(doomed.proc.signalCode).toBe('SIGKILL');
    expect(await changed(from, to)).toBe(true);

    const survivor = await startWorkerProcess(config, taskQueue);
    const result = (await handle.result()) as FailoverResult;
    expect(result.status).toBe('succeeded');
    await eventually(`writes on ${to}`, async () => load.acks.at(-1)?.instance === to, 60_000);
    await load.stop();

    const runs = await activityRuns(handle, 'handOverWrites');
    expect(runs).toHaveLength(1); // one scheduled activity, retried by the server
    expect(runs[0]!.attempt).toBe(2);
    expect(runs[0]!.result).toMatchObject(retried);
    expect(await endpointGeneration()).toBe(generation + 1);

    // One writer: nothing acknowledged by the old primary after the first write on the new one.
    const firstOnNew = load.acks.findIndex((a) => a.instance === to);
    expect(firstOnNew).toBeGreaterThan(0);
    expect(load.acks.slice(firstOnNew).filter((a) => a.instance !== to)).toEqual([]);
    expect(await shape(config)).toMatchObject({ primary: to, writable: [to], sources: { [to]: null, [from]: to, 'orders-c': to }, problems: [] });
    expect(await load.missingOn(to)).toEqual([]);

    // Each sub-step and each step once, under the step's sequence number.
    const log = await stepLog(config, handle.workflowId);
    const keys = log.map((r) => `${r.seq}.${r.sub ?? 0}:${r.status}`);
    expect(new Set(keys).size).toBe(keys.length);
    const handOver = log.find((r) => r.step === 'hand over writes')!;
    expect(log.filter((r) => r.sub).map((r) => [r.seq, r.sub, r.step, r.status])).toEqual(
      HAND_OVER_SUB_STEPS.flatMap((name, i) => [[handOver.seq, i + 1, name, 'started'], [handOver.seq, i + 1, name, 'succeeded']]),
    );
    for (const step of ['hand over writes', 'switch traffic', `repoint ${from}`, 'repoint orders-c', 'verify', 'record']) {
      expect(log.filter((r) => r.step === step).map((r) => r.status), step).toEqual(['started', 'succeeded']);
    }
    survivor.proc.kill('SIGTERM');
    expect(await survivor.exited).toBe(0);
  }, 300_000); // two worker processes start per case: minutes on a loaded 2-core machine
});
