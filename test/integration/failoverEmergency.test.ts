/**
 * Emergency failover on the real sandbox: a primary that only looks down is left alone; a primary
 * SIGKILLed with replicas at different positions is replaced by the most advanced one, the other
 * follows it, and the old primary is marked as needing failback. Unconfirmed fencing forces a human
 * approval even under an auto-approve policy; a STONITH hook that succeeds does not.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Client, WorkflowFailedError } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunbookConfig } from '../../src/config/load';
import { listSyncStatus, withControl } from '../../src/adapters/control/store';
import { connect, instanceEndpoint } from '../../src/adapters/mysql/connect';
import type { Sandbox } from '../../src/adapters/mariadbd/sandbox';
import type { ApprovalState } from '../../src/core/runbookDefinitions';
import type { FailoverResult } from '../../src/workflows/failover';
import { probeTopology } from '../../src/adapters/mysql/probe';
import { decide, shape, startFailover, stateOf, stepLog, waitForApprovalRequest } from '../support/failover';
import { eventually, startTestSandbox } from '../support/sandbox';
import { sql, startInProcessWorker, type InProcessWorker } from '../support/stack';
import { prepareLoadSchema } from '../support/writeLoad';

const taskQueue = `failover-emergency-${process.pid}`;
const fenceFlag = join(mkdtempSync(join(tmpdir(), 'runbook-stonith-')), 'fenced');
let config: RunbookConfig;
let sandbox: Sandbox;
let client: Client;
let stack: InProcessWorker;

beforeAll(async () => {
  ({ config, sandbox } = await startTestSandbox('failover-emergency', 24900, (doc) => {
    const orders = doc.clusters.orders;
    orders.approval.failover.emergency = { mode: 'auto' };
    // A stand-in STONITH: succeeds only once the test says the host is fenced.
    orders.fencing = { hooks: [{ name: 'stonith', command: `test -f ${fenceFlag} && echo "fenced $RUNBOOK_OLD_INSTANCE"`, timeoutSeconds: 5 }] };
  }));
  await prepareLoadSchema(config, 'orders', 'orders-a');
  stack = await startInProcessWorker(config, taskQueue);
  client = stack.client;
});

afterAll(async () => {
  await stack?.stop();
  await sandbox?.destroy();
});

const onInstance = (instance: string, ...statements: string[]) => sql(config, instance, ...statements);

function pidOf(instance: string): number {
  return sandbox.state(sandbox.instance(instance)).pid!;
}

describe('emergency failover', () => {
  it('refuses while the primary answers', async () => {
    const before = await shape(config);
    const handle = await startFailover(client, taskQueue, { mode: 'emergency' });
    const err = await handle.result().catch((e) => e);
    expect(err).toBeInstanceOf(WorkflowFailedError);
    expect(err.cause.message).toBe('step "identify failed primary" failed (precondition): refusing the emergency failover: orders-a answers (read_only=OFF): the primary is not down; use a planned switchover');
    expect(await shape(config)).toEqual(before);
  });

  it('a transient failure seen by the engine does not start a failover', async () => {
    const before = await shape(config);
    // Frozen, not dead: the engine's probes time out, then the primary is back.
    process.kill(pidOf('orders-a'), 'SIGSTOP');
    try {
      const handle = await startFailover(client, taskQueue, { mode: 'emergency' });
      // Thawed as soon as the engine has seen it down (not after a guessed delay): from then on
      // the failure is one only the engine saw, which the confirmation must refuse.
      await eventually('the engine saw orders-a down', async () => (await stateOf(handle)).steps.some((s) => s.name === 'identify failed primary' && s.status === 'succeeded'), 60_000);
      process.kill(pidOf('orders-a'), 'SIGCONT');
      const err = await handle.result().catch((e) => e);
      expect(err).toBeInstanceOf(WorkflowFailedError);
      expect(err.cause.message).toMatch(/the primary is not down|still replicate from it/);
      expect((await stepLog(config, handle.workflowId)).some((r) => r.step === 'promote candidate')).toBe(false);
    } finally {
      process.kill(pidOf('orders-a'), 'SIGCONT');
    }
    await eventually('replicas reconnected', async () => (await shape(config)).problems.length === 0);
    expect(await shape(config)).toEqual(before);
  });

  it('SIGKILLed primary: the most advanced replica is promoted, the other follows, nothing it had is lost', async () => {
    // orders-b (preferred) stops receiving; orders-c (neutral) gets three more transactions.
    await onInstance('orders-b', 'STOP SLAVE IO_THREAD');
    for (let i = 1; i <= 3; i++) await onInstance('orders-a', `INSERT INTO loadtest.acks VALUES (${1000 + i}, 'before-crash', NOW(6))`);
    await eventually('orders-c has the writes', async () => {
      const conn = await connect(instanceEndpoint(config, 'orders', 'orders-c'));
      const [rows] = await conn.query('SELECT COUNT(*) AS n FROM loadtest.acks WHERE id > 1000');
      conn.destroy();
      return Number((rows as { n: number }[])[0]!.n) === 3;
    });
    process.kill(pidOf('orders-a'), 'SIGKILL');

    // A dry run first: it ends as a dry run (not a failure), with the plan, and changes nothing.
    const dry = await startFailover(client, taskQueue, { mode: 'emergency', dryRun: true, reason: 'what would happen' });
    expect(await dry.result()).toMatchObject({ status: 'dry_run', plan: { mode: 'emergency', from: { instance: 'orders-a' }, to: { instance: 'orders-c' } } });
    expect((await dry.describe()).status.name).toBe('COMPLETED');
    const dryLog = await stepLog(config, dry.workflowId);
    expect(dryLog.filter((r) => r.status === 'skipped').map((r) => r.step)).toEqual([
      'fence old primary', 'stop replication IO', 'apply relay logs', 'promote candidate', 'switch traffic', 'repoint orders-b', 'verify', 'record',
    ]);
    expect(dryLog.at(-1)).toEqual({ seq: 0, step: 'runbook', status: 'dry_run' });
    const drySa = (await dry.describe()).typedSearchAttributes.getAll().find((p) => p.key.name === 'RunbookStatus');
    expect(drySa?.value).toBe('dry_run');
    const untouched = await probeTopology(config, 'orders');
    expect(untouched.instances.filter((i) => i.reachable && !i.readOnly)).toEqual([]);
    expect(untouched.instances.find((i) => i.instance === 'orders-c')!.replication).toMatchObject({ sourceInstance: 'orders-a' });
    expect(untouched.instances.find((i) => i.instance === 'orders-c')!.replication!.ioRunning).not.toBe('No'); // its IO thread was not stopped

    const handle = await startFailover(client, taskQueue, { mode: 'emergency', reason: 'orders-a died' });
    const pending = await waitForApprovalRequest(handle);
    // Auto-approve policy, but the dead primary could not be fenced: a human must decide.
    expect((pending.details.approval as ApprovalState).forcedBecause).toMatch(/fencing not confirmed/);
    expect(pending.details.plan).toMatchObject({ mode: 'emergency', from: { instance: 'orders-a' }, to: { instance: 'orders-c' } });
    expect((pending.details.plan as FailoverResult['plan']).expectedLoss!.summary).toBe('no transaction known to the old primary is missing on orders-c');
    expect(await decide(handle, 'approve', 'bob')).toMatchObject({ accepted: true });
    const result = (await handle.result()) as FailoverResult;
    expect(result.status).toBe('succeeded');

    expect(await shape(config)).toMatchObject({ primary: 'orders-c', writable: ['orders-c'], sources: { 'orders-b': 'orders-c', 'orders-c': null } });
    const conn = await connect(instanceEndpoint(config, 'orders', 'orders-b'));
    const [rows] = await conn.query('SELECT COUNT(*) AS n FROM loadtest.acks WHERE id > 1000');
    conn.destroy();
    expect(Number((rows as { n: number }[])[0]!.n)).toBe(3); // orders-b caught up from orders-c
    const sync = await withControl(config, (c) => listSyncStatus(c, 'orders'));
    expect(sync.find((r) => r.region === 'region-a')).toMatchObject({ status: 'needs_failback', instance: 'orders-a' });
    const log = await stepLog(config, handle.workflowId);
    expect(log.map((r) => r.step)).toEqual(expect.arrayContaining(['confirm failure', 'stop replication IO', 'apply relay logs', 'choose candidate', 'promote candidate', 'repoint orders-b', 'verify']));
  });

  it('a STONITH hook that fences the dead primary lets the auto-approve policy stand', async () => {
    writeFileSync(fenceFlag, 'yes');
    process.kill(pidOf('orders-c'), 'SIGKILL');
    const handle = await startFailover(client, taskQueue, { mode: 'emergency', reason: 'orders-c died' });
    const result = (await handle.result()) as FailoverResult;
    expect(result).toMatchObject({ status: 'succeeded', plan: { from: { instance: 'orders-c' }, to: { instance: 'orders-b' } } });
    const log = await stepLog(config, handle.workflowId);
    expect(log).toContainEqual({ seq: expect.any(Number), step: 'approval', status: 'auto_approved' });
    const rows = await withControl(config, async (c) => (await c.query("SELECT detail FROM failover_log WHERE workflow_id = ? AND step = 'fence old primary' AND status = 'succeeded'", [handle.workflowId]))[0]);
    expect(JSON.stringify(rows)).toContain('fencing hook(s) stonith succeeded');
    expect(await shape(config)).toMatchObject({ primary: 'orders-b', writable: ['orders-b'] });
  });
});
