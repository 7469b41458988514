/** Choosing the candidate to promote (planned and emergency), refusals, and the approval text. */
import { thresholdsSchema } from '../../src/core/configSchema';
import { describe, expect, it } from 'vitest';
import { buildTopology } from '../../src/adapters/mysql/probe';
import type { ClusterPolicy, FailoverPlan, PlanResult } from '../../src/core/failover';
import { describePlan, planEmergency, planSwitchover } from '../../src/core/plan';
import type { InstanceProbe, ReplicationView } from '../../src/core/types';

const policy: ClusterPolicy = {
  cluster: 'orders',
  instances: [
    { name: 'orders-a', region: 'region-a', address: '10.0.0.1:3306', promotion: 'neutral' },
    { name: 'orders-b', region: 'region-b', address: '10.0.0.2:3306', promotion: 'neutral' },
    { name: 'orders-c', region: 'region-c', address: '10.0.0.3:3306', promotion: 'neutral' },
  ],
  thresholds: { ...thresholdsSchema.parse({}), maxLagSeconds: 10, catchUpTimeoutSeconds: 60, probeTimeoutSeconds: 5 },
  approval: { mode: 'auto', approvers: [], fourEyes: true, timeoutMinutes: 15, remindEveryMinutes: 5 },
  trafficHooks: [],
  fencingHooks: [],
};

function withPromotion(over: Record<string, 'prefer' | 'neutral' | 'never'>, extra: ClusterPolicy['instances'] = []): ClusterPolicy {
  return {
    ...policy,
    instances: [...policy.instances.map((i) => ({ ...i, promotion: over[i.name] ?? i.promotion })), ...extra],
  };
}

const link = (source: string | null, over: Partial<ReplicationView> = {}): ReplicationView => ({
  sourceHost: '10.0.0.1', sourcePort: 3306, sourceInstance: source, ioRunning: 'Yes', sqlRunning: 'Yes', lagSeconds: 0,
  lastIoErrno: 0, lastIoError: '', lastSqlErrno: 0, lastSqlError: '', usingGtid: 'Slave_Pos', receivedGtid: '0-1-10', ...over,
});

function probe(instance: string, over: Partial<InstanceProbe> = {}): InstanceProbe {
  const conf = policy.instances.find((i) => i.name === instance);
  return {
    cluster: 'orders', instance, region: conf?.region ?? 'region-x', address: conf?.address ?? '10.0.0.9:3306', reachable: true,
    flavor: 'mariadb', readOnly: true, binlogEnabled: true, logReplicaUpdates: true, replication: null, probedAt: 1000, probeMs: 3,
    gtid: { currentPos: '0-1-10', binlogPos: '0-1-10', slavePos: '0-1-10' }, ...over,
  };
}

const primaryA = (pos = '0-1-10') => probe('orders-a', { readOnly: false, gtid: { currentPos: pos, binlogPos: pos } });
const replica = (instance: string, pos = '0-1-10', over: Partial<ReplicationView> = {}, probeOver: Partial<InstanceProbe> = {}) =>
  probe(instance, { gtid: { currentPos: pos, slavePos: pos }, replication: link('orders-a', over), ...probeOver });

function plan(r: PlanResult): FailoverPlan {
  if (!r.ok) throw new Error(`expected a plan, got refusals: ${r.refusals.join(' | ')}`);
  return r.plan;
}

function refusals(r: PlanResult): string[] {
  if (r.ok) throw new Error(`expected a refusal, got a plan to ${r.plan.to.instance}`);
  return r.refusals;
}

describe('planSwitchover', () => {
  it('chooses the most advanced replica of a healthy cluster', () => {
    const t = buildTopology('orders', [primaryA('0-1-12'), replica('orders-b', '0-1-12', { lagSeconds: 2 }), replica('orders-c', '0-1-11')]);
    expect(plan(planSwitchover(t, policy))).toEqual({
      mode: 'planned',
      cluster: 'orders',
      from: { instance: 'orders-a', region: 'region-a', address: '10.0.0.1:3306' },
      to: { instance: 'orders-b', region: 'region-b', address: '10.0.0.2:3306' },
      others: ['orders-c'],
      lagSeconds: 2,
      positions: { primary: '0-1-12', candidate: '0-1-12' },
      risks: ['orders-b is 2 s behind'],
    });
  });

  it('breaks a tie of positions by promotion "prefer", then lag, then name', () => {
    const probes = [primaryA(), replica('orders-b'), replica('orders-c', '0-1-10', { lagSeconds: 3 })];
    const t = buildTopology('orders', probes);
    expect(plan(planSwitchover(t, policy)).to.instance).toBe('orders-b');
    expect(plan(planSwitchover(t, withPromotion({ 'orders-c': 'prefer' }))).to.instance).toBe('orders-c');
    const noLag = buildTopology('orders', [primaryA(), replica('orders-b'), replica('orders-c')]);
    expect(plan(planSwitchover(noLag, policy)).to.instance).toBe('orders-b');
  });

  it('takes a target by instance name or by region, picking the best eligible in a region', () => {
    const t = buildTopology('orders', [primaryA('0-1-12'), replica('orders-b', '0-1-12'), replica('orders-c', '0-1-11')]);
    expect(plan(planSwitchover(t, policy, 'orders-c')).to.instance).toBe('orders-c');
    expect(plan(planSwitchover(t, policy, 'region-c')).to.instance).toBe('orders-c');

    const twoInC: ClusterPolicy = withPromotion({}, [{ name: 'orders-c2', region: 'region-c', address: '10.0.0.4:3306', promotion: 'neutral' }]);
    const t2 = buildTopology('orders', [
      primaryA('0-1-12'),
      replica('orders-b', '0-1-12'),
      replica('orders-c', '0-1-12', { ioRunning: 'No', lastIoError: 'error reconnecting' }),
      replica('orders-c2', '0-1-11'),
    ]);
    const p = plan(planSwitchover(t2, twoInC, 'region-c'));
    expect(p.to.instance).toBe('orders-c2');
    expect(p.others).toEqual(['orders-b', 'orders-c']);
    expect(p.risks).toEqual(['replication on orders-c is broken: IO thread No, SQL thread Yes: error reconnecting']);
  });

  it('refuses a lagging candidate whose SQL thread is stopped', () => {
    const t = buildTopology('orders', [
      primaryA(),
      replica('orders-b', '0-1-8', { sqlRunning: 'No', lagSeconds: null, lastSqlErrno: 1062, lastSqlError: "Duplicate entry '7' for key 'PRIMARY'" }),
      replica('orders-c'),
    ]);
    expect(refusals(planSwitchover(t, policy, 'orders-b'))).toEqual([
      "replication on orders-b is broken: IO thread Yes, SQL thread No: Duplicate entry '7' for key 'PRIMARY'",
      'orders-b lags unknown s behind orders-a (limit 10 s)',
    ]);
  });

  it('refuses a candidate over the lag limit', () => {
    const t = buildTopology('orders', [primaryA(), replica('orders-b', '0-1-10', { lagSeconds: 11 }), replica('orders-c')]);
    expect(refusals(planSwitchover(t, policy, 'orders-b'))).toEqual(['orders-b lags 11 s behind orders-a (limit 10 s)']);
  });

  it('refuses a candidate with errant transactions, naming every domain', () => {
    const t = buildTopology('orders', [primaryA('0-1-10'), replica('orders-b', '0-1-12,1-2-3'), replica('orders-c')]);
    expect(refusals(planSwitchover(t, policy, 'orders-b'))).toEqual([
      'orders-b has errant transactions the primary lacks: domain 0 (orders-b at seq 12, primary at 10), domain 1 (orders-b at seq 3, primary at none)',
    ]);
    // Without a target the clean replica is chosen instead.
    expect(plan(planSwitchover(t, policy)).to.instance).toBe('orders-c');
  });

  it('does not mistake the primary\'s own newer writes, read after it was probed, for errant ones', () => {
    const primary = { ...primaryA('0-1-10'), serverId: 1 };
    const raced = buildTopology('orders', [primary, replica('orders-b', '0-1-12'), replica('orders-c')]);
    expect(plan(planSwitchover(raced, policy, 'orders-b')).to.instance).toBe('orders-b');
    const foreign = buildTopology('orders', [primary, replica('orders-b', '0-2-12'), replica('orders-c')]);
    expect(refusals(planSwitchover(foreign, policy, 'orders-b'))).toEqual([
      'orders-b has errant transactions the primary lacks: domain 0 (orders-b at seq 12, primary at 10)',
    ]);
  });

  it('refuses broken replication', () => {
    const t = buildTopology('orders', [
      primaryA(),
      replica('orders-b', '0-1-10', { ioRunning: 'Connecting', lastIoErrno: 2003, lastIoError: "Can't connect to server" }),
      replica('orders-c'),
    ]);
    expect(refusals(planSwitchover(t, policy, 'orders-b'))).toEqual([
      "replication on orders-b is broken: IO thread Connecting, SQL thread Yes: Can't connect to server",
    ]);
  });

  it('refuses a "never" candidate', () => {
    const t = buildTopology('orders', [primaryA(), replica('orders-b'), replica('orders-c')]);
    expect(refusals(planSwitchover(t, withPromotion({ 'orders-c': 'never' }), 'orders-c'))).toEqual(['orders-c has promotion rule "never"']);
  });

  it('refuses a candidate replicating from another source', () => {
    const t = buildTopology('orders', [
      primaryA(),
      replica('orders-b'),
      replica('orders-c', '0-1-10', { sourceInstance: 'orders-b' }),
      probe('orders-x', { gtid: { currentPos: '0-1-10' }, replication: link(null, { sourceHost: '192.168.1.5', sourcePort: 3307 }) }),
    ]);
    const withX = withPromotion({}, [{ name: 'orders-x', region: 'region-x', address: '10.0.0.9:3306', promotion: 'neutral' }]);
    expect(refusals(planSwitchover(t, withX, 'orders-c'))).toEqual(['orders-c replicates from orders-b, not from the primary orders-a']);
    expect(refusals(planSwitchover(t, withX, 'orders-x'))).toEqual(['orders-x replicates from 192.168.1.5:3307, not from the primary orders-a']);
  });

  it('refuses an unknown target and the primary as target', () => {
    const t = buildTopology('orders', [primaryA(), replica('orders-b'), replica('orders-c')]);
    expect(refusals(planSwitchover(t, policy, 'orders-z'))).toEqual([
      'unknown target "orders-z": expected an instance (orders-a, orders-b, orders-c) or a region (region-a, region-b, region-c)',
    ]);
    expect(refusals(planSwitchover(t, policy, 'orders-a'))).toEqual(['"orders-a" is already the primary']);
    expect(refusals(planSwitchover(t, policy, 'region-a'))).toEqual(['region "region-a" holds only orders-a, which is already the primary']);
  });

  it('refuses without a single writable primary', () => {
    const t = buildTopology('orders', [primaryA(), probe('orders-b', { readOnly: false }), replica('orders-c')]);
    expect(refusals(planSwitchover(t, policy))).toEqual(['no single writable primary: 2 writable primaries: orders-a, orders-b']);
  });

  it('lists every reason of every candidate, by instance name, when none is eligible', () => {
    const t = buildTopology('orders', [
      primaryA('0-1-10'),
      probe('orders-c', { reachable: false, error: 'connect ETIMEDOUT', gtid: undefined }),
      replica('orders-b', '0-1-11', { lagSeconds: 30 }, { binlogEnabled: false, logReplicaUpdates: false }),
    ]);
    expect(refusals(planSwitchover(t, withPromotion({ 'orders-c': 'never' })))).toEqual([
      'orders-b lags 30 s behind orders-a (limit 10 s)',
      'orders-b has the binary log off',
      'orders-b has log_slave_updates off',
      'orders-b has errant transactions the primary lacks: domain 0 (orders-b at seq 11, primary at 10)',
      'orders-c has promotion rule "never"',
      'orders-c is unreachable: connect ETIMEDOUT',
    ]);
  });

  it('reports unreachable others as a risk', () => {
    const t = buildTopology('orders', [primaryA(), replica('orders-b'), probe('orders-c', { reachable: false, error: 'timeout' })]);
    expect(plan(planSwitchover(t, policy)).risks).toEqual(['orders-c is unreachable and will not be repointed']);
  });

  it('refuses MySQL rather than guessing', () => {
    const t = buildTopology('orders', [
      probe('orders-a', { flavor: 'mysql', readOnly: false, gtid: { executed: 'uuid:1-10' } }),
      probe('orders-b', { flavor: 'mysql', gtid: { executed: 'uuid:1-10' }, replication: link('orders-a') }),
    ]);
    expect(refusals(planSwitchover(t, policy))).toEqual(['orders-a, orders-b run MySQL: MySQL GTID-set comparison is not supported yet']);
  });
});

describe('planEmergency', () => {
  // After the primary died: IO threads stopped, relay logs applied.
  const stopped = (instance: string, pos: string, over: Partial<ReplicationView> = {}, probeOver: Partial<InstanceProbe> = {}) =>
    replica(instance, pos, { ioRunning: 'No', lagSeconds: null, receivedGtid: pos, ...over }, probeOver);

  it('promotes the most advanced replica and counts what it lacks of the last known position', () => {
    const r = planEmergency({
      primary: 'orders-a',
      primaryLastKnown: '0-1-120',
      replicas: [stopped('orders-c', '0-1-115'), stopped('orders-b', '0-1-117')],
      policy,
    });
    expect(plan(r)).toEqual({
      mode: 'emergency',
      cluster: 'orders',
      from: { instance: 'orders-a', region: 'region-a', address: '10.0.0.1:3306' },
      to: { instance: 'orders-b', region: 'region-b', address: '10.0.0.2:3306' },
      others: ['orders-c'],
      lagSeconds: null,
      positions: { primary: '0-1-120', candidate: '0-1-117' },
      risks: [],
      expectedLoss: {
        primaryLastKnown: '0-1-120',
        candidate: '0-1-117',
        missing: [{ domain: 0, primarySeq: 120, candidateSeq: 117, transactions: 3 }],
        summary: "orders-b lacks 3 transaction(s) of the old primary's last known position (0-1-120 vs 0-1-117)",
      },
    });
  });

  it('reports no loss when the candidate has everything (being ahead is not loss)', () => {
    const r = planEmergency({ primary: 'orders-a', primaryLastKnown: '0-1-120,1-1-5', replicas: [stopped('orders-b', '0-1-122,1-1-5')], policy });
    expect(plan(r).expectedLoss).toEqual({
      primaryLastKnown: '0-1-120,1-1-5',
      candidate: '0-1-122,1-1-5',
      missing: [],
      summary: 'no transaction known to the old primary is missing on orders-b',
    });
  });

  it('counts the loss of every domain, a domain the candidate lacks entirely included', () => {
    const r = planEmergency({ primary: 'orders-a', primaryLastKnown: '0-1-120,1-1-5,2-1-4', replicas: [stopped('orders-b', '0-1-118,1-1-5')], policy });
    expect(plan(r).expectedLoss).toEqual({
      primaryLastKnown: '0-1-120,1-1-5,2-1-4',
      candidate: '0-1-118,1-1-5',
      missing: [
        { domain: 0, primarySeq: 120, candidateSeq: 118, transactions: 2 },
        { domain: 2, primarySeq: 4, candidateSeq: 0, transactions: 4 },
      ],
      summary: "orders-b lacks 6 transaction(s) of the old primary's last known position (0-1-120,1-1-5,2-1-4 vs 0-1-118,1-1-5)",
    });
  });

  it('says loss cannot be measured when the last position is unknown', () => {
    const p = plan(planEmergency({ primary: 'orders-a', primaryLastKnown: null, replicas: [stopped('orders-b', '0-1-117')], policy }));
    expect(p.positions).toEqual({ primary: 'unknown', candidate: '0-1-117' });
    expect(p.expectedLoss).toEqual({
      primaryLastKnown: null,
      candidate: '0-1-117',
      missing: [],
      summary: "the old primary's last position is unknown: possible loss cannot be measured",
    });
  });

  it('skips a "never" replica even when it is the most advanced, and says what it had', () => {
    const r = planEmergency({
      primary: 'orders-a',
      primaryLastKnown: '0-1-120',
      replicas: [stopped('orders-b', '0-1-117'), stopped('orders-c', '0-1-120')],
      policy: withPromotion({ 'orders-c': 'never' }),
    });
    const p = plan(r);
    expect(p.to.instance).toBe('orders-b');
    expect(p.risks).toEqual([
      'orders-c had received more than orders-b applied: domain 0 (orders-c at seq 120, orders-b at 117); those transactions will not be on the new primary',
    ]);
  });

  it('warns when another replica had received more than the candidate applied', () => {
    const r = planEmergency({
      primary: 'orders-a',
      primaryLastKnown: '0-1-120',
      replicas: [stopped('orders-b', '0-1-117', {}, {}), stopped('orders-c', '0-1-116', { receivedGtid: '0-1-119' })],
      policy: withPromotion({ 'orders-b': 'prefer' }),
    });
    expect(plan(r).risks).toEqual([
      'orders-c had received more than orders-b applied: domain 0 (orders-c at seq 119, orders-b at 117); those transactions will not be on the new primary',
    ]);
  });

  it('refuses with every reason when no replica is eligible, and honours a target region', () => {
    const replicas = [
      stopped('orders-b', '0-1-117', { lastSqlErrno: 1062, lastSqlError: 'Duplicate entry' }),
      stopped('orders-c', '0-1-110', {}, { binlogEnabled: false }),
    ];
    expect(refusals(planEmergency({ primary: 'orders-a', primaryLastKnown: '0-1-120', replicas, policy }))).toEqual([
      'replication on orders-b is broken: SQL thread error 1062: Duplicate entry',
      'orders-c has the binary log off',
    ]);
    const ok = [stopped('orders-b', '0-1-117'), stopped('orders-c', '0-1-110')];
    expect(plan(planEmergency({ primary: 'orders-a', primaryLastKnown: '0-1-120', replicas: ok, policy, target: 'region-c' })).to.instance).toBe(
      'orders-c',
    );
    expect(refusals(planEmergency({ primary: 'orders-a', primaryLastKnown: null, replicas: ok, policy, target: 'orders-a' }))).toEqual([
      '"orders-a" is the failed primary',
    ]);
  });
});

describe('describePlan', () => {
  it('says from → to, lag, positions, risks', () => {
    const t = buildTopology('orders', [primaryA('0-1-12'), replica('orders-b', '0-1-12', { lagSeconds: 2 }), replica('orders-c', '0-1-11')]);
    expect(describePlan(plan(planSwitchover(t, policy)))).toBe(
      [
        '**Planned switchover** of `orders`: `orders-a` (region-a, 10.0.0.1:3306) → `orders-b` (region-b, 10.0.0.2:3306)',
        '- Measured lag: 2 s',
        '- GTID positions: primary `0-1-12`, candidate `0-1-12`',
        '- To repoint to orders-b: orders-a (the old primary), orders-c',
        '- Risks:',
        '  - orders-b is 2 s behind',
      ].join('\n'),
    );
  });

  it('includes the expected loss of an emergency failover', () => {
    const r = planEmergency({ primary: 'orders-a', primaryLastKnown: '0-1-120', replicas: [replica('orders-b', '0-1-117')], policy });
    expect(describePlan(plan(r))).toBe(
      [
        '**Emergency failover** of `orders`: `orders-a` (region-a, 10.0.0.1:3306) → `orders-b` (region-b, 10.0.0.2:3306)',
        '- Measured lag: not measured',
        '- GTID positions: old primary last known `0-1-120`, candidate `0-1-117`',
        '- To repoint to orders-b: none',
        "- Expected loss: orders-b lacks 3 transaction(s) of the old primary's last known position (0-1-120 vs 0-1-117)",
        '- Risks:',
        '  - orders-c was not probed and will not be repointed',
      ].join('\n'),
    );
  });
});
