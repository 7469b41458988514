/**
 * Consistency-check benchmark on the local sandbox (figures printed, never asserted):
 *
 *   runbook: the `consistency` runbook compares a table of N rows on the primary and both replicas
 *            while a light write load runs: rows compared per second (of the source; each is
 *            compared with every replica), chunk time p50/p95, how long each chunk held a replica's
 *            replication (its SQL thread stopped) and the replica lag seen meanwhile.
 *   by hand: what a DBA does without it: stop the writes, wait for the replicas, `CHECKSUM TABLE`
 *            on the three servers at once, start the writes again. Its time is write downtime.
 *
 *   npm run bench:consistency -- [--rows N] [--write-pause-ms M] [--chunk-seconds S]
 * Targets: >= 200k rows/s compared, chunk p95 <= 0.5 s, replica lag caused <= 1 s.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import { chunkTimings, checkIdsOf, migrateControl, withControl } from '../src/adapters/control/store';
import { connect, instanceEndpoint } from '../src/adapters/mysql/connect';
import { Sandbox } from '../src/adapters/mariadbd/sandbox';
import { startDevServer, stopDevServer } from '../src/adapters/temporal/devServer';
import { createRunbookWorker } from '../src/worker/createWorker';
import type { ConsistencyInput, ConsistencyResult } from '../src/workflows/consistency';
import { eventually, testSandboxConfig } from '../test/support/sandbox';
import { prepareLoadSchema, WriteLoad } from '../test/support/writeLoad';

const { values } = parseArgs({ options: { rows: { type: 'string', default: '1000000' }, 'write-pause-ms': { type: 'string', default: '10' }, 'chunk-seconds': { type: 'string', default: '0.5' } } });
const ROWS = Number(values.rows);
const PAUSE = Number(values['write-pause-ms']);
const CHUNK_SECONDS = Number(values['chunk-seconds']);
const REPLICAS = ['orders-b', 'orders-c'];

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] ?? NaN;
}
const fmt = (xs: number[]) => `p50 ${percentile(xs, 50).toFixed(0)} ms, p95 ${percentile(xs, 95).toFixed(0)} ms, max ${Math.max(...xs).toFixed(0)} ms (n=${xs.length})`;
const rate = (rows: number, ms: number) => `${Math.round(rows / (ms / 1000)).toLocaleString('en')} rows/s`;

Runtime.install({ logger: new DefaultLogger('ERROR') });
const stateDir = mkdtempSync(join(tmpdir(), 'runbook-bench-temporal-'));
const server = await startDevServer({ stateDir, headless: true });
const client = new Client({ connection: await Connection.connect({ address: server.address }) });
const native = await NativeConnection.connect({ address: server.address });
const config = testSandboxConfig('bench-consistency', 29300);
const sandbox = new Sandbox(config);

const on = async <T>(instance: string, fn: (c: Awaited<ReturnType<typeof connect>>) => Promise<T>): Promise<T> => {
  const c = await connect(instanceEndpoint(config, 'orders', instance), { timeoutMs: 600_000 });
  try {
    return await fn(c);
  } finally {
    c.destroy();
  }
};
const caughtUp = async () => {
  const pos = await on('orders-a', async (c) => String(((await c.query('SELECT @@gtid_binlog_pos AS p'))[0] as { p: string }[])[0]!.p));
  await Promise.all(REPLICAS.map((r) => on(r, (c) => c.query({ sql: `SELECT MASTER_GTID_WAIT(?, 600)`, values: [pos], timeout: 610_000 }))));
};

try {
  await sandbox.up();
  await migrateControl(config);
  await prepareLoadSchema(config, 'orders', 'orders-a');
  console.error(`loading ${ROWS.toLocaleString('en')} rows…`);
  await on('orders-a', async (c) => {
    await c.query('CREATE DATABASE bench');
    await c.query('CREATE TABLE bench.orders (id INT PRIMARY KEY, customer INT NOT NULL, amount DECIMAL(12,2) NOT NULL, note VARCHAR(40) NULL, created DATETIME(6) NOT NULL)');
    for (let from = 1; from <= ROWS; from += 100_000) {
      const to = Math.min(ROWS, from + 99_999);
      await c.query({ sql: `INSERT INTO bench.orders SELECT seq, seq % 9973, seq / 7, IF(seq % 5 = 0, NULL, CONCAT('note ', seq)), '2026-01-01' + INTERVAL seq SECOND FROM mysql.seq_${from}_to_${to}`, timeout: 600_000 });
    }
  });
  await caughtUp();

  // ---- the runbook, under a light write load ----
  const taskQueue = 'bench-consistency';
  const worker = await createRunbookWorker({ connection: native, namespace: 'default', taskQueue, config });
  const running = worker.run();
  const load = new WriteLoad(config, 'orders', 'orders-a', PAUSE);
  load.start();
  await eventually('writes flowing', async () => load.acks.length > 20);
  const lag: number[] = [];
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      for (const r of REPLICAS) {
        const [s] = await on(r, async (c) => (await c.query('SHOW SLAVE STATUS'))[0] as { Seconds_Behind_Master: number | null }[]);
        if (s?.Seconds_Behind_Master !== null && s?.Seconds_Behind_Master !== undefined) lag.push(Number(s.Seconds_Behind_Master));
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  // The lag the write load causes by itself, for comparison.
  await new Promise((r) => setTimeout(r, 3000));
  const baseline = lag.splice(0);
  const acksBefore = load.acks.length;
  const started = Date.now();
  const workflowId = `bench-consistency-${Date.now()}`;
  const result = (await client.workflow.execute('consistency', {
    taskQueue, workflowId,
    args: [{ cluster: 'orders', requester: 'bench', reason: 'benchmark', schema: 'bench', chunkSeconds: CHUNK_SECONDS } satisfies ConsistencyInput],
  })) as ConsistencyResult;
  const runbookMs = Date.now() - started;
  const writesDuring = load.acks.length - acksBefore;
  sampling = false;
  await sampler;
  const timings = await withControl(config, async (c) => chunkTimings(c, (await checkIdsOf(c, workflowId))[0]!));
  const compareMs = timings.reduce((n, t) => n + t.chunkMs, 0);

  // ---- by hand: writes stopped, CHECKSUM TABLE on every server at once ----
  const stopAt = Date.now();
  await load.stop();
  await caughtUp();
  const quietAt = Date.now();
  const sums = await Promise.all(['orders-a', ...REPLICAS].map((i) => on(i, async (c) => {
    const t0 = Date.now();
    const [row] = (await c.query({ sql: 'CHECKSUM TABLE bench.orders', timeout: 600_000 }))[0] as { Checksum: string }[];
    return { instance: i, checksum: String(row!.Checksum), ms: Date.now() - t0 };
  })));
  const byHandMs = Date.now() - stopAt;
  worker.shutdown();
  await running;

  const t = result.report.tables[0]!;
  console.log(`\nconsistency runbook: ${t.table}, ${t.rowsCompared.toLocaleString('en')} rows on ${result.report.source}, compared with ${result.report.targets.join(' and ')} at one position a chunk, ${writesDuring} writes acknowledged meanwhile`);
  console.log(`  result:                ${result.status}, ${t.chunks} chunks, differences: ${JSON.stringify(t.differences)}`);
  console.log(`  whole run:             ${(runbookMs / 1000).toFixed(1)} s (${rate(t.rowsCompared, runbookMs)}, workflow and audit included)`);
  console.log(`  comparing:             ${(compareMs / 1000).toFixed(1)} s in chunks (${rate(t.rowsCompared, compareMs)})   target >= 200,000 rows/s`);
  console.log(`  chunk time:            ${fmt(timings.map((x) => x.chunkMs))}   target p95 <= 500 ms`);
  console.log(`  replication held:      ${fmt(timings.map((x) => x.pausedMs ?? 0))} a chunk (SQL thread stopped until the replica reached the primary's position and opened its snapshot)`);
  console.log(`  replica lag seen:      max ${lag.length ? Math.max(...lag) : 'n/a'} s during the run, max ${baseline.length ? Math.max(...baseline) : 'n/a'} s over 3 s before it under the same writes (Seconds_Behind_Master every 100 ms, whole seconds)   target <= 1 s`);
  console.log(`\nby hand: stop the writes, let the replicas catch up, CHECKSUM TABLE on the three servers at once`);
  console.log(`  catch-up after the stop: ${((quietAt - stopAt) / 1000).toFixed(1)} s`);
  for (const s of sums) console.log(`  CHECKSUM TABLE on ${s.instance}: ${(s.ms / 1000).toFixed(1)} s (${rate(ROWS, s.ms)}), ${s.checksum}`);
  console.log(`  writes stopped for:      ${(byHandMs / 1000).toFixed(1)} s; compares whole tables only (which rows differ: unknown), CRC32-based`);
} finally {
  await sandbox.destroy().catch(() => undefined);
  await native.close();
  await client.connection.close();
  await stopDevServer(stateDir);
  rmSync(stateDir, { recursive: true, force: true });
}
