/**
 * The independent truth a restore or a repair is judged against: a plain `mariadbd` (no
 * replication, no engine code) fed the same SQL as production minus the mistake, and a table
 * fingerprint computed here, in the test, from the rows themselves: every row in key order, each
 * value in a canonical text (NULL, bytes as hex), SHA-256 over all of it. It shares nothing with
 * the engine's checksum (src/adapters/mysql/checksum.ts), so a flaw there cannot hide a wrong result.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type mysql from 'mysql2/promise';
import type { RunbookConfig } from '../../src/config/load';
import { connect, instanceEndpoint } from '../../src/adapters/mysql/connect';
import { startServer, stopServer, withRoot, type MariadbdInstance } from '../../src/adapters/mariadbd/server';

export interface Fingerprint {
  rows: number;
  digest: string;
}

type Queryable = Pick<mysql.Connection, 'query'>;

/** Rows left out of a fingerprint, judged on each value's text as the server sends it ('30', not 30; NULL is null). */
export type ExceptRow = (row: (string | null)[]) => boolean;

/** Row count and ordered SHA-256 of `db.table` (null: no such table). */
export async function fingerprint(conn: Queryable, table: string, o: { except?: ExceptRow } = {}): Promise<Fingerprint | null> {
  const [db, name] = table.split('.') as [string, string];
  const [cols] = (await conn.query('SELECT COLUMN_NAME AS c FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION', [db, name])) as unknown as [{ c: string }[]];
  if (!cols.length) return null;
  const order = cols.map((c) => `\`${c.c}\``).join(', '); // every column: an order even without a key
  // Each value exactly as the server sent it (its bytes in the text protocol), whatever the
  // connection's own type casting (dates as strings or Date objects, decimals, BIGINTs).
  const [rows] = (await conn.query({
    sql: `SELECT * FROM \`${db}\`.\`${name}\` ORDER BY ${order}`,
    rowsAsArray: true,
    typeCast: (field: { buffer(): Buffer | null }) => field.buffer(),
  } as never)) as unknown as [(Buffer | null)[][]];
  const hash = createHash('sha256');
  let n = 0;
  for (const row of rows) {
    if (o.except?.(row.map((v) => (v === null ? null : v.toString('utf8'))))) continue;
    n++;
    hash.update(row.map((v) => (v === null ? 'N' : `x${v.toString('hex')}`)).join(','));
    hash.update(';');
  }
  return { rows: n, digest: hash.digest('hex') };
}

/** A standalone MariaDB server, started for a test file and destroyed after it. */
export interface ReferenceServer {
  exec(...statements: string[]): Promise<void>;
  fingerprint(table: string, o?: { except?: ExceptRow }): Promise<Fingerprint | null>;
  rows(sql: string): Promise<Record<string, unknown>[]>;
  destroy(): Promise<void>;
}

export async function startReferenceServer(port: number): Promise<ReferenceServer> {
  const dir = mkdtempSync(join(tmpdir(), 'runbook-reference-'));
  const inst: MariadbdInstance = { key: 'reference', host: '127.0.0.1', port, serverId: 4242, initialRole: 'replica', dir };
  await startServer(inst);
  await withRoot(inst, (c) => c.query('SET GLOBAL read_only = OFF'));
  const withConn = <T>(fn: (c: mysql.Connection) => Promise<T>) => withRoot(inst, fn);
  return {
    exec: (...statements) =>
      withConn(async (c) => {
        for (const s of statements) await c.query(s);
      }),
    fingerprint: (table, o) => withConn((c) => fingerprint(c, table, o)),
    rows: (sql) => withConn(async (c) => (await c.query(sql))[0] as Record<string, unknown>[]),
    async destroy() {
      await stopServer(inst).catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The same fingerprint on an instance of `orders`, as the engine's admin user. */
export async function fingerprintOn(config: RunbookConfig, instance: string, table: string, o: { except?: ExceptRow } = {}): Promise<Fingerprint | null> {
  const conn = await connect(instanceEndpoint(config, 'orders', instance));
  try {
    return await fingerprint(conn, table, o);
  } finally {
    conn.destroy();
  }
}
