/** What the built-in commands of cli/main.ts do (sandbox, topology, sync-status, temporal, config; log is log.ts). */
import { getCluster, type RunbookConfig } from '../../config/load';
import { configFingerprint } from '../../config/fingerprint';
import { listSyncStatus, migrateControl, withControl } from '../../adapters/control/store';
import { probeTopology } from '../../adapters/mysql/probe';
import { Sandbox } from '../../adapters/mariadbd/sandbox';
import { startDevServer, stopDevServer } from '../../adapters/temporal/devServer';
import { temporalStateDir } from './drill';
import { printJson, printSandboxStatus, printSyncStatus, printTopology } from './output';

export async function sandboxUp(cfg: RunbookConfig): Promise<void> {
  const sb = new Sandbox(cfg, (l) => console.log(l));
  await sb.up();
  await migrateControl(cfg);
  printSandboxStatus(sb);
}

export async function sandboxDown(cfg: RunbookConfig): Promise<void> {
  await new Sandbox(cfg, (l) => console.log(l)).down();
  console.log('sandbox stopped');
}

export async function sandboxDestroy(cfg: RunbookConfig): Promise<void> {
  await new Sandbox(cfg, (l) => console.log(l)).destroy();
  console.log(`sandbox destroyed (${cfg.sandboxDir})`);
}

export function sandboxStatus(cfg: RunbookConfig, json: boolean): void {
  const sb = new Sandbox(cfg);
  if (json) printJson(sb.status());
  else printSandboxStatus(sb);
}

export async function showTopology(cfg: RunbookConfig, cluster: string, json: boolean): Promise<void> {
  getCluster(cfg, cluster);
  const topology = await probeTopology(cfg, cluster);
  if (json) printJson(topology);
  else printTopology(topology);
}

export async function showSyncStatus(cfg: RunbookConfig, cluster: string | undefined, json: boolean): Promise<void> {
  const rows = await withControl(cfg, (c) => listSyncStatus(c, cluster));
  if (json) printJson(rows);
  else printSyncStatus(rows);
}

export async function temporalUp(cfg: RunbookConfig, port?: number, uiPort?: number): Promise<void> {
  const s = await startDevServer({ stateDir: temporalStateDir(cfg), port, uiPort, preferredPort: 7233, preferredUiPort: 8233, persistent: true });
  console.log(`Temporal dev server ${s.started ? 'started' : 'already running'}: ${s.address}, Web UI ${s.uiUrl}`);
  // Workers and the CLI default to localhost:7233: on another port they must be told.
  if (!s.address.endsWith(':7233')) console.log(`not on the default port: export TEMPORAL_ADDRESS=${s.address} for the worker and the CLI`);
}

export async function temporalDown(cfg: RunbookConfig): Promise<void> {
  const pid = await stopDevServer(temporalStateDir(cfg));
  console.log(pid ? `Temporal dev server stopped (pid ${pid})` : 'Temporal dev server was not running');
}

export function checkConfig(cfg: RunbookConfig): void {
  console.log(`ok: ${cfg.files.join(', ')}: clusters ${Object.keys(cfg.clusters).join(', ') || '(none)'}; fingerprint ${configFingerprint(cfg)} (the worker prints its own at start)`);
}
