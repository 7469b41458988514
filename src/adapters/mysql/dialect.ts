/**
 * All flavour-specific SQL for MariaDB (10.5+, primarily 10.11) and MySQL (8.0+).
 *
 * Pure code: this module performs no I/O. Callers execute the returned SQL
 * with mysql2 and hand the resulting rows back to the parsers here.
 *
 * Statements that carry `params` use `?` placeholders. Run them with
 * mysql2's `connection.query(sql, params)` (client-side escaping): statements
 * such as CHANGE MASTER TO / CHANGE REPLICATION SOURCE TO do not accept
 * server-side prepared-statement parameters, so `execute()` will not work.
 */

import { fmtValue, formatMariaGtidList, normalizeMysqlGtidSet, parseMariaGtidList, stripWs } from '../../core/gtid';
import type { Flavor, GtidPositions, ReplicaStatus, ServerVariables, Version } from '../../core/types';

export type { Flavor, GtidPositions, ReplicaStatus, ServerVariables, Version };

export interface ChangePrimaryOptions {
  host: string;
  port: number;
  user: string;
  password: string;
  connectRetrySeconds?: number;
  /** MariaDB only (default 'slave_pos'); ignored on MySQL, which always uses auto-positioning. */
  useGtid?: 'slave_pos' | 'current_pos';
}

export interface ParamSql {
  sql: string;
  params: unknown[];
}

export interface GtidWait extends ParamSql {
  interpret(row: Record<string, unknown>): 'reached' | 'timeout';
}

export interface Dialect {
  readonly flavor: Flavor;
  /** Server version the SQL was chosen for. */
  readonly version: Version;
  variablesQuery(): string;
  parseVariables(row: Record<string, unknown>): ServerVariables;
  replicaStatusQuery(): string;
  parseReplicaStatus(rows: Record<string, unknown>[]): ReplicaStatus | null;
  setReadOnly(on: boolean): string[];
  stopReplica(): string;
  stopReplicaIoThread(): string;
  startReplica(): string;
  resetReplicaAll(): string;
  changePrimary(opts: ChangePrimaryOptions): ParamSql;
  waitForGtid(position: string, timeoutSeconds: number): GtidWait;
  setGtidSlavePos(position: string): ParamSql;
  clientSessionsQuery(): string;
  killConnection(id: number): string;
  /** Where the binary log is now: one row with `File` and `Position` (none when it is off). */
  binlogStatusQuery(): string;
  /** Drop this server's binary logs and start a fresh one (and, on MySQL, forget gtid_executed). */
  resetBinlogs(): string;
  /**
   * The same, numbering the fresh binary log `next` (so file names keep growing: an archive of
   * this server's binlogs never meets a name it already holds for other contents).
   */
  resetBinlogsTo(next: number): string;
  /**
   * Start replication (both threads: MariaDB refuses UNTIL while either runs) to stop, both
   * threads, right after `position` is applied: a replica held at a position the source's
   * consistent snapshot was read at.
   */
  startReplicaUntil(position: string): ParamSql;
  /**
   * The SQL thread alone, to stop right after the transaction that ends at `file:position` of its
   * source's binlog (the IO thread keeps running: no reconnect, no binlog scan on the source).
   */
  stopReplicaSqlThread(): string;
  startReplicaSqlThread(): string;
  startReplicaSqlThreadUntil(file: string, position: number): ParamSql;
  /** Where this server's own binlog ends now (what its replicas' UNTIL names). */
  binlogEndQuery(): string;
  parseBinlogEnd(rows: Record<string, unknown>[]): { file: string; position: number } | null;
  /**
   * The GTID position of this session's consistent snapshot (`START TRANSACTION WITH CONSISTENT
   * SNAPSHOT`), from the binlog position InnoDB's snapshot corresponds to: the statement to read
   * that file and offset, and the one that turns them into a GTID position.
   */
  snapshotBinlogQuery(): string;
  parseSnapshotBinlog(rows: Record<string, unknown>[]): { file: string; position: number } | null;
  binlogGtidPosition(file: string, position: number): ParamSql;
  /** The number of statements running right now (a load limit, as pt-table-checksum's --max-load). */
  threadsRunningQuery(): string;
}

// ---------------------------------------------------------------------------
// Version detection
// ---------------------------------------------------------------------------

const MIN_MARIADB: Version = { major: 10, minor: 5, patch: 0 };
const MIN_MYSQL: Version = { major: 8, minor: 0, patch: 0 };
/** Assumed when dialectFor() gets no version: newest syntax. */
const DEFAULT_VERSION: Record<Flavor, Version> = {
  mariadb: { major: 10, minor: 11, patch: 0 },
  mysql: { major: 8, minor: 4, patch: 0 },
};

function cmpVersion(a: Version, b: Version): number {
  return a.major - b.major || a.minor - b.minor || a.patch - b.patch;
}

function atLeast(v: Version, major: number, minor: number, patch: number): boolean {
  return cmpVersion(v, { major, minor, patch }) >= 0;
}

function fmtVersion(v: Version): string {
  return `${v.major}.${v.minor}.${v.patch}`;
}

/**
 * Detect the flavour from `SELECT VERSION(), @@version_comment`.
 * '10.11.19-MariaDB-0+deb12u1' -> mariadb 10.11.19; '8.0.36' -> mysql 8.0.36.
 * The '5.5.5-' prefix of the MariaDB handshake version is tolerated.
 * Throws for unparseable strings, MySQL < 8.0 and MariaDB < 10.5.
 */
export function detectFlavor(
  version: string,
  versionComment?: string,
): { flavor: Flavor } & Version {
  if (typeof version !== 'string') {
    throw new Error(`detectFlavor: version must be a string, got ${String(version)}`);
  }
  const isMaria = /mariadb/i.test(version) || /mariadb/i.test(versionComment ?? '');
  let v = version.trim();
  if (isMaria) v = v.replace(/^5\.5\.5-/, '');
  const m = /^(\d+)\.(\d+)\.(\d+)/.exec(v);
  if (!m) {
    throw new Error(`detectFlavor: cannot parse server version '${version}'`);
  }
  const parsed: Version = { major: Number(m[1]), minor: Number(m[2]), patch: Number(m[3]) };
  const flavor: Flavor = isMaria ? 'mariadb' : 'mysql';
  assertSupported(flavor, parsed, `'${version}'`);
  return { flavor, ...parsed };
}

function assertSupported(flavor: Flavor, v: Version, label: string): void {
  const min = flavor === 'mariadb' ? MIN_MARIADB : MIN_MYSQL;
  if (cmpVersion(v, min) < 0) {
    const name = flavor === 'mariadb' ? 'MariaDB' : 'MySQL';
    throw new Error(
      `Unsupported server version ${label}: ${name} ${fmtVersion(v)} is older than the minimum supported ${name} ${min.major}.${min.minor}`,
    );
  }
}

// ---------------------------------------------------------------------------
// Value coercion (mysql2 hands back numbers, strings, Buffers, bigints, null)
// ---------------------------------------------------------------------------

function isBytes(v: unknown): v is Uint8Array {
  return v instanceof Uint8Array; // Buffer is a Uint8Array subclass
}

/** null/undefined -> null; Buffer -> utf8; number/bigint -> decimal string. */
function toStr(v: unknown, field: string): string | null {
  if (v === null || v === undefined) return null;
  if (typeof v === 'string') return v;
  if (isBytes(v)) return Buffer.from(v).toString('utf8');
  if (typeof v === 'number' || typeof v === 'bigint') return String(v);
  if (typeof v === 'boolean') return v ? '1' : '0';
  throw new Error(`${field}: expected a string, got ${fmtValue(v)}`);
}

/** Integer (safe range) or null for NULL / missing / empty string. */
function toInt(v: unknown, field: string): number | null {
  if (v === null || v === undefined) return null;
  if (typeof v === 'number') {
    if (Number.isSafeInteger(v)) return v;
    throw new Error(`${field}: expected an integer, got ${fmtValue(v)}`);
  }
  if (typeof v === 'bigint') {
    if (v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= BigInt(Number.MIN_SAFE_INTEGER)) return Number(v);
    throw new Error(`${field}: integer out of safe range: ${fmtValue(v)}`);
  }
  if (typeof v === 'string' || isBytes(v)) {
    const s = (typeof v === 'string' ? v : Buffer.from(v).toString('utf8')).trim();
    if (s === '') return null;
    if (/^-?\d+$/.test(s)) {
      const n = Number(s);
      if (Number.isSafeInteger(n)) return n;
    }
    throw new Error(`${field}: expected an integer, got ${fmtValue(v)}`);
  }
  throw new Error(`${field}: expected an integer, got ${fmtValue(v)}`);
}

function requireInt(v: unknown, field: string): number {
  const n = toInt(v, field);
  if (n === null) throw new Error(`${field}: missing value (got ${fmtValue(v)})`);
  return n;
}

const TRUE_WORDS = new Set(['1', 'ON', 'YES', 'TRUE']);
const FALSE_WORDS = new Set(['0', 'OFF', 'NO', 'FALSE']);

/** 0/1, 'ON'/'OFF', 'YES'/'NO', 'TRUE'/'FALSE', booleans, bigints, BIT(1) Buffers. null for NULL. */
function toBool(v: unknown, field: string): boolean | null {
  if (v === null || v === undefined) return null;
  if (typeof v === 'boolean') return v;
  if (typeof v === 'number' || typeof v === 'bigint') {
    if (v == 0) return false; // eslint-disable-line eqeqeq
    if (v == 1) return true; // eslint-disable-line eqeqeq
    throw new Error(`${field}: expected a boolean, got ${fmtValue(v)}`);
  }
  if (isBytes(v) && v.length === 1 && (v[0] === 0 || v[0] === 1)) return v[0] === 1; // BIT(1)
  if (typeof v === 'string' || isBytes(v)) {
    const s = (typeof v === 'string' ? v : Buffer.from(v).toString('utf8')).trim().toUpperCase();
    if (TRUE_WORDS.has(s)) return true;
    if (FALSE_WORDS.has(s)) return false;
  }
  throw new Error(`${field}: expected a boolean, got ${fmtValue(v)}`);
}

function requireBool(v: unknown, field: string): boolean {
  const b = toBool(v, field);
  if (b === null) throw new Error(`${field}: missing value (got ${fmtValue(v)})`);
  return b;
}

/** MySQL @@gtid_mode: only 'ON' counts as strict GTID operation (OFF, OFF_PERMISSIVE, ON_PERMISSIVE do not). */
function gtidModeOn(v: unknown, field: string): boolean {
  const s = toStr(v, field);
  if (s === null) throw new Error(`${field}: missing value`);
  const u = s.trim().toUpperCase();
  if (u === 'ON' || u === '1') return true;
  if (u === 'OFF' || u === '0' || u === 'OFF_PERMISSIVE' || u === 'ON_PERMISSIVE') return false;
  throw new Error(`${field}: unexpected gtid_mode ${fmtValue(v)}`);
}

function gtidStr(v: unknown, field: string): string | undefined {
  const s = toStr(v, field);
  return s === null ? undefined : stripWs(s);
}

/** Case-insensitive column lookup with fallbacks (first name present wins). */
function pick(row: Record<string, unknown>, ...names: string[]): unknown {
  for (const n of names) {
    if (Object.prototype.hasOwnProperty.call(row, n)) return row[n];
  }
  const lower = new Map<string, unknown>();
  for (const [k, val] of Object.entries(row)) lower.set(k.toLowerCase(), val);
  for (const n of names) {
    const l = n.toLowerCase();
    if (lower.has(l)) return lower.get(l);
  }
  return undefined;
}

function hasAny(row: Record<string, unknown>, ...names: string[]): boolean {
  const keys = new Set(Object.keys(row).map((k) => k.toLowerCase()));
  return names.some((n) => keys.has(n.toLowerCase()));
}

// ---------------------------------------------------------------------------
// Validation of values that end up inlined in SQL
// ---------------------------------------------------------------------------

function validPort(port: unknown): number {
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new Error(`Invalid port ${fmtValue(port)}: must be an integer 1-65535`);
  }
  return port;
}

function validConnectRetry(s: unknown): number {
  if (typeof s !== 'number' || !Number.isInteger(s) || s < 1 || s > 31536000) {
    throw new Error(`Invalid connectRetrySeconds ${fmtValue(s)}: must be an integer 1-31536000`);
  }
  return s;
}

function validTimeout(t: unknown): number {
  if (typeof t !== 'number' || !Number.isFinite(t) || t <= 0) {
    throw new Error(`Invalid timeoutSeconds ${fmtValue(t)}: must be a finite number > 0`);
  }
  return t;
}

function validNonEmpty(v: unknown, what: string): string {
  if (typeof v !== 'string' || v.trim() === '') {
    throw new Error(`Invalid ${what}: must be a non-empty string`);
  }
  return v;
}

// ---------------------------------------------------------------------------
// Shared parsing / SQL
// ---------------------------------------------------------------------------

const CLIENT_SESSIONS_SQL =
  'SELECT ID AS id, USER AS user, HOST AS host, COMMAND AS command, DB AS db, TIME AS time ' +
  'FROM information_schema.PROCESSLIST ' +
  "WHERE COMMAND NOT IN ('Binlog Dump', 'Binlog Dump GTID', 'Daemon', 'Slave_IO', 'Slave_SQL', 'Slave_worker') " +
  "AND USER NOT IN ('system user', 'event_scheduler') " +
  'AND ID <> CONNECTION_ID() ' +
  'ORDER BY ID';

const THREADS_RUNNING_SQL = "SHOW GLOBAL STATUS LIKE 'Threads_running'";

function parseBinlogEnd(rows: Record<string, unknown>[]): { file: string; position: number } | null {
  const row = rows[0];
  if (!row) return null;
  const file = toStr(pick(row, 'File'), 'File');
  const position = toInt(pick(row, 'Position'), 'Position');
  return file && position !== null ? { file, position } : null;
}

/** A binary log file number for RESET … TO: the servers take 1 to 2^31-1. */
function binlogNumber(n: number): number {
  if (!Number.isSafeInteger(n) || n < 1 || n > 2147483647) throw new Error(`Invalid binary log number ${fmtValue(n)}: must be an integer from 1 to 2147483647`);
  return n;
}

function killConnectionSql(id: number): string {
  if (typeof id !== 'number' || !Number.isSafeInteger(id) || id <= 0) {
    throw new Error(`Invalid connection id ${fmtValue(id)}: must be a positive integer`);
  }
  return `KILL CONNECTION ${id}`;
}

function parseIoRunning(v: unknown): ReplicaStatus['ioRunning'] {
  const s = (toStr(v, 'IO_Running') ?? '').trim();
  if (s === 'Yes' || s === 'No' || s === 'Connecting') return s;
  if (s === 'Preparing') return 'Connecting'; // MariaDB: IO thread starting up
  throw new Error(`IO_Running: unexpected value ${fmtValue(v)}`);
}

function parseSqlRunning(v: unknown): ReplicaStatus['sqlRunning'] {
  const s = (toStr(v, 'SQL_Running') ?? '').trim();
  if (s === 'Yes' || s === 'No') return s;
  throw new Error(`SQL_Running: unexpected value ${fmtValue(v)}`);
}

function chooseStatusRow(rows: Record<string, unknown>[]): Record<string, unknown> | null {
  if (!Array.isArray(rows) || rows.length === 0) return null;
  if (rows.length === 1) return rows[0]!;
  // Multi-source/multi-channel: only the default channel is managed here.
  const dflt = rows.filter((r) => {
    const ch = pick(r, 'Channel_Name', 'Connection_name');
    return ch === undefined || ch === null || toStr(ch, 'Channel_Name') === '';
  });
  if (dflt.length === 1) return dflt[0]!;
  throw new Error(
    `SHOW REPLICA STATUS returned ${rows.length} rows and no single default channel; multi-source replication is not supported`,
  );
}

function parseReplicaStatusRow(rows: Record<string, unknown>[]): ReplicaStatus | null {
  const row = chooseStatusRow(rows);
  if (!row) return null;
  const host = toStr(pick(row, 'Source_Host', 'Master_Host'), 'Source_Host');

  let usingGtid: string | null = null;
  if (hasAny(row, 'Using_Gtid')) {
    usingGtid = toStr(pick(row, 'Using_Gtid'), 'Using_Gtid');
  } else if (hasAny(row, 'Auto_Position')) {
    const ap = toBool(pick(row, 'Auto_Position'), 'Auto_Position');
    usingGtid = ap === null ? null : ap ? 'Auto_Position' : 'No';
  }

  const received = pick(row, 'Gtid_IO_Pos', 'Retrieved_Gtid_Set');
  const recvStr = toStr(received, 'Retrieved_Gtid_Set');

  return {
    sourceHost: host === null || host.trim() === '' ? null : host,
    sourcePort: toInt(pick(row, 'Source_Port', 'Master_Port'), 'Source_Port'),
    ioRunning: parseIoRunning(pick(row, 'Replica_IO_Running', 'Slave_IO_Running')),
    sqlRunning: parseSqlRunning(pick(row, 'Replica_SQL_Running', 'Slave_SQL_Running')),
    lagSeconds: toInt(pick(row, 'Seconds_Behind_Source', 'Seconds_Behind_Master'), 'Seconds_Behind_Source'),
    lastIoErrno: toInt(pick(row, 'Last_IO_Errno'), 'Last_IO_Errno') ?? 0,
    lastIoError: toStr(pick(row, 'Last_IO_Error'), 'Last_IO_Error') ?? '',
    lastSqlErrno: toInt(pick(row, 'Last_SQL_Errno'), 'Last_SQL_Errno') ?? 0,
    lastSqlError: toStr(pick(row, 'Last_SQL_Error'), 'Last_SQL_Error') ?? '',
    usingGtid,
    receivedGtid: recvStr === null ? null : stripWs(recvStr),
    sqlState: toStr(pick(row, 'Replica_SQL_Running_State', 'Slave_SQL_Running_State'), 'SQL_Running_State'),
  };
}

function parseCommonVariables(row: Record<string, unknown>): Omit<ServerVariables, 'superReadOnly' | 'gtidStrictMode' | 'gtid'> {
  const vars: Omit<ServerVariables, 'superReadOnly' | 'gtidStrictMode' | 'gtid'> = {
    serverId: requireInt(pick(row, 'server_id'), 'server_id'),
    readOnly: requireBool(pick(row, 'read_only'), 'read_only'),
    binlogEnabled: requireBool(pick(row, 'log_bin'), 'log_bin'),
    logReplicaUpdates: requireBool(pick(row, 'log_slave_updates', 'log_replica_updates'), 'log_slave_updates'),
    binlogFormat: toStr(pick(row, 'binlog_format'), 'binlog_format'),
  };
  const hostname = toStr(pick(row, 'hostname'), 'hostname');
  if (hostname !== null) vars.hostname = hostname;
  const port = toInt(pick(row, 'port'), 'port');
  if (port !== null) vars.port = port;
  return vars;
}

// ---------------------------------------------------------------------------
// MariaDB
// ---------------------------------------------------------------------------

function mariadbDialect(version: Version): Dialect {
  return {
    flavor: 'mariadb',
    version,
    variablesQuery: () =>
      'SELECT @@global.server_id AS server_id, @@global.read_only AS read_only, NULL AS super_read_only, ' +
      '@@global.log_bin AS log_bin, @@global.log_slave_updates AS log_slave_updates, ' +
      '@@global.binlog_format AS binlog_format, @@global.gtid_strict_mode AS gtid_strict_mode, ' +
      '@@global.gtid_binlog_pos AS gtid_binlog_pos, @@global.gtid_current_pos AS gtid_current_pos, ' +
      '@@global.gtid_slave_pos AS gtid_slave_pos, NULL AS gtid_executed, ' +
      '@@global.hostname AS hostname, @@global.port AS port',
    parseVariables(row) {
      const gtid: GtidPositions = {};
      const binlogPos = gtidStr(pick(row, 'gtid_binlog_pos'), 'gtid_binlog_pos');
      const currentPos = gtidStr(pick(row, 'gtid_current_pos'), 'gtid_current_pos');
      const slavePos = gtidStr(pick(row, 'gtid_slave_pos'), 'gtid_slave_pos');
      if (binlogPos !== undefined) gtid.binlogPos = binlogPos;
      if (currentPos !== undefined) gtid.currentPos = currentPos;
      if (slavePos !== undefined) gtid.slavePos = slavePos;
      return {
        ...parseCommonVariables(row),
        superReadOnly: null,
        gtidStrictMode: requireBool(pick(row, 'gtid_strict_mode'), 'gtid_strict_mode'),
        gtid,
      };
    },
    replicaStatusQuery: () => 'SHOW REPLICA STATUS',
    parseReplicaStatus: parseReplicaStatusRow,
    setReadOnly: (on) => [`SET GLOBAL read_only = ${on ? 'ON' : 'OFF'}`],
    stopReplica: () => 'STOP SLAVE',
    stopReplicaIoThread: () => 'STOP SLAVE IO_THREAD',
    startReplica: () => 'START SLAVE',
    resetReplicaAll: () => 'RESET SLAVE ALL',
    changePrimary(opts) {
      const host = validNonEmpty(opts.host, 'host');
      const user = validNonEmpty(opts.user, 'user');
      if (typeof opts.password !== 'string') throw new Error('Invalid password: must be a string');
      const port = validPort(opts.port);
      const useGtid = opts.useGtid ?? 'slave_pos';
      if (useGtid !== 'slave_pos' && useGtid !== 'current_pos') {
        throw new Error(`Invalid useGtid ${fmtValue(useGtid)}: must be 'slave_pos' or 'current_pos'`);
      }
      const parts = ['MASTER_HOST = ?', `MASTER_PORT = ${port}`, 'MASTER_USER = ?', 'MASTER_PASSWORD = ?'];
      if (opts.connectRetrySeconds !== undefined) {
        parts.push(`MASTER_CONNECT_RETRY = ${validConnectRetry(opts.connectRetrySeconds)}`);
      }
      parts.push(`MASTER_USE_GTID = ${useGtid}`);
      return { sql: `CHANGE MASTER TO ${parts.join(', ')}`, params: [host, user, opts.password] };
    },
    waitForGtid(position, timeoutSeconds) {
      const pos = formatMariaGtidList(parseMariaGtidList(position));
      const timeout = validTimeout(timeoutSeconds);
      return {
        sql: 'SELECT MASTER_GTID_WAIT(?, ?) AS result',
        params: [pos, timeout],
        interpret(row) {
          const r = toInt(pick(row, 'result'), 'MASTER_GTID_WAIT result');
          if (r === 0) return 'reached';
          if (r === -1) return 'timeout';
          throw new Error(`MASTER_GTID_WAIT returned unexpected result ${fmtValue(pick(row, 'result'))}`);
        },
      };
    },
    setGtidSlavePos(position) {
      const pos = formatMariaGtidList(parseMariaGtidList(position));
      return { sql: 'SET GLOBAL gtid_slave_pos = ?', params: [pos] };
    },
    clientSessionsQuery: () => CLIENT_SESSIONS_SQL,
    killConnection: killConnectionSql,
    binlogStatusQuery: () => 'SHOW MASTER STATUS',
    resetBinlogs: () => 'RESET MASTER',
    resetBinlogsTo: (next) => `RESET MASTER TO ${binlogNumber(next)}`,
    startReplicaUntil(position) {
      return { sql: 'START SLAVE UNTIL master_gtid_pos = ?', params: [formatMariaGtidList(parseMariaGtidList(position))] };
    },
    stopReplicaSqlThread: () => 'STOP SLAVE SQL_THREAD',
    startReplicaSqlThread: () => 'START SLAVE SQL_THREAD',
    startReplicaSqlThreadUntil(file, position) {
      return { sql: `START SLAVE SQL_THREAD UNTIL MASTER_LOG_FILE = ?, MASTER_LOG_POS = ${requireInt(position, 'binlog position')}`, params: [validNonEmpty(file, 'binlog file')] };
    },
    binlogEndQuery: () => 'SHOW MASTER STATUS',
    parseBinlogEnd: parseBinlogEnd,
    snapshotBinlogQuery: () => "SHOW SESSION STATUS LIKE 'binlog_snapshot_%'",
    parseSnapshotBinlog(rows) {
      const value = (re: RegExp) => pick(rows.find((r) => re.test(String(pick(r, 'Variable_name') ?? ''))) ?? {}, 'Value');
      const file = toStr(value(/file/i), 'binlog_snapshot_file');
      const position = toInt(value(/position/i), 'binlog_snapshot_position');
      return file && position !== null ? { file, position } : null;
    },
    binlogGtidPosition(file, position) {
      return { sql: 'SELECT BINLOG_GTID_POS(?, ?) AS p', params: [validNonEmpty(file, 'binlog file'), requireInt(position, 'binlog position')] };
    },
    threadsRunningQuery: () => THREADS_RUNNING_SQL,
  };
}

// ---------------------------------------------------------------------------
// MySQL
// ---------------------------------------------------------------------------

function mysqlDialect(version: Version): Dialect {
  const replicaKw = atLeast(version, 8, 0, 22); // STOP/START/RESET/SHOW REPLICA
  const changeSource = atLeast(version, 8, 0, 23); // CHANGE REPLICATION SOURCE TO
  const logReplicaUpdates = atLeast(version, 8, 0, 26); // @@log_replica_updates
  const REPLICA = replicaKw ? 'REPLICA' : 'SLAVE';
  return {
    flavor: 'mysql',
    version,
    variablesQuery: () =>
      'SELECT @@global.server_id AS server_id, @@global.read_only AS read_only, ' +
      '@@global.super_read_only AS super_read_only, @@global.log_bin AS log_bin, ' +
      `@@global.${logReplicaUpdates ? 'log_replica_updates' : 'log_slave_updates'} AS log_slave_updates, ` +
      '@@global.binlog_format AS binlog_format, @@global.gtid_mode AS gtid_strict_mode, ' +
      'NULL AS gtid_binlog_pos, NULL AS gtid_current_pos, NULL AS gtid_slave_pos, ' +
      '@@global.gtid_executed AS gtid_executed, @@global.hostname AS hostname, @@global.port AS port',
    parseVariables(row) {
      const gtid: GtidPositions = {};
      const executed = gtidStr(pick(row, 'gtid_executed'), 'gtid_executed');
      if (executed !== undefined) gtid.executed = executed;
      return {
        ...parseCommonVariables(row),
        superReadOnly: requireBool(pick(row, 'super_read_only'), 'super_read_only'),
        gtidStrictMode: gtidModeOn(pick(row, 'gtid_strict_mode', 'gtid_mode'), 'gtid_mode'),
        gtid,
      };
    },
    replicaStatusQuery: () => `SHOW ${REPLICA} STATUS`,
    parseReplicaStatus: parseReplicaStatusRow,
    setReadOnly: (on) =>
      on
        ? ['SET GLOBAL super_read_only = ON'] // implies read_only = ON
        : ['SET GLOBAL super_read_only = OFF', 'SET GLOBAL read_only = OFF'],
    stopReplica: () => `STOP ${REPLICA}`,
    stopReplicaIoThread: () => `STOP ${REPLICA} IO_THREAD`,
    startReplica: () => `START ${REPLICA}`,
    resetReplicaAll: () => `RESET ${REPLICA} ALL`,
    changePrimary(opts) {
      const host = validNonEmpty(opts.host, 'host');
      const user = validNonEmpty(opts.user, 'user');
      if (typeof opts.password !== 'string') throw new Error('Invalid password: must be a string');
      const port = validPort(opts.port);
      const P = changeSource ? 'SOURCE' : 'MASTER';
      const parts = [`${P}_HOST = ?`, `${P}_PORT = ${port}`, `${P}_USER = ?`, `${P}_PASSWORD = ?`];
      if (opts.connectRetrySeconds !== undefined) {
        parts.push(`${P}_CONNECT_RETRY = ${validConnectRetry(opts.connectRetrySeconds)}`);
      }
      parts.push(`${P}_AUTO_POSITION = 1`);
      const head = changeSource ? 'CHANGE REPLICATION SOURCE TO' : 'CHANGE MASTER TO';
      return { sql: `${head} ${parts.join(', ')}`, params: [host, user, opts.password] };
    },
    waitForGtid(position, timeoutSeconds) {
      const set = normalizeMysqlGtidSet(position);
      const timeout = validTimeout(timeoutSeconds);
      return {
        sql: 'SELECT WAIT_FOR_EXECUTED_GTID_SET(?, ?) AS result',
        params: [set, timeout],
        interpret(row) {
          const r = toInt(pick(row, 'result'), 'WAIT_FOR_EXECUTED_GTID_SET result');
          if (r === 0) return 'reached';
          if (r === 1) return 'timeout';
          throw new Error(`WAIT_FOR_EXECUTED_GTID_SET returned unexpected result ${fmtValue(pick(row, 'result'))}`);
        },
      };
    },
    setGtidSlavePos() {
      throw new Error(
        'setGtidSlavePos is not applicable to MySQL: MySQL replicas use auto-positioning ' +
          '(SOURCE_AUTO_POSITION=1) from gtid_executed; there is no gtid_slave_pos to set',
      );
    },
    clientSessionsQuery: () => CLIENT_SESSIONS_SQL,
    killConnection: killConnectionSql,
    // 8.4 removed SHOW MASTER STATUS; 8.2 added its replacement.
    binlogStatusQuery: () => (atLeast(version, 8, 2, 0) ? 'SHOW BINARY LOG STATUS' : 'SHOW MASTER STATUS'),
    resetBinlogs: () => (atLeast(version, 8, 2, 0) ? 'RESET BINARY LOGS AND GTIDS' : 'RESET MASTER'),
    resetBinlogsTo: (next) => `${atLeast(version, 8, 2, 0) ? 'RESET BINARY LOGS AND GTIDS' : 'RESET MASTER'} TO ${binlogNumber(next)}`,
    startReplicaUntil() {
      throw new Error('startReplicaUntil is MariaDB only: MySQL has no UNTIL for a GTID position to stop exactly at (SQL_AFTER_GTIDS names transactions, not a position)');
    },
    stopReplicaSqlThread: () => `STOP ${REPLICA} SQL_THREAD`,
    startReplicaSqlThread: () => `START ${REPLICA} SQL_THREAD`,
    startReplicaSqlThreadUntil(file, position) {
      const P = changeSource ? 'SOURCE' : 'MASTER';
      return { sql: `START ${REPLICA} SQL_THREAD UNTIL ${P}_LOG_FILE = ?, ${P}_LOG_POS = ${requireInt(position, 'binlog position')}`, params: [validNonEmpty(file, 'binlog file')] };
    },
    binlogEndQuery: () => (atLeast(version, 8, 2, 0) ? 'SHOW BINARY LOG STATUS' : 'SHOW MASTER STATUS'),
    parseBinlogEnd: parseBinlogEnd,
    snapshotBinlogQuery() {
      throw new Error("a consistent snapshot's binlog position is MariaDB only (binlog_snapshot_file/position)");
    },
    parseSnapshotBinlog() {
      throw new Error("a consistent snapshot's binlog position is MariaDB only (binlog_snapshot_file/position)");
    },
    binlogGtidPosition() {
      throw new Error('BINLOG_GTID_POS is MariaDB only');
    },
    threadsRunningQuery: () => THREADS_RUNNING_SQL,
  };
}

/**
 * Dialect for a flavour/version. Without a version the newest syntax is
 * assumed (MariaDB 10.11, MySQL 8.4). Throws for unsupported versions.
 */
export function dialectFor(flavor: Flavor, version?: Version): Dialect {
  if (flavor !== 'mariadb' && flavor !== 'mysql') {
    throw new Error(`Unknown flavor ${fmtValue(flavor)}`);
  }
  const v = version ?? DEFAULT_VERSION[flavor];
  for (const k of ['major', 'minor', 'patch'] as const) {
    if (!Number.isInteger(v[k]) || v[k] < 0) {
      throw new Error(`Invalid version ${fmtValue(v[k])} for ${k}`);
    }
  }
  const frozen: Version = Object.freeze({ major: v.major, minor: v.minor, patch: v.patch });
  assertSupported(flavor, frozen, `for ${flavor}`);
  return Object.freeze(flavor === 'mariadb' ? mariadbDialect(frozen) : mysqlDialect(frozen));
}
