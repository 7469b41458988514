/** Cutting `mariadb-binlog -vv` output (a real capture from MariaDB 10.11.19) into transactions. */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  compileStatementPattern,
  conflictRefusal,
  findCandidates,
  findConflicts,
  flashbackRefusal,
  isFlashbackOf,
  parseBinlogText,
  parseRowImages,
  rowImagesRefusal,
  type RowImageGroup,
  type TableShape,
} from '../../src/core/binlogEvents';
import { forEachDecodedGroup } from '../../src/adapters/backup/binlogFile';

const text = readFileSync('test/fixtures/binlog/drop-and-update.txt', 'utf8');
const groups = parseBinlogText(text, 'mysql-bin.000001');

describe('parseBinlogText', () => {
  it('reads a file line by line, one transaction at a time, into the same transactions as the whole text (a 1 GB binlog decodes past any string)', async () => {
    const collect = async (path: string, images: boolean) => {
      const out: unknown[] = [];
      await forEachDecodedGroup(path, 'mysql-bin.000001', (g) => void out.push(g), undefined, { images });
      return out;
    };
    expect(await collect('test/fixtures/binlog/drop-and-update.txt', false)).toEqual(groups);
    for (const fixture of ['flashback-rows', 'flashback-rotate', 'flashback-applied']) {
      const path = `test/fixtures/binlog/${fixture}.txt`;
      expect(await collect(path, true)).toEqual(parseRowImages(readFileSync(path, 'utf8'), 'mysql-bin.000001'));
    }
  });

  it('finds every GTID group with exact positions, kind, statements and tables', () => {
    expect(groups.map((g) => [g.gtid, g.kind, g.startPosition, g.endPosition])).toEqual([
      ['0-25501-1', 'ddl', 328, 457],
      ['0-25501-2', 'ddl', 457, 628],
      ['0-25501-3', 'trans', 628, 885],
      ['0-25501-4', 'ddl', 885, 1055],
      ['0-25501-5', 'trans', 1055, 1296],
      ['0-25501-6', 'trans', 1296, 1543],
      ['0-25501-7', 'ddl', 1543, 1709],
      ['0-25501-8', 'trans', 1709, 1934],
    ]);
    expect(groups[5]).toMatchObject({
      statements: ['UPDATE shop.users SET points = 0'],
      tables: ['shop.users'],
      rowEvents: [{ type: 'UPDATE', table: 'shop.users', rows: 2 }],
      timestamp: Date.UTC(2026, 10, 23, 3, 3, 32),
    });
    expect(groups[6]).toMatchObject({ statements: ['DROP TABLE `shop`.`orders`'], tables: ['shop.orders'], rowEvents: [] });
  });

  it('finds the DROP and the UPDATE without WHERE by table and statement pattern', () => {
    expect(findCandidates(groups, { statement: 'drop table', table: 'orders' }).map((g) => g.gtid)).toEqual(['0-25501-7']);
    expect(findCandidates(groups, { table: 'shop.users', statement: '^UPDATE', statementNot: 'WHERE' }).map((g) => g.gtid)).toEqual(['0-25501-6']);
    expect(findCandidates(groups, { from: Date.UTC(2026, 10, 23, 3, 4), statement: 'DROP' })).toEqual([]);
    // A human confirms one of several candidates by its GTID.
    expect(findCandidates(groups, { table: 'shop.users' }).length).toBeGreaterThan(1);
    expect(findCandidates(groups, { table: 'shop.users', gtid: '0-25501-6' }).map((g) => g.gtid)).toEqual(['0-25501-6']);
  });

  it('refuses flashback over DDL and allows it over row changes', () => {
    expect(flashbackRefusal(groups[6]!)).toBe('0-25501-7 is DDL (DROP TABLE `shop`.`orders`): flashback cannot undo it; use restore and replay');
    expect(flashbackRefusal(groups[5]!)).toBeUndefined();
  });
});

/**
 * Row images for the flashback checks, from real captures (MariaDB 10.11.19, read from the server
 * with `mariadb-binlog --read-from-remote-server --base64-output=DECODE-ROWS -vv`):
 * flashback-rows.txt: fx.users (id PK, points, name) gets 3 rows, `UPDATE fx.users SET points = 0`
 * (the mistake, 0-26651-14), then an INSERT of id 4, an UPDATE of id 2, a DELETE of id 4, writes to
 * fx.log (no primary key), an UPDATE logged with binlog_row_image=MINIMAL, one logged as a
 * statement, and an ALTER TABLE. flashback-applied.txt: an UPDATE (0-26651-4) and, later, its
 * flashback applied on the primary (0-26651-10). flashback-rotate.txt crosses into the next file.
 */
describe('row images and flashback checks', () => {
  const rows = parseRowImages(readFileSync('test/fixtures/binlog/flashback-rows.txt', 'utf8'), 'mysql-bin.000001');
  const byGtid = (gtid: string) => rows.find((g) => g.gtid === gtid)!;
  const bad = byGtid('0-26651-14');
  const shapes: Record<string, TableShape> = {
    'fx.users': { columns: 3, primaryKey: [{ ordinal: 1, name: 'id' }] },
    'fx.log': { columns: 2, primaryKey: [] },
  };
  const after = (g: RowImageGroup) => rows.slice(rows.indexOf(g) + 1);

  it('extracts the WHERE and SET images per row, keyed by @N, values as printed without the type comment', () => {
    expect(bad.changes).toEqual([
      { type: 'UPDATE', table: 'fx.users', before: { 1: '1', 2: '100', 3: "'ann'" }, after: { 1: '1', 2: '0', 3: "'ann'" } },
      { type: 'UPDATE', table: 'fx.users', before: { 1: '2', 2: '200', 3: 'NULL' }, after: { 1: '2', 2: '0', 3: 'NULL' } },
      // The value itself holds a comment and a quote: only the trailing type comment goes.
      { type: 'UPDATE', table: 'fx.users', before: { 1: '3', 2: '300', 3: "'it's /* x */'" }, after: { 1: '3', 2: '0', 3: "'it's /* x */'" } },
    ]);
    expect(byGtid('0-26651-15').changes).toEqual([{ type: 'INSERT', table: 'fx.users', after: { 1: '4', 2: '400', 3: "'dan'" } }]);
    expect(byGtid('0-26651-17').changes).toEqual([{ type: 'DELETE', table: 'fx.users', before: { 1: '4', 2: '400', 3: "'dan'" } }]);
    expect(byGtid('0-26651-20').changes).toEqual([{ type: 'UPDATE', table: 'fx.users', before: { 1: '3' }, after: { 2: '5' } }]);
    expect(byGtid('0-26651-21')).toMatchObject({ changes: [], rowEvents: [], queries: ['UPDATE fx.users SET points = 6 WHERE id = 3'] });
    // The same groups as parseBinlogText, positions included.
    expect(rows.map((g) => [g.gtid, g.startPosition, g.endPosition])).toEqual(parseBinlogText(readFileSync('test/fixtures/binlog/flashback-rows.txt', 'utf8'), 'mysql-bin.000001').map((g) => [g.gtid, g.startPosition, g.endPosition]));
  });

  it('follows a remote read into the next file, with true positions', () => {
    const groups = parseRowImages(readFileSync('test/fixtures/binlog/flashback-rotate.txt', 'utf8'), 'mysql-bin.000001');
    expect(groups.map((g) => [g.gtid, g.file, g.startPosition, g.endPosition])).toEqual([
      ['0-26651-21', 'mysql-bin.000001', 4790, 4969],
      ['0-26651-22', 'mysql-bin.000001', 4969, 5123],
      ['0-26651-23', 'mysql-bin.000002', 385, 602], // the tool's own `# at` says 5299 here
    ]);
  });

  it('finds later writes to the same rows, by primary key; a new id or another table is no conflict', () => {
    const conflicts = findConflicts(bad, after(bad), shapes);
    // 16 updates id 2; 20 (minimal image) id 3; 21 is a statement on the table; 22 alters it.
    expect(conflicts).toEqual([{ table: 'fx.users', gtids: ['0-26651-16', '0-26651-20', '0-26651-21', '0-26651-22'], example: 'id=2' }]);
    expect(findConflicts(bad, [byGtid('0-26651-15'), byGtid('0-26651-17'), byGtid('0-26651-18'), byGtid('0-26651-19')], shapes)).toEqual([]);
    expect(conflictRefusal(bad.gtid, conflicts)).toBe(
      'later writes changed rows of fx.users that 0-26651-14 changed (0-26651-16, 0-26651-20, 0-26651-21, 0-26651-22; e.g. id=2): flashback would overwrite them; use restore with --skip and --cutover copy-tables',
    );
  });

  it('without a primary key any later write to the table conflicts', () => {
    const insertLog = byGtid('0-26651-19');
    const laterLog: RowImageGroup = { ...insertLog, gtid: '0-26651-99', changes: [{ type: 'INSERT', table: 'fx.log', after: { 1: "'z'", 2: '9' } }] };
    expect(findConflicts(insertLog, [laterLog], shapes)).toEqual([{ table: 'fx.log', gtids: ['0-26651-99'], example: 'fx.log has no primary key: any later write conflicts' }]);
  });

  it('refuses statement-logged events and partial row images, one line each', () => {
    expect(rowImagesRefusal(bad, shapes)).toBeUndefined();
    expect(rowImagesRefusal(byGtid('0-26651-21'), shapes)).toBe(
      '0-26651-21 was logged as statements, not row events (binlog_format STATEMENT or MIXED: UPDATE fx.users SET points = 6 WHERE id = 3): flashback needs ROW format; use restore and replay',
    );
    expect(rowImagesRefusal(byGtid('0-26651-20'), shapes)).toBe(
      '0-26651-20 has partial row images (UPDATE of fx.users: the before image logs @1 of 3 columns; binlog_row_image is not FULL): flashback needs full images; use restore and replay',
    );
    // Without the table's column count the UPDATE's two images must still name the same columns.
    expect(rowImagesRefusal(byGtid('0-26651-20'), {})).toMatch(/^0-26651-20 has partial row images \(UPDATE of fx\.users: the before image logs @1 of 2 columns/);
  });

  it('recognises the flashback of an event: the exact inverse, rows in any order', () => {
    const applied = parseRowImages(readFileSync('test/fixtures/binlog/flashback-applied.txt', 'utf8'), 'mysql-bin.000001');
    const update = applied[0]!;
    expect(update.gtid).toBe('0-26651-4');
    expect(applied.filter((g) => isFlashbackOf(g, update)).map((g) => g.gtid)).toEqual(['0-26651-10']);
    // A DELETE is undone by an INSERT of the same row, not by anything else.
    const del = byGtid('0-26651-17');
    const reinsert: RowImageGroup = { ...del, gtid: '0-26651-98', changes: [{ type: 'INSERT', table: 'fx.users', after: { 1: '4', 2: '400', 3: "'dan'" } }] };
    expect(isFlashbackOf(reinsert, del)).toBe(true);
    expect(isFlashbackOf({ ...reinsert, changes: [{ type: 'INSERT', table: 'fx.users', after: { 1: '4', 2: '401', 3: "'dan'" } }] }, del)).toBe(false);
  });
});

describe('statement patterns', () => {
  // A real capture: a three-line UPDATE with its WHERE on the third line, then an UPDATE without
  // WHERE, then one whose WHERE names a string key in another case.
  const multi = parseRowImages(readFileSync('test/fixtures/binlog/multiline.txt', 'utf8'), 'mysql-bin.000002');
  const updates = multi.filter((g) => g.statements.some((s) => /^update/i.test(s)));

  it('keeps a multi-line statement as one statement, so its WHERE on a later line is seen', () => {
    expect(updates.map((g) => g.statements)).toEqual([['UPDATE shop.users\nSET tier = 5\nWHERE id = 1'], ['UPDATE shop.users SET tier = 7'], ["UPDATE shop.users SET points = points + 1 WHERE name = 'ann'"]]);
    const noWhere = findCandidates(multi, { table: 'users', statement: '^UPDATE', statementNot: 'WHERE' });
    expect(noWhere.map((g) => g.statements[0])).toEqual(['UPDATE shop.users SET tier = 7']);
    // `.` matches a newline: a pattern spanning the lines of one statement finds it.
    expect(findCandidates(multi, { statement: 'SET tier = 5.WHERE' })).toHaveLength(1);
  });

  it('matches in linear time: a pattern that backtracks exponentially in JavaScript returns at once', () => {
    const p = compileStatementPattern('^(.*)*X$');
    // JavaScript's engine does not return from this at all (the worker sat at 100% CPU); RE2 does.
    expect(p.test('a'.repeat(100_000))).toBe(false);
  });

  it('refuses lookaround, bad syntax and over-long patterns in one line, naming the option', () => {
    expect(() => compileStatementPattern('^UPDATE(?!.*WHERE)')).toThrow(
      /^--statement: invalid pattern "\^UPDATE\(\?!\.\*WHERE\)": .*; lookaround is not supported: to exclude statements use --not-statement, e\.g\. --statement '\^UPDATE' --not-statement 'WHERE'$/,
    );
    expect(() => compileStatementPattern('(unclosed', '--not-statement')).toThrow(/^--not-statement: invalid pattern "\(unclosed": missing closing \)/);
    expect(() => compileStatementPattern('x'.repeat(201))).toThrow('--statement: the pattern has 201 characters, at most 200');
    expect(() => compileStatementPattern('')).toThrow('--statement: the pattern is empty');
  });

  it('counts string keys that a case-insensitive collation makes equal as the same row (a conflict is never missed)', () => {
    const shape: TableShape = { columns: 4, primaryKey: [{ ordinal: 4, name: 'name' }] };
    const bad = { ...updates[1]!, changes: [{ type: 'UPDATE' as const, table: 'shop.users', before: { 1: '1', 2: '1', 3: '10', 4: "'Ann'" }, after: { 1: '1', 2: '7', 3: '10', 4: "'Ann'" } }] };
    const later = { ...updates[2]!, changes: [{ type: 'UPDATE' as const, table: 'shop.users', before: { 1: '1', 2: '7', 3: '10', 4: "'ann '" }, after: { 1: '1', 2: '7', 3: '11', 4: "'ann '" } }] };
    expect(findConflicts(bad, [later], { 'shop.users': shape })).toMatchObject([{ table: 'shop.users', gtids: [later.gtid] }]);
  });
});
