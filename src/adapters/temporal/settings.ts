/**
 * Where Temporal is, from the standard environment configuration (TEMPORAL_ADDRESS,
 * TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS_*, TEMPORAL_PROFILE and the config file), read
 * by @temporalio/envconfig. Apart from the client (client.ts) so that `runbook status`, which reads
 * a run without Temporal's client when it can (quickReads.ts), loads only this.
 */
import { loadClientConnectConfig } from '@temporalio/envconfig';

export const DEFAULT_TASK_QUEUE = 'runbooks';

export function temporalSettings(env: NodeJS.ProcessEnv = process.env) {
  const { connectionOptions, namespace } = loadClientConnectConfig({ overrideEnvVars: env as Record<string, string> });
  return {
    connectionOptions,
    namespace: namespace ?? 'default',
    taskQueue: env.RUNBOOK_TASK_QUEUE || DEFAULT_TASK_QUEUE,
    address: connectionOptions.address ?? 'localhost:7233',
  };
}
