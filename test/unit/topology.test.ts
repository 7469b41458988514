/** Roles and problems derived from probes, and the sync_status rows derived from a topology. */
import { describe, expect, it } from 'vitest';
import { buildTopology } from '../../src/adapters/mysql/probe';
import { syncStatusRows } from '../../src/core/syncStatus';
import type { InstanceProbe, ReplicationView } from '../../src/core/types';

const healthyLink = (source: string, lag = 0): ReplicationView => ({
  sourceHost: '127.0.0.1', sourcePort: 1, sourceInstance: source, ioRunning: 'Yes', sqlRunning: 'Yes', lagSeconds: lag,
  lastIoErrno: 0, lastIoError: '', lastSqlErrno: 0, lastSqlError: '', usingGtid: 'Slave_Pos', receivedGtid: '0-1-10',
});

function probe(instance: string, region: string, over: Partial<InstanceProbe> = {}): InstanceProbe {
  return {
    cluster: 'orders', instance, region, address: `127.0.0.1:${instance}`, reachable: true, readOnly: true, binlogEnabled: true,
    logReplicaUpdates: true, replication: null, probedAt: 1000, probeMs: 3, gtid: { currentPos: '0-1-10' }, ...over,
  };
}

describe('buildTopology', () => {
  it('finds the one writable, sourceless primary and no problems in a healthy cluster', () => {
    const t = buildTopology('orders', [
      probe('a', 'region-a', { readOnly: false }),
      probe('b', 'region-b', { replication: healthyLink('a') }),
    ]);
    expect(t.primary).toBe('a');
    expect(t.instances.map((i) => i.role)).toEqual(['primary', 'replica']);
    expect(t.problems).toEqual([]);
  });

  it('reports two writable primaries and names no primary', () => {
    const t = buildTopology('orders', [probe('a', 'region-a', { readOnly: false }), probe('b', 'region-b', { readOnly: false })]);
    expect(t.primary).toBeNull();
    expect(t.problems).toContain('2 writable primaries: a, b');
  });

  it('reports a writable replica, a stopped SQL thread, a foreign source, an orphan and an unreachable host', () => {
    const t = buildTopology('orders', [
      probe('a', 'region-a', { readOnly: false }),
      probe('b', 'region-b', { readOnly: false, replication: { ...healthyLink('a'), sqlRunning: 'No', lastSqlError: 'Duplicate entry' } }),
      probe('c', 'region-c', { replication: { ...healthyLink('a'), sourceInstance: null, sourceHost: '10.9.9.9', sourcePort: 3306 } }),
      probe('d', 'region-d'),
      probe('e', 'region-e', { reachable: false, error: 'connect ECONNREFUSED' }),
    ]);
    expect(t.problems).toEqual([
      'b is a replica but writable (read_only=OFF)',
      'b SQL thread No: Duplicate entry',
      'c replicates from 10.9.9.9:3306, which is not an instance of orders',
      'd is read-only and replicates from nobody',
      'e unreachable: connect ECONNREFUSED',
    ]);
  });
});

describe('syncStatusRows', () => {
  it('one row per region, the worst state of its instances, lag over the limit is lagging', () => {
    const t = buildTopology('orders', [
      probe('a', 'region-a', { readOnly: false }),
      probe('b1', 'region-b', { replication: healthyLink('a', 0) }),
      probe('b2', 'region-b', { replication: healthyLink('a', 30) }),
      probe('c', 'region-c', { reachable: false, error: 'timeout' }),
    ]);
    const rows = syncStatusRows(t, 5);
    expect(rows.map((r) => [r.region, r.status, r.instance, r.lagSeconds, r.lastSyncTime])).toEqual([
      ['region-a', 'primary', 'a', null, 1000],
      ['region-b', 'lagging', 'b2', 30, 1000],
      ['region-c', 'unreachable', 'c', null, undefined],
    ]);
  });
});
