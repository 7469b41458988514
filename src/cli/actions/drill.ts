/**
 * The main job (`./dev drill`): bring up the embedded default (a Temporal dev server with its Web
 * UI, the local MariaDB sandbox), show the live topology, run a health check and a planned
 * switchover through the real worker, and print their audit trails from failover_log. The stack is left running for the Web UI;
 * `runbook sandbox down` and `runbook temporal down` stop it.
 */
import { dirname, join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import type { RunbookConfig } from '../../config/load';
import { configFingerprint } from '../../config/fingerprint';
import { failoverHistory, listSyncStatus, migrateControl, readWriterEndpoint, withControl } from '../../adapters/control/store';
import { failbackAdvice } from '../../core/failback';
import { probeTopology } from '../../adapters/mysql/probe';
import { Sandbox } from '../../adapters/mariadbd/sandbox';
import { Cluster, IncidentId, Operator, RunbookType } from '../../core/searchAttributes';
import { startDevServer } from '../../adapters/temporal/devServer';
import { createRunbookWorker } from '../../worker/createWorker';
import { healthCheck } from '../../workflows';
import { temporalSettings } from '../../adapters/temporal/client';
import { failoverWorkflowId, startFailover } from './failover';
import { startMonitor } from './monitor';
import { monitorStateQuery, monitorWorkflowId, stopMonitorUpdate } from '../../core/monitorDefinitions';
import { withInstance } from '../../adapters/mysql/instance';
import { dialectOf } from '../../adapters/mysql/probe';
import { query } from '../../adapters/mysql/connect';
import { printHistory, printSyncStatus, printTopology } from './output';

function approvalNote(config: RunbookConfig, cluster: string): string {
  const rule = config.clusters[cluster]!.approval.failover?.planned;
  return rule?.mode === 'auto' ? 'auto-approved by the cluster policy' : `approve it from another terminal: bin/runbook approve <workflow> --as ${rule?.approvers[0] ?? 'NAME'}`;
}

async function printTrail(config: RunbookConfig, workflowId: string, uiUrl: string | null, namespace: string, wide: boolean): Promise<void> {
  const rows = await withControl(config, (c) => failoverHistory(c, { workflowId, pageSize: 200 }));
  console.log(`audit trail of ${workflowId} from failover_log:`);
  printHistory(rows.reverse(), 1, wide);
  if (uiUrl) console.log(`in the Temporal UI: ${uiUrl}/namespaces/${namespace}/workflows/${workflowId}`);
}

/** Beside the sandbox's datadirs, not inside: `sandbox destroy` must not orphan the dev server. */
export function temporalStateDir(config: RunbookConfig): string {
  return join(dirname(config.sandboxDir), 'temporal');
}

const heading = (text: string) => console.log(`\n== ${text}`);

/**
 * Start the cluster's monitor, break one replica's replication and mend it, and let the monitor
 * record both changes; then stop it (the drill's worker stops with the drill; start the monitor
 * for good with `runbook monitor start`).
 */
async function showMonitorStateChange(config: RunbookConfig, client: Client, cluster: string, replica: string, operator: string, taskQueue: string): Promise<void> {
  const handle = client.workflow.getHandle(monitorWorkflowId(cluster));
  const r = await startMonitor(client, config, cluster, operator, taskQueue);
  console.log(`${r.workflowId}: ${r.started ? 'started' : 'already running'}`);
  const health = async () => (await handle.query(monitorStateQuery)).state.health[replica];
  const until = async (what: string, ok: () => Promise<boolean>) => {
    // A monitor that is still starting answers its query with an error: not yet, ask again.
    for (const deadline = Date.now() + 60_000; !(await ok().catch(() => false)); ) {
      if (Date.now() > deadline) throw new Error(`the monitor did not see ${what} within 60 s`);
      await new Promise((res) => setTimeout(res, 250));
    }
    console.log(`monitor: ${what}`);
  };
  const onReplica = (pick: (d: Awaited<ReturnType<typeof dialectOf>>['dialect']) => string) =>
    withInstance(config, { cluster, instance: replica }, async (conn) => void (await query(conn, pick((await dialectOf(conn)).dialect))));
  await until(`${replica} replicating`, async () => (await health()) === 'replicating');
  await onReplica((d) => d.stopReplicaSqlThread());
  try {
    await until(`${replica} broken`, async () => (await health()) === 'broken');
  } finally {
    await onReplica((d) => d.startReplicaSqlThread());
  }
  await until(`${replica} replicating again`, async () => (await health()) === 'replicating');
  await handle.executeUpdate(stopMonitorUpdate, { args: [{ operator, reason: 'drill over' }] });
  await handle.result();
}

export async function runDrill(config: RunbookConfig, opts: { wide?: boolean } = {}): Promise<void> {
  const wide = Boolean(opts.wide);
  heading('Temporal');
  let address = process.env.TEMPORAL_ADDRESS;
  let uiUrl: string | null = process.env.TEMPORAL_UI_URL ?? null;
  const namespace = process.env.TEMPORAL_NAMESPACE ?? 'default';
  if (address) {
    console.log(`using TEMPORAL_ADDRESS=${address}`);
  } else {
    const server = await startDevServer({ stateDir: temporalStateDir(config), preferredPort: 7233, preferredUiPort: 8233, persistent: true });
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
    printTopology(await probeTopology(config, cluster), wide);
  }

  // The worker's own chatter (bundling, polling) would bury the drill's output.
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const connection = await NativeConnection.connect({ address });
  const clientConnection = await Connection.connect({ address });
  const client = new Client({ connection: clientConnection, namespace });
  const { taskQueue } = temporalSettings();
  const worker = await createRunbookWorker({ connection, namespace, taskQueue, config });
  const workerRun = worker.run();
  const operator = process.env.USER || 'drill';
  const stamp = new Date().toISOString().replace(/[-:.TZ]/g, '').slice(0, 14);
  try {
    for (const cluster of Object.keys(config.clusters)) {
      const incidentId = `DRILL-${stamp}`;
      const workflowId = `health-check-${cluster}-${incidentId}`;
      heading(`runbook health-check on ${cluster}`);
      await client.workflow.execute(healthCheck, {
        taskQueue,
        workflowId,
        args: [{ cluster, operator, incidentId, reason: 'drill', configFingerprint: configFingerprint(config) }],
        staticSummary: `health-check ${cluster} by ${operator} (drill)`,
        typedSearchAttributes: [
          { key: RunbookType, value: 'health-check' },
          { key: Cluster, value: cluster },
          { key: IncidentId, value: incidentId },
          { key: Operator, value: operator },
        ],
      });
      await printTrail(config, workflowId, uiUrl, namespace, wide);

      const topology = await probeTopology(config, cluster);
      if (!topology.primary) {
        // Say what to do instead of letting the switchover refuse with "no single writable primary".
        const writer = await withControl(config, (c) => readWriterEndpoint(c, cluster)).then((r) => r?.instance ?? null).catch(() => null);
        const advice = failbackAdvice(cluster, topology.instances.map((i) => ({ instance: i.instance, reachable: i.reachable, replicating: !!i.replication })), writer);
        for (const line of advice) console.log(line);
        throw new Error(`${cluster} has no single writable primary (${topology.problems.join('; ') || 'none writable'})${advice.length ? `: ${advice.join('; ')}` : ''}`);
      }
      heading(`runbook failover on ${cluster}: a planned switchover (${approvalNote(config, cluster)})`);
      const code = await startFailover({ cluster, reason: 'drill: planned switchover', as: operator, incident: incidentId }, client);
      await printTrail(config, failoverWorkflowId(cluster, incidentId), uiUrl, namespace, wide);
      if (code !== 0) throw new Error(`the drill's switchover did not succeed (exit ${code}); see the trail above`);
      heading(`live topology of ${cluster} after the switchover`);
      const after = await probeTopology(config, cluster);
      printTopology(after, wide);

      const replica = after.instances.find((i) => i.role === 'replica')?.instance;
      if (replica) {
        heading(`runbook monitor on ${cluster}: a state change (replication SQL thread of ${replica} stopped, then started)`);
        await showMonitorStateChange(config, client, cluster, replica, operator, taskQueue);
        await printTrail(config, monitorWorkflowId(cluster), uiUrl, namespace, wide);
      }
    }
    heading('sync_status');
    printSyncStatus(await withControl(config, (c) => listSyncStatus(c)), wide);
  } finally {
    worker.shutdown();
    await workerRun;
    await connection.close();
    await clientConnection.close();
  }
  heading('done');
  if (uiUrl) console.log(`Temporal Web UI: ${uiUrl}`);
  console.log('The dev server and the sandbox keep running. Try: bin/runbook topology orders; bin/runbook log');
  console.log('Stop them with: bin/runbook sandbox down && bin/runbook temporal down');
}
