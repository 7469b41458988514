/**
 * Failback decisions, pure (the workflow, the activities and the CLI use them): which of the
 * returning old primary's transactions the current primary never received (the *errant* set, per
 * GTID domain), whether the primary still has the binlogs the instance needs to rejoin, and how
 * to bring it back (rejoin, flashback of the errant DML, or a reseed).
 *
 * Why not compare the two GTID positions alone (core/gtid.ts's mariaErrantDomains)? After an
 * emergency failover the old primary's last transactions (say 0-1-99, 0-1-100) may never have
 * reached the promoted replica, which then wrote 0-3-99, 0-3-100, … on the same domain: by
 * sequence number the old primary looks *behind*, yet it holds two transactions the cluster does
 * not. So the histories themselves are compared: the instance's binlog, newest first, against the
 * set of transactions in the primary's binlog, down to the last transaction both hold.
 */
import { mariaStatePosition, parseMariaGtidList, type MariaGtid } from './gtid';
import { incidentIdProblem, nameProblem } from './inputs';

/** One transaction as `SHOW BINLOG EVENTS` places it in a file. */
export interface BinlogTransaction {
  gtid: string;
  file: string;
  /** `--start-position`: the Gtid event's own position. */
  startPosition: number;
  /** `--stop-position`: end_log_pos of its last event. */
  endPosition: number;
}

/** One file of `SHOW BINLOG EVENTS IN <file>`: its transactions and the GTID state it starts at. */
export interface BinlogFileEvents {
  file: string;
  /** The Gtid_list event at the head of the file, as a position: per domain the last GTID before its first transaction. */
  startState: string;
  transactions: BinlogTransaction[];
}

/** Events that are not part of a transaction (file bookkeeping). */
const NOT_IN_TRANSACTION = new Set(['Format_desc', 'Gtid_list', 'Binlog_checkpoint', 'Rotate', 'Stop', 'Start_encryption']);

/**
 * `SHOW BINLOG EVENTS IN <file>` rows (Log_name, Pos, Event_type, End_log_pos, Info) cut into
 * transactions. A Gtid event's Info is `BEGIN GTID 0-1-5` (DML) or `GTID 0-1-5` (DDL); the
 * Gtid_list's is `[0-1-4,1-2-7]`.
 */
export function binlogFileEvents(file: string, rows: { Pos: unknown; Event_type: unknown; End_log_pos: unknown; Info: unknown }[]): BinlogFileEvents {
  let startState = '';
  const transactions: BinlogTransaction[] = [];
  let open: BinlogTransaction | undefined;
  for (const r of rows) {
    const type = String(r.Event_type);
    const info = String(r.Info ?? '');
    if (type === 'Gtid_list') {
      // A state (one GTID per domain and server: a domain repeats after a failover), as a position.
      startState = mariaStatePosition(info.replace(/^\[|\]$/g, ''));
      continue;
    }
    if (type === 'Gtid') {
      const m = /GTID (\d+-\d+-\d+)/.exec(info);
      if (!m) throw new Error(`unreadable Gtid event in ${file} at ${String(r.Pos)}: ${info}`);
      open = { gtid: m[1]!, file, startPosition: Number(r.Pos), endPosition: Number(r.End_log_pos) };
      transactions.push(open);
      continue;
    }
    if (open && !NOT_IN_TRANSACTION.has(type)) open.endPosition = Number(r.End_log_pos);
  }
  return { file, startState, transactions };
}

const key = (g: MariaGtid) => `${g.domain}-${g.server}-${g.seq}`;
const one = (gtid: string): MariaGtid => parseMariaGtidList(gtid)[0]!;

export interface DomainDivergence {
  domain: number;
  /** The last transaction both hold (null: none in the binlogs read; then errant is everything read). */
  commonThrough: string | null;
  /** The instance's transactions after it, oldest first. */
  errant: BinlogTransaction[];
}

export interface ErrantAnalysis {
  /** Every errant transaction, oldest first (by file order on the instance). */
  errant: BinlogTransaction[];
  domains: DomainDivergence[];
  /** The instance's position once the errant transactions are taken away (per domain, the common point). */
  commonPosition: string;
  /**
   * Exactness: false when the divergence could not be pinned down (a domain where no common
   * transaction was found in the binlogs read, while the instance has transactions there and the
   * primary holds that domain): then only a reseed is safe.
   */
  exact: boolean;
  problems: string[];
}

/**
 * The errant set. `instanceFiles` are the instance's binlog files (any order; read all, or newest
 * first as far as needed); `primaryHas` tells whether the primary's binlog holds a GTID (exactly:
 * domain, server and sequence); `primaryPosition` is the primary's gtid_binlog_pos now;
 * `primaryFloor` the GTID state at the head of the primary's oldest binlog (what it no longer has).
 */
export function findErrant(o: {
  instanceFiles: BinlogFileEvents[];
  primaryHas: (gtid: string) => boolean;
  primaryPosition: string;
  primaryFloor: string;
  /** The instance's gtid_binlog_pos: a domain none of whose transactions is in the files read is checked by its last GTID. */
  instancePosition?: string;
}): ErrantAnalysis {
  const floor = new Map(parseMariaGtidList(o.primaryFloor).map((g) => [g.domain, g]));
  const primaryAt = new Map(parseMariaGtidList(o.primaryPosition).map((g) => [g.domain, g]));
  const all = o.instanceFiles.flatMap((f) => f.transactions);
  const byDomain = new Map<number, BinlogTransaction[]>();
  for (const t of all) {
    const d = one(t.gtid).domain;
    byDomain.set(d, [...(byDomain.get(d) ?? []), t]);
  }
  const domains: DomainDivergence[] = [];
  const problems: string[] = [];
  let exact = true;
  const common: MariaGtid[] = [];
  for (const [domain, txs] of [...byDomain.entries()].sort((a, b) => a[0] - b[0])) {
    let i = txs.length - 1;
    // Held by the primary: in its binlog, or older than what its oldest binlog starts after
    // (purged there, but at or below its state then; under strict mode the same history).
    const held = (g: MariaGtid) => {
      if (o.primaryHas(key(g))) return true;
      const f = floor.get(domain);
      return !!f && (g.seq < f.seq || key(g) === key(f));
    };
    while (i >= 0 && !held(one(txs[i]!.gtid))) i--;
    const errant = txs.slice(i + 1);
    const commonThrough = i >= 0 ? txs[i]!.gtid : null;
    if (commonThrough) common.push(one(commonThrough));
    else {
      // No common transaction in what was read: exact only if the primary never wrote this domain.
      const oldest = o.instanceFiles.map((f) => parseMariaGtidList(f.startState).find((g) => g.domain === domain)).find((g) => g && g.seq > 0);
      if (primaryAt.has(domain) || oldest) {
        exact = false;
        problems.push(`domain ${domain}: no transaction of ${txs.length} in the instance's binlogs is in the primary's history: the divergence is older than the binlogs read`);
      }
    }
    domains.push({ domain, commonThrough, errant });
  }
  for (const g of parseMariaGtidList(o.instancePosition ?? '')) {
    if (g.seq === 0 || byDomain.has(g.domain)) continue;
    const f = floor.get(g.domain);
    if (o.primaryHas(key(g)) || (f && (g.seq < f.seq || key(g) === key(f)))) common.push(g);
    else {
      exact = false;
      problems.push(`domain ${g.domain}: ${key(g)}, the instance's last transaction there, is neither in its binlogs read nor in the primary's history`);
    }
  }
  const errantKeys = new Set(domains.flatMap((d) => d.errant.map((t) => t.gtid)));
  return { errant: all.filter((t) => errantKeys.has(t.gtid)), domains, commonPosition: common.map(key).join(','), exact, problems };
}

/**
 * Whether the primary still has every binlog the instance needs to rejoin from `from` (the
 * instance's common position): for each domain of the primary's oldest binlog head, the instance
 * must already hold that point. Returns the domains that were purged past the instance.
 */
export function purgedPast(from: string, primaryFloor: string): { domain: number; primaryFrom: number; instanceAt: number }[] {
  const at = new Map(parseMariaGtidList(from).map((g) => [g.domain, g.seq]));
  return parseMariaGtidList(primaryFloor)
    .filter((f) => f.seq > (at.get(f.domain) ?? 0))
    .map((f) => ({ domain: f.domain, primaryFrom: f.seq, instanceAt: at.get(f.domain) ?? 0 }));
}

export const FAILBACK_METHODS = ['auto', 'rejoin', 'flashback', 'reseed-logical', 'reseed-physical'] as const;
export type FailbackMethodOption = (typeof FAILBACK_METHODS)[number];
export type FailbackMethod = Exclude<FailbackMethodOption, 'auto'>;

/** Safer = changes less that could be wrong: rejoin keeps everything; a reseed keeps nothing of the instance. */
const SAFETY: Record<FailbackMethod, number> = { rejoin: 0, flashback: 1, 'reseed-logical': 2, 'reseed-physical': 2 };

export interface FailbackFacts {
  errant: number;
  /** Why the errant set cannot be flashed back (empty: every errant transaction is full-image row DML). */
  flashbackRefusals: string[];
  /** Domains the primary purged past the instance. */
  purged: number;
  /** The errant analysis was exact. */
  exact: boolean;
  /**
   * Why it is on the backup lineage's stale list, if it is (a restore's `--cutover promote`
   * skipped an event it holds, somewhere in the middle of its history, where no errant analysis
   * of the newest transactions looks): only a reseed takes it away.
   */
  stale?: string;
}

export type FailbackDecision = { ok: true; method: FailbackMethod; why: string } | { ok: false; refusal: string };

/** What `auto` picks, and whether an asked-for method may be used instead (only a safer one). */
export function decideFailback(facts: FailbackFacts, requested: FailbackMethodOption = 'auto'): FailbackDecision {
  const auto: { method: FailbackMethod; why: string } = facts.stale
    ? { method: 'reseed-logical', why: facts.stale }
    : !facts.exact
    ? { method: 'reseed-logical', why: 'the divergence could not be pinned down exactly' }
    : facts.purged
      ? { method: 'reseed-logical', why: `the primary purged binlogs the instance needs (${facts.purged} domain(s))` }
      : !facts.errant
        ? { method: 'rejoin', why: 'nothing errant, and the primary still has the binlogs the instance needs' }
        : !facts.flashbackRefusals.length
          ? { method: 'flashback', why: `${facts.errant} errant transaction(s), all full-image row DML: flashback removes them` }
          : { method: 'reseed-logical', why: `${facts.errant} errant transaction(s) flashback cannot undo: ${facts.flashbackRefusals[0]}` };
  if (requested === 'auto') return { ok: true, ...auto };
  if (SAFETY[requested] < SAFETY[auto.method]) {
    return { ok: false, refusal: `--method ${requested} refused: ${auto.why}, so at least ${auto.method} is needed (--method may only choose a safer way)` };
  }
  if (requested === 'flashback' && facts.flashbackRefusals.length) return { ok: false, refusal: `--method flashback refused: ${facts.flashbackRefusals[0]}` };
  return { ok: true, method: requested, why: `${requested} asked for (auto would be ${auto.method}: ${auto.why})` };
}

/** Problems with a failback's input, one line each (empty: fine). */
export function failbackInputProblems(i: { instance?: unknown; method?: unknown; incidentId?: unknown }): string[] {
  return [
    nameProblem('instance', i.instance, { required: true }),
    i.method !== undefined && !FAILBACK_METHODS.includes(i.method as FailbackMethodOption) ? `method must be one of ${FAILBACK_METHODS.join(', ')}, got ${JSON.stringify(String(i.method).slice(0, 40))}` : undefined,
    incidentIdProblem('incidentId', i.incidentId, { required: true }),
  ].filter((p): p is string => p !== undefined);
}

/**
 * Members that need a failback: reachable, replicating from nobody, and not the writer the
 * engine recorded (the writer endpoint; without one, the topology's primary). One line each, the
 * command to run. `sandbox up` and the drill print them instead of failing without a hint.
 */
export function failbackAdvice(
  cluster: string,
  members: { instance: string; reachable: boolean; replicating: boolean }[],
  writer: string | null,
): string[] {
  return members
    .filter((m) => m.reachable && !m.replicating && m.instance !== writer)
    .map((m) => `${m.instance} needs failback: runbook failback ${cluster} --instance ${m.instance}`);
}
