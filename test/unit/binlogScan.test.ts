/** Where complete transactions end in a binlog's bytes, read as they arrive (a real MariaDB 10.11 file). */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { newScan, scanBinlog } from '../../src/core/binlogScan';

// DDL, a one-statement transaction, a two-statement transaction, DDL on MyISAM, a MyISAM insert
// (ends with a Query COMMIT, not an Xid), then the rotate that closed the file.
const file = readFileSync('test/fixtures/binlog/raw-small.bin');
/** Where each group ends, as `mariadb-binlog` prints it (end_log_pos of its last event). */
const groupEnds = [554, 770, 1138, 1294, 1539];

describe('scanBinlog', () => {
  it('reads a whole file: its transactions, first and last GTID, checksums, the rotate', () => {
    const s = scanBinlog(newScan(), file, 0);
    expect(s).toMatchObject({ transactions: 5, firstGtid: '0-99-17', lastGtid: '0-99-21', checksum: true, rotatedTo: 'mysql-bin.000005', boundary: file.length, offset: file.length });
    expect(s.group).toBeUndefined();
  });

  it('never puts the boundary inside a transaction, however the bytes arrive', () => {
    for (let cut = 0; cut <= file.length; cut++) {
      const s = scanBinlog(newScan(), file.subarray(0, cut), 0);
      const complete = groupEnds.filter((e) => e <= cut);
      expect(s.transactions, `cut at ${cut}`).toBe(complete.length);
      if (complete.length) expect(s.boundary).toBeGreaterThanOrEqual(complete.at(-1)!);
      // Not past the start of an unfinished group.
      const next = groupEnds.find((e) => e > cut);
      if (next && s.group) expect(s.boundary).toBeLessThanOrEqual(s.group.start);
    }
  });

  it('fed in pieces gives what the whole file gives', () => {
    for (const piece of [1, 7, 19, 100, 333]) {
      let s = newScan();
      for (let at = 0; at < file.length; at += piece) {
        // Each call sees the bytes from where the last complete event ended (what the archiver rereads).
        const upTo = Math.min(file.length, at + piece);
        s = scanBinlog(s, file.subarray(s.offset, upTo), s.offset);
      }
      expect(s).toEqual(scanBinlog(newScan(), file, 0));
    }
  });

  it('refuses bytes that are not a binlog', () => {
    expect(() => scanBinlog(newScan(), Buffer.from('hello world, not a binlog'), 0)).toThrow('not a binlog file');
  });
});
