/** Failback decisions: the errant set by history (not by sequence numbers), purged binlogs, the method. */
import { describe, expect, it } from 'vitest';
import { binlogFileEvents, decideFailback, failbackAdvice, failbackInputProblems, findErrant, purgedPast, type BinlogFileEvents } from '../../src/core/failback';

const file = (name: string, startState: string, gtids: string[]): BinlogFileEvents => ({
  file: name,
  startState,
  transactions: gtids.map((gtid, i) => ({ gtid, file: name, startPosition: 100 * (i + 1), endPosition: 100 * (i + 1) + 50 })),
});
const set = (...gtids: string[]) => {
  const s = new Set(gtids);
  return (g: string) => s.has(g);
};

describe('binlogFileEvents', () => {
  it('cuts SHOW BINLOG EVENTS rows into transactions, DML and DDL, and reads the head state', () => {
    const rows = [
      { Pos: 4, Event_type: 'Format_desc', End_log_pos: 256, Info: 'Server ver' },
      { Pos: 256, Event_type: 'Gtid_list', End_log_pos: 299, Info: '[0-1-4]' },
      { Pos: 299, Event_type: 'Binlog_checkpoint', End_log_pos: 340, Info: 'mysql-bin.000001' },
      { Pos: 340, Event_type: 'Gtid', End_log_pos: 382, Info: 'BEGIN GTID 0-1-5' },
      { Pos: 382, Event_type: 'Annotate_rows', End_log_pos: 440, Info: 'INSERT …' },
      { Pos: 440, Event_type: 'Table_map', End_log_pos: 490, Info: 'table_id: 1' },
      { Pos: 490, Event_type: 'Write_rows_v1', End_log_pos: 530, Info: 'table_id: 1 flags: STMT_END_F' },
      { Pos: 530, Event_type: 'Xid', End_log_pos: 561, Info: 'COMMIT /* xid=9 */' },
      { Pos: 561, Event_type: 'Gtid', End_log_pos: 603, Info: 'GTID 0-1-6' },
      { Pos: 603, Event_type: 'Query', End_log_pos: 700, Info: 'DROP TABLE t' },
      { Pos: 700, Event_type: 'Rotate', End_log_pos: 744, Info: 'mysql-bin.000002;pos=4' },
    ];
    expect(binlogFileEvents('mysql-bin.000001', rows)).toEqual({
      file: 'mysql-bin.000001',
      startState: '0-1-4',
      transactions: [
        { gtid: '0-1-5', file: 'mysql-bin.000001', startPosition: 340, endPosition: 561 },
        { gtid: '0-1-6', file: 'mysql-bin.000001', startPosition: 561, endPosition: 700 },
      ],
    });
  });
  it('reads a head state that names a domain once per server (after a failover) as a position: the last GTID of each domain', () => {
    const head = [{ Pos: 256, Event_type: 'Gtid_list', End_log_pos: 299, Info: '[0-18701-9,0-18704-12,1-5-3]' }];
    expect(binlogFileEvents('mysql-bin.000002', head).startState).toBe('0-18704-12,1-5-3');
  });
});

describe('findErrant', () => {
  it('nothing errant when the instance is a prefix of the primary', () => {
    const a = findErrant({ instanceFiles: [file('b.1', '', ['0-1-1', '0-1-2'])], primaryHas: set('0-1-1', '0-1-2', '0-3-3'), primaryPosition: '0-3-3', primaryFloor: '' });
    expect(a).toMatchObject({ errant: [], commonPosition: '0-1-2', exact: true });
  });

  it('the lost tail of a killed primary is errant although its sequence numbers are behind', () => {
    // orders-a wrote 0-1-3 and 0-1-4; the promoted replica never got them and wrote 0-3-3 … 0-3-9.
    const a = findErrant({
      instanceFiles: [file('b.1', '', ['0-1-1', '0-1-2']), file('b.2', '0-1-2', ['0-1-3', '0-1-4'])],
      primaryHas: set('0-1-1', '0-1-2', ...[3, 4, 5, 6, 7, 8, 9].map((n) => `0-3-${n}`)),
      primaryPosition: '0-3-9',
      primaryFloor: '',
    });
    expect(a.errant.map((t) => t.gtid)).toEqual(['0-1-3', '0-1-4']);
    expect(a.commonPosition).toBe('0-1-2');
    expect(a.exact).toBe(true);
  });

  it('writes in a domain the primary never had are errant, per domain', () => {
    const a = findErrant({ instanceFiles: [file('b.1', '', ['0-1-1', '7-1-1', '0-1-2'])], primaryHas: set('0-1-1', '0-1-2'), primaryPosition: '0-1-2', primaryFloor: '' });
    expect(a.errant.map((t) => t.gtid)).toEqual(['7-1-1']);
    expect(a.domains.find((d) => d.domain === 7)).toMatchObject({ commonThrough: null });
    expect(a.exact).toBe(true);
  });

  it('not exact when no common transaction is in the binlogs read of a domain the primary has', () => {
    const a = findErrant({ instanceFiles: [file('b.9', '0-1-100', ['0-1-101'])], primaryHas: set('0-3-101'), primaryPosition: '0-3-101', primaryFloor: '' });
    expect(a.exact).toBe(false);
    expect(a.problems[0]).toMatch(/domain 0: no transaction/);
  });

  it('a transaction below the primary\'s purged floor counts as held (the purge check then decides)', () => {
    const a = findErrant({ instanceFiles: [file('b.1', '', ['0-1-5'])], primaryHas: set(), primaryPosition: '0-3-50', primaryFloor: '0-3-20' });
    expect(a).toMatchObject({ errant: [], commonPosition: '0-1-5' });
    expect(purgedPast(a.commonPosition, '0-3-20')).toEqual([{ domain: 0, primaryFrom: 20, instanceAt: 5 }]);
  });
});

describe('purgedPast', () => {
  it('nothing purged when the instance holds the head of the oldest binlog', () => {
    expect(purgedPast('0-1-20,1-2-3', '0-1-20')).toEqual([]);
    expect(purgedPast('0-1-20', '')).toEqual([]);
  });
  it('a domain the instance never had but the primary purged is purged', () => {
    expect(purgedPast('0-1-20', '0-1-10,2-5-4')).toEqual([{ domain: 2, primaryFrom: 4, instanceAt: 0 }]);
  });
});

describe('decideFailback', () => {
  const clean = { errant: 0, flashbackRefusals: [], purged: 0, exact: true };
  it('rejoin when nothing is errant and nothing purged', () => {
    expect(decideFailback(clean)).toMatchObject({ ok: true, method: 'rejoin' });
  });
  it('flashback when every errant transaction is row DML; reseed when one is not', () => {
    expect(decideFailback({ ...clean, errant: 2 })).toMatchObject({ ok: true, method: 'flashback' });
    expect(decideFailback({ ...clean, errant: 2, flashbackRefusals: ['0-1-9 is DDL'] })).toMatchObject({ ok: true, method: 'reseed-logical' });
  });
  it('reseed when binlogs were purged or the analysis is not exact', () => {
    expect(decideFailback({ ...clean, purged: 1 })).toMatchObject({ method: 'reseed-logical' });
    expect(decideFailback({ ...clean, exact: false })).toMatchObject({ method: 'reseed-logical' });
  });
  it('reseed a member on the backup lineage\'s stale list, whatever its newest history says; no rejoin or flashback may be asked for', () => {
    const stale = { ...clean, stale: 'it holds 0-1-7, which restore r1 skipped when it promoted orders-recovery' };
    expect(decideFailback(stale)).toMatchObject({ ok: true, method: 'reseed-logical', why: expect.stringMatching(/0-1-7/) });
    expect(decideFailback(stale, 'rejoin')).toMatchObject({ ok: false, refusal: expect.stringMatching(/--method rejoin refused: it holds 0-1-7/) });
    expect(decideFailback(stale, 'flashback')).toMatchObject({ ok: false });
  });
  it('--method only toward safer', () => {
    expect(decideFailback({ ...clean, errant: 1 }, 'rejoin')).toMatchObject({ ok: false, refusal: expect.stringMatching(/--method rejoin refused: 1 errant/) });
    expect(decideFailback({ ...clean, errant: 1, flashbackRefusals: ['x is DDL'] }, 'flashback')).toMatchObject({ ok: false });
    expect(decideFailback(clean, 'reseed-physical')).toMatchObject({ ok: true, method: 'reseed-physical' });
    expect(decideFailback({ ...clean, errant: 1 }, 'reseed-logical')).toMatchObject({ ok: true, method: 'reseed-logical' });
  });
});

describe('failbackInputProblems', () => {
  it('bounds the instance, the method and the incident', () => {
    expect(failbackInputProblems({ instance: 'orders-a', method: 'auto', incidentId: 'T1' })).toEqual([]);
    expect(failbackInputProblems({ instance: 'Orders A', method: 'magic', incidentId: 'a b' })).toHaveLength(3);
    expect(failbackInputProblems({ incidentId: 'T1' })).toEqual(['instance is required']);
  });
});

describe('findErrant with the instance position', () => {
  it('a domain with no transaction in the binlogs read is checked by its last GTID', () => {
    const held = findErrant({ instanceFiles: [file('b.2', '0-1-2', [])], primaryHas: set('0-1-2', '0-3-3'), primaryPosition: '0-3-3', primaryFloor: '', instancePosition: '0-1-2' });
    expect(held).toMatchObject({ errant: [], commonPosition: '0-1-2', exact: true });
    const unknown = findErrant({ instanceFiles: [file('b.2', '0-1-2', [])], primaryHas: set('0-3-2'), primaryPosition: '0-3-3', primaryFloor: '', instancePosition: '0-1-2' });
    expect(unknown.exact).toBe(false);
  });
});

describe('failbackAdvice', () => {
  it('names every reachable member replicating from nobody that is not the recorded writer', () => {
    const members = [
      { instance: 'orders-a', reachable: true, replicating: false },
      { instance: 'orders-b', reachable: true, replicating: false },
      { instance: 'orders-c', reachable: true, replicating: true },
      { instance: 'orders-d', reachable: false, replicating: false },
    ];
    expect(failbackAdvice('orders', members, 'orders-a')).toEqual(['orders-b needs failback: runbook failback orders --instance orders-b']);
    expect(failbackAdvice('orders', members, null)).toHaveLength(2);
  });
});
