/**
 * Memory and speed of locating a target in a big binlog archive (figures printed, never asserted).
 *
 * Writes a synthetic archive of --files event indexes (see src/adapters/backup/eventIndex.ts) with
 * --per-file transactions each, shaped like the restore bench's single-row UPDATEs, then runs the
 * real `locateTarget` activity for the GTID of the very last one (a full walk: nothing can stop it
 * early) and for a point in time. No server is needed: every file has its index, so nothing is
 * decoded. Printed: transactions walked per second, the peak heap growth during the walk (it
 * includes garbage not yet collected: compare runs with different --files to see it does not grow
 * with the archive), what is retained after a gc, and what holding every transaction in memory (as
 * locating did before it streamed) would take, measured on a sample and scaled.
 *
 *   npm run bench:locate -- [--files N] [--per-file M]
 */
import { createHash } from 'node:crypto';
import { createWriteStream, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createBinlogActivities } from '../src/activities/binlog';
import { archiveDirOf } from '../src/adapters/backup/archive';
import type { BinlogEventGroup } from '../src/core/binlogEvents';
import { EVENT_INDEX_DIR } from '../src/adapters/backup/eventIndex';
import { BINLOG_INDEX_FILE, type BinlogArchiveEntry } from '../src/core/manifest';
import { testSandboxConfig } from '../test/support/sandbox';

const { values } = parseArgs({ options: { files: { type: 'string', default: '4' }, 'per-file': { type: 'string', default: '750000' } } });
const FILES = Number(values.files);
const PER_FILE = Number(values['per-file']);
for (const [name, v] of [['--files', FILES], ['--per-file', PER_FILE]] as const) if (!Number.isInteger(v) || v < 1) throw new Error(`${name} must be a whole number ≥ 1`);

const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(0)} MiB`;
const T0 = Date.UTC(2026, 10, 23, 0, 0, 0);
const group = (n: number, file: string): BinlogEventGroup => ({
  gtid: `0-23101-${n}`,
  file,
  startPosition: 256 + (n % PER_FILE) * 420,
  endPosition: 256 + (n % PER_FILE) * 420 + 420,
  timestamp: T0 + Math.floor(n / 1000) * 1000,
  kind: 'trans',
  statements: [`UPDATE shop.items SET qty = qty + 1, price = price + 0.01, updated_at = NOW(6) WHERE id = ${(n * 7919) % 1_000_000}`],
  tables: ['shop.items'],
  rowEvents: [{ type: 'UPDATE', table: 'shop.items', rows: 1 }],
});

const config = testSandboxConfig('bench-locate', 27900);
const dir = archiveDirOf(config.backupDir, 'orders', 'orders-a');
try {
  // 1. The archive: a stand-in binlog file per index (locating reads only the index), index.json.
  mkdirSync(join(dir, EVENT_INDEX_DIR), { recursive: true });
  const entries: BinlogArchiveEntry[] = [];
  const t0 = performance.now();
  for (let f = 0; f < FILES; f++) {
    const file = `mysql-bin.${String(f + 1).padStart(6, '0')}`;
    const bytes = Buffer.from(`stand-in for ${file}\n`);
    writeFileSync(join(dir, file), bytes);
    const entry: BinlogArchiveEntry = { file, sizeBytes: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex'), firstGtid: `0-23101-${f * PER_FILE + 1}`, complete: f < FILES - 1 };
    entries.push(entry);
    const ws = createWriteStream(join(dir, EVENT_INDEX_DIR, `${file}.jsonl`));
    ws.write(JSON.stringify({ file, sizeBytes: entry.sizeBytes, sha256: entry.sha256 }) + '\n');
    for (let i = 1; i <= PER_FILE; i++) if (!ws.write(JSON.stringify(group(f * PER_FILE + i, file)) + '\n')) await once(ws, 'drain');
    ws.end();
    await once(ws, 'finish');
  }
  writeFileSync(join(dir, BINLOG_INDEX_FILE), JSON.stringify(entries));
  const total = FILES * PER_FILE;
  console.error(`[bench] wrote ${total} transactions in ${FILES} indexes in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

  // 2. What holding them all would take: a sample of 200k in an array, scaled.
  global.gc?.();
  const sampleSize = Math.min(total, 200_000);
  const before = process.memoryUsage().heapUsed;
  const sample: BinlogEventGroup[] = [];
  for (let i = 1; i <= sampleSize; i++) sample.push(JSON.parse(JSON.stringify(group(i, 'mysql-bin.000001'))) as BinlogEventGroup);
  global.gc?.();
  const perTransaction = (process.memoryUsage().heapUsed - before) / sample.length;
  sample.length = 0;
  global.gc?.();

  // 3. The real activity, walking everything; the heap sampled while it runs.
  const binlog = createBinlogActivities({ config });
  const env = new MockActivityEnvironment();
  const measure = async (label: string, fn: () => Promise<unknown>) => {
    global.gc?.();
    const base = process.memoryUsage().heapUsed;
    let peak = base;
    const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().heapUsed)), 20);
    const t = performance.now();
    const result = await env.run(fn);
    const ms = performance.now() - t;
    clearInterval(timer);
    peak = Math.max(peak, process.memoryUsage().heapUsed);
    global.gc?.();
    return { label, ms, growth: peak - base, retained: process.memoryUsage().heapUsed - base, result };
  };
  const last = `0-23101-${total}`;
  const byGtid = await measure(`GTID ${last} (the last one)`, () => binlog.locateTarget({ cluster: 'orders', target: { kind: 'gtid', gtid: last } }));
  const at = new Date(T0 + Math.floor(total / 2000) * 1000).toISOString();
  const byTime = await measure(`point in time ${at}`, () => binlog.locateTarget({ cluster: 'orders', target: { kind: 'time', at } }));

  console.log(`\nlocating in an archive of ${total} transactions (${FILES} files, every one walked; gc exposed: ${Boolean(global.gc)})`);
  for (const m of [byGtid, byTime]) {
    console.log(`  ${m.label.padEnd(44)} ${(m.ms / 1000).toFixed(1).padStart(6)} s  ${Math.round(total / (m.ms / 1000)).toLocaleString('en').padStart(10)} trx/s  peak heap growth ${mib(m.growth)} (garbage included), retained after gc ${mib(m.retained)}`);
  }
  const allInMemory = perTransaction * total;
  console.log(`  holding every transaction instead: ≈ ${mib(allInMemory)} (${Math.round(perTransaction)} bytes each, measured on ${sampleSize})`);
  console.log(`  ratio, all in memory / streamed peak: ${(allInMemory / Math.max(byGtid.growth, byTime.growth)).toFixed(0)}×`);
  console.log(`  found: ${(byGtid.result as { stopAt: string }).stopAt}; ${(byTime.result as { description: string }).description}`);
} finally {
  rmSync(join(config.files[0]!, '..'), { recursive: true, force: true });
}
