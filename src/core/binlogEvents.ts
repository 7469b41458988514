/**
 * Reading binary logs as transactions: the text of `mariadb-binlog --base64-output=DECODE-ROWS -vv`
 * (run with TZ=UTC) cut into event groups, one per GTID, each with its file, start and end
 * position, time, kind (DDL or transaction), the statements (the `#Q>` annotate lines of row
 * events, the query text of DDL) and the tables it touched; with `parseRowImages`, also each row's
 * before and after images, which the flashback checks work on. Pure (workflows import it): the
 * caller runs the tool, and backup/binlogFile.ts reads big outputs line by line.
 *
 * Positions are what replay and flashback need (`--start-position` is the group's `# at` before
 * its GTID event, `--stop-position` the end_log_pos of its last event): never a wall-clock time.
 */

import { RE2JS } from 're2js';
import { INPUT_LIMITS } from './inputs';

export interface BinlogEventGroup {
  gtid: string;
  file: string;
  startPosition: number;
  endPosition: number;
  /** Epoch ms (from the event header, printed in UTC when the tool runs with TZ=UTC). */
  timestamp: number;
  kind: 'ddl' | 'trans';
  statements: string[];
  /** `db.table` of every Table_map (row events) and, for DDL, the tables the statement names. */
  tables: string[];
  rowEvents: { type: 'INSERT' | 'UPDATE' | 'DELETE'; table: string; rows: number }[];
}

const HEADER = /^#(\d{2})(\d{2})(\d{2})\s+(\d{1,2}):(\d{2}):(\d{2}) server id \d+\s+end_log_pos (\d+)\s.*?\t(.*)$/;

function headerTime(m: RegExpMatchArray): number {
  const [, yy, mo, dd, hh, mi, ss] = m;
  return Date.UTC(2000 + Number(yy), Number(mo) - 1, Number(dd), Number(hh), Number(mi), Number(ss));
}

/** The time of an event header line (`#251202  7:03:09 server id …`), or undefined for any other line. */
export function binlogHeaderTime(line: string): number | undefined {
  const m = HEADER.exec(line);
  return m ? headerTime(m) : undefined;
}

/** Tables a DDL statement names: `db`.`t`, db.t, or t (then in the session's database). */
function ddlTables(sql: string): string[] {
  const m = /^\s*(?:DROP|CREATE|ALTER|TRUNCATE|RENAME)\s+(?:TEMPORARY\s+)?TABLE\s+(?:IF\s+(?:NOT\s+)?EXISTS\s+)?(.+?)(?:\s*\/\*.*)?$/is.exec(sql);
  if (!m) return [];
  return m[1]!
    .split(/\s*,\s*/)
    .map((t) => t.trim().split(/\s+/)[0]!.replace(/`/g, ''))
    .filter(Boolean);
}

export function parseBinlogText(text: string, file: string): BinlogEventGroup[] {
  return parse(text, file, false);
}

/**
 * One row of a row event, its images as `mariadb-binlog -vv` prints them: `@N` (the column's
 * ORDINAL_POSITION) → the value text as printed (`1`, `'ann'`, `NULL`, `-1 (4294967295)`), without
 * the trailing type comment. `before` is the `### WHERE` image (UPDATE, DELETE), `after` the `### SET`
 * image (UPDATE, INSERT).
 */
export type RowImage = Record<number, string>;

export interface RowChange {
  type: 'INSERT' | 'UPDATE' | 'DELETE';
  table: string;
  before?: RowImage;
  after?: RowImage;
}

export interface RowImageGroup extends BinlogEventGroup {
  /** Every row change, in binlog order. */
  changes: RowChange[];
  /** DML logged as statements (binlog_format STATEMENT or MIXED): its rows are not in the binlog. */
  queries: string[];
}

/** The event groups of `-vv` text with their row images (what flashback checks work on). */
export function parseRowImages(text: string, file: string): RowImageGroup[] {
  return parse(text, file, true) as RowImageGroup[];
}

const ROW_VALUE = /^###   @(\d+)=(.*?)(?: \/\*(?:(?!\*\/).)*\*\/)?$/;

/**
 * A parser fed one line of `mariadb-binlog` text at a time: whole files never need to be one
 * string (see backup/binlogFile.ts, which streams a file through it).
 */
export function lineParser(file: string, images: boolean): { feed: (line: string) => void; groups: BinlogEventGroup[] } {
  const groups: BinlogEventGroup[] = [];
  let current: BinlogEventGroup | undefined;
  let lastAt = 0;
  // Reading a server's binlogs remotely across files, the tool's `# at` keeps counting from the
  // first file; each event's end_log_pos stays true, and a group starts where the event before ended.
  let rotated = false;
  let prevEnd = 0;
  let inQuery = false;
  let query: string[] = [];
  let change: RowChange | undefined;
  let image: RowImage | undefined;
  // A multi-line statement is one Annotate_rows event printed as several `#Q>` lines: they are
  // joined back into one statement, so a pattern sees its WHERE on the second line too.
  let annotation: 'none' | 'expected' | 'open' = 'none';
  const feed = (line: string): void => {
    const at = /^# at (\d+)$/.exec(line);
    if (at) {
      lastAt = Number(at[1]);
      return;
    }
    const h = HEADER.exec(line);
    if (h) {
      const endPos = Number(h[7]);
      const rest = h[8]!;
      image = undefined;
      annotation = rest.startsWith('Annotate_rows') ? 'expected' : 'none';
      const gtid = /^GTID (\d+-\d+-\d+)(?: (ddl|trans))?/.exec(rest);
      const rotate = /^Rotate to (\S+)\s+pos: \d+/.exec(rest);
      if (rotate || /^(Start: |Gtid list |Binlog checkpoint |Stop)/.test(rest)) {
        // Between groups (file boundaries, checkpoints): part of no transaction.
        current = undefined;
        inQuery = false;
        if (rotate && rotate[1] !== file) {
          file = rotate[1]!;
          rotated = true;
          prevEnd = 0;
        }
      } else if (gtid) {
        const startPosition = rotated && prevEnd > 0 ? prevEnd : lastAt;
        current = { gtid: gtid[1]!, file, startPosition, endPosition: endPos, timestamp: headerTime(h), kind: gtid[2] === 'ddl' ? 'ddl' : 'trans', statements: [], tables: [], rowEvents: [] };
        if (images) Object.assign(current, { changes: [], queries: [] });
        groups.push(current);
      } else if (current) {
        current.endPosition = endPos;
        if (rest.startsWith('Query')) {
          inQuery = true;
          query = [];
        }
        const map = /^Table_map: `([^`]+)`\.`([^`]+)`/.exec(rest);
        if (map && !current.tables.includes(`${map[1]}.${map[2]}`)) current.tables.push(`${map[1]}.${map[2]}`);
      }
      if (!rotate && endPos > 0) prevEnd = endPos;
      return;
    }
    if (!current) return;
    if (line.startsWith('#Q>')) {
      const text = line.slice(line.startsWith('#Q> ') ? 4 : 3);
      if (annotation === 'open' && current.statements.length) current.statements[current.statements.length - 1] += `\n${text}`;
      else current.statements.push(text);
      annotation = 'open';
      return;
    }
    annotation = 'none';
    if (!inQuery && line.startsWith('### ')) {
      const row = /^### (INSERT INTO|UPDATE|DELETE FROM) `([^`]+)`\.`([^`]+)`$/.exec(line);
      if (row) {
        const type = row[1]!.split(' ')[0] as 'INSERT' | 'UPDATE' | 'DELETE';
        const table = `${row[2]}.${row[3]}`;
        const last = current.rowEvents.at(-1);
        if (last && last.type === type && last.table === table) last.rows++;
        else current.rowEvents.push({ type, table, rows: 1 });
        if (images) {
          change = { type, table };
          (current as RowImageGroup).changes.push(change);
        }
        image = undefined;
        return;
      }
      if (!images || !change) return;
      if (line === '### WHERE') image = change.before = {};
      else if (line === '### SET') image = change.after = {};
      else {
        const v = ROW_VALUE.exec(line);
        if (v && image) image[Number(v[1])] = v[2]!;
      }
      return;
    }
    if (inQuery) {
      if (line === '/*!*/;') {
        inQuery = false;
        const sql = query.filter((l) => !/^SET (TIMESTAMP|@@session)|^\/\*!\\C/.test(l)).join('\n').trim();
        if (sql && !/^(START TRANSACTION|BEGIN|COMMIT)$/i.test(sql)) {
          const statement = sql.replace(/\s*\/\* generated by server \*\/$/, '');
          current.statements.push(statement);
          if (current.kind === 'ddl') {
            for (const t of ddlTables(sql)) if (!current.tables.includes(t)) current.tables.push(t);
          } else if (images) (current as RowImageGroup).queries.push(statement);
        }
      } else query.push(line.replace(/\/\*!\*\/;$/, ''));
    }
  };
  return { feed, groups };
}

function parse(text: string, file: string, images: boolean): BinlogEventGroup[] {
  const p = lineParser(file, images);
  for (const line of text.split('\n')) p.feed(line);
  return p.groups;
}


export interface BadEventQuery {
  /** Epoch ms window, inclusive. */
  from?: number;
  to?: number;
  /** `db.table` (or a table name alone) the event must touch. */
  table?: string;
  /**
   * A case-insensitive pattern the statement text must match, e.g. `DROP TABLE` or `^UPDATE`. A
   * statement is its whole text, several lines for a multi-line statement (`.` matches a newline).
   * Matched in linear time (RE2 syntax: no lookaround, no backreferences).
   */
  statement?: string;
  /** A pattern the statement must NOT match: `--statement '^UPDATE' --not-statement 'WHERE'`. */
  statementNot?: string;
  /** The event's own GTID: how a human confirms one of the candidates an ambiguous search listed. */
  gtid?: string;
}

/** Candidate bad events, oldest first; a human confirms which one in the approval request. */
export function findCandidates(groups: BinlogEventGroup[], q: BadEventQuery): BinlogEventGroup[] {
  return groups.filter(matchesBadEvent(q));
}


/** A compiled statement pattern: `test` runs in time linear in the text (RE2), whatever the pattern. */
export interface StatementPattern {
  source: string;
  test(text: string): boolean;
}

/**
 * Compile an operator's statement pattern, or throw a one-line error naming the option. RE2
 * semantics (re2js): matching can never backtrack exponentially and freeze the worker, as
 * `^(.*)*X$` did with JavaScript's engine; lookaround and backreferences are refused.
 */
export function compileStatementPattern(pattern: string, option = '--statement'): StatementPattern {
  if (typeof pattern !== 'string' || !pattern.length) throw new Error(`${option}: the pattern is empty`);
  if (pattern.length > INPUT_LIMITS.pattern) throw new Error(`${option}: the pattern has ${pattern.length} characters, at most ${INPUT_LIMITS.pattern}`);
  let compiled: ReturnType<typeof RE2JS.compile>;
  try {
    compiled = RE2JS.compile(pattern, RE2JS.CASE_INSENSITIVE | RE2JS.DOTALL);
  } catch (err) {
    const why = (err as Error).message.replace(/^error parsing regexp: /, '');
    const hint = /\(\?[!=<]/.test(pattern) ? `; lookaround is not supported: to exclude statements use --not-statement, e.g. --statement '^UPDATE' --not-statement 'WHERE'` : '';
    throw new Error(`${option}: invalid pattern ${JSON.stringify(pattern)}: ${why}${hint}`);
  }
  return { source: pattern, test: (text) => compiled.matcher(text).find() };
}

/** The test findCandidates applies, for one transaction at a time. */
export function matchesBadEvent(q: BadEventQuery): (g: BinlogEventGroup) => boolean {
  const pattern = q.statement ? compileStatementPattern(q.statement) : undefined;
  const exclude = q.statementNot ? compileStatementPattern(q.statementNot, '--not-statement') : undefined;
  const wantTable = q.table?.replace(/`/g, '');
  return (
    (g) =>
      (q.gtid === undefined || g.gtid === q.gtid) &&
      (q.from === undefined || g.timestamp >= q.from) &&
      (q.to === undefined || g.timestamp <= q.to) &&
      (!wantTable || g.tables.some((t) => t === wantTable || t.endsWith(`.${wantTable}`))) &&
      (!pattern || g.statements.some((s) => pattern.test(s) && !exclude?.test(s))) &&
      (!exclude || pattern !== undefined || !g.statements.some((s) => exclude.test(s)))
  );
}

/** A statement on one line, shortened for lists and notes: `UPDATE shop.users SET … WHERE id = 1`. */
export function oneLine(statement: string, max = 160): string {
  const flat = statement.replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

/**
 * Whether `mariadb-binlog --flashback` can undo this transaction: only row changes (UPDATE /
 * DELETE / INSERT with full row images) can be reversed; over DDL it outputs nothing.
 */
export function flashbackRefusal(g: BinlogEventGroup): string | undefined {
  if (g.kind === 'ddl') return `${g.gtid} is DDL (${g.statements[0] ?? 'unknown statement'}): flashback cannot undo it; use restore and replay`;
  if (!g.rowEvents.length) {
    return `${g.gtid} was logged as statements, not row events (binlog_format STATEMENT or MIXED: ${g.statements[0] ?? 'no statement'}): flashback needs ROW format; use restore and replay`;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Flashback safety: full images, conflicts with later writes, recognising the flashback itself.

/** A table's shape where the rows are: its column count and primary key (`@N` ordinals and names). */
export interface TableShape {
  columns: number;
  /** Empty: the table has no primary key. */
  primaryKey: { ordinal: number; name: string }[];
}

/**
 * Refuse unless every row image of `g` is full (`binlog_row_image=FULL`): flashback swaps the
 * images, and a partial one would write partial rows. `shapes` gives each table's column count
 * (where known); otherwise an UPDATE's before and after images must at least name the same columns.
 */
export function rowImagesRefusal(g: RowImageGroup, shapes: Record<string, TableShape | undefined>): string | undefined {
  const refusal = flashbackRefusal(g);
  if (refusal) return refusal;
  if (!g.changes.length) return `${g.gtid} has no row images to reverse: use restore and replay`;
  for (const c of g.changes) {
    const columns = shapes[c.table]?.columns;
    for (const [side, image] of [['before', c.before], ['after', c.after]] as const) {
      const needed = c.type === 'UPDATE' || (side === 'before' ? c.type === 'DELETE' : c.type === 'INSERT');
      if (!needed) continue;
      const have = image ? Object.keys(image).map(Number) : [];
      const other = side === 'before' ? c.after : c.before;
      const expected = columns ?? Math.max(0, ...have, ...(c.type === 'UPDATE' && other ? Object.keys(other).map(Number) : []));
      const full = have.length === expected && have.every((n) => n >= 1 && n <= expected);
      if (!full) {
        return (
          `${g.gtid} has partial row images (${c.type} of ${c.table}: the ${side} image logs ${have.length ? have.map((n) => `@${n}`).join(',') : 'no column'} of ${expected} columns; ` +
          'binlog_row_image is not FULL): flashback needs full images; use restore and replay'
        );
      }
    }
  }
  return undefined;
}

/**
 * A row's identity in `table`: its primary key values, or the whole image without a key. Strings
 * are compared as a case- and accent-insensitive collation would (lower case, no diacritics, no
 * trailing spaces): two keys that MAY be the same row under the table's collation count as one,
 * so a conflict is never missed; a binary collation only ever sees more conflicts, never fewer.
 */
export function rowKey(image: RowImage, shape: TableShape | undefined): string {
  const ordinals = shape?.primaryKey.length ? shape.primaryKey.map((k) => k.ordinal) : Object.keys(image).map(Number);
  return JSON.stringify(ordinals.map((n) => foldKeyValue(image[n] ?? null)));
}

function foldKeyValue(printed: string | null): string | null {
  if (printed === null || !printed.startsWith("'")) return printed;
  return printed.normalize('NFKD').replace(/[\u0300-\u036f]/g, '').toLowerCase().replace(/ +'$/, "'");
}

function keyText(image: RowImage, shape: TableShape | undefined): string {
  if (!shape?.primaryKey.length) return Object.entries(image).map(([n, v]) => `@${n}=${v}`).join(',');
  return shape.primaryKey.map((k) => `${k.name}=${image[k.ordinal] ?? 'NULL'}`).join(',');
}

/**
 * Whether a statement names `db.table`: qualified with `db`, or unqualified (any database: the
 * session's is not known here, so this is conservative), or drops / alters the whole database.
 */
function mentions(statement: string, table: string): boolean {
  const [db, name] = table.split('.') as [string, string];
  const esc = (x: string) => x.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const named = new RegExp(`(?<![\\w$.\`])(?:\`?([\\w$]+)\`?\\s*\\.\\s*)?\`?${esc(name)}\`?(?![\\w$])`, 'gi');
  for (const m of statement.matchAll(named)) if (!m[1] || m[1].toLowerCase() === db.toLowerCase()) return true;
  return new RegExp(`\\b(DATABASE|SCHEMA)\\s+(IF\\s+(NOT\\s+)?EXISTS\\s+)?\`?${esc(db)}\`?(?![\\w$])`, 'i').test(statement);
}

export interface FlashbackConflict {
  table: string;
  /** Later transactions that changed the same rows (or the table's definition), in binlog order. */
  gtids: string[];
  /** One example: a key (`id=2`), or the statement that makes the rows unknowable. */
  example: string;
}

/**
 * Later transactions that flashback would silently undo: it writes the before images back by
 * primary key without comparing the other columns. A later transaction conflicts when it changed
 * a row `bad` changed (any image, same key), when the table has no primary key and it wrote to the
 * table at all, when it changed the table by DDL, or when it wrote DML to the table as a statement
 * (its rows are not in the binlog). Writes to other rows (a new id) do not conflict.
 */
export function findConflicts(bad: RowImageGroup, later: RowImageGroup[], shapes: Record<string, TableShape | undefined>): FlashbackConflict[] {
  const tables = [...new Set(bad.changes.map((c) => c.table))];
  const out: FlashbackConflict[] = [];
  for (const table of tables) {
    const shape = shapes[table];
    const keys = new Set<string>();
    for (const c of bad.changes.filter((x) => x.table === table)) for (const img of [c.before, c.after]) if (img) keys.add(rowKey(img, shape));
    const gtids: string[] = [];
    let example = '';
    const hit = (gtid: string, ex: string) => {
      if (!gtids.includes(gtid)) gtids.push(gtid);
      example ||= ex;
    };
    for (const g of later) {
      if (g.gtid === bad.gtid) continue;
      if (g.kind === 'ddl') {
        const stmt = g.statements.find((s) => mentions(s, table));
        if (g.tables.includes(table) || stmt) hit(g.gtid, stmt ?? g.statements[0] ?? 'DDL');
        continue;
      }
      const stmt = g.queries.find((s) => mentions(s, table));
      if (stmt) hit(g.gtid, stmt);
      for (const c of g.changes) {
        if (c.table !== table) continue;
        if (!shape?.primaryKey.length) {
          hit(g.gtid, `${table} has no primary key: any later write conflicts`);
          continue;
        }
        const img = [c.before, c.after].find((i) => i && keys.has(rowKey(i, shape)));
        if (img) hit(g.gtid, keyText(img, shape));
      }
    }
    if (gtids.length) out.push({ table, gtids, example });
  }
  return out;
}

/** One line for a refusal: the table, up to 5 later GTIDs, an example, and what to do instead. */
export function conflictRefusal(gtid: string, conflicts: FlashbackConflict[]): string | undefined {
  const c = conflicts[0];
  if (!c) return undefined;
  const shown = c.gtids.slice(0, 5).join(', ') + (c.gtids.length > 5 ? ` and ${c.gtids.length - 5} more` : '');
  const example = c.example.length > 80 ? `${c.example.slice(0, 77)}...` : c.example;
  const others = conflicts.slice(1).map((x) => x.table);
  return (
    `later writes changed rows of ${c.table} that ${gtid} changed (${shown}; e.g. ${example.replace(/\s+/g, ' ')})${others.length ? `, also in ${others.join(', ')}` : ''}: ` +
    'flashback would overwrite them; use restore with --skip and --cutover copy-tables'
  );
}

/** The inverse of one row change: what flashback writes for it. */
function inverse(c: RowChange): RowChange {
  const type = c.type === 'INSERT' ? 'DELETE' : c.type === 'DELETE' ? 'INSERT' : 'UPDATE';
  return { type, table: c.table, before: c.after, after: c.before };
}

const changeSignature = (c: RowChange) => JSON.stringify([c.type, c.table, c.before ?? null, c.after ?? null]);

/**
 * Whether `candidate` is exactly the flashback of `bad`: the same number of row changes, each the
 * inverse of one of `bad`'s (UPDATE with before and after swapped, DELETE for INSERT, INSERT for
 * DELETE), full images equal. Order is free (flashback reverses it).
 */
export function isFlashbackOf(candidate: RowImageGroup, bad: RowImageGroup): boolean {
  if (candidate.gtid === bad.gtid || candidate.kind !== 'trans' || !bad.changes.length || candidate.changes.length !== bad.changes.length) return false;
  const want = bad.changes.map((c) => changeSignature(inverse(c))).sort();
  const have = candidate.changes.map(changeSignature).sort();
  return want.every((s, i) => s === have[i]);
}

/** Row changes of `g` on each table, for people: `UPDATE shop.users ×2`. */
export function describeRowEvents(g: BinlogEventGroup): string {
  return g.rowEvents.map((e) => `${e.type} ${e.table} ×${e.rows}`).join(', ');
}
