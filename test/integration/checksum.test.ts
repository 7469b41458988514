/**
 * Chunked table checksums (a 128-bit sum of per-row SHA-256 digests) against real MariaDB: the
 * primary and its replicas agree, a change made on one replica only is found in exactly the chunk
 * that holds it and then row by row, identical changes to an even number of rows never cancel (as
 * BIT_XOR of CRC32 did), and the edge cases (NULL against 'NULL', '' and 0, composite and binary
 * keys, no primary key with duplicate rows, missing tables) say what they are.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunbookConfig } from '../../src/config/load';
import { checksumTable, describeTable, diffChunkRows, rowDigests } from '../../src/adapters/mysql/checksum';
import { chunkQuery, diffChecksums, keyText, type TableChecksum } from '../../src/core/rowDigest';
import { connect, instanceEndpoint, type Conn } from '../../src/adapters/mysql/connect';
import type { Sandbox } from '../../src/adapters/mariadbd/sandbox';
import { eventually, startTestSandbox } from '../support/sandbox';
import { sql } from '../support/stack';

describe('table checksums', () => {
  let config: RunbookConfig;
  let sandbox: Sandbox | undefined;
  let a: Conn; // orders-a, the primary
  let b: Conn; // orders-b, a replica
  let c: Conn; // orders-c, a replica

  const rowsOf = async (conn: Conn, s: string) => (await conn.query(s))[0] as Record<string, unknown>[];
  const sumOn = async (conn: Conn, table: string, opts?: Parameters<typeof checksumTable>[2]) => {
    const sum = await checksumTable(conn, table, opts);
    if (!sum) throw new Error(`${table}: expected a checksum, got null`);
    return sum;
  };
  /** Write on a replica without binlogging it (no errant GTID): the admin user bypasses read_only. */
  const onReplicaOnly = (instance: string, ...statements: string[]) => sql(config, instance, 'SET SESSION sql_log_bin = 0', ...statements);

  beforeAll(async () => {
    ({ config, sandbox } = await startTestSandbox('checksum', 26000));
    await sql(
      config,
      'orders-a',
      'CREATE DATABASE ck',
      'USE ck', // the sequence engine's seq_1_to_N tables live in the current database
      // Single-column key, nullable and binary columns, a TIMESTAMP: 25k rows from the sequence engine.
      `CREATE TABLE ck.items (id INT PRIMARY KEY, name VARCHAR(40) NOT NULL, note VARCHAR(40) NULL, amount DECIMAL(10,2),
         tag VARBINARY(16), at TIMESTAMP(6) NULL) ENGINE=InnoDB`,
      `INSERT INTO ck.items SELECT seq, CONCAT('item-', seq), IF(seq % 7 = 0, NULL, CONCAT('n#', seq % 13)), seq / 4,
         UNHEX(MD5(seq)), IF(seq % 5 = 0, NULL, TIMESTAMP('2024-03-31 00:00:00') + INTERVAL seq MINUTE) FROM seq_1_to_25000`,
      // Composite key: 50 × 500.
      'CREATE TABLE ck.pairs (a INT NOT NULL, b INT NOT NULL, v VARCHAR(20), PRIMARY KEY (a, b)) ENGINE=InnoDB',
      "INSERT INTO ck.pairs SELECT x.seq, y.seq, CONCAT(x.seq, '/', y.seq) FROM seq_1_to_50 x, seq_1_to_500 y",
      // Binary key.
      'CREATE TABLE ck.bin (k VARBINARY(16) PRIMARY KEY, v INT) ENGINE=InnoDB',
      'INSERT INTO ck.bin SELECT UNHEX(MD5(seq)), seq FROM seq_1_to_1000',
      // No primary key (duplicate rows allowed).
      'CREATE TABLE ck.nopk (x INT, y VARCHAR(10)) ENGINE=InnoDB',
      "INSERT INTO ck.nopk SELECT seq % 10, 'dup' FROM seq_1_to_300",
      // A name that needs its backtick doubled.
      'CREATE TABLE ck.`we``ird` (id INT PRIMARY KEY, v VARCHAR(10)) ENGINE=InnoDB',
      "INSERT INTO ck.`we``ird` VALUES (1, 'x'), (2, NULL)",
      // NULL, 'NULL' and '' in the same place; values that contain the separator.
      'CREATE TABLE ck.null1 (id INT PRIMARY KEY, v VARCHAR(10) NULL)',
      'CREATE TABLE ck.null2 LIKE ck.null1',
      'CREATE TABLE ck.null3 LIKE ck.null1',
      'CREATE TABLE ck.null4 LIKE ck.null1',
      "INSERT INTO ck.null1 VALUES (1, NULL), (2, 'x')",
      "INSERT INTO ck.null2 VALUES (1, 'NULL'), (2, 'x')",
      "INSERT INTO ck.null3 VALUES (1, ''), (2, 'x')",
      "INSERT INTO ck.null4 VALUES (1, NULL), (2, 'x')",
      'CREATE TABLE ck.sep1 (id INT PRIMARY KEY, x VARCHAR(10), y VARCHAR(10))',
      'CREATE TABLE ck.sep2 LIKE ck.sep1',
      "INSERT INTO ck.sep1 VALUES (1, 'a#', 'b')",
      "INSERT INTO ck.sep2 VALUES (1, 'a', '#b')",
      // A NULL that moves between two nullable numbers: the text alone ('1#5') would not tell.
      'CREATE TABLE ck.shift1 (id INT PRIMARY KEY, a INT NULL, b INT NULL)',
      'CREATE TABLE ck.shift2 LIKE ck.shift1',
      'INSERT INTO ck.shift1 VALUES (1, NULL, 5)',
      'INSERT INTO ck.shift2 VALUES (1, 5, NULL)',
      // The same change to an even number of rows of each text length: BIT_XOR(CRC32) cancels it.
      'CREATE TABLE ck.flags (id INT PRIMARY KEY, flag TINYINT NOT NULL)',
      'INSERT INTO ck.flags SELECT seq, 1 FROM seq_10000_to_29999',
      // NULL, 0, '' and '0' in the same places.
      'CREATE TABLE ck.z1 (id INT PRIMARY KEY, n INT NULL, s VARCHAR(5) NULL)',
      'CREATE TABLE ck.z2 LIKE ck.z1',
      'CREATE TABLE ck.z3 LIKE ck.z1',
      'CREATE TABLE ck.z4 LIKE ck.z1',
      'INSERT INTO ck.z1 VALUES (1, NULL, NULL)',
      "INSERT INTO ck.z2 VALUES (1, 0, '')",
      "INSERT INTO ck.z3 VALUES (1, 0, '0')",
      "INSERT INTO ck.z4 VALUES (1, NULL, '')",
      // Duplicate rows without a key: {x, x, y} and {y, z, z} XOR alike, and must not sum alike.
      'CREATE TABLE ck.dup1 (v VARCHAR(5))',
      'CREATE TABLE ck.dup2 LIKE ck.dup1',
      'CREATE TABLE ck.dup3 LIKE ck.dup1',
      "INSERT INTO ck.dup1 VALUES ('x'), ('x'), ('y')",
      "INSERT INTO ck.dup2 VALUES ('y'), ('z'), ('z')",
      "INSERT INTO ck.dup3 VALUES ('y'), ('x'), ('x')",
      'CREATE TABLE ck.done (id INT PRIMARY KEY)',
      'INSERT INTO ck.done VALUES (1)',
    );
    a = await connect(instanceEndpoint(config, 'orders', 'orders-a'));
    b = await connect(instanceEndpoint(config, 'orders', 'orders-b'));
    c = await connect(instanceEndpoint(config, 'orders', 'orders-c'));
    for (const [instance, conn] of [['orders-b', b], ['orders-c', c]] as const) {
      await eventually(`setup replicated to ${instance}`, async () => (await rowsOf(conn, 'SELECT id FROM ck.done')).length === 1, 60_000);
    }
  });

  afterAll(async () => {
    for (const conn of [a, b, c]) conn?.destroy();
    await sandbox?.destroy();
  });

  it('finds the primary and a replica equal, chunked at the same boundaries', async () => {
    const onA = await sumOn(a, 'ck.items');
    expect(onA).toMatchObject({ table: 'ck.items', rows: 25000, primaryKey: ['id'], columns: ['id', 'name', 'note', 'amount', 'tag', 'at'] });
    expect(onA.boundaries).toEqual([[10000], [20000]]);
    expect(onA.chunks.map((ch) => [ch.lower, ch.upper, ch.rows])).toEqual([
      [null, [10000], 10000],
      [[10000], [20000], 10000],
      [[20000], null, 5000],
    ]);
    expect(onA.checksum).toMatch(/^[0-9a-f]{32}$/);
    expect(onA.note).toBe('chunked on the primary key (id) every 10000 rows: 3 chunks, 25000 rows');

    const onC = await sumOn(c, 'ck.items', { boundaries: onA.boundaries });
    expect(onC.boundaries).toEqual(onA.boundaries);
    expect(onC.chunks).toEqual(onA.chunks);
    expect(onC.checksum).toBe(onA.checksum);
    expect(diffChecksums(onA, onC)).toEqual({ equal: true, differingChunks: [], note: `ck.items: equal (25000 rows in 3 chunks, checksum ${onA.checksum})` });

    // Smaller chunks: more of them, and the overall checksum does not depend on the chunking.
    const fine = await sumOn(a, 'ck.items', { chunkRows: 4000 });
    expect(fine.chunks).toHaveLength(7);
    expect(fine.chunks.map((ch) => ch.rows)).toEqual([4000, 4000, 4000, 4000, 4000, 4000, 1000]);
    expect(fine.checksum).toBe(onA.checksum);
    // Different chunkings cannot be compared chunk by chunk, but the totals still are.
    expect(diffChecksums(fine, onC)).toMatchObject({ equal: true, differingChunks: [], note: expect.stringContaining('chunks do not line up') });
  });

  it('sums each chunk with one range scan on the primary key', async () => {
    /** This session's handler counters: rows read through an index (read_next) or by table scan (read_rnd_next). */
    const handlerReads = async (conn: Conn) =>
      Object.fromEntries(
        (await rowsOf(conn, "SHOW SESSION STATUS LIKE 'Handler_read%'")).map((r) => [String(r.Variable_name), Number(r.Value)]),
      ) as Record<string, number>;
    const cases: [string, unknown[] | null, unknown[] | null, number][] = [
      ['ck.items', [10000], [20000], 10000],
      ['ck.items', null, [10000], 10000],
      ['ck.pairs', [10, 250], [20, 250], 5000],
      ['ck.pairs', null, [8, 500], 4000],
      ['ck.pairs', [48, 500], null, 1000],
    ];
    for (const [table, lower, upper, rows] of cases) {
      const shape = (await describeTable(a, table))!;
      const { sql: q, params } = chunkQuery(shape, lower, upper);
      expect(q.slice(q.indexOf(' WHERE '))).not.toMatch(/\d/); // bounds are bound parameters, not SQL text
      const [plan] = (await a.query(`EXPLAIN ${q}`, params))[0] as Record<string, unknown>[];
      expect(plan, `${table} ${JSON.stringify([lower, upper])}`).toMatchObject({ type: 'range', key: 'PRIMARY' });
      // What the scan actually read: the chunk's rows through the primary key, nothing more.
      const before = await handlerReads(a);
      const [sum] = (await a.query(q, params))[0] as Record<string, unknown>[];
      const after = await handlerReads(a);
      expect(Number(sum!.n)).toBe(rows);
      expect(after.Handler_read_next! - before.Handler_read_next!).toBeLessThanOrEqual(rows + 2);
      expect(after.Handler_read_rnd_next! - before.Handler_read_rnd_next!).toBeLessThan(100); // no table scan
    }

    // The whole checksum, boundary walk included, reads each row about twice (walk, then sum):
    // each walk step starts at the previous boundary instead of rescanning from the start.
    for (const table of ['ck.items', 'ck.pairs']) {
      const before = await handlerReads(a);
      const sum = await sumOn(a, table, { chunkRows: 2500 });
      const after = await handlerReads(a);
      expect(sum.chunks.map((ch) => ch.rows)).toEqual(Array(10).fill(2500)); // no empty chunk after the last key
      expect(after.Handler_read_next! - before.Handler_read_next!).toBeLessThanOrEqual(2 * 25000 + 50);
      expect(after.Handler_read_rnd_next! - before.Handler_read_rnd_next!).toBeLessThan(200);
    }
  });

  it('finds a row changed on one replica only in exactly the chunk that holds it', async () => {
    await onReplicaOnly('orders-b', "UPDATE ck.items SET name = 'changed' WHERE id = 12345");
    const onA = await sumOn(a, 'ck.items');
    const onB = await sumOn(b, 'ck.items', { boundaries: onA.boundaries });
    const diff = diffChecksums(onA, onB);
    expect(diff.equal).toBe(false);
    expect(diff.differingChunks).toEqual([
      { index: 1, lower: [10000], upper: [20000], rowsA: 10000, rowsB: 10000, digestA: onA.chunks[1]!.digest, digestB: onB.chunks[1]!.digest },
    ]);
    expect(diffChecksums(onA, onB, { a: 'production', b: 'orders-b' }).note).toBe(
      `ck.items: 1 of 3 chunks differ between production and orders-b: (10000) < pk <= (20000) (production 10000 rows ${onA.chunks[1]!.digest.slice(0, 12)}…, orders-b 10000 rows ${onB.chunks[1]!.digest.slice(0, 12)}…)`,
    );
    expect(onB.checksum).not.toBe(onA.checksum);
    // Row by row, the chunk names exactly the row.
    const shape = (await describeTable(a, 'ck.items'))!;
    expect(await diffChunkRows(a, b, shape, [10000], [20000])).toEqual({ onlyA: [], onlyB: [], changed: [[12345]], rowsA: 10000, rowsB: 10000 });

    // A row beyond the last boundary, on the other replica only: the open-ended last chunk has it.
    await onReplicaOnly('orders-c', "INSERT INTO ck.items (id, name) VALUES (30000, 'extra')");
    const onC = await sumOn(c, 'ck.items', { boundaries: onA.boundaries });
    expect(diffChecksums(onA, onC).differingChunks).toMatchObject([{ index: 2, lower: [20000], upper: null, rowsA: 5000, rowsB: 5001 }]);
    expect(diffChecksums(onA, onC).note).toContain('1 of 3 chunks differ between A and B: pk > (20000) (A 5000 rows');
    expect(await diffChunkRows(a, c, (await describeTable(a, 'ck.items'))!, [20000], null)).toMatchObject({ onlyA: [], onlyB: [[30000]], changed: [] });
  });

  it('tells NULL from the string NULL and from the empty string, and separators inside values', async () => {
    const [n1, n2, n3, n4] = await Promise.all(['ck.null1', 'ck.null2', 'ck.null3', 'ck.null4'].map((t) => sumOn(a, t)));
    expect(new Set([n1!.checksum, n2!.checksum, n3!.checksum]).size).toBe(3);
    expect(n4!.checksum).toBe(n1!.checksum);
    const diff = diffChecksums(n1!, n2!);
    expect(diff.equal).toBe(false);
    expect(diff.differingChunks).toMatchObject([{ lower: null, upper: null, rowsA: 2, rowsB: 2 }]);
    expect(diff.note).toMatch(/^ck\.null1 \(A\) \/ ck\.null2 \(B\): 1 of 1 chunks differ between A and B: whole table/);

    const [s1, s2] = await Promise.all([sumOn(a, 'ck.sep1'), sumOn(a, 'ck.sep2')]);
    expect(s1.checksum).not.toBe(s2.checksum);
    const [m1, m2] = await Promise.all([sumOn(a, 'ck.shift1'), sumOn(a, 'ck.shift2')]);
    expect(m1.checksum).not.toBe(m2.checksum);
  });

  it('an identical change to an even number of rows never cancels out (BIT_XOR of CRC32 did)', async () => {
    await onReplicaOnly('orders-b', 'UPDATE ck.flags SET flag = 0');
    // The old checksum really is blind to this change: the case tests what it claims.
    const oldStyle = async (conn: Conn) => String((await rowsOf(conn, "SELECT BIT_XOR(CRC32(CONCAT_WS('#', id, flag))) AS x FROM ck.flags"))[0]!.x);
    expect(await oldStyle(b)).toBe(await oldStyle(a));
    const onA = await sumOn(a, 'ck.flags');
    const onB = await sumOn(b, 'ck.flags', { boundaries: onA.boundaries });
    expect(onB.checksum).not.toBe(onA.checksum);
    const diff = diffChecksums(onA, onB);
    expect(diff.equal).toBe(false);
    expect(diff.differingChunks).toHaveLength(2);
    const shape = (await describeTable(a, 'ck.flags'))!;
    const rows = await diffChunkRows(a, b, shape, null, onA.boundaries[0]!);
    expect(rows.changed).toHaveLength(10000);
    expect(rows.onlyA.length + rows.onlyB.length).toBe(0);
  });

  it('tells NULL from 0, from the empty string and from the string 0', async () => {
    const sums = await Promise.all(['ck.z1', 'ck.z2', 'ck.z3', 'ck.z4'].map((t) => sumOn(a, t)));
    expect(new Set(sums.map((x) => x.checksum)).size).toBe(4);
  });

  it('counts duplicate rows of a table without a key instead of cancelling them', async () => {
    const [d1, d2, d3] = await Promise.all(['ck.dup1', 'ck.dup2', 'ck.dup3'].map((t) => sumOn(a, t)));
    expect(d1!.checksum).not.toBe(d2!.checksum);
    expect(d3!.checksum).toBe(d1!.checksum); // order does not matter
    // The same on two servers, row by row: the surplus of each side, as digests (no key to name).
    await onReplicaOnly('orders-b', "DELETE FROM ck.dup1 WHERE v = 'x'", "INSERT INTO ck.dup1 VALUES ('z'), ('z')");
    const onA = await sumOn(a, 'ck.dup1');
    const onB = await sumOn(b, 'ck.dup1');
    expect(diffChecksums(onA, onB).equal).toBe(false);
    const rows = await diffChunkRows(a, b, (await describeTable(a, 'ck.dup1'))!, null, null);
    expect(rows).toMatchObject({ changed: [], rowsA: 3, rowsB: 3 });
    // Two x rows only on A, two z rows only on B: each side's surplus, twice the same digest.
    expect(rows.onlyA).toHaveLength(2);
    expect(rows.onlyB).toHaveLength(2);
    expect(rows.onlyA[0]).toEqual(rows.onlyA[1]);
    expect(rows.onlyB[0]).toEqual(rows.onlyB[1]);
    expect(rows.onlyA[0]).not.toEqual(rows.onlyB[0]);
  });

  it('reads the digests of rows named by key, locking them for a compare-and-set', async () => {
    const shape = (await describeTable(a, 'ck.pairs'))!;
    const keys = [[1, 1], [50, 500], [51, 1]];
    const digests = await rowDigests(a, shape, keys);
    expect(digests.get(keyText([1, 1]))).toMatch(/^[0-9a-f]{64}$/);
    expect(digests.get(keyText([51, 1]))).toBeNull();
    expect(digests.size).toBe(3);
    const same = await rowDigests(c, shape, keys);
    expect([...same.entries()]).toEqual([...digests.entries()]);
  });

  it('does not depend on the session time zone (TIMESTAMP columns are compared as instants)', async () => {
    const tz = await connect(instanceEndpoint(config, 'orders', 'orders-a'));
    try {
      await tz.query("SET time_zone = '+05:30'");
      const shifted = await sumOn(tz, 'ck.items');
      expect(diffChecksums(await sumOn(a, 'ck.items'), shifted).equal).toBe(true);
    } finally {
      tz.destroy();
    }
  });

  it('chunks a composite primary key with row-constructor bounds', async () => {
    const onA = await sumOn(a, 'ck.pairs', { chunkRows: 4000 });
    expect(onA.primaryKey).toEqual(['a', 'b']);
    expect(onA.rows).toBe(25000);
    expect(onA.boundaries).toEqual([[8, 500], [16, 500], [24, 500], [32, 500], [40, 500], [48, 500]]);
    expect(onA.chunks.map((ch) => ch.rows)).toEqual([4000, 4000, 4000, 4000, 4000, 4000, 1000]);
    const onC = await sumOn(c, 'ck.pairs', { boundaries: onA.boundaries });
    expect(diffChecksums(onA, onC).equal).toBe(true);

    // A boundary in the middle of a value of the first column.
    const odd = await sumOn(a, 'ck.pairs', { chunkRows: 3333 });
    expect(odd.boundaries[0]).toEqual([7, 333]);
    expect(odd.chunks.slice(0, 2).map((ch) => ch.rows)).toEqual([3333, 3333]);
    expect(odd.checksum).toBe(onA.checksum);

    await onReplicaOnly('orders-b', "UPDATE ck.pairs SET v = 'changed' WHERE a = 20 AND b = 250");
    const diff = diffChecksums(onA, await sumOn(b, 'ck.pairs', { boundaries: onA.boundaries }));
    expect(diff.differingChunks).toMatchObject([{ index: 2, lower: [16, 500], upper: [24, 500], rowsA: 4000, rowsB: 4000 }]);
    expect(diff.note).toContain('1 of 7 chunks differ between A and B: (16, 500) < pk <= (24, 500)');
  });

  it('chunks a binary primary key, with boundaries that went through JSON', async () => {
    const onA = await sumOn(a, 'ck.bin', { chunkRows: 300 });
    expect(onA.chunks.map((ch) => ch.rows)).toEqual([300, 300, 300, 100]);
    expect(Buffer.isBuffer(onA.boundaries[0]![0])).toBe(true);
    const boundaries = JSON.parse(JSON.stringify(onA.boundaries)) as unknown[][];
    const onC = await sumOn(c, 'ck.bin', { boundaries });
    expect(diffChecksums(onA, onC)).toMatchObject({ equal: true, differingChunks: [] });
  });

  it('checksums a table without a primary key as one chunk, and says so', async () => {
    const onA = await sumOn(a, 'ck.nopk');
    expect(onA).toMatchObject({ rows: 300, primaryKey: [], boundaries: [] });
    expect(onA.chunks).toEqual([{ index: 0, lower: null, upper: null, rows: 300, digest: onA.checksum }]);
    expect(onA.note).toBe('ck.nopk has no primary key: checksummed as one chunk over the whole table (a full scan): 1 chunk, 300 rows');
    const onC = await sumOn(c, 'ck.nopk', { boundaries: onA.boundaries });
    expect(diffChecksums(onA, onC).equal).toBe(true);

    await onReplicaOnly('orders-b', "DELETE FROM ck.nopk WHERE x = 3 LIMIT 1");
    const diff = diffChecksums(onA, await sumOn(b, 'ck.nopk'));
    expect(diff.differingChunks).toMatchObject([{ lower: null, upper: null, rowsA: 300, rowsB: 299 }]);
    expect(diff.note).toContain('1 of 1 chunks differ between A and B: whole table (A 300 rows');
  });

  it('quotes identifiers that contain a backtick', async () => {
    const onA = await sumOn(a, 'ck.we`ird');
    expect(onA).toMatchObject({ rows: 2, primaryKey: ['id'] });
    expect(diffChecksums(onA, await sumOn(c, 'ck.we`ird', { boundaries: onA.boundaries })).equal).toBe(true);
  });

  it('returns null for a missing table, and the diff says which side lacks it', async () => {
    expect(await checksumTable(a, 'ck.nope')).toBeNull();
    expect(await checksumTable(b, 'nodb.items')).toBeNull();
    const present: TableChecksum = await sumOn(a, 'ck.null1');
    expect(diffChecksums(present, null)).toEqual({ equal: false, differingChunks: [], note: 'ck.null1 is missing on B (present on A with 2 rows)' });
    expect(diffChecksums(null, present)).toEqual({ equal: false, differingChunks: [], note: 'ck.null1 is missing on A (present on B with 2 rows)' });
    expect(diffChecksums(null, null)).toMatchObject({ equal: true, note: 'the table exists on neither side' });
  });

  it('rejects a malformed table name with a one-line error', async () => {
    for (const bad of ['items', 'ck.items.x', '.items', 'ck.', 'ck.items ', `ck.${'x'.repeat(65)}`]) {
      await expect(checksumTable(a, bad)).rejects.toThrow(`invalid table name ${JSON.stringify(bad)}: expected "db.table"`);
    }
    await expect(checksumTable(a, 'ck.items', { chunkRows: 0 })).rejects.toThrow('chunkRows must be a positive integer, got 0');
  });
});
