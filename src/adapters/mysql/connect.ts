/**
 * Every MySQL connection the engine opens goes through here, so that credentials are resolved at
 * the last moment (never carried in workflow inputs) and every remote call is time-bounded.
 */
import mysql from 'mysql2/promise';
import { getInstance, resolveCredential, type RunbookConfig } from '../../config/load';
import type { CredentialRef } from '../../core/configSchema';

export type Conn = mysql.Connection;

export interface Endpoint {
  host: string;
  port: number;
  credentials: CredentialRef;
  database?: string;
}

export interface ConnectOptions {
  /** Bound on connect and on each query (ms). Vitess and orchestrator bound every remote call; so do we. */
  timeoutMs?: number;
  multipleStatements?: boolean;
}

export async function connect(endpoint: Endpoint, opts: ConnectOptions = {}): Promise<Conn> {
  const { user, password } = resolveCredential(endpoint.credentials);
  const conn = await mysql.createConnection({
    host: endpoint.host,
    port: endpoint.port,
    user,
    password,
    database: endpoint.database,
    connectTimeout: opts.timeoutMs ?? 5000,
    multipleStatements: opts.multipleStatements ?? false,
    // GTID positions and counters must survive intact; dates are handled as UTC strings.
    supportBigNumbers: true,
    bigNumberStrings: true,
    dateStrings: true,
    timezone: 'Z',
  });
  conn.on('error', () => {
    /* a dropped connection surfaces on the next query; an unhandled 'error' would crash the worker */
  });
  return conn;
}

/** Run `fn` with a fresh connection that is always closed, even when `fn` throws. */
export async function withConnection<T>(endpoint: Endpoint, fn: (conn: Conn) => Promise<T>, opts: ConnectOptions = {}): Promise<T> {
  const conn = await connect(endpoint, opts);
  try {
    return await fn(conn);
  } finally {
    conn.destroy();
  }
}

export function instanceEndpoint(config: RunbookConfig, cluster: string, instance: string): Endpoint {
  const inst = getInstance(config, cluster, instance);
  return { host: inst.host, port: inst.port, credentials: config.clusters[cluster]!.credentials.admin };
}

export function controlEndpoint(config: RunbookConfig): Endpoint {
  const c = config.control;
  return { host: c.host, port: c.port, credentials: c.credentials, database: c.database };
}

/** A query with its own deadline: mysql2 kills nothing server-side, but the caller is not left hanging. */
export async function query<T = Record<string, unknown>[]>(conn: Conn, sql: string, params: unknown[] = [], timeoutMs = 10_000): Promise<T> {
  const [rows] = await conn.query({ sql, values: params, timeout: timeoutMs });
  return rows as T;
}
