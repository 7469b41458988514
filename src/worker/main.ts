/**
 * The worker process: `npm run worker` / `runbook worker`.
 *
 * Temporal: TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS_* (envconfig).
 * Runbooks: RUNBOOK_CONFIG (file or directory, default runbooks/sandbox.yaml), RUNBOOK_TASK_QUEUE.
 * Metrics: Prometheus on RUNBOOK_METRICS_ADDRESS (default 127.0.0.1:9464; "off" to disable): the
 * Temporal SDK's and the engine's (instances, replication, failovers, the monitor) on one endpoint.
 * SIGTERM / SIGINT: stop polling, let running activities finish (grace 10 s), exit 0.
 */
import type { Connection } from '@temporalio/client';
import { DefaultLogger, Runtime, type LogLevel } from '@temporalio/worker';
import { loadConfig } from '../config/load';
import { configFingerprint } from '../config/fingerprint';
import { migrateControl, pendingApprovals, withControl } from '../adapters/control/store';
import { monitorMetrics } from '../adapters/metrics/registry';
import { connectClient, ensureSearchAttributes, temporalSettings } from '../adapters/temporal/client';
import { connectWorker } from '../adapters/temporal/workerConnection';
import { createRunbookWorker, notifiersFromEnv, type RunbookWorkerOptions } from './createWorker';
import { freeLoopbackPort, serveMetrics } from './metricsServer';

export interface WorkerProcessOptions extends Partial<Pick<RunbookWorkerOptions, 'workflowsPath' | 'extraActivities' | 'activityInterceptors'>> {
  env?: NodeJS.ProcessEnv;
}

export async function runWorkerProcess(opts: WorkerProcessOptions = {}): Promise<void> {
  const env = opts.env ?? process.env;
  const metrics = env.RUNBOOK_METRICS_ADDRESS ?? '127.0.0.1:9464';
  // The SDK's exporter listens privately; ours serves its scrape and the engine's metrics together.
  const sdkMetrics = metrics === 'off' ? undefined : `127.0.0.1:${await freeLoopbackPort()}`;
  Runtime.install({
    logger: new DefaultLogger((env.RUNBOOK_LOG_LEVEL as LogLevel) ?? 'INFO'),
    telemetryOptions: sdkMetrics ? { metrics: { prometheus: { bindAddress: sdkMetrics } } } : {},
    shutdownSignals: ['SIGINT', 'SIGTERM'],
  });
  const config = loadConfig(undefined, env);
  const settings = temporalSettings(env);

  // Best effort: the audit activity migrates on first write anyway, and must not need this.
  await migrateControl(config).catch((err) => console.warn(`control database not migrated yet: ${err.message}`));
  const client = await connectClient(env);
  await ensureSearchAttributes(client.connection as Connection, settings.namespace).catch((err) =>
    console.warn(`could not register search attributes: ${err.message}`),
  );
  await client.connection.close();

  monitorMetrics().countPendingApprovals(Object.keys(config.clusters), () => withControl(config, pendingApprovals, 2000));
  const metricsServer = sdkMetrics ? await serveMetrics(metrics, sdkMetrics) : undefined;
  const connection = await connectWorker(env);
  const notifiers = notifiersFromEnv(config, env);
  const worker = await createRunbookWorker({ connection, namespace: settings.namespace, taskQueue: settings.taskQueue, config, notifiers, ...opts });
  console.log(
    `worker ready: ${settings.address} namespace=${settings.namespace} task-queue=${settings.taskQueue}` +
      (metrics === 'off' ? '' : ` metrics=http://${metrics}/metrics`) +
      ` notify=${notifiers.map((n) => n.name).join(',')}` +
      // What runs started from a CLI must carry (their `check config` step compares it).
      ` config=${configFingerprint(config)} (${config.files.join(', ')})`,
  );
  await worker.run();
  await connection.close();
  metricsServer?.close();
  console.log('worker stopped');
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].replace(/\\/g, '/'))) {
  runWorkerProcess().catch((err) => {
    console.error(`worker: ${err instanceof Error ? err.message : err}`);
    process.exit(1);
  });
}
