/**
 * Probing: what one instance says about itself, and the cluster topology assembled from all of
 * them. An unreachable instance is data, not an exception: the topology says so and carries on.
 */
import type { RunbookConfig } from '../../config/load';
import { getCluster, getInstance } from '../../config/load';
import type { InstanceProbe, Topology, TopologyInstance } from '../../core/types';
import { connect, instanceEndpoint, query, type Conn } from './connect';
import { detectFlavor, dialectFor, type Dialect, type ReplicaStatus } from './dialect';

/** Flavour and dialect of a live connection. */
export async function dialectOf(conn: Conn): Promise<{ dialect: Dialect; version: string }> {
  const [row] = await query<{ version: string; comment: string }[]>(conn, 'SELECT VERSION() AS version, @@version_comment AS comment');
  const v = detectFlavor(String(row!.version), String(row!.comment ?? ''));
  return { dialect: dialectFor(v.flavor, v), version: String(row!.version) };
}

export async function probeInstance(config: RunbookConfig, cluster: string, instance: string): Promise<InstanceProbe> {
  const c = getCluster(config, cluster);
  const inst = getInstance(config, cluster, instance);
  const timeoutMs = c.thresholds.probeTimeoutSeconds * 1000;
  const started = Date.now();
  const base = { cluster, instance, region: inst.region, address: `${inst.host}:${inst.port}`, replication: null, probedAt: started };
  let conn: Conn | undefined;
  try {
    conn = await connect(instanceEndpoint(config, cluster, instance), { timeoutMs });
    const { dialect, version } = await dialectOf(conn);
    // Variables are read in a SELECT without FROM: MariaDB reports @@read_only as 0 inside a
    // query that reads a table on a replica, which would make every replica look writable.
    const [vars] = await query<Record<string, unknown>[]>(conn, dialect.variablesQuery(), [], timeoutMs);
    const v = dialect.parseVariables(vars!);
    const status = dialect.parseReplicaStatus(await query<Record<string, unknown>[]>(conn, dialect.replicaStatusQuery(), [], timeoutMs));
    const sourceInstance = status
      ? [...c.instances, ...(c.recovery ? [c.recovery] : [])].find(
          (i) =>
            (i.port === status.sourcePort && sameHost(i.host, status.sourceHost)) ||
            ('replicationAddress' in i && i.replicationAddress?.port === status.sourcePort && sameHost(i.replicationAddress.host, status.sourceHost)),
        )?.name ?? null
      : null;
    return {
      ...base,
      reachable: true,
      flavor: dialect.flavor,
      version,
      serverId: v.serverId,
      readOnly: v.readOnly,
      superReadOnly: v.superReadOnly,
      binlogEnabled: v.binlogEnabled,
      logReplicaUpdates: v.logReplicaUpdates,
      binlogFormat: v.binlogFormat,
      gtidStrictMode: v.gtidStrictMode,
      gtid: v.gtid,
      replication: status ? { ...withoutSqlState(status), sourceInstance } : null,
      probeMs: Date.now() - started,
    };
  } catch (err) {
    return { ...base, reachable: false, error: (err as Error).message, probeMs: Date.now() - started };
  } finally {
    conn?.destroy();
  }
}

function withoutSqlState({ sqlState: _, ...rest }: ReplicaStatus): Omit<ReplicaStatus, 'sqlState'> {
  return rest;
}

function sameHost(a: string, b: string | null): boolean {
  const loop = (h: string | null) => (h === 'localhost' || h === '::1' ? '127.0.0.1' : h);
  return loop(a) === loop(b);
}

/**
 * Roles from what the servers say, not from the YAML: the primary is the writable instance that
 * replicates from nobody. Anything else that is writable, or a second sourceless instance, is a
 * problem an operator must see before a runbook acts.
 */
export function buildTopology(cluster: string, probes: InstanceProbe[]): Topology {
  const problems: string[] = [];
  const instances: TopologyInstance[] = probes.map((p) => ({
    ...p,
    role: !p.reachable ? 'unreachable' : p.replication ? 'replica' : p.readOnly ? 'orphan' : 'primary',
  }));
  const primaries = instances.filter((i) => i.role === 'primary');
  const writable = instances.filter((i) => i.reachable && i.readOnly === false);
  if (primaries.length > 1) problems.push(`${primaries.length} writable primaries: ${primaries.map((p) => p.instance).join(', ')}`);
  if (primaries.length === 0) problems.push('no writable primary found');
  for (const i of writable) {
    if (i.role === 'replica') problems.push(`${i.instance} is a replica but writable (read_only=OFF)`);
  }
  for (const i of instances) {
    if (i.role === 'unreachable') problems.push(`${i.instance} unreachable: ${i.error}`);
    if (i.role === 'orphan') problems.push(`${i.instance} is read-only and replicates from nobody`);
    const r = i.replication;
    if (!r) continue;
    if (!r.sourceInstance) problems.push(`${i.instance} replicates from ${r.sourceHost}:${r.sourcePort}, which is not an instance of ${cluster}`);
    if (r.ioRunning !== 'Yes') problems.push(`${i.instance} IO thread ${r.ioRunning}${r.lastIoError ? `: ${r.lastIoError}` : ''}`);
    if (r.sqlRunning !== 'Yes') problems.push(`${i.instance} SQL thread ${r.sqlRunning}${r.lastSqlError ? `: ${r.lastSqlError}` : ''}`);
    if (i.binlogEnabled === false) problems.push(`${i.instance} has the binary log off`);
    if (i.logReplicaUpdates === false) problems.push(`${i.instance} has log_slave_updates off`);
  }
  return {
    cluster,
    primary: primaries.length === 1 ? primaries[0]!.instance : null,
    instances,
    problems,
    probedAt: Math.min(...probes.map((p) => p.probedAt)),
  };
}

export async function probeTopology(config: RunbookConfig, cluster: string): Promise<Topology> {
  const c = getCluster(config, cluster);
  const probes = await Promise.all(c.instances.map((i) => probeInstance(config, cluster, i.name)));
  if (c.recovery) {
    // The recovery host is a member once it takes part: promoted (writable) by a restore's
    // `promote` cut-over, or replicating from a member while it catches up for one. Idle or in the
    // middle of a restore (replicating from the scratch binlog server) it is not.
    const r = await probeInstance(config, cluster, c.recovery.name);
    if (r.reachable && (r.readOnly === false || r.replication?.sourceInstance)) probes.push(r);
  }
  return buildTopology(cluster, probes);
}
