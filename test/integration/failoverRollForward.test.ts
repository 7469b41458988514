/**
 * Past the promotion a switchover only rolls forward, on the real sandbox and a real worker:
 * the control database held down across the traffic switch (longer than any step's retry budget,
 * then longer than the roll-forward window), and a traffic hook that fails. The run never ends
 * half switched: it finishes by itself, or waits in needs_attention until `runbook resume`.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Client, WorkflowHandle } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { readWriterEndpoint } from '../../src/adapters/control/store';
import type { Notifier } from '../../src/activities/notify';
import type { RunbookConfig } from '../../src/config/load';
import { withControl } from '../../src/adapters/control/store';
import type { Sandbox } from '../../src/adapters/mariadbd/sandbox';
import type { RunbookNotification } from '../../src/core/notifications';
import type { FailoverResult } from '../../src/workflows/failover';
import type { Attention } from '../../src/core/runbookDefinitions';
import { decide, shape, startFailover, stateOf, stepLog, waitForApprovalRequest } from '../support/failover';
import { eventually, startTestSandbox } from '../support/sandbox';
import { startInProcessWorker, type InProcessWorker } from '../support/stack';

const exec = promisify(execFile);
const taskQueue = `failover-roll-forward-${process.pid}`;
const dir = mkdtempSync(join(tmpdir(), 'runbook-roll-forward-'));
const ran = join(dir, 'hooks-ran'); // each traffic hook run appends "<hook> <workflow id>"
const blocked = join(dir, 'proxy-blocked'); // while it exists, the proxy hook fails
let config: RunbookConfig;
let sandbox: Sandbox;
let client: Client;
let stack: InProcessWorker;
const sent: RunbookNotification[] = [];
const recorder: Notifier = { name: 'recorder', send: async (n) => void sent.push(n) };

beforeAll(async () => {
  ({ config, sandbox } = await startTestSandbox('failover-roll-forward', 27600, (doc) => {
    const orders = doc.clusters.orders;
    orders.approval.failover.planned = { mode: 'required', approvers: ['bob'], fourEyes: true, timeoutMinutes: 30 };
    orders.thresholds.rollForwardMinutes = 0.75;
    orders.thresholds.rollForwardRemindMinutes = 0.1;
    orders.traffic = {
      hooks: [
        { name: 'dns', command: `echo "dns $RUNBOOK_WORKFLOW_ID" >> ${ran}` },
        { name: 'proxy', command: `echo "proxy $RUNBOOK_WORKFLOW_ID" >> ${ran}; if [ -f ${blocked} ]; then echo "proxy refused the new writer" >&2; exit 1; fi`, onFailure: 'abort' },
      ],
    };
  }));
  stack = await startInProcessWorker(config, taskQueue, { notifiers: [recorder] });
  client = stack.client;
});

afterAll(async () => {
  await stack?.stop();
  await sandbox?.destroy();
  rmSync(dir, { recursive: true, force: true });
});

async function runbook(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await exec('bin/runbook', ['--config', config.files[0]!, ...args], { env: { ...process.env, NO_COLOR: '1', TEMPORAL_ADDRESS: inject('temporalAddress') } });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

const hookRuns = (workflowId: string) => (existsSync(ran) ? readFileSync(ran, 'utf8') : '').split('\n').filter((l) => l.endsWith(` ${workflowId}`)).map((l) => l.split(' ')[0]);
const statusAttribute = async (handle: WorkflowHandle) => (await handle.describe()).typedSearchAttributes.getAll().find((p) => p.key.name === 'RunbookStatus')?.value;

/** The cluster is whole again: one writable primary, every other instance replicating from it. */
async function expectConsistent(primary: string): Promise<void> {
  const others = ['orders-a', 'orders-b', 'orders-c'].filter((i) => i !== primary);
  await eventually('replicas caught up', async () => (await shape(config)).problems.length === 0);
  expect(await shape(config)).toMatchObject({ primary, writable: [primary], sources: { [primary]: null, [others[0]!]: primary, [others[1]!]: primary }, problems: [] });
  expect(await withControl(config, (c) => readWriterEndpoint(c, 'orders'))).toMatchObject({ instance: primary });
}

/** Every step has exactly one started and one succeeded row, and no row is there twice. */
async function expectEachStepOnce(workflowId: string, steps: string[]): Promise<Awaited<ReturnType<typeof stepLog>>> {
  const log = await stepLog(config, workflowId);
  const keys = log.map((r) => `${r.seq}.${r.sub ?? 0}:${r.status}`);
  expect(new Set(keys).size).toBe(keys.length);
  for (const step of steps) expect(log.filter((r) => r.step === step).map((r) => r.status), step).toEqual(['started', 'succeeded']);
  expect(log.at(-1)).toEqual({ seq: 0, step: 'runbook', status: 'succeeded' });
  return log;
}

/** Start a switchover to `target` and hold it at its approval; approve once `whileWaiting` is done. */
async function switchoverTo(target: string, whileWaiting: () => Promise<void>): Promise<WorkflowHandle> {
  const handle = await startFailover(client, taskQueue, { target, reason: `roll forward to ${target}` });
  await waitForApprovalRequest(handle);
  await whileWaiting();
  expect(await decide(handle, 'approve', 'bob')).toMatchObject({ accepted: true });
  return handle;
}

const stepsTo = (target: string) => {
  const others = ['orders-a', 'orders-b', 'orders-c'].filter((i) => i !== target);
  return ['hand over writes', 'switch traffic', ...others.map((i) => `repoint ${i}`), 'verify', 'record', 'unlock cluster'];
};

describe('a switchover past its promotion rolls forward', () => {
  it('control database down across the traffic switch, longer than a step retry budget: the run finishes by itself once it is back', async () => {
    const handle = await switchoverTo('orders-b', () => sandbox.stopInstance('control'));
    try {
      // The traffic switch, the repoints and the verification need no control database; `record`
      // does, and keeps failing (each try exhausting its activity retries) while it is down.
      const state = await eventually('record retrying', async () => {
        const s = await stateOf(handle);
        return s.steps.some((x) => x.name === 'record: retrying') ? s : undefined;
      }, 60_000);
      expect(state.status).toBe('running');
      expect(state.steps.filter((x) => ['switch traffic', 'repoint orders-a', 'repoint orders-c', 'verify'].includes(x.name)).map((x) => x.status)).toEqual(['succeeded', 'succeeded', 'succeeded', 'succeeded']);
      expect(state.steps.find((x) => x.name === 'switch traffic')!.note).toMatch(/^writer endpoint → orders-b queued until the control database answers, hooks: dns ok, proxy ok$/);
      expect(hookRuns(handle.workflowId)).toEqual(['dns', 'proxy']); // hooks ran without the control database
      expect((await shape(config)).writable).toEqual(['orders-b']);
    } finally {
      await sandbox.startInstance(sandbox.instance('control'));
    }
    expect(((await handle.result()) as FailoverResult).status).toBe('succeeded');
    await expectConsistent('orders-b');
    const log = await expectEachStepOnce(handle.workflowId, stepsTo('orders-b'));
    expect(log.some((r) => r.status === 'retrying' && r.step === 'record: retrying')).toBe(true);
    expect(log.some((r) => r.status === 'needs_attention')).toBe(false);
    expect(hookRuns(handle.workflowId)).toEqual(['dns', 'proxy']);
    expect(sent.some((n) => n.workflowId === handle.workflowId && n.kind === 'step' && n.step?.status === 'retrying')).toBe(true);
  });

  it('control database down past the roll-forward window: needs_attention naming what is left, then `runbook resume` finishes it', async () => {
    const handle = await switchoverTo('orders-a', () => sandbox.stopInstance('control'));
    let attention: Attention;
    try {
      const state = await eventually('needs attention', async () => {
        const s = await stateOf(handle);
        return s.status === 'needs_attention' ? s : undefined;
      }, 180_000);
      attention = state.details.attention as Attention;
      expect(attention).toMatchObject({ step: 'record', left: ['record', 'unlock cluster'] });
      expect(attention.error).toMatch(/^still failing after 0\.75 min \(\d+ tries\): the writer endpoint row is not written yet: the control database does not answer$/);
      expect(await statusAttribute(handle)).toBe('needs_attention');
      const told = sent.find((n) => n.workflowId === handle.workflowId && n.kind === 'needs-attention');
      expect(told?.attention).toMatchObject({ step: 'record', left: ['record', 'unlock cluster'], resume: `runbook resume ${handle.workflowId} --as YOUR_NAME` });
      const status = await runbook('status', handle.workflowId);
      expect(status.stdout).toContain(`${handle.workflowId}: RUNNING (needs_attention, now: record)`);
      expect(status.stdout).toContain('left: record, unlock cluster');
      expect(status.stdout).toContain(`bin/runbook resume ${handle.workflowId} --as NAME`);
    } finally {
      await sandbox.startInstance(sandbox.instance('control'));
    }
    // Back: the endpoint row is written at once, before anyone resumes.
    await eventually('endpoint row written', async () => (await withControl(config, (c) => readWriterEndpoint(c, 'orders')))?.instance === 'orders-a');
    expect((await stateOf(handle)).status).toBe('needs_attention');
    const resumed = await runbook('resume', handle.workflowId, '--as', 'alice', '--comment', 'control database restarted');
    expect(resumed).toMatchObject({ code: 0, stdout: `resumed ${handle.workflowId} as alice: the step that stopped it is tried again\n` });
    expect(((await handle.result()) as FailoverResult).status).toBe('succeeded');
    await expectConsistent('orders-a');
    const log = await expectEachStepOnce(handle.workflowId, stepsTo('orders-a'));
    expect(log.filter((r) => ['needs_attention', 'resumed'].includes(r.status)).map((r) => [r.step, r.status])).toEqual([
      ['record: needs attention', 'needs_attention'],
      ['resume by alice via cli', 'resumed'],
    ]);
    // Resuming again is refused (the run is over), logged, and changes nothing.
    expect(await runbook('resume', handle.workflowId, '--as', 'alice')).toMatchObject({ code: 1, stderr: `runbook: resume refused: ${handle.workflowId} is over (COMPLETED): nothing to resume\n` });
    expect((await stepLog(config, handle.workflowId)).filter((r) => r.status === 'refused')).toEqual([{ seq: null, step: 'resume by alice via cli', status: 'refused' }]);
    expect(await shape(config)).toMatchObject({ primary: 'orders-a', writable: ['orders-a'] });
  });

  it('a traffic hook that fails stops the run in needs_attention at once; resume reruns only that hook', async () => {
    writeFileSync(blocked, 'yes');
    const handle = await switchoverTo('orders-b', async () => undefined);
    const state = await eventually('needs attention', async () => {
      const s = await stateOf(handle);
      return s.status === 'needs_attention' ? s : undefined;
    }, 60_000);
    expect(state.details.attention).toMatchObject({ step: 'switch traffic', error: 'traffic hook "proxy" failed (exit 1): proxy refused the new writer' });
    // The repoints run beside the traffic switch: left lists those not done when the hook failed.
    const left = (state.details.attention as Attention).left;
    expect([left[0], ...left.slice(-3)]).toEqual(['switch traffic', 'verify', 'record', 'unlock cluster']);
    expect(['repoint orders-a', 'repoint orders-c']).toEqual(expect.arrayContaining(left.slice(1, -3)));
    // The cause fixed, a resume carries on from the hook that failed.
    rmSync(blocked);
    expect(await runbook('resume', handle.workflowId, '--as', 'alice')).toMatchObject({ code: 0 });
    expect(((await handle.result()) as FailoverResult).status).toBe('succeeded');
    await expectConsistent('orders-b');
    await expectEachStepOnce(handle.workflowId, stepsTo('orders-b'));
    expect(hookRuns(handle.workflowId)).toEqual(['dns', 'proxy', 'proxy']); // dns succeeded the first time: not run again
  });

  it('resume of a run that is not waiting is refused and logged, and changes nothing', async () => {
    const handle = await startFailover(client, taskQueue, { target: 'orders-a', reason: 'resume while waiting for approval' });
    await waitForApprovalRequest(handle);
    const refused = await runbook('resume', handle.workflowId, '--as', 'alice');
    expect(refused).toMatchObject({ code: 1, stderr: 'runbook: resume refused: nothing to resume: the run is running (now: approval)\n' });
    expect((await stateOf(handle)).steps.filter((s) => s.status === 'refused').map((s) => s.name)).toEqual(['resume by alice via cli']);
    await decide(handle, 'reject', 'bob');
    expect(((await handle.result()) as FailoverResult).status).toBe('rejected');
  });
});
