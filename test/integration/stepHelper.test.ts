/**
 * The step helper on a real worker and dev server, against the real sandbox: audit rows, attempt
 * numbers, summaries, search attributes, the live timeline, and a control database that goes away
 * in the middle of a run.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { type Client, WorkflowFailedError } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { connectControl, failoverHistory, withControl } from '../../src/adapters/control/store';
import type { RunbookState } from '../../src/core/runbookDefinitions';
import { fixtureActivities } from '../fixtures/activities';
import { proceed, threeSteps } from '../fixtures/workflows';
import { eventually, startTestSandbox } from '../support/sandbox';
import { startInProcessWorker, type InProcessWorker } from '../support/stack';
import type { RunbookConfig } from '../../src/config/load';
import type { Sandbox } from '../../src/adapters/mariadbd/sandbox';

const taskQueue = `step-helper-${process.pid}`;
let config: RunbookConfig;
let sandbox: Sandbox;
let client: Client;
let stack: InProcessWorker;

beforeAll(async () => {
  ({ config, sandbox } = await startTestSandbox('step-helper', 24300));
  stack = await startInProcessWorker(config, taskQueue, {
    workflowsPath: fileURLToPath(new URL('../fixtures/workflows.ts', import.meta.url)),
    extraActivities: fixtureActivities,
  });
  client = stack.client;
});

afterAll(async () => {
  await stack?.stop();
  await sandbox?.destroy();
});

const rowsOf = (workflowId: string) => withControl(config, (c) => failoverHistory(c, { workflowId, pageSize: 100 })).then((r) => r.reverse());

describe('step helper', () => {
  it('runs three steps and logs one row per step state, with the attempt that succeeded', async () => {
    const workflowId = `three-steps-${Date.now()}`;
    const handle = await client.workflow.start(threeSteps, {
      taskQueue,
      workflowId,
      args: [{ cluster: 'orders', incidentId: 'INC-42', failTimes: 2 }],
    });
    expect(await handle.result()).toBe('succeeded on attempt 3');
    const { runId } = await handle.describe();

    const rows = await rowsOf(workflowId);
    expect(rows.map((r) => [r.step_seq, r.step, r.status, r.attempt])).toEqual([
      [0, 'runbook', 'started', null],
      [1, 'probe topology', 'started', null],
      [1, 'probe topology', 'succeeded', 1],
      [2, 'flaky step', 'started', null],
      [2, 'flaky step', 'succeeded', 3], // failed twice, retried by Temporal: still one row per state
      [3, 'probe primary', 'started', null],
      [3, 'probe primary', 'succeeded', 1],
      [0, 'runbook', 'succeeded', null],
    ]);
    for (const r of rows) {
      expect(r).toMatchObject({ cluster: 'orders', incident_id: 'INC-42', workflow_id: workflowId, run_id: runId, runbook: 'test', operator: 'tester', reason: 'step helper test' });
    }
    expect(rows[2]!.detail).toMatchObject({ note: 'primary orders-a' });
    expect((rows[2]!.detail as { durationMs: number }).durationMs).toBeGreaterThanOrEqual(0);
    // Millisecond timestamps, in order.
    expect(rows.every((r) => /\.\d{3}$/.test(r.switch_time))).toBe(true);
    expect([...rows.map((r) => r.switch_time)].sort()).toEqual(rows.map((r) => r.switch_time));
  });

  it('labels every step activity for the Temporal UI and keeps search attributes and the timeline current', async () => {
    const workflowId = `three-steps-ui-${Date.now()}`;
    const handle = await client.workflow.start(threeSteps, { taskQueue, workflowId, args: [{ cluster: 'orders', incidentId: 'INC-43', failTimes: 0 }] });
    await handle.result();

    const description = await handle.describe();
    expect(description.typedSearchAttributes.getAll().filter((p) => p.key.name !== 'BuildIds').map((p) => [p.key.name, p.value]).sort()).toEqual([
      ['Cluster', 'orders'],
      ['IncidentId', 'INC-43'],
      ['Operator', 'tester'],
      ['RunbookStatus', 'succeeded'],
      ['RunbookType', 'test'],
    ]);

    const history = await handle.fetchHistory();
    const summaries = history.events!
      .filter((e) => e.activityTaskScheduledEventAttributes)
      .map((e) => [e.activityTaskScheduledEventAttributes!.activityType!.name, JSON.parse(Buffer.from(e.userMetadata!.summary!.data!).toString())]);
    const bookkeeping = ['recordAndNotify', 'recordAudit'];
    expect(summaries.filter(([type]) => !bookkeeping.includes(type))).toEqual([
      ['probeTopology', 'test orders: probe topology'],
      ['flakyStep', 'test orders: flaky step'],
      ['probeInstance', 'probe orders-a'],
    ]);
    // The audit travels in at most one bookkeeping activity per step boundary, labelled with what it carried.
    const kept = summaries.filter(([type]) => bookkeeping.includes(type));
    expect(kept.every(([type, s]) => type === 'recordAndNotify' && /^failover_log: \d+ row\(s\)( \(step [\d–]+\))?$/.test(s))).toBe(true);
    expect(kept.length).toBeLessThanOrEqual(3 + 1);

    const metadata = (await handle.query('__temporal_workflow_metadata')) as { currentDetails: string };
    expect(metadata.currentDetails).toContain('**test orders (incident INC-43) by tester** — succeeded');
    expect(metadata.currentDetails).toMatch(/\| 2 \| flaky step \| ✅ succeeded \| [\d:.]+ \| \d+ ms \| 1 \|/);
  });

  it('fails a run at a broken precondition with a message naming the step, and logs it', async () => {
    const workflowId = `three-steps-refused-${Date.now()}`;
    const handle = await client.workflow.start(threeSteps, {
      taskQueue,
      workflowId,
      args: [{ cluster: 'orders', incidentId: 'INC-44', failTimes: 0, refuseWith: 'candidate orders-c has errant GTID 0-9-1' }],
    });
    const err = await handle.result().catch((e) => e);
    expect(err).toBeInstanceOf(WorkflowFailedError);
    expect(err.cause.message).toBe('step "refusing step" failed (precondition): candidate orders-c has errant GTID 0-9-1');

    const rows = await rowsOf(workflowId);
    expect(rows.map((r) => [r.step_seq, r.step, r.status])).toEqual([
      [0, 'runbook', 'started'],
      [1, 'probe topology', 'started'],
      [1, 'probe topology', 'succeeded'],
      [2, 'flaky step', 'started'],
      [2, 'flaky step', 'succeeded'],
      [3, 'refusing step', 'started'],
      [3, 'refusing step', 'failed'],
      [0, 'runbook', 'failed'],
    ]);
    expect(rows[6]).toMatchObject({ attempt: 1, detail: { classification: 'precondition', errorType: 'PreconditionFailed', error: 'candidate orders-c has errant GTID 0-9-1' } });
    const sa = (await handle.describe()).typedSearchAttributes.getAll().find((p) => p.key.name === 'RunbookStatus');
    expect(sa?.value).toBe('failed');
  });

  it('does not stall when the control database goes down mid-run, and writes every row once when it is back', async () => {
    const workflowId = `three-steps-control-down-${Date.now()}`;
    const handle = await client.workflow.start(threeSteps, {
      taskQueue,
      workflowId,
      args: [{ cluster: 'orders', incidentId: 'INC-45', failTimes: 1, gate: true }],
    });
    await eventually('first step logged', async () => (await rowsOf(workflowId)).length === 3);
    await sandbox.stopInstance('control');

    await handle.signal(proceed);
    // Both remaining steps finish while the control database is down: the audit waits, the runbook does not.
    const state = await eventually('steps done without the control db', async () => {
      const s = await handle.query<RunbookState>('runbookState');
      return s.steps.length === 3 && s.steps.every((x) => x.status === 'succeeded') ? s : undefined;
    });
    expect(state.auditPending).toBeGreaterThan(0);
    const { status } = await handle.describe();
    expect(status.name).toBe('RUNNING'); // it may not complete before its rows are written

    await sandbox.startInstance(sandbox.instance('control'));
    expect(await handle.result()).toBe('succeeded on attempt 2');
    const rows = await rowsOf(workflowId);
    expect(rows.map((r) => `${r.step_seq}:${r.status}`)).toEqual([
      '0:started', '1:started', '1:succeeded', '2:started', '2:succeeded', '3:started', '3:succeeded', '0:succeeded',
    ]);
    // The event time is when the step happened, the logged time when the row finally arrived.
    const late = rows.find((r) => r.step_seq === 2 && r.status === 'succeeded')!;
    expect(late.logged_at > late.switch_time).toBe(true);
    const conn = await connectControl(config);
    const [dups] = await conn.query('SELECT COUNT(*) AS n FROM failover_log WHERE workflow_id = ? GROUP BY step_seq, status HAVING n > 1', [workflowId]);
    conn.destroy();
    expect(dups).toEqual([]);
  });

  it('a run whose input is out of bounds is refused before its first step, audited cut to fit, and completes', async () => {
    // Started without the CLI, as any Temporal client can: the workflow checks its own input.
    const workflowId = `health-check-bad-input-${Date.now()}`;
    const handle = await client.workflow.start('healthCheck', {
      taskQueue,
      workflowId,
      args: [{ cluster: 'orders', operator: 'o'.repeat(100), reason: 'r'.repeat(300), incidentId: '../../etc' }],
    });
    const err = await handle.result().catch((e) => e);
    expect(err).toBeInstanceOf(WorkflowFailedError);
    expect(err.cause.message).toBe(
      'refused before anything was done: operator is 100 characters long; at most 64; reason is 300 characters long; at most 255; ' +
        'incidentId "../../etc" is not an incident id: a letter or digit, then letters, digits, ".", "_" or "-" (at most 64)',
    );
    const rows = await rowsOf(workflowId);
    expect(rows.map((r) => `${r.step_seq}:${r.step}:${r.status}`)).toEqual(['0:runbook:started', '0:runbook:failed']); // no step ran
    expect(rows[0]!.reason!.endsWith('…[truncated]')).toBe(true);
    expect(rows[0]!.operator).toHaveLength(64);
  });

  it('an audit row the control database refuses is stored as a placeholder, never retried forever, and runbook status shows it', async () => {
    const conn = await connectControl(config);
    await conn.query(
      "CREATE TRIGGER refuse_reason BEFORE INSERT ON failover_log FOR EACH ROW IF NEW.reason = 'poison-row' THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'refused by a trigger'; END IF",
    );
    try {
      const workflowId = `health-check-poison-${Date.now()}`;
      const handle = await client.workflow.start('healthCheck', { taskQueue, workflowId, args: [{ cluster: 'orders', operator: 'tester', reason: 'poison-row' }] });
      expect((await handle.result()).primary).toBe('orders-a'); // it completes: its rows did not block it
      const state = await handle.query<RunbookState>('runbookState');
      expect(state.auditProblems.map((p) => [p.stepSeq, p.status, p.problem, p.detail])).toEqual([
        [0, 'started', 'not stored', 'refused by a trigger'],
        [1, 'started', 'not stored', 'refused by a trigger'],
        [1, 'succeeded', 'not stored', 'refused by a trigger'],
        [2, 'started', 'not stored', 'refused by a trigger'],
        [2, 'succeeded', 'not stored', 'refused by a trigger'],
        [0, 'succeeded', 'not stored', 'refused by a trigger'],
      ]);
      const rows = await rowsOf(workflowId);
      expect(rows).toHaveLength(6);
      expect(rows.every((r) => r.step === 'audit row not stored as written')).toBe(true);

      const status = await promisify(execFile)('bin/runbook', ['--config', config.files[0]!, 'status', workflowId], {
        env: { ...process.env, NO_COLOR: '1', TEMPORAL_ADDRESS: inject('temporalAddress') },
      });
      expect(status.stdout).toContain(`${workflowId}: COMPLETED (succeeded)`);
      expect(status.stdout).toContain('audit row #1 probe topology (succeeded) NOT stored as written: refused by a trigger');
    } finally {
      await conn.query('DROP TRIGGER IF EXISTS refuse_reason');
      conn.destroy();
    }
  });
});
