/**
 * Which instance an emergency failover is about: the one every reachable replica replicates from,
 * when it does not answer. Its last known position is the most any replica received from it.
 * Pure and workflow-safe.
 */
import { formatMariaGtidList, parseMariaGtidList, type MariaGtid } from './gtid';
import type { Topology, TopologyInstance } from './types';

export type FailedPrimary =
  | { ok: true; primary: string; lastKnownPosition: string | null; replicas: TopologyInstance[] }
  | { ok: false; reason: string };

/** Per domain, the highest sequence any of the positions reached. */
export function highestPositions(positions: (string | null | undefined)[]): string | null {
  const best = new Map<number, MariaGtid>();
  for (const pos of positions) {
    if (!pos) continue;
    for (const g of parseMariaGtidList(pos)) if ((best.get(g.domain)?.seq ?? -1) < g.seq) best.set(g.domain, g);
  }
  return best.size ? formatMariaGtidList([...best.values()]) : null;
}

export function lastKnownPrimary(t: Topology): FailedPrimary {
  const replicas = t.instances.filter((i) => i.reachable && i.replication);
  const sources = [...new Set(replicas.map((r) => r.replication!.sourceInstance ?? `${r.replication!.sourceHost}:${r.replication!.sourcePort}`))];
  if (!replicas.length) return { ok: false, reason: 'no reachable replica: nothing to promote' };
  if (sources.length !== 1) return { ok: false, reason: `the replicas disagree on their primary (${sources.join(', ')})` };
  const primary = sources[0]!;
  const source = t.instances.find((i) => i.instance === primary);
  if (!source) return { ok: false, reason: `the replicas replicate from ${primary}, which is not an instance of ${t.cluster}` };
  if (source.reachable) {
    return { ok: false, reason: `${primary} answers (read_only=${source.readOnly ? 'ON' : 'OFF'}): the primary is not down; use a planned switchover` };
  }
  return { ok: true, primary, lastKnownPosition: highestPositions(replicas.map((r) => r.replication!.receivedGtid)), replicas };
}
