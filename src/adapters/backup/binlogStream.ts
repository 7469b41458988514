/**
 * Continuous binlog archiving, the file side: `mariadb-binlog --read-from-remote-server --raw
 * --stop-never` writes the primary's binlogs into `<archive>/.stream/` as the primary writes them;
 * the publisher copies each file's complete transactions into the archive proper
 * (`<archive>/<file>`, appended, never rewritten) and keeps its `index.json` entry (size, sha256,
 * first GTID, complete once the file was rotated) in step. Readers (locate, coverage, replay) only
 * ever see whole transactions and an index that matches the bytes.
 *
 * A restart (a worker killed, the primary back) streams the incomplete file again from its start:
 * its bytes up to what the archive holds must be the same (sha256), else the archive holds another
 * server's binlog of that name and publishing is refused.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, stat, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import { newScan, scanBinlog, type BinlogScan } from '../../core/binlogScan';
import { compareBinlogNames, type BinlogArchiveEntry } from '../../core/manifest';

export const STREAM_DIR = '.stream';

interface Published {
  scan: BinlogScan;
  /** Bytes copied into the archive: always a transaction boundary. */
  archived: number;
  hash: Hash;
  complete: boolean;
}

export class ArchiveConflictError extends Error {}

export class StreamPublisher {
  private readonly files = new Map<string, Published>();
  private readonly entries = new Map<string, BinlogArchiveEntry>();

  constructor(
    private readonly dir: string,
    index: BinlogArchiveEntry[],
  ) {
    for (const e of index) this.entries.set(e.file, { ...e });
  }

  get streamDir(): string {
    return join(this.dir, STREAM_DIR);
  }

  /** The archive index as it stands, in file order. */
  index(): BinlogArchiveEntry[] {
    return [...this.entries.values()].sort((a, b) => compareBinlogNames(a.file, b.file));
  }

  /** The last complete transaction archived, and when it was committed (epoch ms). */
  last(): { gtid?: string; at?: number; file?: string } {
    let best: { gtid?: string; at?: number; file?: string } = {};
    for (const [file, p] of [...this.files].sort(([a], [b]) => compareBinlogNames(a, b))) if (p.scan.lastGtid) best = { gtid: p.scan.lastGtid, at: p.scan.lastAt, file };
    return best;
  }

  /**
   * Copy what the stream has added since the last call: for each streamed file, its complete
   * transactions. Returns the files whose archive entry changed.
   */
  async publish(): Promise<string[]> {
    await mkdir(this.streamDir, { recursive: true, mode: 0o700 });
    const streamed = (await readdir(this.streamDir)).filter((f) => /\.\d+$/.test(f)).sort(compareBinlogNames);
    const changed: string[] = [];
    for (const file of streamed) {
      const p = this.files.get(file) ?? (await this.begin(file));
      if (!p || p.complete) continue;
      const size = (await stat(join(this.streamDir, file))).size;
      if (size > p.scan.offset) p.scan = scanBinlog(p.scan, await readRange(join(this.streamDir, file), p.scan.offset, size), p.scan.offset);
      const grew = p.scan.boundary > p.archived;
      if (grew) {
        const bytes = await readRange(join(this.streamDir, file), p.archived, p.scan.boundary);
        const out = await open(join(this.dir, file), 'a', 0o600);
        try {
          await out.write(bytes, 0, bytes.length, p.archived);
          await out.sync();
        } finally {
          await out.close();
        }
        p.hash.update(bytes);
        p.archived = p.scan.boundary;
      }
      const closed = p.scan.rotatedTo !== undefined && p.archived === p.scan.offset;
      if (grew || closed !== p.complete) {
        p.complete = closed;
        this.entries.set(file, {
          file,
          sizeBytes: p.archived,
          sha256: p.hash.copy().digest('hex'),
          ...((p.scan.firstGtid ?? this.entries.get(file)?.firstGtid) ? { firstGtid: p.scan.firstGtid ?? this.entries.get(file)!.firstGtid! } : {}),
          complete: closed,
        });
        changed.push(file);
      }
    }
    return changed;
  }

  /**
   * Start publishing a streamed file. An incomplete archived copy continues where it ends, once
   * the stream has re-read that far and its bytes are the same; a complete one is left alone.
   * Undefined: not yet (the stream has not re-read as far as the archive holds).
   */
  private async begin(file: string): Promise<Published | undefined> {
    const entry = this.entries.get(file);
    const archivePath = join(this.dir, file);
    if (entry?.complete) {
      const p: Published = { scan: newScan(), archived: entry.sizeBytes, hash: createHash('sha256'), complete: true };
      this.files.set(file, p);
      return p;
    }
    const have = entry?.sizeBytes ?? 0;
    if (have > 0) {
      const streamedSize = (await stat(join(this.streamDir, file))).size;
      if (streamedSize < have) return undefined;
      const { hash, scan } = await hashAndScan(join(this.streamDir, file), have);
      if (hash.copy().digest('hex') !== entry!.sha256) {
        throw new ArchiveConflictError(`the primary's ${file} does not begin with the ${have} bytes archived under that name in ${this.dir}: another server's binlog (was its binary log reset?); move that archive aside to start a new one`);
      }
      // Bytes a crash appended after the index was last written are not trusted: cut back to it.
      await truncate(archivePath, have).catch(async (err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err;
        throw new ArchiveConflictError(`${archivePath} is missing but its index entry says ${have} bytes: the archive was damaged`);
      });
      const p: Published = { scan, archived: have, hash, complete: false };
      this.files.set(file, p);
      return p;
    }
    // Nothing archived of it yet: whatever a crash left there is not indexed, and goes.
    const fresh = await open(archivePath, 'w', 0o600);
    await fresh.close();
    const p: Published = { scan: newScan(), archived: 0, hash: createHash('sha256'), complete: false };
    this.files.set(file, p);
    return p;
  }
}

/** The sha256 and the scan of a file's first `size` bytes, read in pieces (a binlog may be a gigabyte). */
async function hashAndScan(path: string, size: number): Promise<{ hash: Hash; scan: BinlogScan }> {
  const hash = createHash('sha256');
  let scan = newScan();
  let carry = Buffer.alloc(0); // bytes from scan.offset not yet scanned as a whole event
  let at = 0;
  for await (const chunk of createReadStream(path, { start: 0, end: size - 1, highWaterMark: 16 * 1024 * 1024 })) {
    const piece = chunk as Buffer;
    hash.update(piece);
    const from = at - carry.length;
    const bytes = Buffer.concat([carry, piece]);
    at += piece.length;
    scan = scanBinlog(scan, bytes, from);
    carry = bytes.subarray(scan.offset - from);
  }
  return { hash, scan };
}

/** Bytes [from, to) of a file. */
async function readRange(path: string, from: number, to: number): Promise<Buffer> {
  if (to <= from) return Buffer.alloc(0);
  const chunks: Buffer[] = [];
  for await (const chunk of createReadStream(path, { start: from, end: to - 1, highWaterMark: 4 * 1024 * 1024 })) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}
