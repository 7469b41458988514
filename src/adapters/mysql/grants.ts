/**
 * Grants, sessions and access evidence on one managed MariaDB instance, for the revoke runbook.
 * Grants are read as the server enforces them (SHOW GRANTS, SHOW CREATE USER: the in-memory ACL,
 * not the mysql.* tables, which can differ until a FLUSH PRIVILEGES) and parsed at once by
 * src/core/grants.ts, so no password hash leaves this file. Every function takes an open
 * connection (src/mysql/connect.ts); the caller bounds and closes it.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import { query, type Conn } from './connect';
import { sqlTime } from '../../core/format';
import {
  auditLineTime, granteeKey, granteeSql, mentions, parseAuditLine, parseShowGrants, redactStatement, tableKey, type AccessEvent, type EvidenceSource, type GrantSet, type GrantState,
  type GranteeKind, type InstanceCatalog, type SessionInfo, type TableRef, type AuditEnabled, type Evidence,
} from '../../core/grants';

export type { AuditEnabled, Evidence };

const errnoOf = (err: unknown) => (err as { errno?: number }).errno;

interface GranteeRow {
  user: string;
  host: string;
  is_role: string | null;
}

/** Every account, role and PUBLIC on the server (`only`: just these keys). */
export async function readGrants(conn: Conn, only?: Set<string>): Promise<GrantState> {
  const rows = await query<GranteeRow[]>(conn, "SELECT User AS user, Host AS host, JSON_VALUE(Priv, '$.is_role') AS is_role FROM mysql.global_priv ORDER BY User, Host");
  const state: GrantState = {};
  for (const r of rows) {
    const kind: GranteeKind = r.user === 'PUBLIC' && r.host === '' ? 'public' : r.is_role === 'true' || r.is_role === '1' ? 'role' : 'user';
    const ref = { kind, user: r.user, host: r.host };
    const key = granteeKey(ref);
    if (only && !only.has(key)) continue;
    const g = await readGrantee(conn, kind, r.user, r.host);
    if (g) state[key] = g;
  }
  return state;
}

async function readGrantee(conn: Conn, kind: GranteeKind, user: string, host: string): Promise<GrantSet | undefined> {
  const who = granteeSql({ kind, user, host });
  let lines: string[];
  try {
    lines = (await query<Record<string, string>[]>(conn, `SHOW GRANTS FOR ${who}`)).map((row) => String(Object.values(row)[0]));
  } catch (err) {
    // 1141: in mysql.global_priv but not loaded (a row written without FLUSH PRIVILEGES): not enforced.
    if (errnoOf(err) === 1141 || errnoOf(err) === 1133) return undefined;
    throw err;
  }
  let locked = false;
  if (kind === 'user') {
    const [row] = await query<Record<string, string>[]>(conn, `SHOW CREATE USER ${who}`);
    // Only whether it says ACCOUNT LOCK is kept: the rest holds the password hash.
    locked = / ACCOUNT LOCK( |$)/.test(String(Object.values(row ?? {})[0] ?? ''));
  }
  return parseShowGrants(kind, user, host, lines, locked);
}

/** The databases, and the tables of the objects' databases (what a rewrite grants on instead). */
export async function readCatalog(conn: Conn, objects: TableRef[]): Promise<InstanceCatalog> {
  const dbs = (await query<{ name: string }[]>(conn, 'SELECT SCHEMA_NAME AS name FROM information_schema.SCHEMATA ORDER BY 1')).map((r) => r.name);
  const tables: Record<string, string[]> = {};
  for (const db of [...new Set(objects.map((o) => o.db))]) {
    tables[db] = (await query<{ name: string }[]>(conn, "SELECT TABLE_NAME AS name FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_TYPE IN ('BASE TABLE', 'VIEW', 'SYSTEM VERSIONED') ORDER BY 1", [db])).map((r) => r.name);
  }
  return { databases: dbs.filter((d) => !['information_schema', 'performance_schema'].includes(d)), tables };
}

/** The objects that do not exist (a typo must not make a containment look complete). */
export async function missingObjects(conn: Conn, objects: TableRef[]): Promise<string[]> {
  const missing: string[] = [];
  for (const o of objects) {
    const [row] = await query<{ n: number }[]>(conn, 'SELECT COUNT(*) AS n FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?', [o.db, o.table]);
    if (!Number(row?.n)) missing.push(tableKey(o));
  }
  return missing;
}

/** Client sessions (not replication threads, daemons or this connection). */
export async function listSessions(conn: Conn): Promise<SessionInfo[]> {
  const rows = await query<{ id: string; user: string; host: string; db: string | null; command: string; time: string; state: string | null; info: string | null }[]>(
    conn,
    `SELECT ID AS id, USER AS user, HOST AS host, DB AS db, COMMAND AS command, TIME AS time, STATE AS state, LEFT(INFO, 200) AS info
       FROM information_schema.PROCESSLIST
      WHERE ID <> CONNECTION_ID() AND COMMAND NOT IN ('Daemon', 'Binlog Dump', 'Slave_IO', 'Slave_SQL', 'Slave_worker')
        AND USER NOT IN ('system user', 'event_scheduler', 'unauthenticated user')
      ORDER BY ID`,
  );
  return rows.map((r) => ({
    id: Number(r.id), user: r.user, host: clientHost(r.host), db: r.db, command: r.command, timeSeconds: Number(r.time), state: r.state || null, info: redactStatement(r.info),
  }));
}

/** `127.0.0.1:53422` → `127.0.0.1`; `localhost` stays. */
function clientHost(h: string): string {
  const colon = h.lastIndexOf(':');
  if (colon < 0) return h;
  const port = h.slice(colon + 1);
  return port.length && [...port].every((c) => c >= '0' && c <= '9') ? h.slice(0, colon) : h;
}

/** A connection id opened now: every session with a smaller id connected before this moment. */
export async function connectionId(conn: Conn): Promise<number> {
  const [row] = await query<{ id: string }[]>(conn, 'SELECT CONNECTION_ID() AS id');
  return Number(row!.id);
}

/** Run statements, each binlogged or not (sql_log_bin is per session; set before every one). */
export async function runStatements(conn: Conn, statements: { sql: string; binlog: boolean }[], onEach?: (sql: string) => void): Promise<void> {
  let logging: boolean | undefined;
  try {
    for (const s of statements) {
      if (logging !== s.binlog) {
        await query(conn, `SET SESSION sql_log_bin = ${s.binlog ? 1 : 0}`);
        logging = s.binlog;
      }
      await query(conn, s.sql, [], 30_000);
      onEach?.(s.sql);
    }
  } finally {
    if (logging === false) await query(conn, 'SET SESSION sql_log_bin = 1').catch(() => undefined);
  }
}

/** End one session; `gone` when it had already ended (1094: unknown thread id). */
export async function killConnection(conn: Conn, id: number): Promise<'killed' | 'gone'> {
  try {
    await query(conn, `KILL CONNECTION ${Math.trunc(id)}`);
    return 'killed';
  } catch (err) {
    if (errnoOf(err) === 1094) return 'gone';
    throw err;
  }
}

/** The server's clock: UTC now, and its UTC offset (what its log files are written in). */
export async function serverClock(conn: Conn): Promise<{ now: number; offsetMinutes: number }> {
  const [row] = await query<{ utc: string; offset_minutes: string }[]>(conn, "SELECT UTC_TIMESTAMP(3) AS utc, TIMESTAMPDIFF(MINUTE, UTC_TIMESTAMP(), CONVERT_TZ(UTC_TIMESTAMP(), '+00:00', 'SYSTEM')) AS offset_minutes");
  return { now: Date.parse(`${row!.utc.replace(' ', 'T')}Z`), offsetMinutes: Number(row!.offset_minutes ?? 0) };
}

// ---------------------------------------------------------------------------------------------
// Audit

export interface AuditState {
  /** ACTIVE when the plugin is loaded, NOT INSTALLED when it is not, else its status. */
  plugin: string;
  logging: boolean;
  events: string;
  filePath: string | null;
  outputType: string | null;
  inclUsers: string;
  exclUsers: string;
  generalLog: boolean;
  logOutput: string;
  generalLogFile: string | null;
  datadir: string;
  performanceSchema: boolean;
}

export async function auditState(conn: Conn): Promise<AuditState> {
  const [plugin] = await query<{ status: string }[]>(conn, "SELECT PLUGIN_STATUS AS status FROM information_schema.PLUGINS WHERE PLUGIN_NAME = 'SERVER_AUDIT'");
  const vars = Object.fromEntries(
    (await query<{ Variable_name: string; Value: string }[]>(
      conn,
      "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('server_audit_logging', 'server_audit_events', 'server_audit_file_path', 'server_audit_output_type', 'server_audit_incl_users', 'server_audit_excl_users', 'general_log', 'log_output', 'general_log_file', 'datadir', 'performance_schema')",
    )).map((r) => [r.Variable_name, r.Value]),
  );
  return {
    plugin: plugin?.status ?? 'NOT INSTALLED',
    logging: vars.server_audit_logging === 'ON',
    events: vars.server_audit_events ?? '',
    filePath: vars.server_audit_file_path ?? null,
    outputType: vars.server_audit_output_type ?? null,
    inclUsers: vars.server_audit_incl_users ?? '',
    exclUsers: vars.server_audit_excl_users ?? '',
    generalLog: vars.general_log === 'ON',
    logOutput: vars.log_output ?? 'FILE',
    generalLogFile: vars.general_log_file ?? null,
    datadir: vars.datadir ?? '',
    performanceSchema: vars.performance_schema === 'ON',
  };
}

/** The events that record reads of a table: TABLE (READ lines) or QUERY_DML / QUERY; none set means all. */
export function auditRecordsReads(events: string): boolean {
  const set = events.split(',').map((e) => e.trim().toUpperCase()).filter(Boolean);
  return !set.length || set.some((e) => e === 'TABLE' || e === 'QUERY' || e === 'QUERY_DML');
}

export const AUDIT_EVENTS = 'CONNECT,QUERY_DML,TABLE';


/**
 * Make sure reads are recorded from now on: the server_audit plugin (installed if needed, with
 * CONNECT,QUERY_DML,TABLE and an absolute file path), or general_log (log_output with TABLE) where
 * the plugin cannot be loaded. Checks before it changes anything; running it twice changes nothing.
 * SET GLOBAL does not survive a restart (INSTALL SONAME does): the result says so to the caller.
 */
export async function enableAudit(conn: Conn): Promise<AuditEnabled> {
  const before = await auditState(conn);
  const changes: string[] = [];
  if (before.plugin === 'ACTIVE' && before.logging && before.outputType === 'file' && auditRecordsReads(before.events)) {
    return { method: 'server_audit', alreadyOn: true, changes, target: absolute(before.filePath ?? 'server_audit.log', before.datadir) };
  }
  let fallbackBecause: string | undefined;
  if (before.plugin === 'NOT INSTALLED') {
    try {
      await query(conn, 'SET SESSION sql_log_bin = 0');
      await query(conn, "INSTALL SONAME 'server_audit'");
      changes.push("INSTALL SONAME 'server_audit'");
    } catch (err) {
      fallbackBecause = `server_audit cannot be loaded: ${(err as Error).message}`;
    } finally {
      await query(conn, 'SET SESSION sql_log_bin = 1').catch(() => undefined);
    }
  } else if (before.plugin !== 'ACTIVE') fallbackBecause = `server_audit is ${before.plugin}`;
  if (!fallbackBecause) {
    const s = await auditState(conn);
    const set = async (sql: string) => {
      await query(conn, sql);
      changes.push(sql);
    };
    if (s.outputType !== 'file') await set("SET GLOBAL server_audit_output_type = 'file'");
    const path = absolute(s.filePath ?? 'server_audit.log', s.datadir);
    if (!s.logging && s.filePath !== path) await set(`SET GLOBAL server_audit_file_path = '${path.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`);
    if (!auditRecordsReads(s.events)) await set(`SET GLOBAL server_audit_events = '${[...new Set([...s.events.split(',').filter(Boolean), ...AUDIT_EVENTS.split(',')])].join(',')}'`);
    if (!s.logging) await set('SET GLOBAL server_audit_logging = ON');
    const after = await auditState(conn);
    if (after.logging && auditRecordsReads(after.events)) return { method: 'server_audit', alreadyOn: false, changes, target: absolute(after.filePath ?? path, after.datadir) };
    fallbackBecause = 'server_audit did not turn on';
  }
  const g = await auditState(conn);
  const outputs = g.logOutput.split(',').filter((o) => o && o !== 'NONE');
  if (!outputs.includes('TABLE')) {
    const next = [...outputs, 'TABLE'].join(',');
    await query(conn, `SET GLOBAL log_output = '${next}'`);
    changes.push(`SET GLOBAL log_output = '${next}'`);
  }
  const alreadyOn = g.generalLog && outputs.includes('TABLE');
  if (!g.generalLog) {
    await query(conn, 'SET GLOBAL general_log = ON');
    changes.push('SET GLOBAL general_log = ON');
  }
  return { method: 'general_log', alreadyOn, changes, target: 'mysql.general_log', fallbackBecause };
}

function absolute(path: string, datadir: string): string {
  return isAbsolute(path) ? path : join(datadir, path);
}

// ---------------------------------------------------------------------------------------------
// Evidence


/**
 * What this server recorded about the objects between `since` and `until`: the server_audit log
 * (read from the file where the worker shares the server's filesystem: a loopback instance), the
 * general_log table, and performance_schema's statement history where it is kept. Every source says what it
 * covers, so the report can say where nothing does.
 */
export async function readReadEvidence(conn: Conn, instance: string, objects: TableRef[], since: number, until: number, opts: { localFiles: boolean }): Promise<Evidence> {
  const sources: EvidenceSource[] = [];
  const events: AccessEvent[] = [];
  const a = await auditState(conn);
  const clock = await serverClock(conn);
  if (a.plugin !== 'ACTIVE') {
    sources.push({ instance, kind: 'server_audit', shows: 'reads', note: a.plugin === 'NOT INSTALLED' ? 'not installed' : `plugin ${a.plugin}` });
  } else if (a.outputType !== 'file') {
    sources.push({ instance, kind: 'server_audit', shows: 'reads', note: `logs to ${a.outputType}, which this runbook does not read: reads neither proven nor excluded from it` });
  } else {
    const path = absolute(a.filePath ?? 'server_audit.log', a.datadir);
    if (!opts.localFiles) {
      sources.push({ instance, kind: 'server_audit', shows: 'reads', note: `records to ${path} on the database host, which the worker cannot read: collect it from there` });
    } else {
      const files = [path, ...Array.from({ length: 9 }, (_, i) => `${path}.${i + 1}`)].filter((f) => existsSync(f)).reverse();
      let first: number | undefined;
      for (const f of files) {
        for (const line of (await readFile(f, 'utf8')).split('\n')) {
          if (first === undefined) first = auditLineTime(line, clock.offsetMinutes);
          const e = parseAuditLine(line, instance, objects, clock.offsetMinutes);
          if (e && e.at >= since && e.at <= until) events.push(e);
        }
      }
      const reads = auditRecordsReads(a.events);
      sources.push({
        instance, kind: 'server_audit', shows: 'reads',
        ...(first !== undefined && reads && a.logging ? { from: first, to: clock.now } : {}),
        note: `${path}${files.length > 1 ? ` and ${files.length - 1} rotated file(s)` : ''}, events ${a.events || 'all'}${a.logging ? '' : ' (logging is OFF now)'}${reads ? '' : ': these events do not record reads'}${a.inclUsers || a.exclUsers ? `; only users ${a.inclUsers || `except ${a.exclUsers}`}` : ''}${first === undefined ? '; no record in it' : ''}`,
      });
    }
  }
  if (a.logOutput.split(',').includes('TABLE')) {
    await query(conn, "SET SESSION time_zone = '+00:00'");
    const [span] = await query<{ first: string | null }[]>(conn, 'SELECT MIN(event_time) AS first FROM mysql.general_log');
    const likeAny = objects.map(() => 'argument LIKE ?').join(' OR ');
    const rows = await query<{ at: string; user_host: string; argument: string; command_type: string }[]>(
      conn,
      `SELECT event_time AS at, user_host, command_type, CONVERT(argument USING utf8mb4) AS argument FROM mysql.general_log
        WHERE event_time BETWEEN ? AND ? AND command_type IN ('Query', 'Execute') AND (${likeAny}) ORDER BY event_time LIMIT 10000`,
      [sqlTime(since), sqlTime(until), ...objects.map((o) => `%${o.table}%`)],
    );
    for (const r of rows) {
      const hit = objects.find((o) => mentions(r.argument, o, o.db) || mentions(r.argument, o, ''));
      if (hit) events.push({ instance, at: Date.parse(`${r.at.replace(' ', 'T')}Z`), account: accountOfUserHost(r.user_host), action: 'query', object: tableKey(hit), source: 'general_log', detail: redactStatement(r.argument.slice(0, 200))! });
    }
    const from = span?.first ? Date.parse(`${span.first.replace(' ', 'T')}Z`) : undefined;
    sources.push({
      instance, kind: 'general_log', shows: 'reads', ...(from !== undefined && a.generalLog ? { from, to: clock.now } : {}),
      note: `mysql.general_log${a.generalLog ? '' : ' (general_log is OFF now)'}${from === undefined ? ': empty' : ''}; a statement naming the table without its database is attributed only when qualified or run in that database`,
    });
  } else {
    sources.push({ instance, kind: 'general_log', shows: 'reads', note: a.generalLog ? `ON, to ${a.generalLogFile} only (log_output ${a.logOutput}): not read by this runbook` : 'OFF' });
  }
  if (a.performanceSchema) {
    const history = await readStatementHistory(conn, instance, objects, since, until, clock.now);
    sources.push(history.source);
    events.push(...history.events);
  } else sources.push({ instance, kind: 'performance_schema', shows: 'reads', note: 'OFF: no statement history' });
  return { sources, events };
}

/**
 * performance_schema's statement history (`events_statements_history_long`, when its consumer is
 * on): a ring buffer of the last N statements, so it covers only from its oldest entry on. Its
 * timer counts picoseconds since the server started; it is tied to the clock by this very
 * statement's own start. It keeps no user: a statement is attributed while its connection is
 * still there (performance_schema.threads), and is `unknown` once it has ended.
 */
async function readStatementHistory(conn: Conn, instance: string, objects: TableRef[], since: number, until: number, now: number): Promise<{ source: EvidenceSource; events: AccessEvent[] }> {
  // MariaDB 10.11 records into the history only while events_statements_current is on as well.
  const consumers = await query<{ name: string; enabled: string }[]>(
    conn,
    "SELECT NAME AS name, ENABLED AS enabled FROM performance_schema.setup_consumers WHERE NAME IN ('events_statements_current', 'events_statements_history_long')",
  );
  const off = ['events_statements_current', 'events_statements_history_long'].filter((n) => consumers.find((c) => c.name === n)?.enabled !== 'YES');
  if (off.length) {
    return { events: [], source: { instance, kind: 'performance_schema', shows: 'reads', note: `ON, but its ${off.join(' and ')} consumer${off.length > 1 ? 's are' : ' is'} off: no statement history kept` } };
  }
  // The timer is tied to the clock by a statement of our own: its start in the history, its
  // UTC_TIMESTAMP in its result. (As numbers the timer would lose digits past 2^53: carried as text.)
  const nonce = `runbook-clock-mark-${Math.random().toString(36).slice(2)}`;
  const [clockRow] = await query<{ utc: string }[]>(conn, `SELECT UTC_TIMESTAMP(6) AS utc, '${nonce}' AS mark`);
  const [timerRow] = await query<{ timer: string | null }[]>(conn, 'SELECT CAST(MAX(TIMER_START) AS CHAR) AS timer FROM performance_schema.events_statements_history_long WHERE SQL_TEXT LIKE ?', [`%'${nonce}'%`]);
  const mark = { utc: clockRow!.utc, timer: timerRow?.timer ?? null };
  if (!mark.timer) return { events: [], source: { instance, kind: 'performance_schema', shows: 'reads', note: 'ON, but this session is not instrumented: its statement history cannot be placed in time; not read' } };
  const markMs = Date.parse(`${mark.utc.replace(' ', 'T')}Z`);
  const markTimer = BigInt(mark.timer);
  const timeOf = (timer: string) => markMs - Number((markTimer - BigInt(timer)) / 1_000_000_000n);
  const likeAny = objects.map(() => 'h.SQL_TEXT LIKE ?').join(' OR ');
  const rows = await query<{ timer: string; sql_text: string; user: string | null; host: string | null }[]>(
    conn,
    `SELECT CAST(h.TIMER_START AS CHAR) AS timer, CONVERT(h.SQL_TEXT USING utf8mb4) AS sql_text, t.PROCESSLIST_USER AS user, t.PROCESSLIST_HOST AS host
       FROM performance_schema.events_statements_history_long h LEFT JOIN performance_schema.threads t ON t.THREAD_ID = h.THREAD_ID
      WHERE h.TIMER_START IS NOT NULL AND (${likeAny}) ORDER BY h.TIMER_START LIMIT 10000`,
    objects.map((o) => `%${o.table}%`),
  );
  const events: AccessEvent[] = [];
  for (const r of rows) {
    const at = timeOf(r.timer);
    const hit = objects.find((o) => mentions(r.sql_text, o, o.db) || mentions(r.sql_text, o, ''));
    if (!hit || at < since || at > until) continue;
    const account = r.user ? `${r.user}@${r.host ?? ''}` : 'unknown (its connection has ended: performance_schema keeps no user for it)';
    events.push({ instance, at, account, action: 'query', object: tableKey(hit), source: 'performance_schema', detail: redactStatement(r.sql_text.slice(0, 200))! });
  }
  const [oldest] = await query<{ timer: string | null }[]>(conn, 'SELECT CAST(MIN(TIMER_START) AS CHAR) AS timer FROM performance_schema.events_statements_history_long');
  const from = oldest?.timer ? timeOf(oldest.timer) : undefined;
  return {
    events,
    source: {
      instance, kind: 'performance_schema', shows: 'reads', ...(from !== undefined ? { from, to: now } : {}),
      note: `events_statements_history_long: the last statements only (a ring buffer), from ${from !== undefined ? new Date(from).toISOString() : 'nothing yet'}; a statement's user is known only while its connection lasts`,
    },
  };
}

/** general_log's `user[user] @ host [ip]` → `user@ip-or-host`. */
function accountOfUserHost(s: string): string {
  const user = s.slice(0, Math.max(0, s.indexOf('['))) || s.split('@')[0]!.trim();
  const at = s.indexOf('@');
  const rest = at >= 0 ? s.slice(at + 1).trim() : '';
  const ip = rest.slice(rest.indexOf('[') + 1, rest.lastIndexOf(']')).trim();
  const host = ip || rest.split(' ')[0] || '';
  return `${user}@${host}`;
}

