/**
 * The decoded transactions of an archived binlog file, kept beside it:
 * `<archive>/.events/<file>.jsonl`, JSON Lines: `{ file, sizeBytes, sha256 }`, then one
 * transaction per line. Lines, because a 1 GB binlog holds millions of transactions and their JSON
 * as one string would pass the biggest string V8 can hold.
 *
 * Why: locating a bad event means decoding every archived file the restore can use, and decoding
 * is most of that (a few seconds per 100k transactions, minutes for a big production binlog). In
 * an incident those seconds are on the clock; at archive time they are not. So the archive step
 * decodes each file it copies and keeps the result, and locating reads it back.
 *
 * Trust: an index is used only for the exact bytes it was decoded from (size and sha256 equal to
 * the archive's `index.json` entry). The server's current binlog is archived again as it grows:
 * its index is extended from the last transaction it holds instead of decoded again, after checking
 * that the file still starts with the bytes the index was made from (sha256 of that prefix).
 */
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { BinlogEventGroup } from './binlogEvents';
import { forEachLine, parseBinlogFile } from './binlogFile';
import type { BinlogArchiveEntry } from './manifest';
import { runTool, toolPath } from './tools';

export const EVENT_INDEX_DIR = '.events';

interface EventIndexHeader {
  file: string;
  sizeBytes: number;
  sha256: string;
}
type EventIndexFile = EventIndexHeader & { groups: BinlogEventGroup[] };

export const eventIndexPath = (archiveDir: string, file: string) => join(archiveDir, EVENT_INDEX_DIR, `${file}.jsonl`);

async function readIndex(archiveDir: string, file: string): Promise<EventIndexFile | undefined> {
  try {
    let header: EventIndexHeader | undefined;
    const groups: BinlogEventGroup[] = [];
    await forEachLine(eventIndexPath(archiveDir, file), (line) => {
      if (!line) return;
      if (header) groups.push(JSON.parse(line) as BinlogEventGroup);
      else header = JSON.parse(line) as EventIndexHeader;
    });
    return header && { ...header, groups };
  } catch {
    return undefined; // absent or torn: decoded again
  }
}

/** Write the index through a temporary file and a rename: a reader sees a whole index or none. */
async function writeIndex(path: string, index: EventIndexFile): Promise<void> {
  const tmp = `${path}.${randomUUID()}.tmp`;
  const { groups, ...header } = index;
  function* lines() {
    yield JSON.stringify(header) + '\n';
    for (const g of groups) yield JSON.stringify(g) + '\n';
  }
  try {
    await pipeline(Readable.from(lines()), createWriteStream(tmp, { mode: 0o600 }));
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/** sha256 of the first `bytes` bytes of a file. */
async function sha256OfPrefix(path: string, bytes: number): Promise<string> {
  const hash = createHash('sha256');
  if (bytes > 0) for await (const chunk of createReadStream(path, { start: 0, end: bytes - 1, highWaterMark: 1024 * 1024 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/**
 * Decode `file` with `mariadb-binlog --base64-output=DECODE-ROWS` (no row images: GTIDs,
 * positions, times, statements and tables are all there), from `startPosition` on when given (an
 * event boundary: where a transaction's GTID event starts). Times are read in UTC whatever the
 * worker's TZ.
 */
async function decode(path: string, file: string, startPosition: number | undefined, onProgress?: () => void): Promise<BinlogEventGroup[]> {
  const dir = await mkdtemp(join(tmpdir(), 'runbook-scan-'));
  try {
    const out = join(dir, 'binlog.txt');
    await runTool(toolPath('mariadb-binlog'), ['--base64-output=DECODE-ROWS', ...(startPosition ? [`--start-position=${startPosition}`] : []), path], {
      stdoutFile: out,
      env: { TZ: 'UTC' },
      timeoutMs: 30 * 60_000,
      onProgress,
    });
    return await parseBinlogFile(out, file);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * The transactions of one archived file, from its kept index when that matches the archived bytes,
 * else decoded (only the part past the index when the file grew) and the index written for next
 * time. `entry` is the file's `index.json` entry; the file is `<archiveDir>/<entry.file>`.
 */
export async function eventsOf(archiveDir: string, entry: BinlogArchiveEntry, onProgress?: () => void): Promise<{ groups: BinlogEventGroup[]; decoded: 'none' | 'tail' | 'whole' }> {
  const path = join(archiveDir, entry.file);
  const kept = await readIndex(archiveDir, entry.file);
  if (kept && kept.sizeBytes === entry.sizeBytes && kept.sha256 === entry.sha256) return { groups: kept.groups, decoded: 'none' };

  let groups: BinlogEventGroup[];
  let decoded: 'tail' | 'whole' = 'whole';
  // Decoding resumes at the START of the last transaction the index holds: a copy of a growing
  // binlog may have ended inside it, so it is read again whole.
  const resumeAt = kept?.groups.at(-1)?.startPosition;
  if (kept && resumeAt && kept.sizeBytes < entry.sizeBytes && (await sha256OfPrefix(path, kept.sizeBytes)) === kept.sha256) {
    // The same file, longer: every transaction the index holds is still there, byte for byte.
    const tail = (await decode(path, entry.file, resumeAt, onProgress)).filter((g) => g.startPosition >= resumeAt);
    groups = kept.groups.slice(0, -1).concat(tail);
    decoded = 'tail';
  } else {
    groups = await decode(path, entry.file, undefined, onProgress);
  }
  // Keeping it only saves the next reader a decode: an archive this worker cannot write to (a
  // read-only mount during an incident) must not stop the restore that needs these groups now.
  const index: EventIndexFile = { file: entry.file, sizeBytes: entry.sizeBytes, sha256: entry.sha256, groups };
  await mkdir(join(archiveDir, EVENT_INDEX_DIR), { recursive: true, mode: 0o700 })
    .then(() => writeIndex(eventIndexPath(archiveDir, entry.file), index))
    .catch(() => undefined);
  return { groups, decoded };
}
