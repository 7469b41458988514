/**
 * The pieces most integration files share: the real worker in this process on a private task
 * queue (against the run's one dev server), a client, and SQL on a sandbox instance.
 */
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import { inject } from 'vitest';
import type { RunbookConfig } from '../../src/config/load';
import { connect, instanceEndpoint } from '../../src/adapters/mysql/connect';
import { createRunbookWorker, type RunbookWorkerOptions } from '../../src/worker/createWorker';

let runtimeInstalled = false;

export interface InProcessWorker {
  client: Client;
  taskQueue: string;
  stop(): Promise<void>;
}

export async function startInProcessWorker(
  config: RunbookConfig,
  taskQueue: string,
  extra: Pick<RunbookWorkerOptions, 'workflowsPath' | 'extraActivities' | 'notifiers'> = {},
): Promise<InProcessWorker> {
  if (!runtimeInstalled) {
    Runtime.install({ logger: new DefaultLogger('ERROR') });
    runtimeInstalled = true;
  }
  const address = inject('temporalAddress');
  const native = await NativeConnection.connect({ address });
  const worker = await createRunbookWorker({ connection: native, namespace: 'default', taskQueue, config, ...extra });
  const running = worker.run();
  const client = new Client({ connection: await Connection.connect({ address }) });
  return {
    client,
    taskQueue,
    async stop() {
      worker.shutdown();
      await running;
      await native.close();
      await client.connection.close();
    },
  };
}

/** Run statements on one instance of `orders` as the engine's admin user. */
export async function sql(config: RunbookConfig, instance: string, ...statements: string[]): Promise<void> {
  const conn = await connect(instanceEndpoint(config, 'orders', instance));
  try {
    for (const s of statements) await conn.query(s);
  } finally {
    conn.destroy();
  }
}

/** The rows one statement returns on an instance of `orders`, as the engine's admin user. */
export async function rowsOn(config: RunbookConfig, instance: string, statement: string): Promise<Record<string, unknown>[]> {
  const conn = await connect(instanceEndpoint(config, 'orders', instance));
  try {
    return (await conn.query(statement))[0] as Record<string, unknown>[];
  } finally {
    conn.destroy();
  }
}
