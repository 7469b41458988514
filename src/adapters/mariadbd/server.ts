/**
 * One `mariadbd` process on this host: its my.cnf, datadir, start (initialising the datadir the
 * first time), readiness, stop and crash. The one place that starts and stops server processes:
 * the dev sandbox runs its instances with it, and a restore runs its scratch servers (the binlog
 * server, a scratch recovery instance) with it, on any config, a production one included.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mysql from 'mysql2/promise';
import { commandLine, findExecutable, isAlive, portFree, readPid, terminate, waitFor } from '../process/processes';

const SBIN = ['/usr/sbin', '/usr/local/sbin', '/usr/local/opt/mariadb/bin', '/opt/homebrew/opt/mariadb/bin'];

export interface MariadbdInstance {
  /** How it is named in messages: `control`, `<cluster>/<instance>`, `restore/binlog-server`. */
  key: string;
  host: string;
  port: number;
  serverId: number;
  /** `control` has no binlog; every other role logs ROW binlogs with GTIDs and can replicate. */
  initialRole: 'control' | 'primary' | 'replica' | 'recovery';
  dir: string;
  /** Extra `[mariadbd]` options, written last so they win (a recovery instance's bigger buffers). */
  extraCnf?: string[];
}

export interface InstanceState {
  key: string;
  port: number;
  pid?: number;
  running: boolean;
  initialized: boolean;
}

function requireExecutable(name: string): string {
  const path = findExecutable(name, SBIN);
  if (!path) throw new Error(`${name} not found: install MariaDB (apt-get install mariadb-server mariadb-client mariadb-backup) or run scripts/bootstrap.sh`);
  return path;
}

export function pathsOf(inst: MariadbdInstance) {
  return {
    cnf: join(inst.dir, 'my.cnf'),
    data: join(inst.dir, 'data'),
    socket: socketPath(inst.dir),
    pid: join(inst.dir, 'mysqld.pid'),
    errorLog: join(inst.dir, 'error.log'),
    /** Written by whoever set the instance up (the sandbox, after wiring it). */
    initialized: join(inst.dir, 'initialized'),
    tmp: join(inst.dir, 'tmp'),
  };
}

function writeCnf(inst: MariadbdInstance): void {
  const p = pathsOf(inst);
  const replication =
    inst.initialRole === 'control'
      ? []
      : [
          `log_bin=${join(inst.dir, 'binlog', 'mysql-bin')}`,
          `relay_log=${join(inst.dir, 'relaylog', 'relay-bin')}`,
          'binlog_format=ROW',
          'binlog_row_image=FULL',
          'log_slave_updates=ON',
          'gtid_strict_mode=ON',
          // Replicas notice a dead primary within seconds, not the default minute.
          'slave_net_timeout=4',
          'sync_binlog=1',
          'innodb_flush_log_at_trx_commit=1',
        ];
  const lines = [
    '# Written by the runbook engine; regenerated on every start.',
    '[mariadbd]',
    `datadir=${p.data}`,
    `socket=${p.socket}`,
    `pid-file=${p.pid}`,
    `log-error=${p.errorLog}`,
    // A private tmpdir: parallel mariadb-install-db runs collide on temp table names in /tmp.
    `tmpdir=${p.tmp}`,
    `port=${inst.port}`,
    `bind-address=${inst.host === 'localhost' ? '127.0.0.1' : inst.host}`,
    `server_id=${inst.serverId}`,
    'skip-name-resolve',
    // Every server starts read-only (as orchestrator recommends for any server that may restart).
    inst.initialRole === 'control' ? 'read_only=OFF' : 'read_only=ON',
    'innodb_buffer_pool_size=24M',
    'innodb_log_file_size=16M',
    'performance_schema=OFF',
    'max_connections=200',
    'character-set-server=utf8mb4',
    ...replication,
    ...(process.getuid?.() === 0 ? ['user=root'] : []),
    ...(inst.extraCnf ?? []),
  ];
  writeFileSync(p.cnf, lines.join('\n') + '\n');
}

/** State of an instance from its pid file, checked against the live process table. */
export function stateOf(inst: MariadbdInstance): InstanceState {
  const p = pathsOf(inst);
  const pid = readPid(p.pid);
  const running = pid !== undefined && isAlive(pid) && (commandLine(pid)?.includes(p.cnf) ?? true);
  return { key: inst.key, port: inst.port, pid: running ? pid : undefined, running, initialized: existsSync(p.initialized) };
}

async function rootConnection(inst: MariadbdInstance): Promise<mysql.Connection> {
  const conn = await mysql.createConnection({ socketPath: pathsOf(inst).socket, user: 'root', connectTimeout: 2000, multipleStatements: true });
  conn.on('error', () => {});
  return conn;
}

/** Root over the unix socket (the server is ours: no password travels). */
export async function withRoot<T>(inst: MariadbdInstance, fn: (conn: mysql.Connection) => Promise<T>): Promise<T> {
  const conn = await rootConnection(inst);
  try {
    return await fn(conn);
  } finally {
    conn.destroy();
  }
}

export async function checkPortFree(inst: MariadbdInstance): Promise<void> {
  if (!(await portFree(inst.port, inst.host === 'localhost' ? '127.0.0.1' : inst.host))) {
    throw new Error(`port ${inst.port} for ${inst.key} is already in use by another process`);
  }
}

async function waitReady(inst: MariadbdInstance, abort?: () => string | undefined): Promise<void> {
  await waitFor(
    `${inst.key} on port ${inst.port}`,
    async () => {
      const conn = await rootConnection(inst);
      try {
        await conn.query('SELECT 1');
        return true;
      } finally {
        conn.destroy();
      }
    },
    { timeoutMs: 60_000, intervalMs: 50, abort },
  );
}

/** Create the datadir if needed and start mariadbd; returns once it accepts connections. */
export async function startServer(inst: MariadbdInstance, log: (line: string) => void = () => {}): Promise<void> {
  const p = pathsOf(inst);
  if (stateOf(inst).running) {
    await waitReady(inst);
    return;
  }
  mkdirSync(join(inst.dir, 'binlog'), { recursive: true });
  mkdirSync(join(inst.dir, 'relaylog'), { recursive: true });
  mkdirSync(p.tmp, { recursive: true });
  writeCnf(inst);
  if (!existsSync(join(p.data, 'mysql'))) {
    rmSync(p.data, { recursive: true, force: true });
    await run(requireExecutable('mariadb-install-db'), [
      `--defaults-file=${p.cnf}`,
      '--auth-root-authentication-method=normal',
      '--skip-test-db',
      ...(process.getuid?.() === 0 ? ['--user=root'] : []),
    ]);
  }
  await checkPortFree(inst);
  rmSync(p.pid, { force: true });
  const logFd = openSync(join(inst.dir, 'mariadbd.out'), 'a');
  const child = spawn(requireExecutable('mariadbd'), [`--defaults-file=${p.cnf}`], { detached: true, stdio: ['ignore', logFd, logFd] });
  closeSync(logFd);
  let exited: string | undefined;
  child.on('exit', (code, signal) => {
    exited = `mariadbd exited (${signal ?? code}); last lines of ${p.errorLog}:\n${tail(p.errorLog)}`;
  });
  child.unref();
  await waitReady(inst, () => exited);
  log(`started ${inst.key} on ${inst.host}:${inst.port} (pid ${child.pid})`);
}

/** Shut it down cleanly (SIGTERM, then SIGKILL after the grace). */
export async function stopServer(inst: MariadbdInstance, log: (line: string) => void = () => {}): Promise<void> {
  const { pid } = stateOf(inst);
  if (pid) {
    await terminate(pid);
    log(`stopped ${inst.key} (pid ${pid})`);
  }
}

/** Crash it (SIGKILL), as a failed host would. */
export async function killServer(inst: MariadbdInstance): Promise<void> {
  const { pid } = stateOf(inst);
  if (!pid) return;
  process.kill(pid, 'SIGKILL');
  await waitFor(`${inst.key} to die`, async () => (isAlive(pid) ? undefined : true), { timeoutMs: 10_000, intervalMs: 20 });
}

function tail(file: string, lines = 8): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no error log)';
  }
}

function run(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} failed (${code}): ${output.trim().split('\n').slice(-5).join(' | ')}`))));
  });
}

/**
 * A unix socket path may not exceed 107 bytes (mariadbd refuses to start): a deep datadir, such as
 * a recovery instance under a backup dir, gets a short socket in the temp dir named by its hash.
 */
function socketPath(dir: string): string {
  const inDir = join(dir, 'mysqld.sock');
  if (Buffer.byteLength(inDir) <= 100) return inDir;
  return join(tmpdir(), `runbook-${createHash('sha256').update(dir).digest('hex').slice(0, 16)}.sock`);
}
