/** sync_status rows from a topology: one per region, the worst state of its instances. */
import type { SyncStatusRow, Topology, TopologyInstance } from './types';

const SEVERITY = ['primary', 'in_sync', 'lagging', 'broken', 'unreachable'] as const;
type SyncState = (typeof SEVERITY)[number];

function instanceState(i: TopologyInstance, maxLagSeconds: number): { status: SyncState; remark: string } {
  if (!i.reachable) return { status: 'unreachable', remark: i.error ?? 'unreachable' };
  if (i.role === 'primary') return { status: 'primary', remark: `${i.instance} is the writable primary` };
  const r = i.replication;
  if (!r) return { status: 'broken', remark: `${i.instance} replicates from nobody` };
  if (r.ioRunning !== 'Yes' || r.sqlRunning !== 'Yes') {
    return { status: 'broken', remark: `${i.instance} io=${r.ioRunning} sql=${r.sqlRunning} ${r.lastIoError || r.lastSqlError}`.trim() };
  }
  if (r.lagSeconds === null || r.lagSeconds > maxLagSeconds) return { status: 'lagging', remark: `${i.instance} lag ${r.lagSeconds ?? 'unknown'} s` };
  return { status: 'in_sync', remark: `${i.instance} replicating from ${r.sourceInstance ?? r.sourceHost}, lag ${r.lagSeconds} s` };
}

export function syncStatusRows(topology: Topology, maxLagSeconds: number): SyncStatusRow[] {
  const byRegion = new Map<string, TopologyInstance[]>();
  for (const i of topology.instances) byRegion.set(i.region, [...(byRegion.get(i.region) ?? []), i]);
  return [...byRegion.entries()].map(([region, members]) => {
    const states = members.map((i) => ({ i, ...instanceState(i, maxLagSeconds) }));
    const worst = states.reduce((a, b) => (SEVERITY.indexOf(b.status) > SEVERITY.indexOf(a.status) ? b : a));
    const lastGood = states.filter((s) => s.status === 'in_sync' || s.status === 'primary');
    return {
      cluster: topology.cluster,
      region,
      status: worst.status,
      remark: states.map((s) => s.remark).join('; ').slice(0, 255),
      instance: worst.i.instance,
      role: worst.i.role,
      lagSeconds: worst.i.replication?.lagSeconds ?? null,
      gtidPosition: worst.i.gtid?.currentPos ?? worst.i.gtid?.executed,
      lastSyncTime: lastGood.length ? topology.probedAt : undefined,
    };
  });
}
