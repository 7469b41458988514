/**
 * The decoded transactions of an archived binlog file, kept beside it:
 * `<archive>/.events/<file>.jsonl`, JSON Lines: `{ file, sizeBytes, sha256 }`, then one
 * transaction per line, in binlog order.
 *
 * Why: locating a bad event means decoding every archived file the restore can use, and decoding
 * is most of that (a few seconds per 100k transactions, minutes for a big production binlog). In
 * an incident those seconds are on the clock; at archive time they are not. So the archive step
 * decodes each file it copies and keeps the result, and locating reads it back.
 *
 * Streams all the way: a day of a busy primary's binlogs holds hundreds of millions of
 * transactions, so neither building nor reading an index ever holds a file's transactions in
 * memory, only the one at hand (and JSON Lines, because one JSON string of millions of them would
 * pass the biggest string V8 holds).
 *
 * Trust: an index is used only for the exact bytes it was decoded from (size and sha256 equal to
 * the archive's `index.json` entry). The server's current binlog is archived again as it grows:
 * its index is extended from the start of its last transaction instead of decoded again, after
 * checking that the file still starts with the bytes the index was made from (sha256 of that prefix).
 */
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream, type WriteStream } from 'node:fs';
import { mkdir, mkdtemp, rename, rm } from 'node:fs/promises';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BinlogEventGroup } from '../../core/binlogEvents';
import { forEachDecodedGroup, forEachLine } from './binlogFile';
import type { BinlogArchiveEntry } from '../../core/manifest';
import { runTool, toolPath } from '../process/tools';

export const EVENT_INDEX_DIR = '.events';

interface EventIndexHeader {
  file: string;
  sizeBytes: number;
  sha256: string;
  /** How the transactions were read (see INDEX_FORMAT); an index of another format is decoded again. */
  format?: number;
}

/**
 * The decoding an index holds. 2: a multi-line statement is one statement (its `#Q>` lines
 * joined), not one per line; indexes of format 1 (absent) are rebuilt on first use.
 */
const INDEX_FORMAT = 2;

export const eventIndexPath = (archiveDir: string, file: string) => join(archiveDir, EVENT_INDEX_DIR, `${file}.jsonl`);

const matches = (h: EventIndexHeader | undefined, entry: BinlogArchiveEntry) => h?.sizeBytes === entry.sizeBytes && h.sha256 === entry.sha256 && h.format === INDEX_FORMAT;

/** An index's header line, or undefined when there is none (absent, torn). */
async function readHeader(path: string): Promise<EventIndexHeader | undefined> {
  try {
    for await (const chunk of createReadStream(path, { encoding: 'utf8', highWaterMark: 64 * 1024 })) {
      const nl = (chunk as string).indexOf('\n');
      return nl < 0 ? undefined : (JSON.parse((chunk as string).slice(0, nl)) as EventIndexHeader);
    }
  } catch {
    // absent or unreadable: decoded again
  }
  return undefined;
}

/** Each transaction an index holds, in order; false when its header is not `entry`'s (replaced meanwhile). */
async function readIndex(path: string, entry: BinlogArchiveEntry, onGroup: (g: BinlogEventGroup) => void): Promise<boolean> {
  let header: EventIndexHeader | undefined;
  let wrong = false;
  await forEachLine(path, (line) => {
    if (!line || wrong) return;
    if (!header) {
      header = JSON.parse(line) as EventIndexHeader;
      wrong = !matches(header, entry);
    } else onGroup(JSON.parse(line) as BinlogEventGroup);
  });
  return Boolean(header) && !wrong;
}

/** sha256 of the first `bytes` bytes of a file. */
async function sha256OfPrefix(path: string, bytes: number): Promise<string> {
  const hash = createHash('sha256');
  if (bytes > 0) for await (const chunk of createReadStream(path, { start: 0, end: bytes - 1, highWaterMark: 1024 * 1024 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/**
 * Decode `path` with `mariadb-binlog --base64-output=DECODE-ROWS` (no row images: GTIDs,
 * positions, times, statements and tables are all there), from `startPosition` on when given (an
 * event boundary: where a transaction's GTID event starts), handing on each transaction. Times are
 * read in UTC whatever the worker's TZ.
 */
async function decode(path: string, file: string, startPosition: number | undefined, onGroup: (g: BinlogEventGroup) => void, o: { onProgress?: () => void; afterChunk?: () => Promise<void> | undefined } = {}): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'runbook-scan-'));
  try {
    const out = join(dir, 'binlog.txt');
    await runTool(toolPath('mariadb-binlog'), ['--base64-output=DECODE-ROWS', ...(startPosition ? [`--start-position=${startPosition}`] : []), path], {
      stdoutFile: out,
      env: { TZ: 'UTC' },
      timeoutMs: 30 * 60_000,
      onProgress: o.onProgress,
    });
    await forEachDecodedGroup(out, file, onGroup, o.afterChunk);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** A JSON Lines writer that lets its producer wait while the disk catches up. */
function linesTo(ws: WriteStream) {
  // A write error (disk full) is kept and thrown by close(): an 'error' event nobody listens to
  // would bring the whole worker down.
  let failed: Error | undefined;
  ws.on('error', (err) => (failed ??= err));
  return {
    write: (value: unknown) => void (failed || ws.write(JSON.stringify(value) + '\n')),
    drained: () => (!failed && ws.writableNeedDrain ? once(ws, 'drain').then(() => undefined) : undefined),
    close: async () => {
      if (!ws.writableFinished && !failed) {
        ws.end();
        await once(ws, 'finish').catch(() => undefined);
      }
      if (failed) throw failed;
    },
  };
}

/** The index could not be written (a read-only archive): the caller decodes for itself. */
export class IndexNotKept extends Error {}

/**
 * Make `entry`'s index match the archived bytes: nothing to do when it already does, else decode
 * (only past the index when the file grew) into a new index, swapped in by a rename.
 */
export async function indexEvents(
  archiveDir: string,
  entry: BinlogArchiveEntry,
  onProgress?: () => void,
  /** The caller only ever appended to the file (the continuous archiver): its prefix need not be hashed again. */
  o: { appendOnly?: boolean } = {},
): Promise<{ decoded: 'none' | 'tail' | 'whole'; transactions?: number }> {
  const path = join(archiveDir, entry.file);
  const indexPath = eventIndexPath(archiveDir, entry.file);
  const kept = await readHeader(indexPath);
  if (matches(kept, entry)) return { decoded: 'none' };

  const tmp = `${indexPath}.${randomUUID()}.tmp`;
  let out: ReturnType<typeof linesTo> | undefined;
  let transactions = 0;
  /** (Re)start the new index: its header, no transactions yet. */
  const begin = async () => {
    await out?.close();
    const ws = createWriteStream(tmp, { mode: 0o600 });
    await once(ws, 'open');
    out = linesTo(ws);
    transactions = 0;
    out.write({ file: entry.file, sizeBytes: entry.sizeBytes, sha256: entry.sha256, format: INDEX_FORMAT } satisfies EventIndexHeader);
    return out;
  };
  try {
    await mkdir(join(archiveDir, EVENT_INDEX_DIR), { recursive: true, mode: 0o700 });
    await begin();
  } catch (err) {
    throw new IndexNotKept(`cannot write ${indexPath}: ${(err as Error).message}`);
  }
  const keep = (g: BinlogEventGroup) => {
    out!.write(g);
    transactions++;
  };
  try {
    let decoded: 'tail' | 'whole' = 'whole';
    if (kept && kept.format === INDEX_FORMAT && kept.sizeBytes < entry.sizeBytes && (o.appendOnly || (await sha256OfPrefix(path, kept.sizeBytes)) === kept.sha256)) {
      // The same file, longer: every transaction the index holds is still there, byte for byte.
      // Decoding resumes at the START of its last transaction (a copy of a growing binlog may
      // have ended inside it), which is therefore not carried over.
      let last: BinlogEventGroup | undefined;
      const carried = await readIndex(indexPath, { ...entry, sizeBytes: kept.sizeBytes, sha256: kept.sha256 }, (g) => {
        if (last) keep(last);
        last = g;
      });
      if (carried && last) {
        const resumeAt = last.startPosition;
        await decode(path, entry.file, resumeAt, (g) => g.startPosition >= resumeAt && keep(g), { onProgress, afterChunk: out!.drained });
        decoded = 'tail';
      }
    }
    if (decoded === 'whole') {
      // Start again: whatever was carried over is not to be trusted.
      const fresh = await begin();
      await decode(path, entry.file, undefined, keep, { onProgress, afterChunk: fresh.drained });
    }
    await out!.close();
    await rename(tmp, indexPath);
    return { decoded, transactions };
  } catch (err) {
    await out?.close().catch(() => undefined);
    await rm(tmp, { force: true });
    throw err;
  }
}

/**
 * Each transaction of one archived file, in binlog order, from its index (built or extended
 * first when it does not match the archived bytes). Where no index can be kept (a read-only
 * archive during an incident) the file is decoded straight through: keeping the index only spares
 * the next reader a decode.
 */
export async function forEachEvent(archiveDir: string, entry: BinlogArchiveEntry, onGroup: (g: BinlogEventGroup) => void, onProgress?: () => void): Promise<void> {
  try {
    await indexEvents(archiveDir, entry, onProgress);
    if (await readIndex(eventIndexPath(archiveDir, entry.file), entry, onGroup)) return;
  } catch (err) {
    if (!(err instanceof IndexNotKept)) throw err;
  }
  // No index, or one replaced by a newer copy's meanwhile: these bytes, decoded now.
  await decode(join(archiveDir, entry.file), entry.file, undefined, onGroup, { onProgress });
}
