/**
 * The worker's connection to Temporal, from the same environment configuration as the client's.
 * Apart from client.ts because @temporalio/worker loads the native core: the CLI never needs it.
 */
import { NativeConnection } from '@temporalio/worker';
import { temporalSettings } from './client';

export async function connectWorker(env: NodeJS.ProcessEnv = process.env): Promise<NativeConnection> {
  return NativeConnection.connect(temporalSettings(env).connectionOptions);
}
