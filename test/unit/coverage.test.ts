import { describe, expect, it } from 'vitest';
import { checkCoverage, lastTransactionAtOrBefore, parsePointInTime, refuseFuturePoint, walkCoverage, type ArchivedTransaction } from '../../src/core/coverage';
import type { BinlogArchiveEntry } from '../../src/core/manifest';
import { filesAfter } from '../../src/core/manifest';

const entry = (file: string): BinlogArchiveEntry => ({ file, sizeBytes: 1, sha256: 'x', complete: true });
const tx = (seq: number, file: string, t = seq * 1000): ArchivedTransaction => ({ gtid: `0-7-${seq}`, file, startPosition: seq * 100, timestamp: t });
const index = [entry('mysql-bin.000001'), entry('mysql-bin.000002'), entry('mysql-bin.000003')];
const txns = [tx(1, 'mysql-bin.000001'), tx(2, 'mysql-bin.000001'), tx(3, 'mysql-bin.000002'), tx(4, 'mysql-bin.000002'), tx(5, 'mysql-bin.000003')];

describe('checkCoverage', () => {
  it('accepts an unbroken run from the backup to the target and names the files it needs', () => {
    expect(checkCoverage({ index, damaged: [], transactions: txns, from: '0-7-2', to: '0-7-4' })).toEqual({
      ok: true, files: ['mysql-bin.000002'], transactions: 2, first: '0-7-3', last: '0-7-4',
    });
  });

  it('fed one transaction at a time, says when it has its answer: reading stops there', () => {
    const walk = walkCoverage({ index, damaged: [], from: '0-7-2', to: '0-7-4' });
    expect(walk.done).toBe(false);
    expect(txns.map((t) => walk.see(t))).toEqual([true, true, true, true, false]); // 0-7-5 is past the target
    expect(walk.result()).toEqual({ ok: true, files: ['mysql-bin.000002'], transactions: 2, first: '0-7-3', last: '0-7-4' });
    // A problem known before any transaction: nothing needs reading at all.
    expect(walkCoverage({ index: [index[0]!, index[2]!], damaged: [], from: '0-7-1', to: '0-7-5' }).done).toBe(true);
  });

  it('refuses a file missing from the sequence', () => {
    const r = checkCoverage({ index: [index[0]!, index[2]!], damaged: [], transactions: txns, from: '0-7-1', to: '0-7-5' });
    expect(r).toEqual({ ok: false, problem: 'binlog file mysql-bin.000002 is missing from the archive (between mysql-bin.000001 and mysql-bin.000003)' });
  });

  it('refuses a GTID gap and says where', () => {
    const r = checkCoverage({ index, damaged: [], transactions: txns.filter((t) => t.gtid !== '0-7-3' && t.gtid !== '0-7-4'), from: '0-7-1', to: '0-7-5' });
    expect(r).toEqual({ ok: false, problem: 'GTID gap: 0-*-3 … 0-*-4 missing after 0-7-2 (mysql-bin.000001:200), next is 0-7-5 in mysql-bin.000003' });
  });

  it('refuses an archive that starts after the backup', () => {
    const r = checkCoverage({ index, damaged: [], transactions: txns.slice(2), from: '0-7-1', to: '0-7-4' });
    expect(r.ok).toBe(false);
    expect(!r.ok && r.problem).toBe("GTID gap: 0-*-2 missing after the backup's 0-7-1, next is 0-7-3 in mysql-bin.000002");
  });

  it('refuses a target beyond the archive or before the backup, and a damaged file; the backup itself needs nothing', () => {
    expect(checkCoverage({ index, damaged: [], transactions: txns, from: '0-7-1', to: '0-7-9' })).toEqual({
      ok: false, problem: 'target 0-7-9 is beyond the archive, which holds 0-7-5 (mysql-bin.000003): archive newer binlogs (run a backup) first',
    });
    expect(checkCoverage({ index, damaged: [], transactions: txns, from: '0-7-4', to: '0-7-3' })).toEqual({ ok: false, problem: "target 0-7-3 is before the backup's position 0-7-4" });
    expect(checkCoverage({ index, damaged: [], transactions: txns, from: '0-7-4', to: '0-7-4' })).toEqual({ ok: true, files: [], transactions: 0, last: '0-7-4' });
    expect(checkCoverage({ index, damaged: [{ file: 'mysql-bin.000002', why: 'sha256 differs from the index' }], transactions: txns, from: '0-7-1', to: '0-7-4' })).toEqual({
      ok: false, problem: 'archived binlog mysql-bin.000002 is unusable: sha256 differs from the index',
    });
  });

  it('follows the target domain only, across a server id change (a failover)', () => {
    const mixed = [tx(1, 'mysql-bin.000001'), { ...tx(2, 'mysql-bin.000001'), gtid: '1-9-50' }, { ...tx(2, 'mysql-bin.000002'), gtid: '0-8-2' }];
    expect(checkCoverage({ index, damaged: [], transactions: mixed, from: '0-7-1,1-9-49', to: '0-8-2' })).toMatchObject({ ok: true, transactions: 1 });
  });
});

describe('points in time', () => {
  it('refuses a time without a zone, and a non-date', () => {
    expect(() => parsePointInTime('2026-03-14 09:26:53')).toThrow('point in time "2026-03-14 09:26:53" has no time zone: add Z or an offset like +08:00');
    expect(() => parsePointInTime('yesterday Z')).toThrow('is not an RFC 3339 date-time with an offset');
    expect(parsePointInTime('2026-03-14T17:26:53+08:00')).toBe(Date.UTC(2026, 2, 14, 9, 26, 53));
  });

  it('takes only RFC 3339 with an offset, and refuses impossible dates instead of rolling them over', () => {
    expect(parsePointInTime('2026-03-14 09:26:53Z')).toBe(Date.UTC(2026, 2, 14, 9, 26, 53));
    expect(parsePointInTime('2026-03-14T09:26:53.250-05:30')).toBe(Date.UTC(2026, 2, 14, 14, 56, 53, 250));
    expect(parsePointInTime('2024-02-29T00:00:00Z')).toBe(Date.UTC(2024, 1, 29));
    for (const [bad, why] of [
      ['12/02/2026 10:00:00 +0000', 'is not an RFC 3339 date-time with an offset'], // month/day order is a guess
      ['2026-02-30T10:00:00Z', 'is not a valid date-time (2026-02 has 28 days)'],
      ['2025-02-29T10:00:00Z', '2025-02 has 28 days'],
      ['2026-13-01T10:00:00Z', 'a field is out of range'],
      ['2026-03-14T24:00:00Z', 'a field is out of range'],
      ['2026-03-14T09:26Z', 'is not an RFC 3339'], // seconds are required
      ['2026-03-14T09:26:53+0800', 'is not an RFC 3339'], // the offset needs its colon
      ['2026-03-14T09:26:53+24:00', 'invalid offset +24:00'],
      ['Sat, 14 Mar 2026 09:26:53 GMT', 'is not an RFC 3339'],
    ] as const) {
      expect(() => parsePointInTime(bad, '--at'), bad).toThrow(why);
    }
    expect(() => parsePointInTime('2026-03-14T09:26:53+08:00'.padEnd(60, '0'), '--at')).toThrow(/^--at "2026-03-14T09:26:53\+08:0{17}…" is too long to be an RFC 3339 date-time$/);
  });

  it('refuses a point in the future', () => {
    const now = Date.UTC(2026, 11, 2, 12);
    expect(() => refuseFuturePoint(Date.UTC(2026, 11, 2, 20), now, '--at')).toThrow('--at 2026-12-02T20:00:00.000Z is in the future (now 2026-12-02T12:00:00.000Z): check the date and the offset');
    expect(() => refuseFuturePoint(now, now)).not.toThrow();
  });

  it('takes the last transaction committed at or before the second named', () => {
    expect(lastTransactionAtOrBefore(txns, 3999)?.gtid).toBe('0-7-3');
    expect(lastTransactionAtOrBefore(txns, 999)).toBeUndefined();
  });
});

describe('archived files a replay from a position needs', () => {
  const entry = (file: string, firstGtid?: string) => ({ file, sizeBytes: 1, sha256: 'x', complete: true, ...(firstGtid ? { firstGtid } : {}) });
  const index = [entry('mysql-bin.000001', '0-1-1'), entry('mysql-bin.000002', '0-1-11'), entry('mysql-bin.000003', '0-1-21'), entry('mysql-bin.000004')];

  it('skips files whose every transaction is at or before the position, never the one holding the next', () => {
    expect(filesAfter(index, '0-1-9').map((e) => e.file)).toEqual(['mysql-bin.000001', 'mysql-bin.000002', 'mysql-bin.000003', 'mysql-bin.000004']);
    expect(filesAfter(index, '0-1-10').map((e) => e.file)).toEqual(['mysql-bin.000002', 'mysql-bin.000003', 'mysql-bin.000004']);
    expect(filesAfter(index, '0-2-25').map((e) => e.file)).toEqual(['mysql-bin.000003', 'mysql-bin.000004']); // the server id does not matter
    expect(filesAfter(index, '1-1-99').map((e) => e.file)).toHaveLength(4); // another domain says nothing about these
    expect(filesAfter(index)).toHaveLength(4);
  });
});
