/**
 * The local multi-region sandbox: one real `mariadbd` per instance of every cluster in the config,
 * each with its own datadir and loopback port, wired with real GTID replication, plus a separate
 * control instance for the engine's own tables.
 *
 * Every instance starts read_only (in its my.cnf, as orchestrator recommends for any server that
 * may restart); `up` then makes exactly one instance per cluster writable: on first creation the
 * one the YAML calls primary, later the one that replicates from nobody. If that is ambiguous (say,
 * after an emergency failover left the old primary unrepointed) all stay read-only: two writable
 * primaries is the one outcome that is never acceptable.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, openSync, closeSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import mysql from 'mysql2/promise';
import { resolveCredential, type RunbookConfig } from '../../config/load';
import { commandLine, findExecutable, isAlive, portFree, readPid, terminate, waitFor } from '../process/processes';

const SBIN = ['/usr/sbin', '/usr/local/sbin', '/usr/local/opt/mariadb/bin', '/opt/homebrew/opt/mariadb/bin'];

export interface SandboxInstance {
  /** `control`, or `<cluster>/<instance>`. */
  key: string;
  cluster?: string;
  name: string;
  region?: string;
  host: string;
  port: number;
  serverId: number;
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

export class Sandbox {
  readonly instances: SandboxInstance[];

  constructor(
    private readonly config: RunbookConfig,
    private readonly log: (line: string) => void = () => {},
    /**
     * Only run scratch instances handed to it (a restore's binlog server and recovery instance),
     * none of the config's: then any config will do, a production one included.
     */
    opts: { scratchOnly?: boolean } = {},
  ) {
    const root = config.sandboxDir;
    const control = config.control;
    this.instances = opts.scratchOnly ? [] : [
      { key: 'control', name: 'control', host: control.host, port: control.port, serverId: control.port, initialRole: 'control', dir: join(root, 'control') },
      ...Object.entries(config.clusters).flatMap(([cluster, c]) =>
        c.instances.map((i) => ({
          key: `${cluster}/${i.name}`,
          cluster,
          name: i.name,
          region: i.region,
          host: i.host,
          port: i.port,
          serverId: i.serverId ?? i.port,
          initialRole: i.role,
          dir: join(root, cluster, i.name),
        })),
      ),
      // A cluster's recovery host: an empty server with the cluster's users, replicating from nobody.
      ...Object.entries(config.clusters).flatMap(([cluster, c]) =>
        c.recovery
          ? [{ key: `${cluster}/${c.recovery.name}`, cluster, name: c.recovery.name, region: c.recovery.region, host: c.recovery.host, port: c.recovery.port, serverId: c.recovery.serverId ?? c.recovery.port, initialRole: 'recovery' as const, dir: join(root, cluster, c.recovery.name) }]
          : [],
      ),
    ];
    for (const inst of this.instances) {
      if (!['127.0.0.1', 'localhost', '::1'].includes(inst.host)) {
        throw new Error(`sandbox: ${inst.key} is on ${inst.host}; the sandbox only runs instances on loopback (this config is not a sandbox config)`);
      }
    }
  }

  instance(key: string): SandboxInstance {
    const inst = this.instances.find((i) => i.key === key || i.name === key);
    if (!inst) throw new Error(`sandbox has no instance "${key}"; known: ${this.instances.map((i) => i.key).join(', ')}`);
    return inst;
  }

  private paths(inst: SandboxInstance) {
    return {
      cnf: join(inst.dir, 'my.cnf'),
      data: join(inst.dir, 'data'),
      socket: socketPath(inst.dir),
      pid: join(inst.dir, 'mysqld.pid'),
      errorLog: join(inst.dir, 'error.log'),
      initialized: join(inst.dir, 'initialized'),
      tmp: join(inst.dir, 'tmp'),
    };
  }

  private writeCnf(inst: SandboxInstance): void {
    const p = this.paths(inst);
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
      '# Written by the runbook sandbox; regenerated on every `sandbox up`.',
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
      // Every server starts read-only; `up` makes the one primary writable.
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

  /** State of each instance from its pid file, checked against the live process table. */
  state(inst: SandboxInstance): InstanceState {
    const p = this.paths(inst);
    const pid = readPid(p.pid);
    const running = pid !== undefined && isAlive(pid) && (commandLine(pid)?.includes(p.cnf) ?? true);
    return { key: inst.key, port: inst.port, pid: running ? pid : undefined, running, initialized: existsSync(p.initialized) };
  }

  private async rootConnection(inst: SandboxInstance): Promise<mysql.Connection> {
    const conn = await mysql.createConnection({ socketPath: this.paths(inst).socket, user: 'root', connectTimeout: 2000, multipleStatements: true });
    conn.on('error', () => {});
    return conn;
  }

  /** Root over the unix socket, on a configured instance (by key) or an extra one (restore scratch). */
  async withRoot<T>(key: string | SandboxInstance, fn: (conn: mysql.Connection) => Promise<T>): Promise<T> {
    const conn = await this.rootConnection(typeof key === 'string' ? this.instance(key) : key);
    try {
      return await fn(conn);
    } finally {
      conn.destroy();
    }
  }

  /** Create the datadir if needed and start mariadbd; returns once it accepts connections. */
  async startInstance(inst: SandboxInstance): Promise<void> {
    const p = this.paths(inst);
    if (this.state(inst).running) {
      await this.waitReady(inst);
      return;
    }
    mkdirSync(join(inst.dir, 'binlog'), { recursive: true });
    mkdirSync(join(inst.dir, 'relaylog'), { recursive: true });
    mkdirSync(p.tmp, { recursive: true });
    this.writeCnf(inst);
    if (!existsSync(join(p.data, 'mysql'))) {
      rmSync(p.data, { recursive: true, force: true });
      await run(requireExecutable('mariadb-install-db'), [
        `--defaults-file=${p.cnf}`,
        '--auth-root-authentication-method=normal',
        '--skip-test-db',
        ...(process.getuid?.() === 0 ? ['--user=root'] : []),
      ]);
    }
    await this.checkPortFree(inst);
    rmSync(p.pid, { force: true });
    const logFd = openSync(join(inst.dir, 'mariadbd.out'), 'a');
    const child = spawn(requireExecutable('mariadbd'), [`--defaults-file=${p.cnf}`], { detached: true, stdio: ['ignore', logFd, logFd] });
    closeSync(logFd);
    let exited: string | undefined;
    child.on('exit', (code, signal) => {
      exited = `mariadbd exited (${signal ?? code}); last lines of ${p.errorLog}:\n${tail(p.errorLog)}`;
    });
    child.unref();
    await this.waitReady(inst, () => exited);
    this.log(`started ${inst.key} on ${inst.host}:${inst.port} (pid ${child.pid})`);
  }

  private async checkPortFree(inst: SandboxInstance): Promise<void> {
    if (!(await portFree(inst.port, inst.host === 'localhost' ? '127.0.0.1' : inst.host))) {
      throw new Error(`sandbox: port ${inst.port} for ${inst.key} is already in use by another process`);
    }
  }

  private async waitReady(inst: SandboxInstance, abort?: () => string | undefined): Promise<void> {
    await waitFor(
      `${inst.key} on port ${inst.port}`,
      async () => {
        const conn = await this.rootConnection(inst);
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

  private async setupControl(inst: SandboxInstance): Promise<void> {
    const c = this.config.control;
    const { user, password } = resolveCredential(c.credentials);
    await this.withRoot(inst.key, async (conn) => {
      await conn.query(`CREATE DATABASE IF NOT EXISTS \`${c.database}\``);
      await conn.query('CREATE USER IF NOT EXISTS ?@? IDENTIFIED BY ?', [user, '%', password]);
      await conn.query('ALTER USER ?@? IDENTIFIED BY ?', [user, '%', password]);
      await conn.query(`GRANT ALL PRIVILEGES ON \`${c.database}\`.* TO ?@?`, [user, '%']);
    });
  }

  /** Users are created with sql_log_bin=0 on every instance so they never enter the GTID history. */
  private async setupClusterUsers(inst: SandboxInstance): Promise<void> {
    const creds = this.config.clusters[inst.cluster!]!.credentials;
    const admin = resolveCredential(creds.admin);
    const repl = resolveCredential(creds.replication);
    await this.withRoot(inst.key, async (conn) => {
      await conn.query('SET SESSION sql_log_bin = 0');
      for (const [u, grant] of [
        [admin, 'ALL PRIVILEGES ON *.* TO ?@? WITH GRANT OPTION'],
        [repl, 'REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO ?@?'],
      ] as const) {
        await conn.query('CREATE USER IF NOT EXISTS ?@? IDENTIFIED BY ?', [u.user, '%', u.password]);
        await conn.query('ALTER USER ?@? IDENTIFIED BY ?', [u.user, '%', u.password]);
        await conn.query(`GRANT ${grant}`, [u.user, '%']);
      }
    });
  }

  private async replicaStatus(inst: SandboxInstance): Promise<Record<string, unknown> | undefined> {
    return this.withRoot(inst.key, async (conn) => {
      const [rows] = await conn.query('SHOW REPLICA STATUS');
      return (rows as Record<string, unknown>[])[0];
    });
  }

  /** First creation only: point every replica at the YAML's primary with GTID auto-positioning. */
  private async wireReplica(inst: SandboxInstance, primary: SandboxInstance): Promise<void> {
    if (await this.replicaStatus(inst)) return; // already configured: never rewire a live topology
    const repl = resolveCredential(this.config.clusters[inst.cluster!]!.credentials.replication);
    await this.withRoot(inst.key, async (conn) => {
      await conn.query(
        `CHANGE MASTER TO MASTER_HOST = ?, MASTER_PORT = ${primary.port}, MASTER_USER = ?, MASTER_PASSWORD = ?, MASTER_USE_GTID = slave_pos, MASTER_CONNECT_RETRY = 1`,
        [primary.host, repl.user, repl.password],
      );
      await conn.query('START SLAVE');
    });
  }

  /** Exactly one writable instance per cluster: the one that replicates from nobody, if unique. */
  private async settleWriter(cluster: string): Promise<void> {
    const members = this.instances.filter((i) => i.cluster === cluster);
    const sourceless: SandboxInstance[] = [];
    // A recovery host is the writer only when a `promote` cut-over made it so: the writer
    // endpoint names it. Then the old members hold the skipped bad event and never qualify, and a
    // restart never makes the old primary writable again.
    const writer = await this.withRoot('control', async (c) => {
      const [rows] = await c.query(`SELECT instance FROM \`${this.config.control.database}\`.writer_endpoint WHERE cluster = ?`, [cluster]);
      return (rows as { instance: string }[])[0]?.instance;
    }).catch(() => undefined); // no writer endpoint yet
    const promoted = members.find((i) => i.initialRole === 'recovery' && i.name === writer);
    for (const inst of promoted ? [promoted] : members.filter((i) => i.initialRole !== 'recovery')) {
      if (!(await this.replicaStatus(inst))) sourceless.push(inst);
    }
    if (sourceless.length !== 1) {
      this.log(`${cluster}: ${sourceless.length} instances replicate from nobody (${sourceless.map((i) => i.name).join(', ') || 'none'}); leaving all read-only`);
      return;
    }
    await this.withRoot(sourceless[0]!.key, (conn) => conn.query('SET GLOBAL read_only = OFF'));
  }

  async up(): Promise<void> {
    const fresh = new Set(this.instances.filter((i) => !this.state(i).initialized).map((i) => i.key));
    // Every port is checked before anything starts, so a taken port changes nothing.
    for (const inst of this.instances) if (!this.state(inst).running) await this.checkPortFree(inst);
    const started = await Promise.allSettled(this.instances.map((i) => this.startInstance(i)));
    const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    for (const inst of this.instances) {
      if (inst.initialRole === 'control') await this.setupControl(inst);
      else await this.setupClusterUsers(inst);
    }
    for (const cluster of Object.keys(this.config.clusters)) {
      const members = this.instances.filter((i) => i.cluster === cluster && i.initialRole !== 'recovery');
      const primary = members.find((i) => i.initialRole === 'primary')!;
      for (const replica of members) {
        if (replica !== primary && fresh.has(replica.key)) await this.wireReplica(replica, primary);
      }
      await this.settleWriter(cluster);
    }
    for (const inst of this.instances) writeFileSync(this.paths(inst).initialized, new Date().toISOString() + '\n');
  }

  /** Socket path of an instance, for tools that connect as root (`mariadb --socket`). */
  socketOf(inst: SandboxInstance): string {
    return this.paths(inst).socket;
  }

  async stopInstance(key: string | SandboxInstance): Promise<void> {
    const inst = typeof key === 'string' ? this.instance(key) : key;
    const { pid } = this.state(inst);
    if (pid) {
      await terminate(pid);
      this.log(`stopped ${inst.key} (pid ${pid})`);
    }
  }

  /** Crash an instance (SIGKILL), as a failed host would. */
  async killInstance(key: string): Promise<void> {
    const { pid } = this.state(this.instance(key));
    if (!pid) return;
    process.kill(pid, 'SIGKILL');
    await waitFor(`${key} to die`, async () => (isAlive(pid) ? undefined : true), { timeoutMs: 10_000, intervalMs: 20 });
  }

  async down(): Promise<void> {
    await Promise.all(this.instances.map((i) => this.stopInstance(i.key)));
  }

  async destroy(): Promise<void> {
    await this.down();
    rmSync(this.config.sandboxDir, { recursive: true, force: true });
  }

  status(): InstanceState[] {
    return this.instances.map((i) => this.state(i));
  }
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
