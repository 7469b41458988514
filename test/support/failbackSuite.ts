/**
 * A failback test file whose workers are separate processes (they are SIGKILLed): its own test
 * sandbox with the load schema and the control tables, a Temporal client, and every worker process
 * killed after each test. Read `suite.config` etc. inside tests (filled by beforeAll).
 */
import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
import { afterAll, afterEach, beforeAll, expect, inject } from 'vitest';
import type { RunbookConfig } from '../../src/config/load';
import { migrateControl } from '../../src/adapters/control/store';
import type { Sandbox } from '../../src/adapters/mariadbd/sandbox';
import { decide, stateOf } from './failover';
import { eventually, startTestSandbox } from './sandbox';
import { killWorkerProcesses } from './workerProcess';
import { prepareLoadSchema } from './writeLoad';

export interface FailbackSuite {
  taskQueue: string;
  config: RunbookConfig;
  sandbox: Sandbox;
  client: Client;
}

export function failbackWorkerSuite(name: string, basePort: number): FailbackSuite {
  const suite = { taskQueue: `${name}-${process.pid}` } as FailbackSuite;
  beforeAll(async () => {
    Object.assign(suite, await startTestSandbox(name, basePort));
    await prepareLoadSchema(suite.config, 'orders', 'orders-a');
    await migrateControl(suite.config);
    suite.client = new Client({ connection: await Connection.connect({ address: inject('temporalAddress') }) });
  }, 120_000);
  afterEach(() => killWorkerProcesses());
  afterAll(async () => {
    killWorkerProcesses();
    await suite.client?.connection.close();
    await suite.sandbox?.destroy();
  });
  return suite;
}

/** Approve (as bob) once the run asks; the run's own failure if it ended first. */
export async function approveWhenAsked(handle: WorkflowHandle): Promise<void> {
  await eventually('approval request', async () => {
    if ((await handle.describe()).status.name !== 'RUNNING') throw new Error(`the run ended: ${await handle.result().then(JSON.stringify, (e) => e.cause?.message ?? e.message)}`);
    return ((await stateOf(handle)).details.approval as { status: string } | undefined)?.status === 'pending' ? true : undefined;
  }, 120_000);
  expect(await decide(handle, 'approve', 'bob')).toMatchObject({ accepted: true });
}
