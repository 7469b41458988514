/**
 * The consistency runbook's pure decisions: chunk sizing to a time target, which differences a
 * re-check confirms, which copy wins under each policy (and when a person must decide instead),
 * how timestamps compare, and how chunk results add up into a table's report.
 */
import { describe, expect, it } from 'vitest';
import { dialectFor } from '../../src/adapters/mysql/dialect';
import {
  addChunks,
  CHUNK_LIMITS,
  compareStamps,
  confirmedDifferences,
  decideKey,
  describeDifferences,
  differenceTotal,
  emptyTableReport,
  parsePolicy,
  policyFor,
  resize,
  startSizer,
  type RowDifference,
  type RowVersion,
} from '../../src/core/consistency';

const diff = (instance: string, key: number, kind: RowDifference['kind'] = 'changed', index = 0): RowDifference => ({
  instance,
  key: [key],
  keyText: JSON.stringify([String(key)]),
  kind,
  columns: kind === 'changed' ? ['v'] : [],
  chunk: { index, lower: null, upper: null },
});

describe('chunk sizing', () => {
  it('a fixed --chunk-rows never changes', () => {
    const s = startSizer(5000);
    expect(resize(s, 5000, 10_000, 500)).toEqual(s);
  });

  it('aims at the time target from the measured rate, smoothed, growing at most 4x a step', () => {
    let s = startSizer();
    expect(s.rows).toBe(CHUNK_LIMITS.initialRows);
    // 1000 rows in 10 ms: 100 rows/ms, 35,000 for 70% of 500 ms, but at most 4x the previous chunk.
    s = resize(s, 1000, 10, 500);
    expect(s.rows).toBe(4000);
    s = resize(s, 4000, 40, 500);
    expect(s.rows).toBe(16_000);
    // A slow chunk brings it down at once; speeding up again is gradual.
    s = resize(s, 16_000, 4000, 500);
    expect(s.rows).toBe(1400);
    // 4 rows/ms so far; a chunk at 100 rows/ms moves the average a quarter of the way (28 rows/ms,
    // 9,800 rows) but no more than 4x the chunk before; the next quarter: 46 rows/ms.
    s = resize(s, 1400, 14, 500);
    expect(s.rows).toBe(5600);
    s = resize(s, 5600, 56, 500);
    expect(s.rows).toBe(16_100);
  });

  it('stays within bounds', () => {
    expect(resize(startSizer(), 1000, 1_000_000, 500).rows).toBe(CHUNK_LIMITS.minRows);
    let s = startSizer();
    for (let i = 0; i < 20; i++) s = resize(s, s.rows, 1, 500);
    expect(s.rows).toBe(CHUNK_LIMITS.maxRows);
  });
});

describe('re-check', () => {
  it('confirms only what differs in both checks, as the re-check saw it', () => {
    const first = [diff('orders-b', 1), diff('orders-b', 2), diff('orders-c', 1)];
    const second = [{ ...diff('orders-b', 1), kind: 'missing' as const, columns: [] }, diff('orders-b', 3), diff('orders-c', 1)];
    expect(confirmedDifferences(first, second).map((d) => [d.instance, d.key[0], d.kind])).toEqual([
      ['orders-b', 1, 'missing'],
      ['orders-c', 1, 'changed'],
    ]);
  });
});

describe('policies', () => {
  it('parses the three policies and refuses anything else in one line', () => {
    expect(parsePolicy('source-wins')).toEqual({ kind: 'source-wins' });
    expect(parsePolicy('manual')).toEqual({ kind: 'manual' });
    expect(parsePolicy('newest-wins:updated_at')).toEqual({ kind: 'newest-wins', column: 'updated_at' });
    for (const bad of ['newest-wins', 'newest-wins:', 'newest-wins:a b', 'target-wins', '', 42, 'x'.repeat(100)]) {
      expect(parsePolicy(bad)).toHaveProperty('problem');
    }
  });

  it('the command wins over the config, a table over its schema', () => {
    const cfg = { 'shop.orders': 'newest-wins:updated_at', 'shop.*': 'manual' };
    expect(policyFor('shop.orders', undefined, cfg)).toBe('newest-wins:updated_at');
    expect(policyFor('shop.items', undefined, cfg)).toBe('manual');
    expect(policyFor('shop.items', 'source-wins', cfg)).toBe('source-wins');
    expect(policyFor('other.t', undefined, cfg)).toBeUndefined();
  });
});

describe('which copy wins', () => {
  const replication = { mode: 'replication' as const, applyOn: 'auto' as const };
  const v = (instance: string, digest: string | null, stamp?: unknown): RowVersion => ({ instance, present: digest !== null, digest, stamp });

  it('source-wins: every differing replica gets the primary row, unlogged; a row the primary lacks is deleted there', () => {
    expect(decideKey({ kind: 'source-wins' }, v('a', 'd1'), [v('b', 'd2'), v('c', null)], replication)).toMatchObject({
      action: 'repair',
      winner: 'a',
      writes: [
        { instance: 'b', op: 'write', logged: false },
        { instance: 'c', op: 'write', logged: false },
      ],
    });
    expect(decideKey({ kind: 'source-wins' }, v('a', null), [v('b', 'd2')], replication).writes).toEqual([{ instance: 'b', op: 'delete', logged: false }]);
  });

  it('newest-wins: the newer primary row goes to the replica; a newer replica row goes through the primary (logged)', () => {
    const p = { kind: 'newest-wins' as const, column: 'updated_at' };
    expect(decideKey(p, v('a', 'd1', '2026-01-02 00:00:00'), [v('b', 'd2', '2026-01-01 23:59:59.999999')], replication)).toMatchObject({
      winner: 'a',
      writes: [{ instance: 'b', op: 'write', logged: false }],
    });
    expect(decideKey(p, v('a', 'd1', '2026-01-02 00:00:00'), [v('b', 'd2', '2026-01-02 00:00:00.5')], replication)).toMatchObject({
      action: 'repair',
      winner: 'b',
      writes: [{ instance: 'a', op: 'write', logged: true }],
    });
  });

  it('newest-wins refuses rather than guesses: ties, NULL stamps, one-sided rows, the primary kept untouched', () => {
    const p = { kind: 'newest-wins' as const, column: 'ts' };
    expect(decideKey(p, v('a', 'd1', 5), [v('b', 'd2', 5)], replication)).toMatchObject({ action: 'queue', reason: expect.stringContaining('same ts') });
    expect(decideKey(p, v('a', 'd1', null), [v('b', 'd2', 5)], replication)).toMatchObject({ action: 'queue', reason: expect.stringContaining('NULL on a') });
    expect(decideKey(p, v('a', 'd1', 5), [v('b', null)], replication)).toMatchObject({ action: 'queue', reason: expect.stringContaining('absent on b') });
    expect(decideKey(p, v('a', 'd1', 5), [v('b', 'd2', 6)], { mode: 'replication', applyOn: 'replicas' })).toMatchObject({ action: 'queue', reason: expect.stringContaining('--apply-on replicas') });
    expect(decideKey(p, v('a', 'd1', 'soon'), [v('b', 'd2', 6)], replication)).toMatchObject({ action: 'queue' });
  });

  it('manual queues every difference and writes nothing', () => {
    expect(decideKey({ kind: 'manual' }, v('a', 'd1'), [v('b', 'd2')], replication)).toEqual({ action: 'queue', writes: [], reason: 'policy manual: a person decides' });
  });

  it('across regions every write is logged on the site that loses', () => {
    const cross = { mode: 'cross' as const, applyOn: 'auto' as const };
    expect(decideKey({ kind: 'source-wins' }, v('east', 'd1'), [v('west', 'd2')], cross).writes).toEqual([{ instance: 'west', op: 'write', logged: true }]);
    expect(decideKey({ kind: 'newest-wins', column: 'ts' }, v('east', 'd1', 1), [v('west', 'd2', 2)], cross).writes).toEqual([{ instance: 'east', op: 'write', logged: true }]);
  });
});

describe('timestamps', () => {
  it('orders datetimes by time whatever their fraction digits, numbers exactly', () => {
    expect(compareStamps('2026-01-01 00:00:00.1', '2026-01-01 00:00:00.09')).toBe(1);
    expect(compareStamps('2026-01-01 00:00:00', '2026-01-01 00:00:00.000000')).toBe(0);
    expect(compareStamps('2026-01-01', '2025-12-31 23:59:59')).toBe(1);
    expect(compareStamps('18446744073709551615', '18446744073709551614')).toBe(1);
    expect(compareStamps(3, '3')).toBe(0);
    expect(compareStamps('x', 1)).toBeUndefined();
    expect(compareStamps('2026-01-01', 5)).toBeUndefined();
  });
});

describe('the table report', () => {
  it('adds chunks up once, keeps a bounded list of examples', () => {
    let r = emptyTableReport('shop.t', ['id'], startSizer(10));
    const chunk = (index: number, diffs: RowDifference[]) => ({ bounds: { index, lower: null, upper: null }, sourceRows: 10, differingOn: diffs.length ? ['b'] : [], differences: diffs });
    r = addChunks(r, [chunk(0, []), chunk(1, [diff('b', 11), diff('b', 12, 'missing')])], { index: 2, lower: [20], sizer: startSizer(10) }, false);
    // The same batch reported again (a retried activity) changes nothing.
    r = addChunks(r, [chunk(1, [diff('b', 11)])], { index: 2, lower: [20], sizer: startSizer(10) }, false);
    r = addChunks(r, Array.from({ length: 30 }, (_, i) => chunk(2 + i, [diff('c', 100 + i, 'extra')])), { index: 32, lower: null, sizer: startSizer(10) }, true);
    expect(r).toMatchObject({ done: true, chunks: 32, rowsCompared: 320, differingChunks: 31 });
    expect(r.differences).toEqual({ b: { missing: 1, extra: 0, changed: 1 }, c: { missing: 0, extra: 30, changed: 0 } });
    expect(differenceTotal(r)).toBe(32);
    expect(r.examples).toHaveLength(20);
    expect(describeDifferences(r)).toBe('1 changed, 1 missing on b; 30 extra on c');
  });

  it('an unverifiable table is done from the start and says why', () => {
    const r = emptyTableReport('shop.log', [], startSizer(), 'no primary key or unique NOT NULL key');
    expect(r).toMatchObject({ done: true, unverifiable: 'no primary key or unique NOT NULL key', chunks: 0 });
  });
});

describe('the dialect of holding a replica at a position', () => {
  const maria = dialectFor('mariadb');
  it('MariaDB: UNTIL a GTID position (both threads) or a source binlog offset (the SQL thread alone), the snapshot position, the binlog end', () => {
    expect(maria.startReplicaUntil('0-1-10,1-2-5')).toEqual({ sql: 'START SLAVE UNTIL master_gtid_pos = ?', params: ['0-1-10,1-2-5'] });
    expect(maria.startReplicaSqlThreadUntil('mysql-bin.000002', 4711)).toEqual({ sql: 'START SLAVE SQL_THREAD UNTIL MASTER_LOG_FILE = ?, MASTER_LOG_POS = 4711', params: ['mysql-bin.000002'] });
    expect(() => maria.startReplicaSqlThreadUntil('mysql-bin.000002', 1.5)).toThrow();
    expect([maria.stopReplicaSqlThread(), maria.startReplicaSqlThread()]).toEqual(['STOP SLAVE SQL_THREAD', 'START SLAVE SQL_THREAD']);
    expect(maria.parseSnapshotBinlog([{ Variable_name: 'Binlog_snapshot_file', Value: 'mysql-bin.000003' }, { Variable_name: 'Binlog_snapshot_position', Value: '512' }])).toEqual({ file: 'mysql-bin.000003', position: 512 });
    expect(maria.parseSnapshotBinlog([{ Variable_name: 'Binlog_snapshot_file', Value: '' }, { Variable_name: 'Binlog_snapshot_position', Value: '0' }])).toBeNull();
    expect(maria.binlogGtidPosition('mysql-bin.000003', 512)).toEqual({ sql: 'SELECT BINLOG_GTID_POS(?, ?) AS p', params: ['mysql-bin.000003', 512] });
    expect(maria.parseBinlogEnd([{ File: 'mysql-bin.000009', Position: '77', Binlog_Do_DB: '' }])).toEqual({ file: 'mysql-bin.000009', position: 77 });
    expect(maria.parseBinlogEnd([])).toBeNull();
  });

  it('MySQL: refused where it has no equivalent, rather than guessed', () => {
    const mysql = dialectFor('mysql');
    expect(() => mysql.startReplicaUntil('x')).toThrow(/MariaDB only/);
    expect(() => mysql.snapshotBinlogQuery()).toThrow(/MariaDB only/);
    expect(mysql.startReplicaSqlThreadUntil('binlog.000001', 4).sql).toBe('START REPLICA SQL_THREAD UNTIL SOURCE_LOG_FILE = ?, SOURCE_LOG_POS = 4');
  });
});
