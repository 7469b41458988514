/**
 * Choosing the instance to promote, and saying why not when none fits. Pure and workflow-safe:
 * no I/O, no clock, no Node imports (it is bundled into workflow code). Only MariaDB GTID
 * positions are compared; a MySQL instance makes the planner refuse rather than guess.
 */
import { compareMariaGtid, mariaErrantDomains, parseMariaGtidList } from './gtid';
import type { ClusterPolicy, ExpectedLoss, FailoverPlan, PlanResult } from './failover';
import type { InstanceProbe, ReplicationView, Topology } from './types';

type Promotion = ClusterPolicy['instances'][number]['promotion'];

const MYSQL_UNSUPPORTED = 'MySQL GTID-set comparison is not supported yet';

/** Code-point order: deterministic whatever the locale. */
function byName(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function refuse(refusals: string[]): PlanResult {
  return { ok: false, refusals };
}

/** A GTID position for display ('' is a valid, empty position). */
function show(pos: string): string {
  return pos === '' ? '(empty)' : pos;
}

/** Sequence number per domain of a position that has already been validated. */
function seqs(pos: string): Map<number, { seq: number; server: number }> {
  return new Map(parseMariaGtidList(pos).map((g) => [g.domain, { seq: g.seq, server: g.server }]));
}

/** The reason a position cannot be used, or null when it parses. */
function invalidPosition(pos: string): string | null {
  try {
    parseMariaGtidList(pos);
    return null;
  } catch (err) {
    return (err as Error).message;
  }
}

/** currentPos of a probe, or the reason it cannot be compared. */
function currentPos(p: InstanceProbe): { pos: string } | { reason: string } {
  const pos = p.gtid?.currentPos;
  if (pos === undefined) return { reason: `${p.instance} reports no GTID position (gtid_current_pos)` };
  const bad = invalidPosition(pos);
  if (bad !== null) return { reason: `${p.instance} has an unusable GTID position: ${bad}` };
  return { pos };
}

function mysqlRefusal(probes: InstanceProbe[]): string | null {
  const names = probes.filter((p) => p.flavor === 'mysql').map((p) => p.instance).sort(byName);
  if (names.length === 0) return null;
  return `${names.join(', ')} ${names.length === 1 ? 'runs' : 'run'} MySQL: ${MYSQL_UNSUPPORTED}`;
}

function brokenReplication(name: string, r: ReplicationView): string {
  const errors = [r.lastIoError, r.lastSqlError].filter((e) => e !== '');
  return `replication on ${name} is broken: IO thread ${r.ioRunning}, SQL thread ${r.sqlRunning}${errors.length ? `: ${errors.join('; ')}` : ''}`;
}

function sourceOf(r: ReplicationView): string {
  return r.sourceInstance ?? `${r.sourceHost}:${r.sourcePort}`;
}

/** Reasons common to both modes: configuration, reachability, binary logging. */
function baseReasons(p: InstanceProbe, policy: ClusterPolicy): { promotion: Promotion; reasons: string[] } {
  const reasons: string[] = [];
  const conf = policy.instances.find((i) => i.name === p.instance);
  if (!conf) reasons.push(`${p.instance} is not configured in cluster ${policy.cluster}`);
  else if (conf.promotion === 'never') reasons.push(`${p.instance} has promotion rule "never"`);
  if (!p.reachable) reasons.push(`${p.instance} is unreachable: ${p.error ?? 'no error reported'}`);
  return { promotion: conf?.promotion ?? 'never', reasons };
}

function binlogReasons(p: InstanceProbe): string[] {
  const reasons: string[] = [];
  if (p.binlogEnabled === false) reasons.push(`${p.instance} has the binary log off`);
  else if (p.binlogEnabled === undefined) reasons.push(`${p.instance} did not report whether the binary log is on`);
  if (p.logReplicaUpdates === false) reasons.push(`${p.instance} has log_slave_updates off`);
  else if (p.logReplicaUpdates === undefined) reasons.push(`${p.instance} did not report whether log_slave_updates is on`);
  return reasons;
}

interface Assessed {
  probe: InstanceProbe;
  promotion: Promotion;
  /** Empty when eligible. */
  reasons: string[];
  /** currentPos, set when eligible. */
  pos: string;
  lag: number | null;
}

const RANK: Record<Promotion, number> = { prefer: 0, neutral: 1, never: 2 };

/**
 * The most advanced eligible candidate: among those no other candidate is strictly ahead of
 * (ahead in some domain and behind in none), prefer > neutral, then lower lag, then name.
 */
function pickMostAdvanced(eligible: Assessed[], useLag: boolean): Assessed {
  const dominated = (a: Assessed) =>
    eligible.some((b) => {
      if (b === a) return false;
      const c = compareMariaGtid(a.pos, b.pos);
      return c.aAhead.length === 0 && c.bAhead.length > 0;
    });
  const lagKey = (a: Assessed) => (a.lag === null ? Number.POSITIVE_INFINITY : a.lag);
  const best = eligible
    .filter((a) => !dominated(a))
    .sort(
      (a, b) =>
        RANK[a.promotion] - RANK[b.promotion] ||
        (useLag ? lagKey(a) - lagKey(b) : 0) ||
        byName(a.probe.instance, b.probe.instance),
    );
  return best[0]!;
}

type TargetResolution = { ok: true; names: string[] | null } | { ok: false; refusal: string };

/** An instance name or a region name, to the instances it names (the primary excluded). */
function resolveTarget(policy: ClusterPolicy, primary: string, target: string | undefined, primaryIs: string): TargetResolution {
  if (target === undefined) return { ok: true, names: null };
  const names = policy.instances.map((i) => i.name).sort(byName);
  if (names.includes(target)) {
    if (target === primary) return { ok: false, refusal: `"${target}" is ${primaryIs}` };
    return { ok: true, names: [target] };
  }
  const regions = [...new Set(policy.instances.map((i) => i.region))].sort(byName);
  if (regions.includes(target)) {
    const inRegion = policy.instances.filter((i) => i.region === target && i.name !== primary).map((i) => i.name).sort(byName);
    if (inRegion.length === 0) return { ok: false, refusal: `region "${target}" holds only ${primary}, which is ${primaryIs}` };
    return { ok: true, names: inRegion };
  }
  return {
    ok: false,
    refusal: `unknown target "${target}": expected an instance (${names.join(', ')}) or a region (${regions.join(', ')})`,
  };
}

/** Reasons of every ineligible candidate, by instance name. */
function allReasons(assessed: Assessed[]): string[] {
  return [...assessed].sort((a, b) => byName(a.probe.instance, b.probe.instance)).flatMap((a) => a.reasons);
}

// ---------------------------------------------------------------------------
// Planned switchover
// ---------------------------------------------------------------------------

function assessPlanned(p: InstanceProbe, primary: string, primaryPos: string, primaryServerId: number | undefined, policy: ClusterPolicy): Assessed {
  const { promotion, reasons } = baseReasons(p, policy);
  const name = p.instance;
  const r = p.replication;
  const lag = r?.lagSeconds ?? null;
  const out: Assessed = { probe: p, promotion, reasons, pos: '', lag };
  if (!p.reachable) return out;
  if (!r) {
    reasons.push(`${name} replicates from nobody, not from the primary ${primary}`);
  } else {
    if (r.sourceInstance !== primary) reasons.push(`${name} replicates from ${sourceOf(r)}, not from the primary ${primary}`);
    if (r.ioRunning !== 'Yes' || r.sqlRunning !== 'Yes') reasons.push(brokenReplication(name, r));
    const max = policy.thresholds.maxLagSeconds;
    if (lag === null || lag > max) reasons.push(`${name} lags ${lag ?? 'unknown'} s behind ${primary} (limit ${max} s)`);
  }
  reasons.push(...binlogReasons(p));
  const cur = currentPos(p);
  if ('reason' in cur) {
    reasons.push(cur.reason);
    return out;
  }
  out.pos = cur.pos;
  const primarySeqs = seqs(primaryPos);
  const candSeqs = seqs(cur.pos);
  // Instances are probed concurrently under live writes: a replica read after the primary can be
  // ahead with transactions the primary itself wrote since. Only GTIDs written by another server
  // are errant.
  const errant = mariaErrantDomains(cur.pos, primaryPos).filter((e) => primaryServerId === undefined || candSeqs.get(e.domain)?.server !== primaryServerId);
  if (errant.length > 0) {
    const domains = errant.map((e) => {
      const sameSeq = e.primarySeq !== null && e.primarySeq === e.candidateSeq;
      const differ = sameSeq && primarySeqs.get(e.domain)?.server !== candSeqs.get(e.domain)?.server;
      return `domain ${e.domain} (${name} at seq ${e.candidateSeq}, primary at ${e.primarySeq ?? 'none'}${differ ? ', written by another server' : ''})`;
    });
    reasons.push(`${name} has errant transactions the primary lacks: ${domains.join(', ')}`);
  }
  return out;
}

export function planSwitchover(topology: Topology, policy: ClusterPolicy, target?: string): PlanResult {
  const primaryName = topology.primary;
  if (primaryName === null) return refuse([`no single writable primary: ${topology.problems.join('; ')}`]);
  const primary = topology.instances.find((i) => i.instance === primaryName);
  if (!primary) return refuse([`the primary ${primaryName} is missing from the topology`]);
  const mysql = mysqlRefusal(topology.instances);
  if (mysql) return refuse([mysql]);
  const primaryCur = currentPos(primary);
  if ('reason' in primaryCur) return refuse([`the primary ${primaryCur.reason}`]);

  const resolved = resolveTarget(policy, primaryName, target, 'already the primary');
  if (!resolved.ok) return refuse([resolved.refusal]);

  const others = topology.instances.filter((i) => i.instance !== primaryName);
  const assessed: Assessed[] = [];
  const notProbed: string[] = [];
  if (resolved.names === null) {
    if (others.length === 0) return refuse([`no replica of ${primaryName} to promote`]);
    for (const i of others) assessed.push(assessPlanned(i, primaryName, primaryCur.pos, primary.serverId, policy));
  } else {
    for (const n of resolved.names) {
      const i = others.find((o) => o.instance === n);
      if (i) assessed.push(assessPlanned(i, primaryName, primaryCur.pos, primary.serverId, policy));
      else notProbed.push(`${n} was not probed`);
    }
  }
  const eligible = assessed.filter((a) => a.reasons.length === 0);
  if (eligible.length === 0) return refuse([...allReasons(assessed), ...notProbed].sort(byInstancePrefix));

  const chosen = pickMostAdvanced(eligible, true);
  const to = chosen.probe;
  const risks: string[] = [];
  if (chosen.lag !== null && chosen.lag > 0) risks.push(`${to.instance} is ${chosen.lag} s behind`);
  const rest = others.filter((i) => i.instance !== to.instance).sort((a, b) => byName(a.instance, b.instance));
  for (const i of rest) {
    if (!i.reachable) {
      risks.push(`${i.instance} is unreachable and will not be repointed`);
      continue;
    }
    const r = i.replication;
    if (!r) {
      risks.push(`${i.instance} replicates from nobody, not from the primary ${primaryName}`);
      continue;
    }
    if (r.sourceInstance !== primaryName) risks.push(`${i.instance} replicates from ${sourceOf(r)}, not from the primary ${primaryName}`);
    if (r.ioRunning !== 'Yes' || r.sqlRunning !== 'Yes') risks.push(brokenReplication(i.instance, r));
  }

  const plan: FailoverPlan = {
    mode: 'planned',
    cluster: policy.cluster,
    from: { instance: primaryName, region: primary.region, address: primary.address },
    to: { instance: to.instance, region: to.region, address: to.address },
    // Only what can be reached is repointed; the rest is named in the risks.
    others: rest.filter((i) => i.reachable).map((i) => i.instance),
    lagSeconds: chosen.lag,
    positions: { primary: primaryCur.pos, candidate: chosen.pos },
    risks,
  };
  return { ok: true, plan };
}

/** Stable order of reasons that each start with an instance name (or "replication on <name>"). */
function byInstancePrefix(a: string, b: string): number {
  return byName(subject(a), subject(b));
}

function subject(reason: string): string {
  const m = /^(?:replication on )?(\S+)/.exec(reason);
  return m?.[1] ?? reason;
}

// ---------------------------------------------------------------------------
// Emergency failover
// ---------------------------------------------------------------------------

function assessEmergency(p: InstanceProbe, policy: ClusterPolicy): Assessed {
  const { promotion, reasons } = baseReasons(p, policy);
  const out: Assessed = { probe: p, promotion, reasons, pos: '', lag: null };
  if (!p.reachable) return out;
  reasons.push(...binlogReasons(p));
  const r = p.replication;
  if (r && r.lastSqlErrno !== 0) {
    reasons.push(`replication on ${p.instance} is broken: SQL thread error ${r.lastSqlErrno}${r.lastSqlError ? `: ${r.lastSqlError}` : ''}`);
  }
  const cur = currentPos(p);
  if ('reason' in cur) reasons.push(cur.reason);
  else out.pos = cur.pos;
  return out;
}

function expectedLoss(candidate: string, candidatePos: string, primaryLastKnown: string | null): ExpectedLoss {
  if (primaryLastKnown === null) {
    return {
      primaryLastKnown,
      candidate: candidatePos,
      missing: [],
      summary: "the old primary's last position is unknown: possible loss cannot be measured",
    };
  }
  const last = seqs(primaryLastKnown);
  const cand = seqs(candidatePos);
  const missing: ExpectedLoss['missing'] = [];
  for (const domain of [...last.keys()].sort((x, y) => x - y)) {
    const primarySeq = last.get(domain)!.seq;
    const candidateSeq = cand.get(domain)?.seq ?? 0;
    if (primarySeq > candidateSeq) missing.push({ domain, primarySeq, candidateSeq, transactions: primarySeq - candidateSeq });
  }
  const total = missing.reduce((n, m) => n + m.transactions, 0);
  const summary =
    total > 0
      ? `${candidate} lacks ${total} transaction(s) of the old primary's last known position (${show(primaryLastKnown)} vs ${show(candidatePos)})`
      : `no transaction known to the old primary is missing on ${candidate}`;
  return { primaryLastKnown, candidate: candidatePos, missing, summary };
}

/** Per domain, the furthest a replica got: the larger of what it received and what it applied. */
function furthest(p: InstanceProbe): Map<number, number> {
  const out = new Map<number, number>();
  for (const pos of [p.gtid?.currentPos, p.replication?.receivedGtid]) {
    if (pos === undefined || pos === null || invalidPosition(pos) !== null) continue;
    for (const [d, g] of seqs(pos)) out.set(d, Math.max(out.get(d) ?? 0, g.seq));
  }
  return out;
}

export function planEmergency(input: {
  primary: string;
  primaryLastKnown: string | null;
  replicas: InstanceProbe[];
  policy: ClusterPolicy;
  target?: string;
}): PlanResult {
  const { primary, primaryLastKnown, policy, target } = input;
  const conf = policy.instances.find((i) => i.name === primary);
  if (!conf) return refuse([`"${primary}" is not an instance of cluster ${policy.cluster}`]);
  const replicas = input.replicas.filter((r) => r.instance !== primary).sort((a, b) => byName(a.instance, b.instance));
  const mysql = mysqlRefusal(replicas);
  if (mysql) return refuse([mysql]);
  if (primaryLastKnown !== null) {
    const bad = invalidPosition(primaryLastKnown);
    if (bad !== null) return refuse([`the old primary's last known position is unusable: ${bad}`]);
  }

  const resolved = resolveTarget(policy, primary, target, 'the failed primary');
  if (!resolved.ok) return refuse([resolved.refusal]);

  const assessed: Assessed[] = [];
  const notProbed: string[] = [];
  if (resolved.names === null) {
    if (replicas.length === 0) return refuse([`no replica of ${primary} was probed`]);
    for (const r of replicas) assessed.push(assessEmergency(r, policy));
  } else {
    for (const n of resolved.names) {
      const r = replicas.find((p) => p.instance === n);
      if (r) assessed.push(assessEmergency(r, policy));
      else notProbed.push(`${n} was not probed`);
    }
  }
  const eligible = assessed.filter((a) => a.reasons.length === 0);
  if (eligible.length === 0) return refuse([...allReasons(assessed), ...notProbed].sort(byInstancePrefix));

  const chosen = pickMostAdvanced(eligible, false);
  const to = chosen.probe;
  const loss = expectedLoss(to.instance, chosen.pos, primaryLastKnown);

  const risks: string[] = [];
  if (primaryLastKnown !== null) {
    const last = seqs(primaryLastKnown);
    for (const [d, g] of seqs(chosen.pos)) {
      const l = last.get(d);
      if (l && l.seq === g.seq && l.server !== g.server && g.seq > 0) {
        risks.push(`${to.instance} and the old primary hold different transactions at seq ${g.seq} in domain ${d}`);
      }
    }
  }
  const candSeqs = seqs(chosen.pos);
  const others = policy.instances
    .map((i) => i.name)
    .filter((n) => n !== primary && n !== to.instance)
    .sort(byName);
  for (const n of others) {
    const p = replicas.find((r) => r.instance === n);
    if (!p) {
      risks.push(`${n} was not probed and will not be repointed`);
      continue;
    }
    if (!p.reachable) {
      risks.push(`${n} is unreachable and will not be repointed`);
      continue;
    }
    const ahead = [...furthest(p)]
      .filter(([d, seq]) => seq > (candSeqs.get(d)?.seq ?? 0))
      .sort(([x], [y]) => x - y)
      .map(([d, seq]) => `domain ${d} (${n} at seq ${seq}, ${to.instance} at ${candSeqs.get(d)?.seq ?? 'none'})`);
    if (ahead.length > 0) {
      risks.push(`${n} had received more than ${to.instance} applied: ${ahead.join(', ')}; those transactions will not be on the new primary`);
    }
  }

  const plan: FailoverPlan = {
    mode: 'emergency',
    cluster: policy.cluster,
    from: { instance: primary, region: conf.region, address: conf.address },
    to: { instance: to.instance, region: to.region, address: to.address },
    // Only what can be reached is repointed; the rest is named in the risks.
    others: others.filter((n) => replicas.some((r) => r.instance === n && r.reachable)),
    lagSeconds: null,
    positions: { primary: primaryLastKnown ?? 'unknown', candidate: chosen.pos },
    risks,
    expectedLoss: loss,
  };
  return { ok: true, plan };
}

// ---------------------------------------------------------------------------
// Approval text
// ---------------------------------------------------------------------------

/** A few lines of markdown for an approval request. */
export function describePlan(plan: FailoverPlan): string {
  const { from, to } = plan;
  const title = plan.mode === 'planned' ? 'Planned switchover' : 'Emergency failover';
  const lines = [
    `**${title}** of \`${plan.cluster}\`: \`${from.instance}\` (${from.region}, ${from.address}) → \`${to.instance}\` (${to.region}, ${to.address})`,
    `- Measured lag: ${plan.lagSeconds === null ? 'not measured' : `${plan.lagSeconds} s`}`,
    `- GTID positions: ${plan.mode === 'planned' ? 'primary' : 'old primary last known'} \`${show(plan.positions.primary)}\`, candidate \`${show(plan.positions.candidate)}\``,
    `- To repoint to ${plan.to.instance}: ${[...(plan.mode === 'planned' ? [`${plan.from.instance} (the old primary)`] : []), ...plan.others].join(', ') || 'none'}`,
  ];
  if (plan.expectedLoss) lines.push(`- Expected loss: ${plan.expectedLoss.summary}`);
  if (plan.risks.length === 0) lines.push('- Risks: none');
  else lines.push('- Risks:', ...plan.risks.map((r) => `  - ${r}`));
  return lines.join('\n');
}
