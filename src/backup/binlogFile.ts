/**
 * `mariadb-binlog` output read from a file line by line into transactions (binlogEvents.ts's
 * parser). The decoded text of a 1 GB binlog is larger than the biggest string V8 holds (about
 * 512 MiB), so it is never read whole.
 */
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { lineParser, type BinlogEventGroup, type RowImageGroup } from './binlogEvents';

export async function parseBinlogFile(path: string, file: string, opts: { images?: boolean } = {}): Promise<BinlogEventGroup[]> {
  const p = lineParser(file, opts.images ?? false);
  const lines = createInterface({ input: createReadStream(path, { encoding: 'utf8', highWaterMark: 1024 * 1024 }), crlfDelay: Infinity });
  for await (const line of lines) p.feed(line);
  return p.groups;
}

/** The same with each row's before and after images (`mariadb-binlog -vv` output). */
export async function parseRowImagesFile(path: string, file: string): Promise<RowImageGroup[]> {
  return (await parseBinlogFile(path, file, { images: true })) as RowImageGroup[];
}
