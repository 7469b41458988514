/**
 * The real worker process (src/worker/main.ts via test/fixtures/workerEntry.ts): SIGKILLed in the
 * middle of a step and restarted, the run completes with each audit row once; SIGTERM shuts it
 * down gracefully; its Prometheus endpoint serves the SDK's metrics.
 */
import { once } from 'node:events';
import { Client, Connection } from '@temporalio/client';
import proto from '@temporalio/proto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { RunbookConfig } from '../../src/config/load';
import { failoverHistory, withControl } from '../../src/adapters/control/store';
import type { Sandbox } from '../../src/adapters/mariadbd/sandbox';
import { killWorkerProcesses, startWorkerProcess } from '../support/workerProcess';
import type { RunbookState } from '../../src/core/runbookDefinitions';
import { threeSteps } from '../fixtures/workflows';
import { eventually, startTestSandbox } from '../support/sandbox';

const taskQueue = `worker-process-${process.pid}`;
let config: RunbookConfig;
let sandbox: Sandbox;
let client: Client;

const startWorker = () => startWorkerProcess(config, taskQueue);

beforeAll(async () => {
  ({ config, sandbox } = await startTestSandbox('worker-process', 24400));
  client = new Client({ connection: await Connection.connect({ address: inject('temporalAddress') }) });
});

afterAll(async () => {
  killWorkerProcesses();
  await client?.connection.close();
  await sandbox?.destroy();
});

describe('worker process', () => {
  it('serves Prometheus metrics and stops gracefully on SIGTERM', async () => {
    const worker = await startWorker();
    const handle = await client.workflow.start(threeSteps, {
      taskQueue,
      workflowId: `metrics-${Date.now()}`,
      args: [{ cluster: 'orders', incidentId: 'INC-M', failTimes: 0 }],
    });
    await handle.result();
    const metrics = await (await fetch(`http://${worker.metricsAddress}/metrics`)).text();
    expect(metrics).toMatch(/^temporal_workflow_completed\{.*\} 1$/m);
    expect(metrics).toMatch(/temporal_activity_execution_latency/);

    worker.proc.kill('SIGTERM');
    const [code] = await once(worker.proc, 'exit');
    expect(code).toBe(0);
    expect(worker.output()).toContain('worker stopped');
  });

  it('completes a run whose worker was SIGKILLed mid-step, with every audit row once', async () => {
    const first = await startWorker();
    const workflowId = `sigkill-${Date.now()}`;
    const handle = await client.workflow.start(threeSteps, {
      taskQueue,
      workflowId,
      args: [{ cluster: 'orders', incidentId: 'INC-K', failTimes: 0, stuck: true }],
    });
    await eventually('the slow step to be running', async () => (await handle.query<RunbookState>('runbookState')).currentStep === 'slow step');
    // Running on the worker, not merely scheduled: killed now, this attempt is lost mid-flight.
    await eventually('the slow activity to have started', async () => {
      const pending = (await handle.describe()).raw.pendingActivities ?? [];
      return pending.some((a) => a.activityType?.name === 'stuckFirstAttempt' && a.state === proto.temporal.api.enums.v1.PendingActivityState.PENDING_ACTIVITY_STATE_STARTED);
    });
    first.proc.kill('SIGKILL');
    await once(first.proc, 'exit');

    await startWorker();
    // The killed attempt times out on heartbeats and runs again on the new worker.
    expect(await handle.result()).toBe('2');
    const rows = (await withControl(config, (c) => failoverHistory(c, { workflowId, pageSize: 100 }))).reverse();
    expect(rows.map((r) => [r.step_seq, r.step, r.status, r.attempt])).toEqual([
      [0, 'runbook', 'started', null],
      [1, 'probe topology', 'started', null],
      [1, 'probe topology', 'succeeded', 1],
      [2, 'slow step', 'started', null],
      [2, 'slow step', 'succeeded', 2],
      [3, 'probe primary', 'started', null],
      [3, 'probe primary', 'succeeded', 1],
      [0, 'runbook', 'succeeded', null],
    ]);
  });
});
