/**
 * GTID arithmetic, pure (workflow-safe, no I/O): MariaDB GTID positions (`domain-server-seq`
 * lists) parsed, formatted and compared per domain, errant transactions found; MySQL GTID sets
 * checked. The SQL that reads or moves them is the dialect's (adapters/mysql/dialect.ts).
 */

/** Bytes (a Buffer is a Uint8Array) in a message. */
function isBytes(v: unknown): v is Uint8Array {
  return v instanceof Uint8Array;
}

/** A value as it appears in an error message. */
export function fmtValue(v: unknown): string {
  if (isBytes(v)) return `Buffer<${Buffer.from(v).toString('hex')}>`;
  if (typeof v === 'bigint') return `${v}n`;
  if (typeof v === 'string') return `'${v}'`;
  return String(v);
}

/** Without whitespace (GTID lists arrive with newlines from SHOW … STATUS). */
export function stripWs(s: string): string {
  return s.replace(/\s+/g, '');
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const INTERVAL_RE = /^\d+(-\d+)?$/;
const TAG_RE = /^[a-z_][a-z0-9_]{0,31}$/i;

/**
 * Light syntax check of a MySQL GTID set ('uuid:1-5:7,uuid2[:tag]:1-3').
 * Returns it with whitespace removed; '' is a valid (empty) set.
 */
export function normalizeMysqlGtidSet(set: string): string {
  if (typeof set !== 'string') throw new Error(`Invalid MySQL GTID set: ${fmtValue(set)}`);
  const s = stripWs(set);
  if (s === '') return '';
  for (const part of s.split(',')) {
    const [uuid, ...rest] = part.split(':');
    const ok =
      uuid !== undefined &&
      UUID_RE.test(uuid) &&
      rest.length > 0 &&
      rest.every((r) => INTERVAL_RE.test(r) || TAG_RE.test(r)) &&
      INTERVAL_RE.test(rest[rest.length - 1] ?? '');
    if (!ok) throw new Error(`Invalid MySQL GTID set token '${part}' in '${set}'`);
  }
  return s;
}


export interface MariaGtid {
  domain: number;
  server: number;
  seq: number;
}

const U32_MAX = 4294967295;

/**
 * Parse a MariaDB GTID position list ('0-1-42,1-2-7'). '' -> [].
 * Whitespace/newlines are tolerated. Throws an Error naming the bad token,
 * including on a repeated domain (a position has one GTID per domain).
 */
export function parseMariaGtidList(pos: string): MariaGtid[] {
  if (typeof pos !== 'string') throw new Error(`Invalid MariaDB GTID list: ${fmtValue(pos)}`);
  const s = stripWs(pos);
  if (s === '') return [];
  const out: MariaGtid[] = [];
  const seen = new Set<number>();
  for (const token of s.split(',')) {
    const m = /^(\d+)-(\d+)-(\d+)$/.exec(token);
    if (!m) throw new Error(`Invalid MariaDB GTID token '${token}' in '${pos}'`);
    const domain = Number(m[1]);
    const server = Number(m[2]);
    const seq = Number(m[3]);
    if (domain > U32_MAX || server > U32_MAX || !Number.isSafeInteger(seq)) {
      throw new Error(`MariaDB GTID token '${token}' out of range in '${pos}'`);
    }
    if (seen.has(domain)) {
      throw new Error(`Duplicate domain ${domain} in MariaDB GTID token '${token}' in '${pos}'`);
    }
    seen.add(domain);
    out.push({ domain, server, seq });
  }
  return out;
}

/**
 * A binlog GTID *state* (`@@gtid_binlog_state`, a Gtid_list event: one GTID per domain AND
 * server, so a domain repeats after a failover: '0-1-9,0-4-12') as a position: per domain the GTID
 * with the highest sequence number (under gtid_strict_mode the last one logged there).
 */
export function mariaStatePosition(state: string): string {
  const last = new Map<number, MariaGtid>();
  for (const token of stripWs(state).split(',').filter(Boolean)) {
    const g = parseMariaGtidList(token)[0]!;
    if ((last.get(g.domain)?.seq ?? -1) < g.seq) last.set(g.domain, g);
  }
  return formatMariaGtidList([...last.values()]);
}

/** Format as 'd-s-n,...' sorted by domain (input not mutated). */
export function formatMariaGtidList(list: MariaGtid[]): string {
  return [...list]
    .sort((x, y) => x.domain - y.domain)
    .map((g) => `${g.domain}-${g.server}-${g.seq}`)
    .join(',');
}

function byDomain(pos: string): Map<number, MariaGtid> {
  return new Map(parseMariaGtidList(pos).map((g) => [g.domain, g]));
}

/**
 * Per-domain comparison of two MariaDB positions by sequence number (valid
 * under gtid_strict_mode, where seq is monotonic per domain). A missing
 * domain counts as seq 0.
 *
 * `conflicting` (addition to the brief): domains with equal seq but a
 * different server_id — in strict mode these are two different transactions,
 * i.e. the servers have diverged. `equal` is true only when all three lists
 * are empty.
 */
export function compareMariaGtid(
  a: string,
  b: string,
): { aAhead: number[]; bAhead: number[]; conflicting: number[]; equal: boolean } {
  const ma = byDomain(a);
  const mb = byDomain(b);
  const domains = [...new Set([...ma.keys(), ...mb.keys()])].sort((x, y) => x - y);
  const aAhead: number[] = [];
  const bAhead: number[] = [];
  const conflicting: number[] = [];
  for (const d of domains) {
    const ga = ma.get(d);
    const gb = mb.get(d);
    const sa = ga?.seq ?? 0;
    const sb = gb?.seq ?? 0;
    if (sa > sb) aAhead.push(d);
    else if (sb > sa) bAhead.push(d);
    else if (ga && gb && sa > 0 && ga.server !== gb.server) conflicting.push(d);
  }
  return {
    aAhead,
    bAhead,
    conflicting,
    equal: aAhead.length === 0 && bAhead.length === 0 && conflicting.length === 0,
  };
}

/**
 * Domains in which `candidate` has transactions that `primary` lacks:
 * candidate seq > primary seq, the domain is missing on primary, or (strict
 * mode) the same seq was written by a different server. A candidate entry
 * with seq 0 holds no transactions and is never errant. Sorted by domain.
 */
export function mariaErrantDomains(
  candidate: string,
  primary: string,
): { domain: number; candidateSeq: number; primarySeq: number | null }[] {
  const mc = byDomain(candidate);
  const mp = byDomain(primary);
  const out: { domain: number; candidateSeq: number; primarySeq: number | null }[] = [];
  for (const d of [...mc.keys()].sort((x, y) => x - y)) {
    const c = mc.get(d)!;
    const p = mp.get(d);
    if (c.seq === 0) continue;
    if (!p) out.push({ domain: d, candidateSeq: c.seq, primarySeq: null });
    else if (c.seq > p.seq || (c.seq === p.seq && c.server !== p.server)) {
      out.push({ domain: d, candidateSeq: c.seq, primarySeq: p.seq });
    }
  }
  return out;
}
