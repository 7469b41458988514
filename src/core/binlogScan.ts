/**
 * Where a MariaDB binlog file's complete transactions end, read from its bytes as they arrive.
 * Pure (no I/O): the continuous archiver feeds it what `mariadb-binlog --raw --stop-never` has
 * written so far and copies into the archive only up to `boundary`, so the archive never holds half
 * a transaction (a restore that replayed one would apply half of it).
 *
 * Format (binlog v4): a 4-byte magic, then events, each a 19-byte header (timestamp, type, server
 * id, event length, next position, flags) and a body. A transaction (event group) starts with a
 * GTID event (type 162; its body is seq_no u64, domain_id u32, flags2 u8) and ends with an XID
 * event (16), a Query event `COMMIT` (or `ROLLBACK`, a non-transactional group), or an XA PREPARE
 * event; a group flagged standalone (FL_STANDALONE, DDL) ends with its one Query event. Events
 * outside groups (format description, GTID list, binlog checkpoint, rotate) end where they end.
 * Whether events carry a CRC32 trailer is read from the format description event.
 */

export interface BinlogScan {
  /** Where the next event to read starts. */
  offset: number;
  /** Bytes before this hold only whole transactions (and events outside any). */
  boundary: number;
  /** Events carry a 4-byte CRC32 at their end (from the format description event). */
  checksum: boolean;
  /** Inside a transaction that started at `groupStart`. */
  group?: { gtid: string; start: number; standalone: boolean };
  /** The first and the last complete transaction, and when the last was committed (epoch ms). */
  firstGtid?: string;
  lastGtid?: string;
  lastAt?: number;
  /** Complete transactions seen. */
  transactions: number;
  /** A rotate event closed the file: it will not grow (the name of the next one). */
  rotatedTo?: string;
}

const MAGIC = Buffer.from([0xfe, 0x62, 0x69, 0x6e]);
const HEADER = 19;
const QUERY = 2;
const STOP = 3;
const ROTATE = 4;
const FORMAT_DESCRIPTION = 15;
const XID = 16;
const XA_PREPARE = 38;
const GTID = 162;
const FL_STANDALONE = 1;

export function newScan(): BinlogScan {
  return { offset: 0, boundary: 0, checksum: false, transactions: 0 };
}

/**
 * Read the events wholly inside `bytes` (the file's bytes from `from` on) after `scan.offset`,
 * and return the new state. Throws on bytes that are not a binlog (a wrong magic, an impossible
 * event length): the archive must not take them.
 */
export function scanBinlog(scan: BinlogScan, bytes: Buffer, from: number): BinlogScan {
  const s: BinlogScan = { ...scan, group: scan.group && { ...scan.group } };
  const at = (pos: number) => pos - from;
  if (s.offset === 0) {
    if (bytes.length - at(0) < 4) return s;
    if (!bytes.subarray(at(0), at(4)).equals(MAGIC)) throw new Error('not a binlog file: its first bytes are not the binlog magic');
    s.offset = s.boundary = 4;
  }
  for (;;) {
    const start = s.offset;
    if (at(start) + HEADER > bytes.length) return s;
    const header = bytes.subarray(at(start), at(start) + HEADER);
    const timestamp = header.readUInt32LE(0) * 1000;
    const type = header.readUInt8(4);
    const serverId = header.readUInt32LE(5);
    const length = header.readUInt32LE(9);
    if (length < HEADER || length > 1 << 30) throw new Error(`impossible event length ${length} at ${start}`);
    if (at(start) + length > bytes.length) return s; // still being written
    const end = start + length;
    const body = bytes.subarray(at(start) + HEADER, at(end) - (s.checksum && type !== FORMAT_DESCRIPTION ? 4 : 0));
    s.offset = end;
    const endGroup = () => {
      s.firstGtid ??= s.group!.gtid;
      s.lastGtid = s.group!.gtid;
      s.lastAt = timestamp;
      s.transactions++;
      s.group = undefined;
      s.boundary = end;
    };
    if (type === GTID) {
      const seq = body.readBigUInt64LE(0);
      const domain = body.readUInt32LE(8);
      const flags = body.readUInt8(12);
      s.group = { gtid: `${domain}-${serverId}-${seq}`, start, standalone: (flags & FL_STANDALONE) !== 0 };
    } else if (s.group) {
      if (type === XID || type === XA_PREPARE) endGroup();
      else if (type === QUERY && (s.group.standalone || /^(COMMIT|ROLLBACK)$/i.test(queryText(body)))) endGroup();
    } else {
      if (type === FORMAT_DESCRIPTION) s.checksum = bytes.readUInt8(at(end) - 5) === 1;
      if (type === ROTATE) s.rotatedTo = body.subarray(8).toString('latin1');
      if (type === STOP) s.rotatedTo ??= '';
      s.boundary = end;
    }
  }
}

/** The statement of a Query event body (post-header: thread id, exec time, db length, error, status-vars length). */
function queryText(body: Buffer): string {
  if (body.length < 13) return '';
  const dbLength = body.readUInt8(8);
  const statusLength = body.readUInt16LE(11);
  return body.subarray(13 + statusLength + dbLength + 1).toString('latin1').trim();
}
