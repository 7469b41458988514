/**
 * The main job (`./dev drill`): bring up the embedded default (a Temporal dev server with its Web
 * UI, the local MariaDB sandbox), show the live topology, run a runbook through the real worker,
 * and print its audit trail from failover_log. The stack is left running for the Web UI;
 * `runbook sandbox down` and `runbook temporal down` stop it.
 */
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import type { RunbookConfig } from '../config/load';
import { failoverHistory, listSyncStatus, migrateControl, withControl } from '../control/store';
import { probeTopology } from '../mysql/probe';
import { portFree } from '../sandbox/processes';
import { Sandbox } from '../sandbox/sandbox';
import { Cluster, IncidentId, Operator, RunbookType } from '../shared/searchAttributes';
import { startDevServer } from '../temporal/devServer';
import { createRunbookWorker } from '../worker/createWorker';
import { healthCheck } from '../workflows';
import { printHistory, printSyncStatus, printTopology } from './output';

export function temporalStateDir(config: RunbookConfig): string {
  return join(config.sandboxDir, 'temporal');
}

const heading = (text: string) => console.log(`\n== ${text}`);

export async function runDrill(config: RunbookConfig): Promise<void> {
  heading('Temporal');
  let address = process.env.TEMPORAL_ADDRESS;
  let uiUrl: string | null = process.env.TEMPORAL_UI_URL ?? null;
  const namespace = process.env.TEMPORAL_NAMESPACE ?? 'default';
  if (address) {
    console.log(`using TEMPORAL_ADDRESS=${address}`);
  } else {
    const port = (await portFree(7233)) ? 7233 : undefined;
    const uiPort = (await portFree(8233)) ? 8233 : undefined;
    const server = await startDevServer({ stateDir: temporalStateDir(config), port, uiPort, persistent: true });
    address = server.address;
    uiUrl = server.uiUrl;
    console.log(`dev server ${server.started ? 'started' : 'already running'} at ${address} (pid ${server.pid})`);
  }

  heading('MariaDB sandbox');
  const sandbox = new Sandbox(config, (l) => console.log(l));
  await sandbox.up();
  await migrateControl(config);
  console.log(`${sandbox.instances.length} instances up, control schema migrated`);

  for (const cluster of Object.keys(config.clusters)) {
    heading(`live topology of ${cluster}`);
    printTopology(await probeTopology(config, cluster));
  }

  // The worker's own chatter (bundling, polling) would bury the drill's output.
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const connection = await NativeConnection.connect({ address });
  const clientConnection = await Connection.connect({ address });
  const client = new Client({ connection: clientConnection, namespace });
  const taskQueue = `drill-${process.pid}`;
  const worker = await createRunbookWorker({ connection, namespace, taskQueue, config });
  const operator = process.env.USER || 'drill';
  try {
    for (const cluster of Object.keys(config.clusters)) {
      const incidentId = `drill-${new Date().toISOString().replace(/[-:.TZ]/g, '').slice(0, 14)}`;
      const workflowId = `health-check-${cluster}-${incidentId}`;
      heading(`runbook health-check on ${cluster} (workflow ${workflowId})`);
      await worker.runUntil(
        client.workflow.execute(healthCheck, {
          taskQueue,
          workflowId,
          args: [{ cluster, operator, incidentId, reason: 'drill' }],
          staticSummary: `health-check ${cluster} by ${operator} (drill)`,
          typedSearchAttributes: [
            { key: RunbookType, value: 'health-check' },
            { key: Cluster, value: cluster },
            { key: IncidentId, value: incidentId },
            { key: Operator, value: operator },
          ],
        }),
      );
      const rows = await withControl(config, (c) => failoverHistory(c, { workflowId, pageSize: 100 }));
      console.log('audit trail from failover_log:');
      printHistory(rows.reverse(), 1);
      if (uiUrl) console.log(`in the Temporal UI: ${uiUrl}/namespaces/${namespace}/workflows/${workflowId}`);
    }
    heading('sync_status');
    printSyncStatus(await withControl(config, (c) => listSyncStatus(c)));
  } finally {
    await connection.close();
    await clientConnection.close();
  }
  heading('done');
  if (uiUrl) console.log(`Temporal Web UI: ${uiUrl}`);
  console.log('The dev server and the sandbox keep running. Try: bin/runbook topology orders; bin/runbook log');
  console.log('Stop them with: bin/runbook sandbox down && bin/runbook temporal down');
}
