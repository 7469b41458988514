/** Cutting `mariadb-binlog -vv` output (a real capture from MariaDB 10.11.19) into transactions. */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { findCandidates, flashbackRefusal, parseBinlogText } from '../../src/backup/binlogEvents';

const text = readFileSync('test/fixtures/binlog/drop-and-update.txt', 'utf8');
const groups = parseBinlogText(text, 'mysql-bin.000001');

describe('parseBinlogText', () => {
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
    expect(findCandidates(groups, { table: 'shop.users', statement: '^UPDATE(?!.*WHERE)' }).map((g) => g.gtid)).toEqual(['0-25501-6']);
    expect(findCandidates(groups, { from: Date.UTC(2026, 10, 23, 3, 4), statement: 'DROP' })).toEqual([]);
  });

  it('refuses flashback over DDL and allows it over row changes', () => {
    expect(flashbackRefusal(groups[6]!)).toBe('0-25501-7 is DDL (DROP TABLE `shop`.`orders`): flashback cannot undo it; use restore and replay');
    expect(flashbackRefusal(groups[5]!)).toBeUndefined();
  });
});
