/**
 * The one row digest and the comparison of tables chunk by chunk: definitions, pure (workflow-safe,
 * no I/O; the queries run in adapters/mysql/checksum.ts).
 *
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

export const MOD128 = 1n << 128n;

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
export function canonicalValueSql(c: TableShape['columns'][number], expr: string): string {
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

export function from(shape: TableShape): string {
  return shape.primaryKey.length ? `${qualifiedName(shape)} FORCE INDEX (${quoteIdent(shape.keyIndex ?? 'PRIMARY')})` : qualifiedName(shape);
}

/** ` WHERE lower < pk AND pk <= upper` (either bound may be absent), with its parameters. */
export function rangeWhere(shape: TableShape, lower: unknown[] | null, upper: unknown[] | null): { sql: string; params: unknown[] } {
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
export function keyCompare(pk: string[], op: '>' | '<='): { sql: string; params: (bound: unknown[]) => unknown[] } {
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
export function fold(hi: string, lo: string): bigint {
  return ((BigInt(hi) << 64n) + BigInt(lo)) % MOD128;
}

export function hex128(v: bigint): string {
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

export function showValue(v: unknown): string {
  if (Buffer.isBuffer(v)) return `x'${v.toString('hex')}'`;
  if (v === null || v === undefined) return 'NULL';
  return typeof v === 'number' || typeof v === 'bigint' ? String(v) : JSON.stringify(String(v));
}

export function sameTuple(x: unknown[] | null, y: unknown[] | null): boolean {
  if (!x || !y) return x === y;
  return x.length === y.length && x.every((v, i) => showValue(v) === showValue(y[i]));
}
