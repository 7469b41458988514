/**
 * The rows one binlog transaction changed, named by primary key in a form SQL can look them up
 * by: what a restore that skips the transaction must prove it undid, and what its cut-over writes
 * back. Pure: the caller decodes the transaction (`mariadb-binlog -vv`) and reads the tables' shape.
 *
 * Only key values whose printed form is exact are accepted: integers (an unsigned one printed as
 * `-1 (4294967295)` is its unsigned value), decimals, and strings without bytes that are not UTF-8.
 * Anything else (a binary, a date or a floating-point key) is refused with the reason: a row that
 * cannot be named exactly cannot be proven repaired.
 */
import { keyText } from './rowDigest';
import type { RowImageGroup } from './binlogEvents';

export interface KeyedTableShape {
  /** Columns in ORDINAL_POSITION order: `@N` of the binlog's images is the N-th. */
  columns: { name: string; dataType: string }[];
  /** Primary-key column names in index order; empty when the table has none. */
  primaryKey: string[];
}

export interface EventTableRows {
  table: string;
  /** Primary-key column names, in index order. */
  primaryKey: string[];
  /** Each row the transaction changed (deduplicated), its key values as query parameters (safe integers as numbers). */
  keys: KeyValue[][];
}

/** A key value as a query parameter: a number for a safe integer (shown as such), else its exact text. */
export type KeyValue = string | number;

const INTEGER = new Set(['tinyint', 'smallint', 'mediumint', 'int', 'integer', 'bigint']);
const TEXT = new Set(['char', 'varchar']);

/** One printed key value as a query parameter, or why it cannot be one. */
export function keyParam(printed: string | undefined, dataType: string): { value: KeyValue } | { refusal: string } {
  if (printed === undefined || printed === 'NULL') return { refusal: 'the key is missing from the row image' };
  if (INTEGER.has(dataType)) {
    const m = /^(-?\d+)(?: \((\d+)\))?$/.exec(printed);
    if (!m) return { refusal: `integer printed as ${printed}` };
    const text = m[2] ?? m[1]!;
    return { value: Number.isSafeInteger(Number(text)) ? Number(text) : text };
  }
  if (dataType === 'decimal') return /^-?\d+(\.\d+)?$/.test(printed) ? { value: printed } : { refusal: `decimal printed as ${printed}` };
  if (TEXT.has(dataType)) {
    const m = /^'(.*)'$/s.exec(printed);
    if (!m) return { refusal: `string printed as ${printed}` };
    if (m[1]!.includes('\ufffd')) return { refusal: 'a key string holds bytes that are not UTF-8' };
    return { value: m[1]!.replace(/\\x([0-9a-f]{2})/gi, (_, h: string) => String.fromCharCode(parseInt(h, 16))) };
  }
  return { refusal: `${dataType} keys are not printed exactly by mariadb-binlog` };
}

/**
 * The rows `bad` changed, per table, by primary key (before image for UPDATE and DELETE, after
 * image for INSERT; an UPDATE that changed the key names both). Refused when a table has no
 * primary key, when its images do not have the table's column count (the table changed since),
 * or when a key cannot be printed exactly.
 */
export function eventRowKeys(bad: RowImageGroup, shapes: Record<string, KeyedTableShape | undefined>): { tables: EventTableRows[] } | { refusal: string } {
  const out = new Map<string, { rows: EventTableRows; seen: Set<string> }>();
  for (const c of bad.changes) {
    const shape = shapes[c.table];
    if (!shape) return { refusal: `${c.table} does not exist where its shape was read` };
    if (!shape.primaryKey.length) return { refusal: `${c.table} has no primary key: the rows ${bad.gtid} changed cannot be named one by one` };
    let entry = out.get(c.table);
    if (!entry) out.set(c.table, (entry = { rows: { table: c.table, primaryKey: shape.primaryKey, keys: [] }, seen: new Set() }));
    for (const image of [c.before, c.after]) {
      if (!image) continue;
      const width = Math.max(0, ...Object.keys(image).map(Number));
      if (width !== shape.columns.length) {
        return { refusal: `${c.table}'s row images in ${bad.gtid} have ${width} columns, the table has ${shape.columns.length} now: it was altered since` };
      }
      const key: KeyValue[] = [];
      for (const name of shape.primaryKey) {
        const ordinal = shape.columns.findIndex((col) => col.name === name) + 1;
        const p = keyParam(image[ordinal], shape.columns[ordinal - 1]!.dataType);
        if ('refusal' in p) return { refusal: `cannot name the rows of ${c.table} exactly (key column ${name}: ${p.refusal})` };
        key.push(p.value);
      }
      const text = keyText(key);
      if (!entry.seen.has(text)) {
        entry.seen.add(text);
        entry.rows.keys.push(key);
      }
    }
  }
  return { tables: [...out.values()].map((e) => e.rows) };
}
