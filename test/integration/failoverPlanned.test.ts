/**
 * Planned switchover on the real sandbox and a real worker: no acknowledged write lost under a
 * continuous load, five times back and forth; refusals that change nothing; a catch-up timeout
 * that is compensated; approvals (approve, reject, four-eyes, allow-list, timeout); dry-run; and
 * a replay of the recorded history (determinism).
 */
import { CancelledFailure, type Client, WorkflowFailedError } from '@temporalio/client';
import { MockActivityEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { createMysqlActivities } from '../../src/activities/mysql';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunbookConfig } from '../../src/config/load';
import { failoverHistory, withControl } from '../../src/adapters/control/store';
import { connect, instanceEndpoint } from '../../src/adapters/mysql/connect';
import type { Sandbox } from '../../src/adapters/mariadbd/sandbox';
import { WORKFLOW_INTERCEPTORS_PATH, WORKFLOWS_PATH } from '../../src/worker/createWorker';
import { createRunbookWorker } from '../../src/worker/createWorker';
import type { FailoverInput, FailoverResult } from '../../src/workflows/failover';
import { approveSignal } from '../../src/core/runbookDefinitions';
import { decide, runFailover, shape, startFailover, stateOf, stepLog, waitForApprovalRequest } from '../support/failover';
import { eventually, startTestSandbox, testPort } from '../support/sandbox';
import { rowsOn, sql, startInProcessWorker, type InProcessWorker } from '../support/stack';
import { timeSkippingEnvironment } from '../support/timeSkipping';
import { prepareLoadSchema, WriteLoad } from '../support/writeLoad';
import { replicasCaughtUp } from '../support/consistency';

const taskQueue = `failover-planned-${process.pid}`;
let config: RunbookConfig;
let sandbox: Sandbox;
let client: Client;
let stack: InProcessWorker;

beforeAll(async () => {
  ({ config, sandbox } = await startTestSandbox('failover-planned', 24800, (doc) => {
    const orders = doc.clusters.orders;
    orders.instances[2].promotion = 'never';
    orders.thresholds.catchUpTimeoutSeconds = 3;
    // Real-world timings: the timeout case lets them pass at once in the time-skipping environment.
    orders.approval.failover.planned = { mode: 'required', approvers: ['alice', 'bob'], fourEyes: true, timeoutMinutes: 15, remindEveryMinutes: 5 };
  }));
  await prepareLoadSchema(config, 'orders', 'orders-a');
  stack = await startInProcessWorker(config, taskQueue);
  client = stack.client;
});

afterAll(async () => {
  await stack?.stop();
  if (!process.env.KEEP_SANDBOX) await sandbox?.destroy();
});

const onInstance = (instance: string, ...statements: string[]) => sql(config, instance, ...statements);

/** Expect a failover to be refused with `message`, and the cluster to be exactly as before. */
async function expectRefusedUnchanged(input: Parameters<typeof startFailover>[2], message: RegExp): Promise<string> {
  const before = await shape(config);
  const handle = await startFailover(client, taskQueue, input);
  const err = await handle.result().catch((e) => e);
  expect(err).toBeInstanceOf(WorkflowFailedError);
  expect(err.cause.message).toMatch(message);
  expect(await shape(config)).toEqual(before);
  return handle.workflowId;
}

describe('planned switchover', () => {
  it('dry-run prints the plan and changes nothing', async () => {
    const before = await shape(config);
    const handle = await startFailover(client, taskQueue, { dryRun: true });
    const result = (await handle.result()) as FailoverResult;
    expect(result.status).toBe('dry_run');
    expect(result.plan).toMatchObject({ from: { instance: 'orders-a', region: 'region-a' }, to: { instance: 'orders-b', region: 'region-b' }, lagSeconds: 0 });
    expect(await shape(config)).toEqual(before);
    const log = await stepLog(config, handle.workflowId);
    expect(log.filter((r) => r.status === 'skipped').map((r) => r.step)).toEqual([
      'hand over writes', 'switch traffic', 'repoint orders-a', 'repoint orders-c', 'verify', 'record',
    ]);
    expect(log.at(-1)).toEqual({ seq: 0, step: 'runbook', status: 'dry_run' });
  });

  it('refuses a "never" candidate, changing nothing', async () => {
    await expectRefusedUnchanged({ target: 'orders-c' }, /orders-c has promotion rule "never"/);
  });

  it('refuses a candidate with broken replication, changing nothing', async () => {
    await onInstance('orders-b', 'STOP SLAVE IO_THREAD');
    try {
      await expectRefusedUnchanged({ target: 'region-b' }, /replication on orders-b is broken: IO thread No/);
    } finally {
      await onInstance('orders-b', 'START SLAVE');
    }
  });

  it('refuses a lagging candidate (SQL thread stopped), changing nothing', async () => {
    await onInstance('orders-b', 'STOP SLAVE SQL_THREAD');
    await onInstance('orders-a', "INSERT INTO loadtest.acks VALUES (-1, 'lag', NOW(6))");
    try {
      await expectRefusedUnchanged({ target: 'region-b' }, /orders-b .*(SQL thread No|lags)/);
    } finally {
      await onInstance('orders-b', 'START SLAVE');
    }
  });

  it('rejects: nothing changes and the run ends as rejected', async () => {
    const before = await shape(config);
    const handle = await startFailover(client, taskQueue, {});
    await waitForApprovalRequest(handle);
    expect(await decide(handle, 'reject', 'alice')).toEqual({ accepted: true, status: 'rejected' });
    expect(((await handle.result()) as FailoverResult).status).toBe('rejected');
    expect(await shape(config)).toEqual(before);
    const log = await stepLog(config, handle.workflowId);
    expect(log).toContainEqual({ seq: expect.any(Number), step: 'reject by alice via cli', status: 'rejected' });
    expect(log.at(-1)).toEqual({ seq: 0, step: 'runbook', status: 'rejected' });
  });

  it('refuses a second failover of a cluster while one is running, and frees the lock when it ends', async () => {
    const first = await startFailover(client, taskQueue, {});
    await waitForApprovalRequest(first);
    const second = await startFailover(client, taskQueue, {});
    const err = await second.result().catch((e) => e);
    expect(err.cause.message).toBe(
      `step "lock cluster" failed (precondition): cluster orders is locked by failover run ${first.workflowId} (carol, since ${err.cause.message.match(/since (.*) UTC/)[1]} UTC); if that run is over, release it with: runbook unlock orders --as <your name>`,
    );
    await decide(first, 'reject', 'alice');
    expect(((await first.result()) as FailoverResult).status).toBe('rejected');
    const third = await startFailover(client, taskQueue, { dryRun: true });
    expect(((await third.result()) as FailoverResult).status).toBe('dry_run');
    const locks = await withControl(config, async (c) => (await c.query('SELECT * FROM runbook_lock'))[0]);
    expect(locks).toEqual([]);
  });

  it('takes over the lock of a run that was terminated holding it, and says so in failover_log', async () => {
    const first = await startFailover(client, taskQueue, {});
    await waitForApprovalRequest(first);
    await first.terminate('killed by an operator while it waited for approval');
    const held = await withControl(config, async (c) => (await c.query('SELECT workflow_id FROM runbook_lock'))[0]);
    expect(held).toEqual([{ workflow_id: first.workflowId }]); // a terminated run releases nothing
    const next = await startFailover(client, taskQueue, {});
    await waitForApprovalRequest(next); // past "lock cluster"
    await decide(next, 'reject', 'alice');
    expect(((await next.result()) as FailoverResult).status).toBe('rejected');
    const rows = await withControl(config, (c) => failoverHistory(c, { workflowId: next.workflowId, pageSize: 100 }));
    expect(rows.filter((r) => r.status === 'unlocked').map((r) => [r.step, r.detail])).toEqual([
      ['cluster lock taken over from a run that is over', expect.objectContaining({ heldBy: first.workflowId, heldByRunbook: 'failover', holderState: 'TERMINATED' })],
    ]);
    expect(await withControl(config, async (c) => (await c.query('SELECT * FROM runbook_lock'))[0])).toEqual([]);
  });

  it('refuses self-approval and an unlisted approver, logs both, then proceeds on a valid signal', async () => {
    const handle = await startFailover(client, taskQueue, { requester: 'alice' });
    await waitForApprovalRequest(handle);
    expect(await decide(handle, 'approve', 'alice')).toEqual({ accepted: false, status: 'pending', reason: 'four-eyes: alice requested this run and may not approve it' });
    expect(await decide(handle, 'approve', 'mallory')).toEqual({ accepted: false, status: 'pending', reason: 'mallory is not an approver (alice, bob)' });
    expect((await stateOf(handle)).details.approval).toMatchObject({ status: 'pending' });
    await handle.signal(approveSignal, { approver: 'bob', channel: 'slack', comment: 'lgtm' });
    expect(((await handle.result()) as FailoverResult).status).toBe('succeeded');
    const rows = await withControl(config, (c) => failoverHistory(c, { workflowId: handle.workflowId, pageSize: 100 }));
    const refused = rows.filter((r) => r.status === 'refused').reverse();
    expect(refused.map((r) => [r.step, (r.detail as { reason: string }).reason])).toEqual([
      ['approve by alice via cli', 'four-eyes: alice requested this run and may not approve it'],
      ['approve by mallory via cli', 'mallory is not an approver (alice, bob)'],
    ]);
    expect(rows.find((r) => r.status === 'approved')).toMatchObject({ step: 'approve by bob via slack', detail: { approver: 'bob', channel: 'slack', comment: 'lgtm' } });
    expect(await shape(config)).toMatchObject({ primary: 'orders-b', writable: ['orders-b'], problems: [] });
    // back to orders-a for the tests that follow
    expect((await runFailover(client, taskQueue, { target: 'region-a' })).result.status).toBe('succeeded');
  });

  it('times out an unanswered approval after 15 minutes, with a reminder every 5, and changes nothing (time-skipping)', async () => {
    const before = await shape(config);
    // The same worker code and real activities, on a server where the 15 minutes pass at once.
    const env = await timeSkippingEnvironment();
    try {
      const queue = `${taskQueue}-time-skipping`;
      const worker = await createRunbookWorker({ connection: env.nativeConnection, namespace: 'default', taskQueue: queue, config });
      const workflowId = `failover-orders-T-timeout-${process.pid}`;
      const input: FailoverInput = { cluster: 'orders', mode: 'planned', reason: 'nobody answers', requester: 'carol', incidentId: `T-timeout-${process.pid}` };
      const result = (await worker.runUntil(env.client.workflow.execute('failover', { taskQueue: queue, workflowId, args: [input] }))) as FailoverResult;
      expect(result.status).toBe('timed_out');
      expect(await shape(config)).toEqual(before);
      const log = await stepLog(config, workflowId);
      expect(log.filter((r) => r.status === 'reminded').map((r) => r.step)).toEqual(['approval reminder', 'approval reminder']); // at 5 and 10 min
      expect(log.filter((r) => r.step === 'approval').map((r) => r.status)).toEqual(['started', 'requested', 'timed_out', 'succeeded']);
      expect(log.filter((r) => r.step === 'hand over writes').map((r) => r.status)).toEqual(['skipped']);
      expect(log.at(-1)).toEqual({ seq: 0, step: 'runbook', status: 'timed_out' });
      const sa = (await env.client.workflow.getHandle(workflowId).describe()).typedSearchAttributes.getAll().find((p) => p.key.name === 'RunbookStatus');
      expect(sa?.value).toBe('timed_out');
    } finally {
      await env.teardown();
    }
  });

  it('compensates a catch-up timeout: the old primary is writable again and the run fails with the reason', async () => {
    const lock = await connect(instanceEndpoint(config, 'orders', 'orders-b'));
    try {
      // The candidate's SQL thread blocks on this lock, so it cannot catch up.
      await lock.query('LOCK TABLES loadtest.acks WRITE');
      await onInstance('orders-a', "INSERT INTO loadtest.acks VALUES (-2, 'blocked', NOW(6))");
      const handle = await startFailover(client, taskQueue, { target: 'region-b' });
      await waitForApprovalRequest(handle);
      await decide(handle, 'approve', 'bob');
      const err = await handle.result().catch((e) => e);
      expect(err.cause.message).toMatch(new RegExp(String.raw`^step "hand over writes" failed \(precondition\): orders-b did not apply up to 0-${testPort(24801)}-\d+ within 3 s`));
      const log = await stepLog(config, handle.workflowId);
      // The sub-steps as they went: fenced, then the catch-up that failed; no promotion.
      expect(log.filter((r) => r.sub).map((r) => `${r.step}: ${r.status}`)).toEqual([
        'check connections: started', 'check connections: succeeded', 'fence old primary: started', 'fence old primary: succeeded', 'wait for catch-up: started', 'wait for catch-up: failed',
      ]);
      expect(log.filter((r) => r.step === 'unfence old primary (compensation)').map((r) => r.status)).toEqual(['started', 'succeeded']);
      expect(log.some((r) => r.step === 'promote candidate')).toBe(false);
      expect(await shape(config)).toMatchObject({ primary: 'orders-a', writable: ['orders-a'], sources: { 'orders-a': null, 'orders-b': 'orders-a', 'orders-c': 'orders-a' } });
    } finally {
      await lock.query('UNLOCK TABLES');
      lock.destroy();
    }
    await eventually('orders-b caught up again', async () => (await shape(config)).problems.length === 0);
  });

  it('a run cancelled while the candidate catches up still unfences the old primary', async () => {
    const lock = await connect(instanceEndpoint(config, 'orders', 'orders-b'));
    try {
      await lock.query('LOCK TABLES loadtest.acks WRITE');
      await onInstance('orders-a', "INSERT INTO loadtest.acks VALUES (-4, 'blocked', NOW(6))");
      const handle = await startFailover(client, taskQueue, { target: 'region-b' });
      await waitForApprovalRequest(handle);
      await decide(handle, 'approve', 'bob');
      // Fenced (orders-a read-only) inside the one activity: it is waiting for the catch-up.
      await eventually('catching up', async () => (await stateOf(handle)).currentStep === 'hand over writes' && !(await shape(config)).writable.includes('orders-a'));
      await handle.cancel();
      const err = await handle.result().catch((e) => e);
      expect(err).toBeInstanceOf(WorkflowFailedError);
      expect(err.cause).toBeInstanceOf(CancelledFailure);
      const log = await stepLog(config, handle.workflowId);
      expect(log.filter((r) => r.step === 'unfence old primary (compensation)').map((r) => r.status)).toEqual(['started', 'succeeded']);
      expect(log.at(-1)).toEqual({ seq: 0, step: 'runbook', status: 'cancelled' });
      expect(await shape(config)).toMatchObject({ primary: 'orders-a', writable: ['orders-a'] });
    } finally {
      await lock.query('UNLOCK TABLES');
      lock.destroy();
    }
    await eventually('orders-b caught up again', async () => (await shape(config)).problems.length === 0);
    // The cancelled hand-over ended before the undo: nothing promotes orders-b once it can catch up.
    expect(await shape(config)).toMatchObject({ primary: 'orders-a', writable: ['orders-a'], sources: { 'orders-b': 'orders-a' } });
  });

  it('five switchovers back and forth under continuous writes lose no acknowledged write', async () => {
    const load = new WriteLoad(config, 'orders', 'orders-a');
    load.start();
    await eventually('writes flowing', async () => load.acks.length > 20);
    const workflowIds: string[] = [];
    for (let i = 0; i < 5; i++) {
      const target = i % 2 === 0 ? 'orders-b' : 'orders-a';
      const { result, workflowId } = await runFailover(client, taskQueue, { target, reason: `switchover ${i + 1}` });
      workflowIds.push(workflowId);
      expect(result.status).toBe('succeeded');
      const other = target === 'orders-a' ? 'orders-b' : 'orders-a';
      expect(await shape(config)).toMatchObject({ primary: target, writable: [target], sources: { [target]: null, [other]: target, 'orders-c': target } });
      const acked = load.acks.length;
      await eventually(`writes on ${target}`, async () => load.acks.length > acked + 10 && load.acks.at(-1)!.instance === target);
    }
    await load.stop();
    expect(load.unavailabilityWindows().map((w) => `${w.from}→${w.to}`)).toEqual([
      'orders-a→orders-b', 'orders-b→orders-a', 'orders-a→orders-b', 'orders-b→orders-a', 'orders-a→orders-b',
    ]);
    await eventually('replicas caught up', async () => (await shape(config)).problems.length === 0);
    // No lag left either: a replica reporting no problem may still be applying the last writes.
    await replicasCaughtUp(config, ['orders-a', 'orders-c'], 'orders-b');
    for (const instance of ['orders-b', 'orders-a', 'orders-c']) expect(await load.missingOn(instance), `acknowledged writes missing on ${instance}`).toEqual([]);
    expect(load.acks.length).toBeGreaterThan(100);

    // Each step once per run, and the seed-style summary row.
    const rows = await withControl(config, (c) => failoverHistory(c, { workflowId: workflowIds[4], pageSize: 100 }));
    const keys = rows.map((r) => `${r.step_seq}.${r.sub_step}:${r.status}`);
    expect(new Set(keys).size).toBe(keys.length);
    expect(rows[0]).toMatchObject({ step: 'runbook', status: 'succeeded', from_region: 'region-a', to_region: 'region-b', operator: 'carol', reason: 'switchover 5' });
  });

  it('the load moves past a write that committed but was never acknowledged (its reply lost with a killed primary)', async () => {
    // What a SIGKILLed primary leaves behind: the row replicated, the client never got its OK.
    // Retrying that id on the new primary is a duplicate key forever; an application moves on.
    const primary = (await shape(config)).primary!;
    const [{ next }] = (await rowsOn(config, primary, 'SELECT COALESCE(MAX(id), 0) + 1 AS next FROM loadtest.acks')) as [{ next: number }];
    await sql(config, primary, `INSERT INTO loadtest.acks VALUES (${Number(next)}, 'committed, reply lost', NOW(6))`);
    const load = new WriteLoad(config, 'orders', primary, 2, Number(next));
    load.start();
    await eventually('writes after the unacknowledged one', async () => load.acks.length >= 5).finally(() => load.stop());
    expect(load.inDoubt).toEqual([Number(next)]);
    expect(load.acks[0]!.id).toBe(Number(next) + 1);
  });

  const quiet = { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error() {} };
  it('verify waits for its heartbeat on every replica, and names a replica that cannot apply it', async () => {
    const verify = (timeoutSeconds: number) => {
      const { primary, sources } = shapeNow!;
      const replicas = Object.keys(sources).filter((i) => sources[i] === primary);
      const env = new MockActivityEnvironment({ startToCloseTimeoutMs: 60_000, heartbeatTimeoutMs: 30_000 }, { logger: quiet });
      return env.run(createMysqlActivities({ config }).verifyCluster, { cluster: 'orders', primary: primary!, replicas, workflowId: 'verify-test', timeoutSeconds }) as Promise<{ heartbeatPosition: string; replicas: string[] }>;
    };
    let shapeNow = await shape(config);
    const ok = await verify(30);
    expect(ok.replicas.sort()).toEqual(['orders-a', 'orders-b', 'orders-c'].filter((i) => i !== shapeNow.primary).sort());
    // The heartbeat is applied everywhere the moment verify says so: no later look needed.
    for (const r of ok.replicas) {
      const [{ applied }] = (await rowsOn(config, r, `SELECT MASTER_GTID_WAIT('${ok.heartbeatPosition}', 0) AS applied`)) as [{ applied: number }];
      expect(Number(applied), r).toBe(0);
    }
    await sql(config, 'orders-c', 'STOP SLAVE SQL_THREAD');
    try {
      shapeNow = await shape(config);
      await expect(verify(2)).rejects.toThrow(/^verification failed after 2 s: orders-c IO Yes SQL No$/);
    } finally {
      await sql(config, 'orders-c', 'START SLAVE SQL_THREAD');
    }
  });

  it('replays a recorded switchover history deterministically', async () => {
    const { workflowId } = await runFailover(client, taskQueue, { target: 'orders-a' });
    const history = await client.workflow.getHandle(workflowId).fetchHistory();
    await Worker.runReplayHistory({ workflowsPath: WORKFLOWS_PATH, interceptors: { workflowModules: [WORKFLOW_INTERCEPTORS_PATH] } }, history, workflowId);
  });

  it('refuses a candidate with an errant transaction, changing nothing', async () => {
    // A write on the replica itself (root bypasses read_only): a GTID the primary never had.
    await onInstance('orders-b', "INSERT INTO loadtest.acks VALUES (-3, 'errant', NOW(6))");
    await expectRefusedUnchanged({ target: 'orders-b' }, /orders-b has errant transactions the primary lacks: domain 0/);
  });
});
