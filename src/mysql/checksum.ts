/**
 * Comparing a table on two servers (a point-in-time recovery instance against production, a
 * replica against its primary), in the manner of pt-table-checksum but with a digest that cannot
 * cancel: the table is cut into chunks by primary-key range, each chunk is summarised by its row
 * count and a 128-bit sum of its rows' SHA-256 digests, and a chunk that differs is confirmed row
 * by row (`diffChunkRows`).
 *
 * Why not `BIT_XOR(CRC32(row))` (what this module used to do, and pt-table-checksum's default):
 * CRC32 is affine over XOR, so one identical change applied to an even number of same-shaped rows
 * leaves the XOR unchanged (seen: 20,000 rows with `flag` 1 against 0 "equal"), and two identical
 * rows of a table without a key cancel each other. A SHA-256 per row is not linear in anything,
 * and an integer sum (mod 2^128) counts duplicates instead of cancelling them.
 *
 * The one row digest (`rowDigestSql`): `SHA2(CONCAT_WS('#', v1, …, vn, CONCAT(ISNULL(nullable
 * columns)), CONCAT_WS(',', LENGTH(string values))), 256)`:
 *  - a string-like value (char, text, binary, blob, enum, set, json, bit, spatial: anything not
 *    known to be a number or a date) is the column's bytes (`CAST(c AS BINARY)`), so the digest is
 *    binary-safe and free of collation (a case-only change is a change); TIMESTAMP columns use
 *    `UNIX_TIMESTAMP(c)`, their stored instant, so the two servers' session time zones do not
 *    matter; FLOAT columns are `CAST(c AS DOUBLE)`, because a FLOAT's own text has 6 significant
 *    digits (3.1415927 and 3.1415925 both print `3.14159`), a DOUBLE's is exact; numbers and other
 *    dates are their own text;
 *  - `CONCAT_WS` skips NULLs, and the ISNULL bitmap of the nullable columns tells a NULL from the
 *    string 'NULL', from '' and from 0 (a NOT NULL column needs no bit);
 *  - the byte lengths of the string-like values make the encoding unambiguous when they contain
 *    the separator (('a#', 'b') and ('a', '#b') would otherwise encode alike); the text of a number
 *    or a date never holds a '#', so it needs none.
 * Columns are taken in information_schema order (ORDINAL_POSITION).
 *
 * Folding: the first 128 bits of each row's digest, as two 64-bit halves, are summed by the server
 * (`SUM` of BIGINT UNSIGNED is an exact DECIMAL) and reduced mod 2^128 here. A chunk's digest is
 * that sum; the table's is the sum of its chunks', so it does not depend on the chunking.
 *
 * Chunks: the boundaries are primary-key tuples found by walking the primary key on the FIRST
 * server; chunk i covers `boundaries[i-1] < pk <= boundaries[i]` (the first chunk has no lower
 * bound, the last no upper bound, so rows beyond either end are still counted). Checksum the second
 * server with `{ boundaries: first.boundaries }` and the chunks line up exactly:
 *
 *     const a = await checksumTable(prod, 'shop.orders');
 *     const b = await checksumTable(recovery, 'shop.orders', { boundaries: a?.boundaries });
 *     const d = diffChecksums(a, b, { a: 'production', b: 'recovery' });
 *
 * Each chunk is one range scan on the primary key (FORCE INDEX (PRIMARY)); a composite key's bounds
 * are the lexicographic (row-constructor) order written out as OR-ed prefixes, because MariaDB does
 * no range access for `(a, b) > (?, ?)` itself. A table without a primary key is one chunk over the
 * whole table (a full scan; the result's `note` says so).
 *
 * Values are always bound parameters; identifiers are backtick-quoted with embedded backticks doubled.
 */
import { query, type Conn } from './connect';

export interface ChunkSum {
  index: number;
  /** Exclusive lower bound (primary-key tuple), null for the first chunk. */
  lower: unknown[] | null;
  /** Inclusive upper bound (primary-key tuple), null for the last chunk. */
  upper: unknown[] | null;
  rows: number;
  /** Sum mod 2^128 of the rows' digests, 32 hex digits. */
  digest: string;
}

export interface TableChecksum {
  /** `db.table` as given. */
  table: string;
  rows: number;
  /** Sum mod 2^128 of every row's digest, 32 hex digits; independent of the chunking. */
  checksum: string;
  /** Primary-key columns in index order; empty when the table has none. */
  primaryKey: string[];
  /** Every column digested, in information_schema order. */
  columns: string[];
  /** Their data types, in the same order (two sides with other types are not comparable). */
  columnTypes: string[];
  /** The primary-key tuples the table was cut at: pass them as `boundaries` to checksum the other server. */
  boundaries: unknown[][];
  chunks: ChunkSum[];
  /** How the table was chunked, in words (and why it is one chunk when it has no primary key). */
  note: string;
}

export interface ChecksumOptions {
  /** Rows per chunk when the boundaries are computed here (default 10000). */
  chunkRows?: number;
  /** Boundaries from a previous `checksumTable` on the other server (JSON round-tripped Buffers are accepted). */
  boundaries?: unknown[][];
  /** Deadline for each query (ms, default 60000). */
  timeoutMs?: number;
}

export interface ChunkDiff {
  index: number;
  lower: unknown[] | null;
  upper: unknown[] | null;
  rowsA: number;
  rowsB: number;
  digestA: string;
  digestB: string;
}

export interface ChecksumDiff {
  equal: boolean;
  differingChunks: ChunkDiff[];
  note: string;
}

/** What the two sides of a comparison are called in notes: `production`, `recovery`, an instance name. */
export interface SideNames {
  a: string;
  b: string;
}

/** What the checksum needs to know about a table. */
export interface TableShape {
  db: string;
  name: string;
  columns: { name: string; dataType: string; nullable: boolean }[];
  /** The columns that name a row: the primary key's, or (see `describeTable`) a unique NOT NULL key's. */
  primaryKey: string[];
  /** The index those columns are, when it is not the primary key (a unique index of NOT NULL columns). */
  keyIndex?: string;
}

/** Types whose value as text is digits, signs, points, exponents, dashes, colons and spaces: never a '#'. */
const TEXT_WITHOUT_SEPARATOR = new Set(['tinyint', 'smallint', 'mediumint', 'int', 'bigint', 'decimal', 'float', 'double', 'year', 'date', 'time', 'datetime']);

const DEFAULT_CHUNK_ROWS = 10_000;
const DEFAULT_TIMEOUT_MS = 60_000;
const MOD128 = 1n << 128n;
const DEFAULT_SIDES: SideNames = { a: 'A', b: 'B' };

/** Split and check `db.table`; throws a one-line error on anything else. */
export function parseTableName(table: string): { db: string; name: string } {
  const parts = typeof table === 'string' ? table.split('.') : [];
  const valid = (s: string) => s.length > 0 && s.length <= 64 && !s.includes('\0') && !/\s$/.test(s);
  if (parts.length !== 2 || !valid(parts[0]!) || !valid(parts[1]!)) {
    throw new Error(`invalid table name ${JSON.stringify(table)}: expected "db.table" (two names of 1 to 64 characters, without a trailing space, joined by one dot)`);
  }
  return { db: parts[0]!, name: parts[1]! };
}

export function quoteIdent(name: string): string {
  return '`' + name.replace(/`/g, '``') + '`';
}

/** `db`.`table`, quoted. */
export function qualifiedName(shape: Pick<TableShape, 'db' | 'name'>): string {
  return `${quoteIdent(shape.db)}.${quoteIdent(shape.name)}`;
}

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
 * The one row digest: an SQL expression giving the SHA-256 (64 hex digits) of the row's canonical,
 * unambiguous encoding (see the top of this file). `alias` qualifies the columns (`t.` in a join).
 */
export function rowDigestSql(shape: Pick<TableShape, 'columns'>, alias = ''): string {
  const col = (c: TableShape['columns'][number]) => `${alias ? `${alias}.` : ''}${quoteIdent(c.name)}`;
  const value = (c: TableShape['columns'][number]) => canonicalValueSql(c, col(c));
  const parts = shape.columns.map(value);
  const nulls = shape.columns.filter((c) => c.nullable).map((c) => `ISNULL(${col(c)})`);
  const lengths = shape.columns.filter((c) => !TEXT_WITHOUT_SEPARATOR.has(c.dataType) && c.dataType !== 'timestamp').map((c) => `LENGTH(${value(c)})`);
  if (nulls.length) parts.push(`CONCAT(${nulls.join(', ')})`);
  if (lengths.length) parts.push(`CONCAT_WS(',', ${lengths.join(', ')})`);
  return `SHA2(CONCAT_WS('#', ${parts.join(', ')}), 256)`;
}

/** A column's value as the digest encodes it (`expr` is the column, qualified or not). */
function canonicalValueSql(c: TableShape['columns'][number], expr: string): string {
  if (c.dataType === 'timestamp') return `UNIX_TIMESTAMP(${expr})`;
  if (c.dataType === 'float') return `CAST(${expr} AS DOUBLE)`;
  return TEXT_WITHOUT_SEPARATOR.has(c.dataType) ? expr : `CAST(${expr} AS BINARY)`;
}

/** The one statement that sums a chunk: a range scan on the primary key between the bounds. */
export function chunkQuery(shape: TableShape, lower: unknown[] | null, upper: unknown[] | null): { sql: string; params: unknown[] } {
  const range = rangeWhere(shape, lower, upper);
  // The derived table is merged by the optimizer (one range scan); it computes each digest once.
  const half = (from: number) => `CAST(CONV(SUBSTRING(h, ${from}, 16), 16, 10) AS UNSIGNED)`;
  const sql =
    `SELECT COUNT(*) AS n, COALESCE(SUM(${half(1)}), 0) AS hi, COALESCE(SUM(${half(17)}), 0) AS lo ` +
    `FROM (SELECT ${rowDigestSql(shape)} AS h FROM ${from(shape)}${range.sql}) AS d`;
  return { sql, params: range.params };
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

/** Compare the checksums of one table on two servers (A, then B checksummed with A's boundaries). */
export function diffChecksums(a: TableChecksum | null, b: TableChecksum | null, sides: SideNames = DEFAULT_SIDES): ChecksumDiff {
  if (!a && !b) return { equal: true, differingChunks: [], note: 'the table exists on neither side' };
  if (!a || !b) {
    const present = (a ?? b)!;
    const [missing, there] = a ? [sides.b, sides.a] : [sides.a, sides.b];
    return { equal: false, differingChunks: [], note: `${present.table} is missing on ${missing} (present on ${there} with ${present.rows} rows)` };
  }
  const name = a.table === b.table ? a.table : `${a.table} (${sides.a}) / ${b.table} (${sides.b})`;
  const remarks: string[] = [];
  const shapeOf = (t: TableChecksum) => t.columns.map((c, i) => `${c} ${t.columnTypes?.[i] ?? '?'}`).join(', ');
  if (shapeOf(a) !== shapeOf(b)) remarks.push(`columns differ: ${sides.a} (${shapeOf(a)}), ${sides.b} (${shapeOf(b)})`);
  if (a.primaryKey.join(',') !== b.primaryKey.join(',')) {
    remarks.push(`primary keys differ: ${sides.a} (${a.primaryKey.join(', ') || 'none'}), ${sides.b} (${b.primaryKey.join(', ') || 'none'})`);
  }
  const aligned = a.chunks.length === b.chunks.length && a.chunks.every((c, i) => sameTuple(c.lower, b.chunks[i]!.lower) && sameTuple(c.upper, b.chunks[i]!.upper));
  if (!aligned) {
    const equal = a.rows === b.rows && a.checksum === b.checksum && !remarks.length;
    remarks.push(`chunks do not line up (checksum ${sides.b} with ${sides.a}'s boundaries to locate differences)`);
    const totals = equal
      ? `whole-table checksums agree (${a.rows} rows, ${a.checksum})`
      : `whole tables differ: ${sides.a} ${a.rows} rows ${a.checksum}, ${sides.b} ${b.rows} rows ${b.checksum}`;
    return { equal, differingChunks: [], note: `${name}: ${totals}; ${remarks.join('; ')}` };
  }
  const differingChunks: ChunkDiff[] = [];
  a.chunks.forEach((ca, i) => {
    const cb = b.chunks[i]!;
    if (ca.rows !== cb.rows || ca.digest !== cb.digest) {
      differingChunks.push({ index: i, lower: ca.lower, upper: ca.upper, rowsA: ca.rows, rowsB: cb.rows, digestA: ca.digest, digestB: cb.digest });
    }
  });
  const equal = !differingChunks.length && !remarks.length;
  let note: string;
  if (equal) {
    note = `${name}: equal (${a.rows} rows in ${a.chunks.length} chunk${a.chunks.length === 1 ? '' : 's'}, checksum ${a.checksum})`;
  } else if (differingChunks.length) {
    const list = differingChunks
      .slice(0, 5)
      .map((d) => `${describeRange(d.lower, d.upper)} (${sides.a} ${d.rowsA} rows ${d.digestA.slice(0, 12)}…, ${sides.b} ${d.rowsB} rows ${d.digestB.slice(0, 12)}…)`);
    const more = differingChunks.length > 5 ? `; and ${differingChunks.length - 5} more` : '';
    note = `${name}: ${differingChunks.length} of ${a.chunks.length} chunks differ between ${sides.a} and ${sides.b}: ${list.join('; ')}${more}`;
  } else {
    note = `${name}: every chunk's rows and digest agree`;
  }
  if (remarks.length) note += `; ${remarks.join('; ')}`;
  return { equal, differingChunks, note };
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

/** The columns whose values differ between two images of one row (NULL, '' and 0 all differ; bytes by their bytes). */
export function columnDifferences(shape: Pick<TableShape, 'columns'>, a: Record<string, unknown>, b: Record<string, unknown>): string[] {
  const text = (v: unknown) => (v === null || v === undefined ? '\u0000NULL' : Buffer.isBuffer(v) ? `x${v.toString('hex')}` : `s${String(v)}`);
  return shape.columns.map((c) => c.name).filter((c) => text(a[c]) !== text(b[c]));
}

/**
 * `k IN (?, …)`, or `(a = ? AND b = ?) OR (…)` for a composite key, for `n` keys: the forms MariaDB
 * turns into exact ranges on the key. `alias` qualifies the columns (`t` in a join).
 */
export function keysWhere(pk: string[], n: number, alias = ''): string {
  const col = (c: string) => `${alias ? `${alias}.` : ''}${quoteIdent(c)}`;
  if (pk.length === 1) return `${col(pk[0]!)} IN (${Array(n).fill('?').join(', ')})`;
  const one = `(${pk.map((c) => `${col(c)} = ?`).join(' AND ')})`;
  return `(${Array(n).fill(one).join(' OR ')})`;
}

/** A primary-key tuple as text that is equal exactly when the values are (Buffers by their bytes). */
export function keyText(key: unknown[]): string {
  return JSON.stringify(key.map((v) => (Buffer.isBuffer(v) ? { hex: v.toString('hex') } : v === null || v === undefined ? null : String(v))));
}

/** `pk > (1)` … in words, for notes and reports. */
export function describeRange(lower: unknown[] | null, upper: unknown[] | null): string {
  if (!lower && !upper) return 'whole table';
  if (!lower) return `pk <= ${showTuple(upper!)}`;
  if (!upper) return `pk > ${showTuple(lower)}`;
  return `${showTuple(lower)} < pk <= ${showTuple(upper)}`;
}

/** A key for people: `(12345)`, `(20, 250)`, `(x'0a1b')`. */
export function showTuple(t: unknown[]): string {
  return `(${t.map(showValue).join(', ')})`;
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

function from(shape: TableShape): string {
  return shape.primaryKey.length ? `${qualifiedName(shape)} FORCE INDEX (${quoteIdent(shape.keyIndex ?? 'PRIMARY')})` : qualifiedName(shape);
}

/** ` WHERE lower < pk AND pk <= upper` (either bound may be absent), with its parameters. */
function rangeWhere(shape: TableShape, lower: unknown[] | null, upper: unknown[] | null): { sql: string; params: unknown[] } {
  const where: string[] = [];
  const params: unknown[] = [];
  if (shape.primaryKey.length) {
    for (const [bound, op] of [[lower, '>'], [upper, '<=']] as const) {
      if (!bound) continue;
      const cmp = keyCompare(shape.primaryKey, op);
      where.push(cmp.sql);
      params.push(...cmp.params(reviveTuple(bound)));
    }
  }
  return { sql: where.length ? ` WHERE ${where.join(' AND ')}` : '', params };
}

/**
 * The lexicographic comparison `(a, b) > (?, ?)` spelled out as `a > ? OR (a = ? AND b > ?)`:
 * MariaDB (10.11) does no range access for a row-constructor inequality (a full scan even under
 * FORCE INDEX), but turns this form into exact ranges on the primary key. Returns the SQL and how
 * to expand a bound tuple into its parameters.
 */
function keyCompare(pk: string[], op: '>' | '<='): { sql: string; params: (bound: unknown[]) => unknown[] } {
  const q = pk.map(quoteIdent);
  const strict = op === '>' ? '>' : '<';
  const terms = q.map((col, i) => {
    const last = i === q.length - 1;
    const eqs = q.slice(0, i).map((p) => `${p} = ?`);
    return [...eqs, `${col} ${last ? op : strict} ?`].join(' AND ');
  });
  const sql = terms.length === 1 ? terms[0]! : `(${terms.map((t, i) => (i ? `(${t})` : t)).join(' OR ')})`;
  return { sql, params: (bound) => q.flatMap((_, i) => bound.slice(0, i + 1)) };
}

/** Two exact decimal sums of 64-bit halves, as one number mod 2^128. */
function fold(hi: string, lo: string): bigint {
  return ((BigInt(hi) << 64n) + BigInt(lo)) % MOD128;
}

function hex128(v: bigint): string {
  return v.toString(16).padStart(32, '0');
}

/** Boundaries may have been through JSON (a Temporal payload): turn `{type:'Buffer',data}` back into a Buffer. */
export function reviveTuple(tuple: unknown[]): unknown[] {
  if (!Array.isArray(tuple)) throw new Error(`each boundary must be an array of primary-key values, got ${JSON.stringify(tuple)}`);
  return tuple.map((v) => {
    if (v && typeof v === 'object' && !Buffer.isBuffer(v) && (v as { type?: unknown }).type === 'Buffer' && Array.isArray((v as { data?: unknown }).data)) {
      return Buffer.from((v as { data: number[] }).data);
    }
    return v;
  });
}

function showValue(v: unknown): string {
  if (Buffer.isBuffer(v)) return `x'${v.toString('hex')}'`;
  if (v === null || v === undefined) return 'NULL';
  return typeof v === 'number' || typeof v === 'bigint' ? String(v) : JSON.stringify(String(v));
}

function sameTuple(x: unknown[] | null, y: unknown[] | null): boolean {
  if (!x || !y) return x === y;
  return x.length === y.length && x.every((v, i) => showValue(v) === showValue(y[i]));
}
