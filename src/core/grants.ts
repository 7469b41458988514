/**
 * Grants as data, for the permission revocation runbook (seed 004 §3.2): parsing what MariaDB
 * 10.11 prints (`SHOW GRANTS`) and what a DBA declares (a grants file) into one normalised model,
 * the effective privilege matrix of sensitive tables (direct, via a role, via PUBLIC), grant drift
 * between servers, the containment target (broad grants rewritten into narrower ones: 10.11 has no
 * negative grants), the statements that move a server from one state to another, and the access
 * report. Pure and workflow-safe: no `node:` imports, no I/O, no clock; no regular expression here
 * can backtrack (account and database patterns are LIKE patterns matched by hand).
 */
import { tableProblem, textProblem } from './inputs';

// ---------------------------------------------------------------------------------------------
// Privileges of MariaDB 10.11, per level (pinned by test/integration/revokeBehaviour.test.ts)

export const TABLE_PRIVILEGES = [
  'SELECT', 'INSERT', 'UPDATE', 'DELETE', 'CREATE', 'DROP', 'REFERENCES', 'INDEX', 'ALTER', 'CREATE VIEW', 'SHOW VIEW', 'TRIGGER', 'DELETE HISTORY',
] as const;
export const DATABASE_PRIVILEGES = [
  ...TABLE_PRIVILEGES, 'CREATE TEMPORARY TABLES', 'LOCK TABLES', 'EXECUTE', 'CREATE ROUTINE', 'ALTER ROUTINE', 'EVENT',
] as const;
export const GLOBAL_PRIVILEGES = [
  ...DATABASE_PRIVILEGES, 'RELOAD', 'SHUTDOWN', 'PROCESS', 'FILE', 'SHOW DATABASES', 'SUPER', 'REPLICATION SLAVE', 'BINLOG MONITOR', 'CREATE USER',
  'CREATE TABLESPACE', 'SET USER', 'FEDERATED ADMIN', 'CONNECTION ADMIN', 'READ_ONLY ADMIN', 'REPLICATION SLAVE ADMIN', 'REPLICATION MASTER ADMIN',
  'BINLOG ADMIN', 'BINLOG REPLAY', 'SLAVE MONITOR',
] as const;
/** What a column grant can hold. */
export const COLUMN_PRIVILEGES = ['SELECT', 'INSERT', 'UPDATE', 'REFERENCES'] as const;

/**
 * Privileges that expose a table's rows: reading them, or changing them. The matrix shows every
 * privilege an account holds on a sensitive table; containment removes these.
 */
export const EXPOSURE_PRIVILEGES = ['SELECT', 'INSERT', 'UPDATE', 'DELETE'] as const;

export type Level = 'global' | 'database' | 'table' | 'column';

const LEVEL_PRIVILEGES: Record<Exclude<Level, 'column'>, readonly string[]> = {
  global: GLOBAL_PRIVILEGES,
  database: DATABASE_PRIVILEGES,
  table: TABLE_PRIVILEGES,
};

/** Spellings the server accepts for a privilege, to the one SHOW GRANTS prints. */
const ALIASES: Record<string, string> = {
  ALL: 'ALL PRIVILEGES',
  'REPLICATION CLIENT': 'BINLOG MONITOR',
  'REPLICA MONITOR': 'SLAVE MONITOR',
  'REPLICATION REPLICA': 'REPLICATION SLAVE',
  'REPLICATION REPLICA ADMIN': 'REPLICATION SLAVE ADMIN',
  'DELETE VERSIONING ROWS': 'DELETE HISTORY',
  'READ ONLY ADMIN': 'READ_ONLY ADMIN',
};

const KNOWN = new Set<string>([...GLOBAL_PRIVILEGES, 'ALL PRIVILEGES', 'USAGE']);

export function canonicalPrivilege(name: string): string {
  const up = name.trim().split(/\s+/).join(' ').toUpperCase();
  return ALIASES[up] ?? up;
}

// ---------------------------------------------------------------------------------------------
// The model

export interface PrivilegeGrant {
  /** Canonical names, sorted; ALL PRIVILEGES is expanded to the level's list. */
  privileges: string[];
  grantOption: boolean;
}

export type GranteeKind = 'user' | 'role' | 'public';

/** Everything one account, role or PUBLIC holds, as the server enforces it (SHOW GRANTS). */
export interface GrantSet {
  kind: GranteeKind;
  user: string;
  /** `''` for roles and PUBLIC. */
  host: string;
  global: PrivilegeGrant;
  /** Key: the database name or pattern as granted (`hr`, `h%`, `hr\_x`). */
  databases: Record<string, PrivilegeGrant>;
  /** Key: `db.table`. */
  tables: Record<string, PrivilegeGrant>;
  /** Key: `db.table` → privilege → column names, sorted. */
  columns: Record<string, Record<string, string[]>>;
  /** Routine and proxy grants, normalised text: kept in snapshots, never changed by the runbook. */
  routines: string[];
  proxies: string[];
  /** Roles granted to it (directly). */
  roles: Record<string, { admin: boolean }>;
  /** Users only: the role active at login (`SET DEFAULT ROLE`). */
  defaultRole: string | null;
  /** Users only: ACCOUNT LOCK (SHOW CREATE USER). */
  locked: boolean;
}

/** The key of a grantee: `user@host`, a role's name, or `PUBLIC`. */
export function granteeKey(g: Pick<GrantSet, 'kind' | 'user' | 'host'>): string {
  return g.kind === 'user' ? `${g.user}@${g.host}` : g.kind === 'public' ? 'PUBLIC' : g.user;
}

export function emptyGrantSet(kind: GranteeKind, user: string, host = ''): GrantSet {
  return {
    kind, user, host: kind === 'user' ? host : '', global: { privileges: [], grantOption: false }, databases: {}, tables: {}, columns: {}, routines: [], proxies: [],
    roles: {}, defaultRole: null, locked: false,
  };
}

const sorted = (xs: Iterable<string>) => [...new Set(xs)].sort();

function sortedRecord<V>(r: Record<string, V>, map: (v: V) => V = (v) => v): Record<string, V> {
  const out: Record<string, V> = {};
  for (const k of Object.keys(r).sort()) out[k] = map(r[k]!);
  return out;
}

/** The same grants always serialise the same way (sorted keys, no empty entries): what "equal" means. */
export function normaliseGrantSet(g: GrantSet): GrantSet {
  const level = (p: PrivilegeGrant): PrivilegeGrant => ({ privileges: sorted(p.privileges), grantOption: p.grantOption });
  const nonEmpty = (r: Record<string, PrivilegeGrant>) => Object.fromEntries(Object.entries(r).filter(([, p]) => p.privileges.length || p.grantOption));
  const columns: Record<string, Record<string, string[]>> = {};
  for (const [t, byPriv] of Object.entries(g.columns)) {
    const kept = Object.fromEntries(Object.entries(byPriv).filter(([, cols]) => cols.length).map(([p, cols]) => [p, sorted(cols)]));
    if (Object.keys(kept).length) columns[t] = sortedRecord(kept);
  }
  return {
    kind: g.kind,
    user: g.user,
    host: g.host,
    global: level(g.global),
    databases: sortedRecord(nonEmpty(g.databases), level),
    tables: sortedRecord(nonEmpty(g.tables), level),
    columns: sortedRecord(columns),
    routines: sorted(g.routines),
    proxies: sorted(g.proxies),
    roles: sortedRecord(g.roles, (r) => ({ admin: r.admin })),
    defaultRole: g.defaultRole,
    locked: g.locked,
  };
}

export function sameGrants(a: GrantSet | undefined, b: GrantSet | undefined): boolean {
  if (!a || !b) return a === b;
  return JSON.stringify(normaliseGrantSet(a)) === JSON.stringify(normaliseGrantSet(b));
}

// ---------------------------------------------------------------------------------------------
// Tokenising grant statements (SHOW GRANTS output, grants files)

type Token = { t: 'id'; v: string; quoted: boolean } | { t: 'str'; v: string } | { t: 'sym'; v: string };

function isWordChar(c: string): boolean {
  return /[A-Za-z0-9_$%\\-]/.test(c);
}

export function tokenise(text: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (c === ' ' || c === '\t' || c === '\n' || c === '\r') {
      i++;
    } else if (c === '`' || c === '"') {
      let v = '';
      i++;
      for (;;) {
        if (i >= text.length) throw new Error(`unterminated ${c}-quoted name in: ${text}`);
        if (text[i] === c) {
          if (text[i + 1] === c) (v += c), (i += 2);
          else {
            i++;
            break;
          }
        } else v += text[i++];
      }
      out.push({ t: 'id', v, quoted: true });
    } else if (c === "'") {
      let v = '';
      i++;
      for (;;) {
        if (i >= text.length) throw new Error(`unterminated string in: ${text}`);
        const d = text[i]!;
        if (d === '\\' && i + 1 < text.length) (v += text[i + 1]), (i += 2);
        else if (d === "'") {
          if (text[i + 1] === "'") (v += "'"), (i += 2);
          else {
            i++;
            break;
          }
        } else (v += d), i++;
      }
      out.push({ t: 'str', v });
    } else if (',().@*;='.includes(c)) {
      out.push({ t: 'sym', v: c });
      i++;
    } else if (isWordChar(c)) {
      let v = '';
      while (i < text.length && isWordChar(text[i]!)) v += text[i++];
      out.push({ t: 'id', v, quoted: false });
    } else {
      throw new Error(`unexpected "${c}" in: ${text}`);
    }
  }
  return out;
}

const isWord = (tok: Token | undefined, word: string) => tok?.t === 'id' && !tok.quoted && tok.v.toUpperCase() === word;
const isSym = (tok: Token | undefined, sym: string) => tok?.t === 'sym' && tok.v === sym;
const nameOf = (tok: Token | undefined) => (tok && (tok.t === 'id' || tok.t === 'str') ? tok.v : undefined);

// ---------------------------------------------------------------------------------------------
// One privilege clause: `SELECT, INSERT (a, b) ON db.table`

export interface PrivilegeClause {
  level: Exclude<Level, 'column'> | 'routine';
  db?: string;
  table?: string;
  /** Table/database/global privileges (ALL PRIVILEGES expanded). */
  privileges: string[];
  /** Column privileges: privilege → columns. */
  columns: Record<string, string[]>;
  /** For routine grants: the normalised text. */
  routine?: string;
}

function parsePrivileges(tokens: Token[]): { names: string[]; columns: Record<string, string[]> } {
  const names: string[] = [];
  const columns: Record<string, string[]> = {};
  let i = 0;
  while (i < tokens.length) {
    const words: string[] = [];
    while (i < tokens.length && tokens[i]!.t === 'id' && !(tokens[i] as { quoted: boolean }).quoted) words.push((tokens[i++] as { v: string }).v);
    if (!words.length) throw new Error(`expected a privilege name, got ${JSON.stringify(tokens[i])}`);
    const name = canonicalPrivilege(words.join(' '));
    // An unknown name is refused, not carried along: a typo must not look like a grant.
    if (!KNOWN.has(name)) throw new Error(`unknown privilege ${name}`);
    if (isSym(tokens[i], '(')) {
      i++;
      const cols: string[] = [];
      while (!isSym(tokens[i], ')')) {
        const col = nameOf(tokens[i]);
        if (col === undefined) throw new Error('expected a column name in a column list');
        cols.push(col);
        i++;
        if (isSym(tokens[i], ',')) i++;
        else if (!isSym(tokens[i], ')')) throw new Error('expected "," or ")" in a column list');
      }
      i++;
      columns[name] = sorted([...(columns[name] ?? []), ...cols]);
    } else names.push(name);
    if (i < tokens.length) {
      if (!isSym(tokens[i], ',')) throw new Error(`expected "," between privileges, got ${JSON.stringify(tokens[i])}`);
      i++;
    }
  }
  return { names, columns };
}

function expand(names: string[], level: Exclude<Level, 'column'>): string[] {
  const all = LEVEL_PRIVILEGES[level];
  const out = new Set<string>();
  for (const n of names) {
    if (n === 'USAGE') continue;
    if (n === 'ALL PRIVILEGES') all.forEach((p) => out.add(p));
    else out.add(n);
  }
  return sorted(out);
}

/** `privileges ON scope`, the scope as tokens (`*.*`, `db.*`, `db.t`, `PROCEDURE db.p`). */
function parseClause(privTokens: Token[], scope: Token[]): PrivilegeClause {
  const first = scope[0];
  if (isWord(first, 'PROCEDURE') || isWord(first, 'FUNCTION') || isWord(first, 'PACKAGE')) {
    const names = scope.map((t) => (t.t === 'sym' ? t.v : t.t === 'id' && !t.quoted ? t.v.toUpperCase() : `\`${t.v}\``)).join(' ').replace(/ \. /g, '.');
    const { names: privs } = parsePrivileges(privTokens);
    return { level: 'routine', privileges: privs, columns: {}, routine: `${privs.join(', ')} ON ${names}` };
  }
  const s = isWord(first, 'TABLE') ? scope.slice(1) : scope;
  const { names, columns } = parsePrivileges(privTokens);
  if (s.length === 3 && isSym(s[0], '*') && isSym(s[1], '.') && isSym(s[2], '*')) {
    if (Object.keys(columns).length) throw new Error('column privileges need a table');
    return { level: 'global', privileges: expand(names, 'global'), columns: {} };
  }
  if (s.length === 3 && nameOf(s[0]) !== undefined && isSym(s[1], '.')) {
    const db = nameOf(s[0])!;
    if (isSym(s[2], '*')) {
      if (Object.keys(columns).length) throw new Error('column privileges need a table');
      return { level: 'database', db, privileges: expand(names, 'database'), columns: {} };
    }
    const table = nameOf(s[2]);
    if (table !== undefined) {
      const cols: Record<string, string[]> = {};
      for (const [p, c] of Object.entries(columns)) {
        if (!(COLUMN_PRIVILEGES as readonly string[]).includes(p)) throw new Error(`${p} cannot be granted on columns`);
        cols[p] = c;
      }
      return { level: 'table', db, table, privileges: expand(names, 'table'), columns: cols };
    }
  }
  throw new Error('expected *.*, db.* or db.table after ON');
}

/** A grants file line: `SELECT, INSERT ON medical_db.appointment` (backticks allowed). */
export function parsePrivilegeClause(text: string): PrivilegeClause {
  const tokens = tokenise(text);
  const on = tokens.findIndex((t) => isWord(t, 'ON'));
  if (on < 1) throw new Error(`"${text}": expected "<privileges> ON <db.table | db.* | *.*>"`);
  let end = tokens.length;
  let grantOption = false;
  if (isWord(tokens[end - 3], 'WITH') && isWord(tokens[end - 2], 'GRANT') && isWord(tokens[end - 1], 'OPTION')) {
    end -= 3;
    grantOption = true;
  }
  const clause = parseClause(tokens.slice(0, on), tokens.slice(on + 1, end));
  if (clause.level === 'routine') throw new Error(`"${text}": routine grants are not managed by this runbook`);
  return grantOption ? Object.assign(clause, { grantOption }) : clause;
}

// ---------------------------------------------------------------------------------------------
// SHOW GRANTS lines into a GrantSet

function readGrantee(tokens: Token[], i: number): { user: string; host: string; next: number } {
  const user = nameOf(tokens[i]);
  if (user === undefined) throw new Error('expected a grantee');
  if (isSym(tokens[i + 1], '@')) {
    const host = nameOf(tokens[i + 2]);
    if (host === undefined) throw new Error('expected a host after @');
    return { user, host, next: i + 3 };
  }
  return { user, host: '', next: i + 1 };
}

function mergeLevel(into: Record<string, PrivilegeGrant>, key: string, privileges: string[], grantOption: boolean): void {
  const cur = into[key] ?? { privileges: [], grantOption: false };
  into[key] = { privileges: sorted([...cur.privileges, ...privileges]), grantOption: cur.grantOption || grantOption };
}

/** Add one privilege clause to a grant set (used for SHOW GRANTS lines and grants files alike). */
export function addClause(g: GrantSet, c: PrivilegeClause, grantOption = false): void {
  if (c.level === 'routine') {
    g.routines = sorted([...g.routines, `${c.routine}${grantOption ? ' WITH GRANT OPTION' : ''}`]);
  } else if (c.level === 'global') {
    g.global = { privileges: sorted([...g.global.privileges, ...c.privileges]), grantOption: g.global.grantOption || grantOption };
  } else if (c.level === 'database') {
    mergeLevel(g.databases, c.db!, c.privileges, grantOption);
  } else {
    const key = `${c.db}.${c.table}`;
    if (c.privileges.length || grantOption) mergeLevel(g.tables, key, c.privileges, grantOption);
    for (const [p, cols] of Object.entries(c.columns)) {
      const byPriv = (g.columns[key] ??= {});
      byPriv[p] = sorted([...(byPriv[p] ?? []), ...cols]);
    }
  }
}

/**
 * The grant set SHOW GRANTS describes. Authentication (`IDENTIFIED BY PASSWORD '…'`), TLS
 * requirements and resource limits are dropped: a password hash must never reach workflow history.
 */
export function parseShowGrants(kind: GranteeKind, user: string, host: string, lines: string[], locked = false): GrantSet {
  const g = emptyGrantSet(kind, user, host);
  g.locked = kind === 'user' && locked;
  for (const line of lines) {
    const tokens = tokenise(line);
    if (isWord(tokens[0], 'SET') && isWord(tokens[1], 'DEFAULT') && isWord(tokens[2], 'ROLE')) {
      const role = nameOf(tokens[3]);
      if (role === undefined) throw new Error(`cannot read: ${line}`);
      g.defaultRole = isWord(tokens[3], 'NONE') ? null : role;
      continue;
    }
    if (!isWord(tokens[0], 'GRANT')) throw new Error(`not a grant: ${line}`);
    const to = tokens.findIndex((t) => isWord(t, 'TO'));
    if (to < 0) throw new Error(`no TO in: ${line}`);
    const on = tokens.slice(0, to).findIndex((t) => isWord(t, 'ON'));
    const grantee = readGrantee(tokens, to + 1);
    const tail = tokens.slice(grantee.next);
    let grantOption = false;
    let adminOption = false;
    for (let i = 0; i < tail.length; i++) {
      if (isWord(tail[i], 'WITH')) {
        for (let j = i + 1; j < tail.length; j++) {
          if (isWord(tail[j], 'GRANT') && isWord(tail[j + 1], 'OPTION')) grantOption = true;
          if (isWord(tail[j], 'ADMIN') && isWord(tail[j + 1], 'OPTION')) adminOption = true;
        }
        break;
      }
    }
    if (on < 0) {
      // GRANT role TO grantee [WITH ADMIN OPTION]
      const role = nameOf(tokens[1]);
      if (role === undefined || to !== 2) throw new Error(`cannot read: ${line}`);
      g.roles[role] = { admin: adminOption };
      continue;
    }
    if (isWord(tokens[1], 'PROXY')) {
      const target = readGrantee(tokens, on + 1);
      g.proxies = sorted([...g.proxies, `PROXY ON '${target.user}'@'${target.host}'${grantOption ? ' WITH GRANT OPTION' : ''}`]);
      continue;
    }
    addClause(g, parseClause(tokens.slice(1, on), tokens.slice(on + 1, to)), grantOption);
  }
  return normaliseGrantSet(g);
}

// ---------------------------------------------------------------------------------------------
// Names in SQL

export function quoteName(name: string): string {
  return `\`${name.replace(/`/g, '``')}\``;
}

export function granteeSql(g: Pick<GrantSet, 'kind' | 'user' | 'host'>): string {
  if (g.kind === 'public') return 'PUBLIC';
  if (g.kind === 'role') return quoteName(g.user);
  return `${quoteName(g.user)}@${quoteName(g.host)}`;
}

function scopeSql(level: Exclude<Level, 'column'>, key?: string): string {
  if (level === 'global') return '*.*';
  if (level === 'database') return `${quoteName(key!)}.*`;
  const { db, table } = splitTableKey(key!);
  return `${quoteName(db)}.${quoteName(table)}`;
}

export function splitTableKey(key: string): { db: string; table: string } {
  const dot = key.indexOf('.');
  return { db: key.slice(0, dot), table: key.slice(dot + 1) };
}

// ---------------------------------------------------------------------------------------------
// LIKE patterns (account and database patterns), matched without regular expressions

/** SQL LIKE: `%` any run, `_` one character, `\` escapes. Iterative, O(pattern × text). */
export function likeMatch(pattern: string, text: string, caseInsensitive = false): boolean {
  const p: { ch: string; wild?: '%' | '_' }[] = [];
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '\\' && i + 1 < pattern.length) p.push({ ch: pattern[++i]! });
    else if (c === '%' || c === '_') p.push({ ch: c, wild: c });
    else p.push({ ch: c });
  }
  const t = [...text];
  const eq = (a: string, b: string) => (caseInsensitive ? a.toLowerCase() === b.toLowerCase() : a === b);
  let pi = 0;
  let ti = 0;
  let starP = -1;
  let starT = 0;
  while (ti < t.length) {
    const cur = p[pi];
    if (cur && (cur.wild === '_' || (!cur.wild && eq(cur.ch, t[ti]!)))) {
      pi++;
      ti++;
    } else if (cur?.wild === '%') {
      starP = pi++;
      starT = ti;
    } else if (starP >= 0) {
      pi = starP + 1;
      ti = ++starT;
    } else return false;
  }
  while (p[pi]?.wild === '%') pi++;
  return pi === p.length;
}

export function hasWildcard(pattern: string): boolean {
  for (let i = 0; i < pattern.length; i++) {
    if (pattern[i] === '\\') i++;
    else if (pattern[i] === '%' || pattern[i] === '_') return true;
  }
  return false;
}

/** `--accounts`: a LIKE pattern on the user name, or on `user@host` when it holds an `@`. */
export function accountMatches(pattern: string, user: string, host: string): boolean {
  const at = pattern.lastIndexOf('@');
  if (at < 0) return likeMatch(pattern, user);
  return likeMatch(pattern.slice(0, at), user) && likeMatch(pattern.slice(at + 1), host, true);
}

// ---------------------------------------------------------------------------------------------
// Objects

export interface TableRef {
  db: string;
  table: string;
}

export const tableKey = (t: TableRef) => `${t.db}.${t.table}`;

// ---------------------------------------------------------------------------------------------
// The effective privilege matrix

export interface ExposurePath {
  object: string;
  /** How the account gets it. */
  via: 'direct' | 'role' | 'public';
  /** The role the privilege sits on (via role, or a role PUBLIC holds). */
  role?: string;
  /** For a role: active at login (default role) or only after SET ROLE. */
  active?: 'default' | 'set-role';
  /** The role the account holds directly that leads there (what containment revokes). */
  heldRole?: string;
  level: Level;
  /** `*.*`, `hr.*` (or the pattern), `hr.patients`, `hr.patients (name)`. */
  scope: string;
  /** All the privileges this grant gives on the object. */
  privileges: string[];
  /** Those of them that expose rows (EXPOSURE_PRIVILEGES). */
  exposing: string[];
}

export interface AccountExposure {
  account: string;
  user: string;
  host: string;
  paths: ExposurePath[];
}

export type GrantState = Record<string, GrantSet>;

function pathsOf(g: GrantSet, obj: TableRef): Omit<ExposurePath, 'via'>[] {
  const out: Omit<ExposurePath, 'via'>[] = [];
  const object = tableKey(obj);
  const exposing = (privs: string[]) => privs.filter((p) => (EXPOSURE_PRIVILEGES as readonly string[]).includes(p));
  if (g.global.privileges.length) out.push({ object, level: 'global', scope: '*.*', privileges: g.global.privileges, exposing: exposing(g.global.privileges) });
  for (const [db, p] of Object.entries(g.databases)) {
    if (likeMatch(db, obj.db) && p.privileges.length) out.push({ object, level: 'database', scope: `${db}.*`, privileges: p.privileges, exposing: exposing(p.privileges) });
  }
  const t = g.tables[object];
  if (t?.privileges.length) out.push({ object, level: 'table', scope: object, privileges: t.privileges, exposing: exposing(t.privileges) });
  for (const [priv, cols] of Object.entries(g.columns[object] ?? {})) {
    if (cols.length) out.push({ object, level: 'column', scope: `${object} (${cols.join(', ')})`, privileges: [priv], exposing: exposing([priv]) });
  }
  return out;
}

/** Every role reachable from `start` (itself included), through roles granted to roles. */
export function roleClosure(state: GrantState, start: string): string[] {
  const seen = new Set<string>();
  const stack = [start];
  while (stack.length) {
    const r = stack.pop()!;
    if (seen.has(r)) continue;
    seen.add(r);
    const role = state[r];
    if (role?.kind === 'role') stack.push(...Object.keys(role.roles));
  }
  return [...seen];
}

/**
 * Every path by which each user account can use each object: its own grants, every role it can
 * activate (the default role's closure at login, the others after SET ROLE), and PUBLIC's grants
 * and roles, which every account gets. A database pattern counts when it matches (the server uses
 * only the most specific matching row, so this may over-report, never under-report). Only paths
 * with at least one privilege are listed; `exposing` says which of them expose rows.
 */
export function effectiveMatrix(state: GrantState, objects: TableRef[]): AccountExposure[] {
  const out: AccountExposure[] = [];
  const pub = state.PUBLIC;
  for (const g of Object.values(state)) {
    if (g.kind !== 'user') continue;
    const paths: ExposurePath[] = [];
    const active = new Set(g.defaultRole ? roleClosure(state, g.defaultRole) : []);
    for (const obj of objects) {
      for (const p of pathsOf(g, obj)) paths.push({ ...p, via: 'direct' });
      for (const held of Object.keys(g.roles)) {
        for (const r of roleClosure(state, held)) {
          const role = state[r];
          if (!role) continue;
          for (const p of pathsOf(role, obj)) paths.push({ ...p, via: 'role', role: r, heldRole: held, active: active.has(r) ? 'default' : 'set-role' });
        }
      }
      if (pub) {
        for (const p of pathsOf(pub, obj)) paths.push({ ...p, via: 'public' });
        for (const held of Object.keys(pub.roles)) {
          for (const r of roleClosure(state, held)) {
            const role = state[r];
            if (role) for (const p of pathsOf(role, obj)) paths.push({ ...p, via: 'public', role: r, heldRole: held, active: 'default' });
          }
        }
      }
    }
    if (paths.length) out.push({ account: granteeKey(g), user: g.user, host: g.host, paths: dedupePaths(paths) });
  }
  return out.sort((a, b) => a.account.localeCompare(b.account));
}

function dedupePaths(paths: ExposurePath[]): ExposurePath[] {
  const seen = new Set<string>();
  return paths.filter((p) => {
    const k = JSON.stringify(p);
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

/** The accounts whose rows-exposing privileges on the objects are not yet gone. */
export function exposedAccounts(matrix: AccountExposure[]): AccountExposure[] {
  return matrix.map((a) => ({ ...a, paths: a.paths.filter((p) => p.exposing.length) })).filter((a) => a.paths.length);
}

/** A level's privileges as SHOW GRANTS would say them: ALL PRIVILEGES when they are all there. */
export function privilegeList(privileges: string[], level: Level): string {
  const all = level === 'column' ? undefined : LEVEL_PRIVILEGES[level];
  if (all && all.every((p) => privileges.includes(p))) return 'ALL PRIVILEGES';
  return privileges.join(', ');
}

/** `SELECT via PUBLIC on hr.* (database)`: one path, one line (`exposingOnly`: the row privileges alone). */
export function describePath(p: ExposurePath, exposingOnly = false): string {
  const how = p.via === 'direct' ? 'direct' : p.via === 'public' ? `via PUBLIC${p.role ? ` (role ${p.role})` : ''}` : `via role ${p.role}${p.heldRole && p.heldRole !== p.role ? ` (through ${p.heldRole})` : ''}, ${p.active === 'default' ? 'default role: active at login' : 'after SET ROLE'}`;
  return `${exposingOnly ? p.exposing.join(', ') : privilegeList(p.privileges, p.level)} ${how} on ${p.scope} (${p.level})`;
}

// ---------------------------------------------------------------------------------------------
// Drift between servers

export interface Drift {
  grantee: string;
  /** Instances that do not have this account, role or PUBLIC entry. */
  missingOn: string[];
  /** Instances whose grants differ from the reference instance's, with what differs. */
  differs: { instance: string; differences: string[] }[];
}

function levelLines(g: GrantSet): string[] {
  const lines: string[] = [];
  const lv = (scope: string, p: PrivilegeGrant) => `${p.privileges.join(', ') || 'USAGE'} ON ${scope}${p.grantOption ? ' WITH GRANT OPTION' : ''}`;
  if (g.global.privileges.length || g.global.grantOption) lines.push(lv('*.*', g.global));
  for (const [db, p] of Object.entries(g.databases)) lines.push(lv(`${db}.*`, p));
  for (const [t, p] of Object.entries(g.tables)) lines.push(lv(t, p));
  for (const [t, byPriv] of Object.entries(g.columns)) for (const [p, cols] of Object.entries(byPriv)) lines.push(`${p} (${cols.join(', ')}) ON ${t}`);
  for (const r of g.routines) lines.push(r);
  for (const [r, o] of Object.entries(g.roles)) lines.push(`role ${r}${o.admin ? ' WITH ADMIN OPTION' : ''}`);
  if (g.defaultRole) lines.push(`default role ${g.defaultRole}`);
  if (g.locked) lines.push('ACCOUNT LOCK');
  return lines;
}

/** Readable lines of everything a grant set holds (reports, plans). */
export function describeGrantSet(g: GrantSet): string[] {
  return levelLines(normaliseGrantSet(g));
}

/**
 * Differences between instances, against `reference` (the primary): grantees missing on some
 * instance, and grants that differ, each as `only on <reference>: …` / `only on <instance>: …`.
 */
export function grantDrift(states: Record<string, GrantState>, reference: string, only?: Set<string>): Drift[] {
  const names = Object.keys(states);
  const keys = sorted(names.flatMap((n) => Object.keys(states[n]!))).filter((k) => !only || only.has(k));
  const out: Drift[] = [];
  for (const key of keys) {
    const missingOn = names.filter((n) => !states[n]![key]);
    const ref = states[reference]?.[key];
    const differs: Drift['differs'] = [];
    if (ref) {
      const refLines = new Set(levelLines(normaliseGrantSet(ref)));
      for (const n of names) {
        const g = states[n]![key];
        if (n === reference || !g) continue;
        const lines = new Set(levelLines(normaliseGrantSet(g)));
        const onlyRef = [...refLines].filter((l) => !lines.has(l));
        const onlyHere = [...lines].filter((l) => !refLines.has(l));
        if (onlyRef.length || onlyHere.length) {
          differs.push({ instance: n, differences: [...onlyRef.map((l) => `only on ${reference}: ${l}`), ...onlyHere.map((l) => `only on ${n}: ${l}`)] });
        }
      }
    }
    if (missingOn.length || differs.length) out.push({ grantee: key, missingOn, differs });
  }
  return out;
}

export function describeDrift(d: Drift): string {
  const parts: string[] = [];
  if (d.missingOn.length) parts.push(`missing on ${d.missingOn.join(', ')}`);
  for (const x of d.differs) parts.push(`${x.instance}: ${x.differences.join('; ')}`);
  return `${d.grantee}: ${parts.join('; ')}`;
}

// ---------------------------------------------------------------------------------------------
// Which accounts to contain

export interface TargetChoice {
  /** Accounts (user@host) whose exposure is contained. */
  targets: string[];
  /** Exposed accounts left alone, and why. */
  excluded: { account: string; why: string }[];
  /** Reasons to refuse the run (a matched account exposed through a global grant). */
  refusals: string[];
  /** PUBLIC's grants or roles expose the objects: they are rewritten too (for every account). */
  publicChanged: boolean;
}

/**
 * The exposed accounts the run contains: those `pattern` matches (all when none is given), never
 * the `protectedUsers` (the engine's own admin and replication accounts, root, mariadb.sys).
 * Exposure through a global grant (`*.*`) is never rewritten here: narrowing it would change the
 * account's access to every database. A matched account exposed that way is a refusal when the
 * pattern was given, and an exclusion (listed) when it was not.
 */
export function chooseTargets(matrix: AccountExposure[], pattern: string | undefined, protectedUsers: string[]): TargetChoice {
  const exposed = exposedAccounts(matrix);
  const choice: TargetChoice = { targets: [], excluded: [], refusals: [], publicChanged: false };
  for (const a of exposed) {
    if (protectedUsers.includes(a.user)) {
      choice.excluded.push({ account: a.account, why: 'the engine\'s own or a system account: not changed' });
      continue;
    }
    if (pattern !== undefined && !accountMatches(pattern, a.user, a.host)) {
      choice.excluded.push({ account: a.account, why: `not matched by --accounts ${pattern}` });
      continue;
    }
    const global = a.paths.filter((p) => p.level === 'global');
    if (global.length) {
      const how = global.map((p) => describePath(p)).join('; ');
      if (pattern !== undefined) choice.refusals.push(`${a.account} is exposed through a global grant (${how}): narrowing *.* would change its access to every database; do it by hand or narrow --accounts`);
      else choice.excluded.push({ account: a.account, why: `exposed through a global grant (${how}): not changed by this runbook` });
      continue;
    }
    choice.targets.push(a.account);
    if (a.paths.some((p) => p.via === 'public')) choice.publicChanged = true;
  }
  return choice;
}

// ---------------------------------------------------------------------------------------------
// The containment target: each grantee's grants without the exposure, broad grants rewritten

export interface InstanceCatalog {
  /** Databases on the instance. */
  databases: string[];
  /** Tables of the databases the objects are in: db → tables. */
  tables: Record<string, string[]>;
}

export interface Rewrite {
  grantee: string;
  note: string;
}

function clone(g: GrantSet): GrantSet {
  return JSON.parse(JSON.stringify(g)) as GrantSet;
}

const EXPOSING = new Set<string>(EXPOSURE_PRIVILEGES);

/**
 * Remove the objects' row privileges from a grant set; a database grant that covers them is kept
 * for what it does not expose and its row privileges are granted again on every other table of
 * that database (and, for a pattern, at database level on every other database it matches). There
 * are no negative grants in 10.11: this is how "all of hr except patients" is said.
 */
function withoutExposure(g: GrantSet, objects: TableRef[], catalog: InstanceCatalog, rewrites: Rewrite[]): GrantSet {
  const out = clone(g);
  const key = granteeKey(g);
  const sensitive = new Set(objects.map(tableKey));
  const sensitiveDbs = new Set(objects.map((o) => o.db));
  for (const [pattern, p] of Object.entries(g.databases)) {
    if (![...sensitiveDbs].some((db) => likeMatch(pattern, db))) continue;
    const removed = p.privileges.filter((x) => EXPOSING.has(x));
    if (!removed.length) continue;
    out.databases[pattern] = { privileges: p.privileges.filter((x) => !EXPOSING.has(x)), grantOption: p.grantOption };
    const regranted: string[] = [];
    for (const db of catalog.databases) {
      if (!likeMatch(pattern, db)) continue;
      if (sensitiveDbs.has(db)) {
        for (const t of catalog.tables[db] ?? []) {
          const k = `${db}.${t}`;
          if (sensitive.has(k)) continue;
          mergeLevel(out.tables, k, removed, p.grantOption);
          regranted.push(k);
        }
      } else if (db !== pattern) {
        mergeLevel(out.databases, db, removed, p.grantOption);
        regranted.push(`${db}.*`);
      }
    }
    rewrites.push({
      grantee: key,
      note: `${removed.join(', ')} on ${pattern}.* rewritten as ${regranted.length ? regranted.join(', ') : 'nothing (no other table)'}: tables created later in ${pattern} are no longer covered`,
    });
  }
  for (const k of sensitive) {
    const t = out.tables[k];
    if (t) out.tables[k] = { privileges: t.privileges.filter((x) => !EXPOSING.has(x)), grantOption: t.grantOption };
    const cols = out.columns[k];
    if (cols) for (const p of Object.keys(cols)) if (EXPOSING.has(p)) delete cols[p];
  }
  return normaliseGrantSet(out);
}

export interface ContainmentTarget {
  /** Grantee → the grant set it should have; only grantees that change. */
  targets: GrantState;
  rewrites: Rewrite[];
}

/**
 * What each involved grantee should hold on one instance after containment: every target
 * account without its own row privileges on the objects, without the roles through which it gets
 * them (and without such a default role), locked when asked; PUBLIC without its; roles
 * themselves unchanged (other accounts may rightly hold them).
 */
export function containmentTarget(state: GrantState, matrix: AccountExposure[], targets: string[], objects: TableRef[], catalog: InstanceCatalog, lock: boolean): ContainmentTarget {
  const out: GrantState = {};
  const rewrites: Rewrite[] = [];
  for (const account of targets) {
    const g = state[account];
    if (!g) continue;
    let next = withoutExposure(g, objects, catalog, rewrites);
    const exposure = matrix.find((m) => m.account === account);
    const viaRoles = new Set((exposure?.paths ?? []).filter((p) => p.via === 'role' && p.exposing.length).map((p) => p.heldRole!));
    if (viaRoles.size) {
      next = clone(next);
      for (const r of viaRoles) delete next.roles[r];
      if (next.defaultRole && viaRoles.has(next.defaultRole)) next.defaultRole = null;
      rewrites.push({ grantee: account, note: `role(s) ${[...viaRoles].join(', ')} revoked from it: every other privilege of those roles goes with them` });
    }
    if (lock) next = { ...next, locked: true };
    next = normaliseGrantSet(next);
    if (!sameGrants(next, g)) out[account] = next;
  }
  const pub = state.PUBLIC;
  const publicExposes = matrix.some((m) => targets.includes(m.account) && m.paths.some((p) => p.via === 'public' && p.exposing.length));
  if (pub && publicExposes) {
    let next = withoutExposure(pub, objects, catalog, rewrites);
    const viaRoles = new Set(matrix.flatMap((m) => m.paths.filter((p) => p.via === 'public' && p.heldRole && p.exposing.length).map((p) => p.heldRole!)));
    if (viaRoles.size) {
      next = clone(next);
      for (const r of viaRoles) delete next.roles[r];
      rewrites.push({ grantee: 'PUBLIC', note: `role(s) ${[...viaRoles].join(', ')} revoked from PUBLIC` });
    }
    next = normaliseGrantSet(next);
    if (!sameGrants(next, pub)) out.PUBLIC = next;
  }
  return { targets: out, rewrites };
}

// ---------------------------------------------------------------------------------------------
// A declared state (grants file)

export interface DeclaredAccount {
  /** `user@host`. */
  account: string;
  /** Privilege clauses: `SELECT, INSERT ON db.table [WITH GRANT OPTION]`. */
  grants: string[];
  roles?: string[];
  defaultRole?: string | null;
}

export function splitAccount(account: string): { user: string; host: string } {
  const at = account.lastIndexOf('@');
  if (at < 0) return { user: account, host: '%' };
  return { user: account.slice(0, at), host: account.slice(at + 1) };
}

/**
 * The grant set a declaration means, on top of what `current` holds that a grants file does not
 * speak of (routines, proxies, the lock): exactly the declared privileges, roles and default role.
 */
export function declaredGrantSet(d: DeclaredAccount, current: GrantSet): GrantSet {
  const { user, host } = splitAccount(d.account);
  const g = emptyGrantSet('user', user, host);
  for (const line of d.grants) {
    const c = parsePrivilegeClause(line) as PrivilegeClause & { grantOption?: boolean };
    addClause(g, c, Boolean(c.grantOption));
  }
  for (const r of d.roles ?? []) g.roles[r] = { admin: false };
  g.defaultRole = d.defaultRole ?? null;
  g.routines = current.routines;
  g.proxies = current.proxies;
  g.locked = current.locked;
  return normaliseGrantSet(g);
}

/** Why a grants file cannot be used, or undefined: each line must parse, each default role be among its roles. */
export function declaredProblems(accounts: DeclaredAccount[]): string[] {
  const problems: string[] = [];
  const seen = new Set<string>();
  for (const d of accounts) {
    if (typeof d.account !== 'string' || !d.account.includes('@')) {
      problems.push(`account ${JSON.stringify(d.account)}: expected user@host`);
      continue;
    }
    if (seen.has(d.account)) problems.push(`${d.account} is declared twice`);
    seen.add(d.account);
    if (!Array.isArray(d.grants)) problems.push(`${d.account}: grants must be a list`);
    for (const line of d.grants ?? []) {
      try {
        parsePrivilegeClause(String(line));
      } catch (err) {
        problems.push(`${d.account}: ${(err as Error).message}`);
      }
    }
    if (d.defaultRole && !(d.roles ?? []).includes(d.defaultRole)) problems.push(`${d.account}: default role ${d.defaultRole} is not among its roles`);
  }
  return problems;
}

// ---------------------------------------------------------------------------------------------
// Statements that move a grantee from one state to another

/**
 * The statements that turn `from` into `to`, in an order that works on a live server: roles
 * granted before a default role names them, narrower grants before broader ones are revoked,
 * the lock last. Applying them and diffing again gives nothing: that is what makes a retried
 * apply a no-op.
 */
export function grantStatements(from: GrantSet, to: GrantSet): string[] {
  const a = normaliseGrantSet(from);
  const b = normaliseGrantSet(to);
  const who = granteeSql(b);
  const grants: string[] = [];
  const revokes: string[] = [];
  const level = (lv: Exclude<Level, 'column'>, key: string | undefined, x: PrivilegeGrant | undefined, y: PrivilegeGrant | undefined) => {
    const have = new Set(x?.privileges ?? []);
    const want = new Set(y?.privileges ?? []);
    const add = [...want].filter((p) => !have.has(p));
    const remove = [...have].filter((p) => !want.has(p));
    const addOption = Boolean(y?.grantOption) && !x?.grantOption;
    const removeOption = Boolean(x?.grantOption) && !y?.grantOption;
    const scope = scopeSql(lv, key);
    if (add.length || addOption) grants.push(`GRANT ${add.length ? add.join(', ') : 'USAGE'} ON ${scope} TO ${who}${addOption ? ' WITH GRANT OPTION' : ''}`);
    if (remove.length) revokes.push(`REVOKE ${remove.join(', ')} ON ${scope} FROM ${who}`);
    if (removeOption) revokes.push(`REVOKE GRANT OPTION ON ${scope} FROM ${who}`);
  };
  for (const [role, o] of Object.entries(b.roles)) {
    const had = a.roles[role];
    if (!had) grants.push(`GRANT ${quoteName(role)} TO ${who}${o.admin ? ' WITH ADMIN OPTION' : ''}`);
    else if (o.admin && !had.admin) grants.push(`GRANT ${quoteName(role)} TO ${who} WITH ADMIN OPTION`);
    else if (!o.admin && had.admin) revokes.push(`REVOKE ADMIN OPTION FOR ${quoteName(role)} FROM ${who}`);
  }
  level('global', undefined, a.global, b.global);
  for (const db of sorted([...Object.keys(a.databases), ...Object.keys(b.databases)])) level('database', db, a.databases[db], b.databases[db]);
  for (const t of sorted([...Object.keys(a.tables), ...Object.keys(b.tables)])) level('table', t, a.tables[t], b.tables[t]);
  for (const t of sorted([...Object.keys(a.columns), ...Object.keys(b.columns)])) {
    const x = a.columns[t] ?? {};
    const y = b.columns[t] ?? {};
    const scope = scopeSql('table', t);
    for (const p of sorted([...Object.keys(x), ...Object.keys(y)])) {
      const have = new Set(x[p] ?? []);
      const want = new Set(y[p] ?? []);
      const add = [...want].filter((c) => !have.has(c));
      const remove = [...have].filter((c) => !want.has(c));
      if (add.length) grants.push(`GRANT ${p} (${add.map(quoteName).join(', ')}) ON ${scope} TO ${who}`);
      if (remove.length) revokes.push(`REVOKE ${p} (${remove.map(quoteName).join(', ')}) ON ${scope} FROM ${who}`);
    }
  }
  for (const role of Object.keys(a.roles)) if (!b.roles[role]) revokes.push(`REVOKE ${quoteName(role)} FROM ${who}`);
  const tail: string[] = [];
  if (b.kind === 'user' && a.defaultRole !== b.defaultRole) tail.push(`SET DEFAULT ROLE ${b.defaultRole ? quoteName(b.defaultRole) : 'NONE'} FOR ${who}`);
  if (b.kind === 'user' && a.locked !== b.locked) tail.push(`ALTER USER ${who} ACCOUNT ${b.locked ? 'LOCK' : 'UNLOCK'}`);
  return [...grants, ...revokes, ...tail];
}

// ---------------------------------------------------------------------------------------------
// The per-server plan

export interface GranteeChange {
  grantee: string;
  statements: string[];
}

export interface ServerPlan {
  instance: string;
  /** Run with sql_log_bin=0 on this instance only. */
  unlogged: GranteeChange[];
  /** Sessions to end here (KILL CONNECTION), as seen at the assessment. */
  kill?: SessionInfo[];
}

export interface GrantPlan {
  primary: string;
  /** Run once on the primary, binlogged: every replica applies them through replication. */
  replicated: GranteeChange[];
  servers: ServerPlan[];
  /** Grantees that do not exist on an instance: nothing is done for them there (drift). */
  skipped: { instance: string; grantee: string; why: string }[];
}

/**
 * Statements per server for target states per server. A grantee whose statements are the same on
 * every instance is changed once on the primary and replicates. Otherwise (grant drift: the
 * account is missing somewhere, or its grants differ) a replicated statement could stop a
 * replica's SQL thread (a REVOKE of a grant it does not have is error 1141 there; a GRANT to an
 * account it lacks, 1133), so that grantee is changed on each server by itself, unlogged.
 */
export function planGrantChanges(states: Record<string, GrantState>, targets: Record<string, GrantState>, primary: string): GrantPlan {
  const instances = Object.keys(states);
  const grantees = sorted(instances.flatMap((i) => Object.keys(targets[i] ?? {})));
  const plan: GrantPlan = { primary, replicated: [], servers: instances.map((instance) => ({ instance, unlogged: [] })), skipped: [] };
  for (const grantee of grantees) {
    const per: Record<string, string[]> = {};
    let everywhere = true;
    for (const i of instances) {
      const from = states[i]![grantee];
      const to = targets[i]?.[grantee];
      if (!from) {
        everywhere = false;
        plan.skipped.push({ instance: i, grantee, why: `${grantee} does not exist on ${i}` });
        continue;
      }
      per[i] = to ? grantStatements(from, to) : [];
    }
    const lists = Object.values(per).map((s) => JSON.stringify(s));
    if (everywhere && new Set(lists).size === 1) {
      const statements = per[primary] ?? [];
      if (statements.length) plan.replicated.push({ grantee, statements });
      continue;
    }
    for (const [i, statements] of Object.entries(per)) {
      if (statements.length) plan.servers.find((s) => s.instance === i)!.unlogged.push({ grantee, statements });
    }
  }
  return plan;
}

/** The statements an instance may run for a plan: the replicated ones (primary only) and its own. */
export function approvedStatements(plan: GrantPlan, instance: string): { sql: string; binlog: boolean }[] {
  const own = plan.servers.find((s) => s.instance === instance)?.unlogged.flatMap((c) => c.statements.map((sql) => ({ sql, binlog: false }))) ?? [];
  const replicated = instance === plan.primary ? plan.replicated.flatMap((c) => c.statements.map((sql) => ({ sql, binlog: true }))) : [];
  return [...replicated, ...own];
}

export function planStatementCount(plan: GrantPlan): number {
  return plan.replicated.reduce((n, c) => n + c.statements.length, 0) + plan.servers.reduce((n, s) => n + s.unlogged.reduce((m, c) => m + c.statements.length, 0), 0);
}

/** The plan as a DBA reads it: every statement, per server, in order. */
export function describeGrantPlan(plan: GrantPlan, title: string): string[] {
  const lines: string[] = [`**${title}**`];
  if (plan.replicated.length) {
    lines.push(`- on ${plan.primary} (binlogged: every replica applies it through replication):`);
    for (const c of plan.replicated) for (const s of c.statements) lines.push(`  - \`${s};\``);
  }
  for (const s of plan.servers) {
    if (!s.unlogged.length) continue;
    lines.push(`- on ${s.instance} only (sql_log_bin=0, grant drift):`);
    for (const c of s.unlogged) for (const x of c.statements) lines.push(`  - \`${x};\``);
  }
  for (const k of plan.skipped) lines.push(`- on ${k.instance}: nothing for ${k.grantee} (${k.why})`);
  if (lines.length === 1) lines.push('- nothing to change');
  return lines;
}

// ---------------------------------------------------------------------------------------------
// Sessions

export interface SessionInfo {
  id: number;
  user: string;
  /** Client host, without the port. */
  host: string;
  db: string | null;
  command: string;
  timeSeconds: number;
  state: string | null;
  /** The statement it runs, cut short. */
  info: string | null;
}

/**
 * The live sessions of the given accounts (user name equal, client host matching the account's
 * host pattern); with `below`, only those that connected before it (a connection id taken after
 * the grants changed: connection ids only grow, so a smaller one predates the change and may
 * still hold the old privileges).
 */
export function sessionsOf(sessions: SessionInfo[], accounts: { user: string; host: string }[], below?: number): SessionInfo[] {
  return sessions.filter((s) => (below === undefined || s.id < below) && accounts.some((a) => a.user === s.user && likeMatch(a.host, s.host, true)));
}

/**
 * A statement as it may be kept (workflow history, reports): one that may carry a password
 * (`IDENTIFIED BY`, `PASSWORD(`, `SET PASSWORD`) is replaced by its first word.
 */
export function redactStatement(sql: string | null): string | null {
  if (sql === null) return null;
  const up = sql.toUpperCase();
  if (up.includes('IDENTIFIED') || up.includes('PASSWORD')) return `${sql.trim().split(/\s+/)[0] ?? ''} … (may hold a password: not shown)`;
  return sql;
}

export function describeSession(s: SessionInfo): string {
  return `#${s.id} ${s.user}@${s.host}${s.db ? ` in ${s.db}` : ''}: ${s.command}${s.info ? ` \`${s.info}\`` : ''}${s.state ? ` (${s.state})` : ''}, ${s.timeSeconds} s`;
}

// ---------------------------------------------------------------------------------------------
// The access report

export type EvidenceKind = 'server_audit' | 'general_log' | 'performance_schema' | 'binlog';

export interface EvidenceSource {
  instance: string;
  kind: EvidenceKind;
  /** Whether it can show reads (audit, general log, performance_schema) or only writes (binlog). */
  shows: 'reads' | 'writes';
  /** Epoch ms covered, when it records anything: from its first record (or when it was enabled) to when it was read. */
  from?: number;
  to?: number;
  /** What it is, or why it shows nothing (off, unreadable, purged). */
  note: string;
}

export interface AccessEvent {
  instance: string;
  at: number;
  /** `user@client-host` as the server recorded it; `unknown` where it is not recorded (binlog). */
  account: string;
  action: 'read' | 'write' | 'query' | 'connect';
  object: string;
  source: EvidenceKind;
  /** The statement, cut short, when recorded. */
  detail?: string;
}

export interface EvidenceGap {
  instance: string;
  shows: 'reads' | 'writes';
  from: number;
  to: number;
  /** The sentence the report prints. */
  statement: string;
}

export interface AccountAccess {
  account: string;
  instance: string;
  reads: number;
  writes: number;
  queries: number;
  first: number;
  last: number;
  sources: EvidenceKind[];
  examples: string[];
}

export interface AccessReport {
  cluster: string;
  incidentId: string;
  objects: string[];
  since: number;
  until: number;
  generatedAt: number;
  accesses: AccountAccess[];
  sources: EvidenceSource[];
  gaps: EvidenceGap[];
  /** Accounts the matrix showed exposed at the assessment (who could have read). */
  exposedAtAssessment: string[];
  /** What no source here can show, said every time. */
  limits: string[];
}

const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

/** The parts of [from, to] that none of the intervals cover. */
export function uncovered(from: number, to: number, covered: { from: number; to: number }[]): { from: number; to: number }[] {
  const spans = covered.filter((c) => c.to > from && c.from < to).sort((a, b) => a.from - b.from);
  const out: { from: number; to: number }[] = [];
  let cursor = from;
  for (const s of spans) {
    if (s.from > cursor) out.push({ from: cursor, to: Math.min(s.from, to) });
    cursor = Math.max(cursor, s.to);
    if (cursor >= to) break;
  }
  if (cursor < to) out.push({ from: cursor, to });
  return out;
}

/**
 * The report: who accessed the objects and how, from whatever evidence exists, and for every
 * instance and period without evidence, a sentence saying so: reads there cannot be proven or
 * excluded. Writes are judged on the primary only (replicas are read-only).
 */
export function buildAccessReport(
  r: Pick<AccessReport, 'cluster' | 'incidentId' | 'objects' | 'since' | 'until' | 'generatedAt' | 'sources' | 'exposedAtAssessment'> & { instances: string[]; primary: string; events: AccessEvent[] },
): AccessReport {
  const inWindow = r.events.filter((e) => e.at >= r.since && e.at <= r.until);
  const byKey = new Map<string, AccountAccess>();
  for (const e of inWindow.sort((a, b) => a.at - b.at)) {
    const k = `${e.instance}\u0000${e.account}`;
    const a = byKey.get(k) ?? { account: e.account, instance: e.instance, reads: 0, writes: 0, queries: 0, first: e.at, last: e.at, sources: [], examples: [] };
    if (e.action === 'read') a.reads++;
    else if (e.action === 'write') a.writes++;
    else if (e.action === 'query') a.queries++;
    a.last = e.at;
    if (!a.sources.includes(e.source)) a.sources.push(e.source);
    if (a.examples.length < 3 && e.detail && !a.examples.includes(e.detail)) a.examples.push(e.detail);
    byKey.set(k, a);
  }
  const gaps: EvidenceGap[] = [];
  for (const instance of r.instances) {
    const reads = r.sources.filter((s) => s.instance === instance && s.shows === 'reads' && s.from !== undefined && s.to !== undefined);
    for (const g of uncovered(r.since, r.until, reads.map((s) => ({ from: s.from!, to: s.to! })))) {
      const why = reads.length ? `nothing recorded reads on ${instance} from ${iso(g.from)} to ${iso(g.to)}` : `no audit, general_log or performance_schema history recorded reads on ${instance} in this window`;
      gaps.push({ instance, shows: 'reads', ...g, statement: `${why}: reads there cannot be proven or excluded` });
    }
    if (instance === r.primary) {
      const writes = r.sources.filter((s) => s.instance === instance && s.shows === 'writes' && s.from !== undefined && s.to !== undefined);
      for (const g of uncovered(r.since, r.until, writes.map((s) => ({ from: s.from!, to: s.to! })))) {
        gaps.push({ instance, shows: 'writes', ...g, statement: `no binlog on ${instance} covers ${iso(g.from)} to ${iso(g.to)}: writes there cannot be proven or excluded` });
      }
    }
  }
  return {
    cluster: r.cluster,
    incidentId: r.incidentId,
    objects: r.objects,
    since: r.since,
    until: r.until,
    generatedAt: r.generatedAt,
    accesses: [...byKey.values()].sort((a, b) => a.first - b.first),
    sources: r.sources,
    gaps,
    exposedAtAssessment: r.exposedAtAssessment,
    limits: [
      'the binlog records writes, never reads, and not who wrote: a write is attributed to an account only where an audit or general log recorded the statement',
      'an audit log or general_log shows only what happened while it was on: a gap inside a recorded period (logging switched off and on again) cannot be seen',
      'access through views, stored routines or triggers defined by another account is logged under the statement that used them, not always under the table',
    ],
  };
}

export function accessReportMarkdown(r: AccessReport): string {
  const lines: string[] = [
    `# Access report: ${r.objects.join(', ')} on ${r.cluster} (incident ${r.incidentId})`,
    '',
    `Window: ${iso(r.since)} – ${iso(r.until)} (UTC). Generated ${iso(r.generatedAt)}.`,
    '',
    '## Who accessed the objects',
    '',
  ];
  if (r.accesses.length) {
    lines.push('| account | instance | reads | writes | other statements | first | last | evidence | examples |', '|---|---|---|---|---|---|---|---|---|');
    for (const a of r.accesses) {
      lines.push(`| ${a.account} | ${a.instance} | ${a.reads} | ${a.writes} | ${a.queries} | ${iso(a.first)} | ${iso(a.last)} | ${a.sources.join(', ')} | ${a.examples.map((e) => `\`${e.replace(/\|/g, '\\|').replace(/`/g, "'")}\``).join('<br>')} |`);
    }
  } else lines.push('No access recorded by any source below (see where no evidence exists).');
  lines.push('', '## Where no evidence exists', '');
  if (r.gaps.length) for (const g of r.gaps) lines.push(`- **${g.instance}** (${g.shows}): ${g.statement}.`);
  else lines.push('- Every instance had a source recording reads for the whole window.');
  lines.push('', '## Evidence sources', '');
  for (const s of r.sources) lines.push(`- ${s.instance}: ${s.kind} (${s.shows}) ${s.from !== undefined ? `${iso(s.from)} – ${iso(s.to!)}` : 'covers nothing'}: ${s.note}`);
  lines.push('', '## Accounts exposed at the assessment (who could have read)', '');
  lines.push(r.exposedAtAssessment.length ? r.exposedAtAssessment.map((a) => `- ${a}`).join('\n') : '- none');
  lines.push('', '## What this report cannot show', '', ...r.limits.map((l) => `- ${l}`), '');
  return lines.join('\n');
}

/** The short form that goes into the notifications (both locales render it). */
export interface AccessReportSummary {
  since: number;
  until: number;
  objects: string[];
  accesses: { account: string; instance: string; reads: number; writes: number }[];
  gaps: { instance: string; shows: 'reads' | 'writes'; from: number; to: number }[];
  files: string[];
}

export function summariseReport(r: AccessReport, files: string[]): AccessReportSummary {
  return {
    since: r.since,
    until: r.until,
    objects: r.objects,
    accesses: r.accesses.slice(0, 20).map((a) => ({ account: a.account, instance: a.instance, reads: a.reads, writes: a.writes })),
    gaps: r.gaps.slice(0, 20).map((g) => ({ instance: g.instance, shows: g.shows, from: g.from, to: g.to })),
    files,
  };
}

// ---------------------------------------------------------------------------------------------
// Parsing the server's own logs into events

/**
 * One line of the server_audit log: `20261202 06:59:40,host,user,client,conn,query,OPERATION,db,object,retcode`.
 * `offsetMinutes` is the server's UTC offset (the plugin writes local time). Returns undefined for
 * lines that are not about the objects.
 */
export function parseAuditLine(line: string, instance: string, objects: TableRef[], offsetMinutes: number): AccessEvent | undefined {
  const at = auditLineTime(line, offsetMinutes);
  if (at === undefined || line.length < 20) return undefined;
  // host,user,client,connection,query id,operation,database, then the object and the return code.
  const fields = splitFields(line.slice(18), 7);
  if (fields.length < 8) return undefined;
  const [, user, client, , , operation, db, rest] = fields as string[];
  const comma = rest!.lastIndexOf(',');
  const object = comma >= 0 ? rest!.slice(0, comma) : rest;
  const account = `${user}@${client}`;
  if (operation === 'READ' || operation === 'WRITE') {
    const hit = objects.find((o) => o.db === db && o.table === object);
    return hit ? { instance, at, account, action: operation === 'READ' ? 'read' : 'write', object: tableKey(hit), source: 'server_audit' } : undefined;
  }
  if (operation === 'QUERY' || operation?.startsWith('QUERY')) {
    const text = unquoteAudit(object ?? '');
    const hit = objects.find((o) => mentions(text, o, db ?? ''));
    return hit ? { instance, at, account, action: 'query', object: tableKey(hit), source: 'server_audit', detail: redactStatement(text.slice(0, 200))! } : undefined;
  }
  return undefined;
}

/** When a server_audit line was written (`20261202 06:59:40`, the server's local time), in epoch ms. */
export function auditLineTime(line: string, offsetMinutes: number): number | undefined {
  const m = line.slice(0, 17);
  if (!/^\d{8} \d{2}:\d{2}:\d{2}$/.test(m)) return undefined;
  return Date.UTC(Number(m.slice(0, 4)), Number(m.slice(4, 6)) - 1, Number(m.slice(6, 8)), Number(m.slice(9, 11)), Number(m.slice(12, 14)), Number(m.slice(15, 17))) - offsetMinutes * 60_000;
}

/** The first `n` comma-separated fields, and the rest of the line as one more. */
function splitFields(s: string, n: number): string[] {
  const out: string[] = [];
  let start = 0;
  for (let i = 0; i < s.length && out.length < n; i++) {
    if (s[i] === ',') {
      out.push(s.slice(start, i));
      start = i + 1;
    }
  }
  out.push(s.slice(start));
  return out;
}

function unquoteAudit(s: string): string {
  if (!s.startsWith("'")) return s;
  return s.slice(1, s.endsWith("'") ? -1 : undefined).replace(/\\'/g, "'").replace(/\\\\/g, '\\');
}

/** Whether a statement names the table (qualified, or unqualified in its database), case-insensitively. */
export function mentions(statement: string, o: TableRef, currentDb: string): boolean {
  const s = statement.toLowerCase().replace(/`/g, '');
  const table = o.table.toLowerCase();
  const qualified = `${o.db.toLowerCase()}.${table}`;
  if (containsWord(s, qualified)) return true;
  return currentDb === o.db && containsWord(s, table);
}

function containsWord(s: string, word: string): boolean {
  const ident = (c: string) => /[a-z0-9_$]/.test(c);
  for (let from = 0; ; ) {
    const i = s.indexOf(word, from);
    if (i < 0) return false;
    const before = i === 0 ? ' ' : s[i - 1]!;
    const after = i + word.length >= s.length ? ' ' : s[i + word.length]!;
    // `patients` alone must not match `otherdb.patients`; `hr.patients` may follow anything but a name.
    if (!ident(before) && (word.includes('.') || before !== '.') && !ident(after)) return true;
    from = i + 1;
  }
}

/** How an instance's access is being recorded for the report (server_audit, else general_log). */
export interface AuditEnabled {
  method: 'server_audit' | 'general_log';
  /** Whether it already recorded reads before this call. */
  alreadyOn: boolean;
  /** What was changed, one line each (empty when nothing was). */
  changes: string[];
  /** Where the records go. */
  target: string;
  /** Why server_audit was not used, when it was not. */
  fallbackBecause?: string;
}

/** What one source on one instance recorded about the objects, and what it covers. */
export interface Evidence {
  sources: EvidenceSource[];
  events: AccessEvent[];
}

/** The revoke runbook's own bounds (`--object`, `--accounts`, `--grants-file`, `--since/--until`). */
export const REVOKE_LIMITS = { objects: 20, accountPattern: 100, declaredAccounts: 200, grantsPerAccount: 100, grantLine: 500 } as const;

/**
 * `--accounts` is a LIKE pattern (`%`, `_`) on the user, or on `user@host`: matched by hand
 * (src/core/grants.ts likeMatch), never compiled into a regular expression.
 */
export function accountPatternProblem(field: string, value: unknown): string | undefined {
  return textProblem(field, value, REVOKE_LIMITS.accountPattern);
}

/** Everything a revoke run carries besides who and why; the same checks in the CLI and the workflow. */
export function revokeInputProblems(input: { objects?: unknown; accounts?: unknown; since?: unknown; until?: unknown; declared?: unknown; lock?: unknown }): (string | undefined)[] {
  const problems: (string | undefined)[] = [];
  const objects = input.objects;
  if (!Array.isArray(objects) || !objects.length) problems.push('objects: name at least one sensitive table, db.table');
  else if (objects.length > REVOKE_LIMITS.objects) problems.push(`objects: at most ${REVOKE_LIMITS.objects} tables, got ${objects.length}`);
  else for (const o of objects) problems.push(tableProblem('objects', o, { qualified: true }));
  problems.push(accountPatternProblem('accounts', input.accounts));
  for (const k of ['since', 'until'] as const) {
    const v = input[k];
    if (v !== undefined && (typeof v !== 'number' || !Number.isFinite(v) || v < 0)) problems.push(`${k} must be a time (epoch ms), got ${String(v)}`);
  }
  if (input.until !== undefined && input.since === undefined) problems.push('until needs since: the report window starts at since');
  if (typeof input.since === 'number' && typeof input.until === 'number' && input.since > input.until) problems.push('since is after until: the report window is empty');
  if (input.declared !== undefined) {
    const d = input.declared;
    if (!Array.isArray(d)) problems.push('declared grants must be a list of accounts');
    else if (d.length > REVOKE_LIMITS.declaredAccounts) problems.push(`declared grants: at most ${REVOKE_LIMITS.declaredAccounts} accounts`);
    else {
      for (const a of d as { account?: unknown; grants?: unknown; roles?: unknown; defaultRole?: unknown }[]) {
        problems.push(textProblem('declared account', a?.account, 200, { required: true }));
        if (!Array.isArray(a?.grants) || a.grants.length > REVOKE_LIMITS.grantsPerAccount) problems.push(`declared ${String(a?.account)}: grants must be a list of at most ${REVOKE_LIMITS.grantsPerAccount}`);
        else for (const g of a.grants) problems.push(textProblem(`declared ${String(a.account)} grant`, g, REVOKE_LIMITS.grantLine, { required: true }));
        if (a?.roles !== undefined && (!Array.isArray(a.roles) || a.roles.length > 50 || a.roles.some((r) => textProblem('role', r, 128, { required: true })))) problems.push(`declared ${String(a?.account)}: roles must be a list of role names`);
        if (a?.defaultRole !== undefined && a.defaultRole !== null) problems.push(textProblem(`declared ${String(a?.account)} defaultRole`, a.defaultRole, 128));
      }
      if (!problems.some(Boolean)) problems.push(...declaredProblems(d as DeclaredAccount[]));
    }
  }
  if (input.lock !== undefined && typeof input.lock !== 'boolean') problems.push('lock must be true or false');
  return problems;
}
