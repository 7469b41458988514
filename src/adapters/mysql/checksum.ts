/**
 * Checksumming a table on a server, chunk by chunk, and reading the rows of a differing chunk: the
 * queries behind the definitions of core/rowDigest.ts (what a row digest is, how chunks are cut,
 * how two checksums compare).
 */
import { query, type Conn } from './connect';
import {
  chunkQuery,
  fold,
  from,
  hex128,
  keyCompare,
  keysWhere,
  keyText,
  MOD128,
  parseTableName,
  qualifiedName,
  quoteIdent,
  rangeWhere,
  reviveTuple,
  rowDigestSql,
  type ChunkSum,
  type TableChecksum,
  type TableShape,
} from '../../core/rowDigest';

export interface ChecksumOptions {
  /** Rows per chunk when the boundaries are computed here (default 10000). */
  chunkRows?: number;
  /** Boundaries from a previous `checksumTable` on the other server (JSON round-tripped Buffers are accepted). */
  boundaries?: unknown[][];
  /** Deadline for each query (ms, default 60000). */
  timeoutMs?: number;
}

const DEFAULT_CHUNK_ROWS = 10_000;

const DEFAULT_TIMEOUT_MS = 60_000;

/**
 * Columns and primary key of `db.table`, or null when it does not exist. With `uniqueKey`, a table
 * without a primary key is keyed by a unique index whose columns are all NOT NULL (as InnoDB
 * clusters it), the one with the fewest columns: such a key names each row as well as a primary
 * key does. A unique key with a NULLable column does not (it admits any number of NULL rows).
 */
export async function describeTable(conn: Conn, table: string, timeoutMs = DEFAULT_TIMEOUT_MS, opts: { uniqueKey?: boolean } = {}): Promise<TableShape | null> {
  const { db, name } = parseTableName(table);
  const cols = await query<{ c: string; t: string; n: string }[]>(
    conn,
    'SELECT COLUMN_NAME AS c, DATA_TYPE AS t, IS_NULLABLE AS n FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION',
    [db, name],
    timeoutMs,
  );
  if (!cols.length) return null;
  const pk = await query<{ c: string }[]>(
    conn,
    "SELECT COLUMN_NAME AS c FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX",
    [db, name],
    timeoutMs,
  );
  const columns = cols.map((r) => ({ name: String(r.c), dataType: String(r.t).toLowerCase(), nullable: String(r.n) === 'YES' }));
  if (pk.length || !opts.uniqueKey) return { db, name, columns, primaryKey: pk.map((r) => String(r.c)) };
  const unique = await query<{ i: string; c: string }[]>(
    conn,
    'SELECT INDEX_NAME AS i, COLUMN_NAME AS c FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND NON_UNIQUE = 0 ORDER BY INDEX_NAME, SEQ_IN_INDEX',
    [db, name],
    timeoutMs,
  );
  const byIndex = new Map<string, string[]>();
  for (const r of unique) byIndex.set(String(r.i), [...(byIndex.get(String(r.i)) ?? []), String(r.c)]);
  const notNull = (c: string) => columns.find((x) => x.name === c)?.nullable === false;
  const usable = [...byIndex].filter(([, cs]) => cs.every(notNull)).sort((x, y) => x[1].length - y[1].length || (x[0] < y[0] ? -1 : 1));
  const [index, keyColumns] = usable[0] ?? [undefined, []];
  return { db, name, columns, primaryKey: keyColumns, ...(index ? { keyIndex: index } : {}) };
}

/**
 * Checksum `db.table` chunk by chunk; null when the table does not exist. Without `boundaries` they
 * are computed by walking the primary key; with them (from the other server) they are used as given.
 */
export async function checksumTable(conn: Conn, table: string, opts: ChecksumOptions = {}): Promise<TableChecksum | null> {
  const chunkRows = opts.chunkRows ?? DEFAULT_CHUNK_ROWS;
  if (!Number.isInteger(chunkRows) || chunkRows < 1) throw new Error(`chunkRows must be a positive integer, got ${chunkRows}`);
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const shape = await describeTable(conn, table, timeoutMs);
  if (!shape) return null;
  const pk = shape.primaryKey;
  const pkList = pk.join(', ');

  let boundaries: unknown[][];
  let note: string;
  if (!pk.length) {
    boundaries = [];
    note = `${table} has no primary key: checksummed as one chunk over the whole table (a full scan)`;
    if (opts.boundaries?.length) note += `; the ${opts.boundaries.length} given boundaries were ignored`;
  } else if (opts.boundaries) {
    boundaries = opts.boundaries.map(reviveTuple);
    const misfit = boundaries.find((b) => b.length !== pk.length);
    if (misfit) {
      note = `the given boundaries have ${misfit.length} values but the primary key of ${table} (${pkList}) has ${pk.length} columns: boundaries recomputed here`;
      boundaries = await walkPrimaryKey(conn, shape, chunkRows, timeoutMs);
    } else {
      note = `chunked on the primary key (${pkList}) at ${boundaries.length} given boundaries`;
    }
  } else {
    boundaries = await walkPrimaryKey(conn, shape, chunkRows, timeoutMs);
    note = `chunked on the primary key (${pkList}) every ${chunkRows} rows`;
  }

  const chunks: ChunkSum[] = [];
  let total = 0n;
  for (let i = 0; i <= boundaries.length; i++) {
    const lower = i > 0 ? boundaries[i - 1]! : null;
    const upper = i < boundaries.length ? boundaries[i]! : null;
    const sum = await checksumChunk(conn, shape, lower, upper, timeoutMs);
    total = (total + BigInt(`0x${sum.digest}`)) % MOD128;
    chunks.push({ index: i, lower, upper, ...sum });
  }
  const rows = chunks.reduce((s, c) => s + c.rows, 0);
  return {
    table,
    rows,
    checksum: hex128(total),
    primaryKey: pk,
    columns: shape.columns.map((c) => c.name),
    columnTypes: shape.columns.map((c) => c.dataType),
    boundaries,
    chunks,
    note: `${note}: ${chunks.length} chunk${chunks.length === 1 ? '' : 's'}, ${rows} rows`,
  };
}

/** One chunk's row count and digest (`lower < key <= upper`, either bound open), on `conn` as it reads now (its snapshot, in a transaction). */
export async function checksumChunk(conn: Conn, shape: TableShape, lower: unknown[] | null, upper: unknown[] | null, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<{ rows: number; digest: string }> {
  const { sql, params } = chunkQuery(shape, lower, upper);
  const [r] = await query<{ n: unknown; hi: unknown; lo: unknown }[]>(conn, sql, params, timeoutMs);
  return { rows: Number(r!.n), digest: hex128(fold(String(r!.hi), String(r!.lo))) };
}

/**
 * Only the boundaries `checksumTable` would cut `db.table` at (null: no such table; [] without a
 * primary key). With them, two servers can be checksummed at the same time, chunks lining up.
 */
export async function primaryKeyBoundaries(conn: Conn, table: string, opts: Pick<ChecksumOptions, 'chunkRows' | 'timeoutMs'> = {}): Promise<unknown[][] | null> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const shape = await describeTable(conn, table, timeoutMs);
  if (!shape) return null;
  return shape.primaryKey.length ? walkPrimaryKey(conn, shape, opts.chunkRows ?? DEFAULT_CHUNK_ROWS, timeoutMs) : [];
}

/** The rows of one chunk that differ between two servers, by primary key (see `diffChunkRows`). */
export interface RowDiff {
  /** Keys present on A only. */
  onlyA: unknown[][];
  /** Keys present on B only. */
  onlyB: unknown[][];
  /** Keys present on both whose rows differ. */
  changed: unknown[][];
  /** Rows compared on each side. */
  rowsA: number;
  rowsB: number;
}

/**
 * Confirm a differing chunk row by row: each side's rows of the range, as (primary key, row
 * digest) in key order, merged. A table without a primary key has no identity for a row: its
 * rows are compared as multisets of digests, and what differs is reported as the digests (a
 * one-element tuple each). Keys come back as the server returned them (Buffers for binary keys).
 */
export async function diffChunkRows(a: Conn, b: Conn, shape: TableShape, lower: unknown[] | null, upper: unknown[] | null, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<RowDiff> {
  const range = rangeWhere(shape, lower, upper);
  const pk = shape.primaryKey;
  const keyCols = pk.map((c, i) => `${quoteIdent(c)} AS k${i}`);
  const order = pk.length ? pk.map(quoteIdent).join(', ') : 'h';
  const sql = `SELECT ${[...keyCols, `${rowDigestSql(shape)} AS h`].join(', ')} FROM ${from(shape)}${range.sql} ORDER BY ${order}`;
  const read = async (conn: Conn) => {
    const rows = await query<Record<string, unknown>[]>(conn, sql, range.params, timeoutMs);
    return rows.map((r) => ({ key: pk.length ? pk.map((_, i) => r[`k${i}`]) : [String(r.h)], digest: String(r.h) }));
  };
  const [ra, rb] = await Promise.all([read(a), read(b)]);
  const out: RowDiff = { onlyA: [], onlyB: [], changed: [], rowsA: ra.length, rowsB: rb.length };
  if (!pk.length) {
    // Multisets of digests: count each side's, report the surplus of either.
    const counts = new Map<string, number>();
    for (const r of ra) counts.set(r.digest, (counts.get(r.digest) ?? 0) + 1);
    for (const r of rb) counts.set(r.digest, (counts.get(r.digest) ?? 0) - 1);
    for (const [digest, n] of counts) for (let i = 0; i < Math.abs(n); i++) (n > 0 ? out.onlyA : out.onlyB).push([digest]);
    return out;
  }
  // Both lists are in the server's key order; match by the key's canonical text, not by position.
  const mapB = new Map(rb.map((r) => [keyText(r.key), r]));
  const seen = new Set<string>();
  for (const r of ra) {
    const k = keyText(r.key);
    const other = mapB.get(k);
    seen.add(k);
    if (!other) out.onlyA.push(r.key);
    else if (other.digest !== r.digest) out.changed.push(r.key);
  }
  for (const r of rb) if (!seen.has(keyText(r.key))) out.onlyB.push(r.key);
  return out;
}

/**
 * The digest of each row named by its primary key (absent rows: null), read in batches. With
 * `forUpdate` the rows are locked in the caller's transaction (a compare-and-set reads them so).
 */
export async function rowDigests(conn: Conn, shape: TableShape, keys: unknown[][], o: { forUpdate?: boolean; timeoutMs?: number; batch?: number } = {}): Promise<Map<string, string | null>> {
  const pk = shape.primaryKey;
  if (!pk.length) throw new Error(`${shape.db}.${shape.name} has no primary key: its rows cannot be named one by one`);
  const out = new Map<string, string | null>();
  for (const k of keys) out.set(keyText(k), null);
  const batch = o.batch ?? 500;
  for (let i = 0; i < keys.length; i += batch) {
    const part = keys.slice(i, i + batch);
    const where = keysWhere(pk, part.length);
    const sql = `SELECT ${pk.map((c, j) => `${quoteIdent(c)} AS k${j}`).join(', ')}, ${rowDigestSql(shape)} AS h FROM ${qualifiedName(shape)} WHERE ${where}${o.forUpdate ? ' FOR UPDATE' : ''}`;
    const rows = await query<Record<string, unknown>[]>(conn, sql, part.flat(), o.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    for (const r of rows) out.set(keyText(pk.map((_, j) => r[`k${j}`])), String(r.h));
  }
  return out;
}

/**
 * Every column of each row named by its key, as the server stores it (absent rows are absent from
 * the map), read over the binary protocol so that a FLOAT or DOUBLE arrives as its exact value
 * (the text protocol gives a FLOAT 6 digits): the images a repair writes and an audit keeps. Run
 * it in a session with `time_zone = '+00:00'` on both sides, so TIMESTAMP values compare and are
 * written back as the same instant.
 */
export async function rowImages(conn: Conn, shape: TableShape, keys: unknown[][], o: { forUpdate?: boolean; timeoutMs?: number; batch?: number } = {}): Promise<Map<string, Record<string, unknown>>> {
  const pk = shape.primaryKey;
  if (!pk.length) throw new Error(`${shape.db}.${shape.name} has no key: its rows cannot be named one by one`);
  const out = new Map<string, Record<string, unknown>>();
  const batch = o.batch ?? 200;
  for (let i = 0; i < keys.length; i += batch) {
    const part = keys.slice(i, i + batch).map(reviveTuple);
    const sql = `SELECT ${shape.columns.map((c) => quoteIdent(c.name)).join(', ')} FROM ${qualifiedName(shape)} WHERE ${keysWhere(pk, part.length)}${o.forUpdate ? ' FOR UPDATE' : ''}`;
    const [rows] = await conn.execute({ sql, values: part.flat() as never[], timeout: o.timeoutMs ?? DEFAULT_TIMEOUT_MS, typeCast: exactValue } as never);
    await conn.unprepare(sql);
    for (const r of rows as Record<string, unknown>[]) out.set(keyText(pk.map((c) => r[c])), r);
  }
  return out;
}

/** Columns a write may set: every column but generated ones, in table order. */
export async function writableColumns(conn: Conn, shape: Pick<TableShape, 'db' | 'name'>, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<string[]> {
  const rows = await query<{ c: string; g: string }[]>(
    conn,
    'SELECT COLUMN_NAME AS c, IS_GENERATED AS g FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION',
    [shape.db, shape.name],
    timeoutMs,
  );
  return rows.filter((r) => String(r.g) !== 'ALWAYS').map((r) => String(r.c));
}

/**
 * A value as stored, not as mysql2 would interpret it: JSON as its text (parsed and printed again
 * it loses key order, spacing and number precision), a geometry as its bytes.
 */
function exactValue(field: { extendedFormat?: string; type: string; string(): string | null; buffer(): Buffer | null }, next: () => unknown): unknown {
  if (field.extendedFormat === 'json' || field.type === 'JSON') return field.string();
  if (field.type === 'GEOMETRY') return field.buffer();
  return next();
}

/**
 * The next boundary is the chunkRows-th key after the previous one: `ORDER BY pk LIMIT 2 OFFSET
 * chunkRows-1`, a bounded walk of the primary-key index from the previous boundary. Stops when no
 * more than chunkRows rows remain, so the last (open-ended) chunk holds the rest.
 */
async function walkPrimaryKey(conn: Conn, shape: TableShape, chunkRows: number, timeoutMs: number): Promise<unknown[][]> {
  const boundaries: unknown[][] = [];
  let previous: unknown[] | null = null;
  for (;;) {
    const next = await nextBoundary(conn, shape, previous, chunkRows, timeoutMs);
    if (!next) return boundaries;
    boundaries.push(next);
    previous = next;
  }
}

/**
 * One step of the walk: the key `chunkRows` rows after `lower` (the first row when null), or null
 * when no more than `chunkRows` rows remain, so the last (open-ended) chunk holds the rest. The
 * row after the candidate says whether anything lies beyond it (no empty trailing chunk when the
 * row count is a multiple of chunkRows).
 */
export async function nextBoundary(conn: Conn, shape: TableShape, lower: unknown[] | null, chunkRows: number, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<unknown[] | null> {
  if (!Number.isInteger(chunkRows) || chunkRows < 1) throw new Error(`chunkRows must be a positive integer, got ${chunkRows}`);
  const pk = shape.primaryKey;
  const select = pk.map((c, i) => `${quoteIdent(c)} AS k${i}`).join(', ');
  const order = pk.map(quoteIdent).join(', ');
  const after = keyCompare(pk, '>');
  const rows = await query<Record<string, unknown>[]>(
    conn,
    `SELECT ${select} FROM ${from(shape)}${lower ? ` WHERE ${after.sql}` : ''} ORDER BY ${order} LIMIT 2 OFFSET ${chunkRows - 1}`,
    lower ? after.params(reviveTuple(lower)) : [],
    timeoutMs,
  );
  const row = rows[0];
  if (!row || rows.length < 2) return null;
  return pk.map((_, i) => row[`k${i}`]);
}
