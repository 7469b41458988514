/**
 * The local multi-region sandbox: one real `mariadbd` per instance of every cluster in the config,
 * each with its own datadir and loopback port, wired with real GTID replication, plus a separate
 * control instance for the engine's own tables.
 *
 * Every instance starts read_only (in its my.cnf, as orchestrator recommends for any server that
 * may restart); `up` then makes exactly one instance per cluster writable: the one the control
 * database's writer endpoint names (the engine's own record of the primary), or on a fresh sandbox
 * the one that replicates from nobody. An old primary an emergency failover left unrepointed stays
 * read-only and is named with the failback that brings it back; when nothing decides, all stay
 * read-only: two writable primaries is the one outcome that is never acceptable.
 */
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mysql from 'mysql2/promise';
import { resolveCredential, type RunbookConfig } from '../../config/load';
import { readWriterEndpoint, withControl } from '../control/store';
import { replicationOn } from '../mysql/replication';
import { failbackAdvice } from '../../core/failback';
import type { ReplicaStatus } from '../../core/types';
import { checkPortFree, killServer, pathsOf, startServer, stateOf, stopServer, withRoot, type InstanceState, type MariadbdInstance } from './server';

export type { InstanceState };

/** A sandbox instance: a server process (./server.ts) with its place in the config. */
export interface SandboxInstance extends MariadbdInstance {
  /** `control`, or `<cluster>/<instance>`. */
  key: string;
  cluster?: string;
  name: string;
  region?: string;
}

export class Sandbox {
  readonly instances: SandboxInstance[];

  constructor(
    private readonly config: RunbookConfig,
    private readonly log: (line: string) => void = () => {},
  ) {
    const root = config.sandboxDir;
    const control = config.control;
    this.instances = [
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

  /** State of an instance from its pid file, checked against the live process table. */
  state(inst: SandboxInstance): InstanceState {
    return stateOf(inst);
  }

  /** Root over the unix socket, on an instance by key. */
  async withRoot<T>(key: string | SandboxInstance, fn: (conn: mysql.Connection) => Promise<T>): Promise<T> {
    return withRoot(typeof key === 'string' ? this.instance(key) : key, fn);
  }

  /** Create the datadir if needed and start mariadbd; returns once it accepts connections. */
  async startInstance(inst: SandboxInstance): Promise<void> {
    await startServer(inst, this.log);
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

  private async replicaStatus(inst: SandboxInstance): Promise<ReplicaStatus | null> {
    return this.withRoot(inst.key, async (conn) => (await replicationOn(conn)).status());
  }

  /** First creation only: point every replica at the YAML's primary with GTID auto-positioning. */
  private async wireReplica(inst: SandboxInstance, primary: SandboxInstance): Promise<void> {
    if (await this.replicaStatus(inst)) return; // already configured: never rewire a live topology
    const repl = resolveCredential(this.config.clusters[inst.cluster!]!.credentials.replication);
    await this.withRoot(inst.key, async (conn) => {
      const replication = await replicationOn(conn);
      await replication.setSource({ host: primary.host, port: primary.port, user: repl.user, password: repl.password, connectRetrySeconds: 1 });
      await replication.start();
    });
  }

  /**
   * Exactly one writable instance per cluster. The engine's own record decides: the instance the
   * control database's writer endpoint names (after a failover, the promoted one; after a restore's
   * `promote` cut-over, the recovery host), if it replicates from nobody. Without a writer endpoint
   * (a fresh sandbox): the one member that replicates from nobody, if unique. Every other member
   * that replicates from nobody stays read-only and is named with the failback that brings it back.
   */
  private async settleWriter(cluster: string): Promise<void> {
    const members = this.instances.filter((i) => i.cluster === cluster);
    const writer = await withControl(this.config, (c) => readWriterEndpoint(c, cluster))
      .then((row) => row?.instance ?? null)
      .catch(() => null); // not migrated yet: no writer endpoint
    const candidates = members.filter((i) => i.initialRole !== 'recovery' || i.name === writer);
    const sourceless: SandboxInstance[] = [];
    for (const inst of candidates) if (!(await this.replicaStatus(inst))) sourceless.push(inst);
    const chosen = writer ? sourceless.find((i) => i.name === writer) : sourceless.length === 1 ? sourceless[0] : undefined;
    const advice = failbackAdvice(cluster, sourceless.map((i) => ({ instance: i.name, reachable: true, replicating: false })), chosen?.name ?? null);
    this.advice.set(cluster, advice);
    for (const line of advice) this.log(line);
    // Whatever their my.cnf says: only the chosen one may take writes.
    for (const inst of sourceless) if (inst !== chosen) await this.withRoot(inst.key, (conn) => conn.query('SET GLOBAL read_only = ON'));
    if (!chosen) {
      this.log(
        writer
          ? `${cluster}: the writer endpoint names ${writer}, which replicates from another server; leaving all read-only`
          : `${cluster}: ${sourceless.length} instances replicate from nobody (${sourceless.map((i) => i.name).join(', ') || 'none'}); leaving all read-only`,
      );
      return;
    }
    await this.withRoot(chosen.key, (conn) => conn.query('SET GLOBAL read_only = OFF'));
  }

  /** Per cluster, what the last `up` found needs a failback (one line each, with the command). */
  readonly advice = new Map<string, string[]>();

  async up(): Promise<void> {
    const fresh = new Set(this.instances.filter((i) => !this.state(i).initialized).map((i) => i.key));
    // Every port is checked before anything starts, so a taken port changes nothing.
    for (const inst of this.instances) if (!this.state(inst).running) await checkPortFree(inst).catch((err: Error) => Promise.reject(new Error(`sandbox: ${err.message}`)));
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
    for (const inst of this.instances) writeFileSync(pathsOf(inst).initialized, new Date().toISOString() + '\n');
  }

  /** Socket path of an instance, for tools that connect as root (`mariadb --socket`). */
  socketOf(inst: SandboxInstance): string {
    return pathsOf(inst).socket;
  }

  async stopInstance(key: string | SandboxInstance): Promise<void> {
    await stopServer(typeof key === 'string' ? this.instance(key) : key, this.log);
  }

  /** Crash an instance (SIGKILL), as a failed host would. */
  async killInstance(key: string): Promise<void> {
    await killServer(this.instance(key));
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
