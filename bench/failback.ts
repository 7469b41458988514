/**
 * Failback benchmark on the local sandbox (figures printed, never asserted): a cluster of
 * `--rows` rows (default 100 000; the issue asks for 1 000 000: `--rows 1000000`), orders-b taken
 * out of the topology while the primary writes `--behind` more rows, then `failback orders
 * --instance orders-b --switch-back` (auto-approved) under a steady write load. Printed: the time
 * of each phase (errant analysis, rejoin, catch-up, consistency check, switch back), the whole
 * run, and the write-unavailability window of the switch back as the client sees it (last
 * acknowledged write on the old primary → first on orders-b), and acknowledged writes lost.
 *
 * Then two more failbacks of orders-c, each time taken out and given errant DDL (a table created
 * on it alone) while the primary (orders-b now) writes on: reseed-logical (auto's choice: dump of
 * a healthy replica + wipe + load), then reseed-physical (the sandbox's reseed.physical template:
 * mariadb-backup --stream=mbstream of a healthy replica into its cleared datadir, prepare,
 * start). Printed for each: the reseed, catch-up, consistency check, whole run.
 *
 * Not measured: a by-hand comparison (a DBA's `mariadb-binlog` + diff of the two histories, then
 * CHANGE MASTER).
 *
 *   npm run bench:failback -- [--rows N] [--behind M]
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import { Sandbox } from '../src/adapters/mariadbd/sandbox';
import { startDevServer, stopDevServer } from '../src/adapters/temporal/devServer';
import { createRunbookWorker } from '../src/worker/createWorker';
import type { RunbookState } from '../src/core/runbookDefinitions';
import type { FailbackInput, FailbackResult } from '../src/workflows/failback';
import { eventually, testSandboxConfig } from '../test/support/sandbox';
import { rowsOn, sql } from '../test/support/stack';
import { prepareLoadSchema, WriteLoad } from '../test/support/writeLoad';

const { values } = parseArgs({ options: { rows: { type: 'string', default: '100000' }, behind: { type: 'string', default: '20000' } } });
const ROWS = Number(values.rows);
const BEHIND = Number(values.behind);

Runtime.install({ logger: new DefaultLogger('ERROR') });
const stateDir = mkdtempSync(join(tmpdir(), 'runbook-bench-temporal-'));
const server = await startDevServer({ stateDir, headless: true });
const client = new Client({ connection: await Connection.connect({ address: server.address }) });
const native = await NativeConnection.connect({ address: server.address });
const config = testSandboxConfig('bench-failback', 26500, (doc) => {
  doc.clusters.orders.approval.failback = { default: { mode: 'auto' } };
});
const sandbox = new Sandbox(config);
const taskQueue = 'bench-failback';
try {
  await sandbox.up();
  await prepareLoadSchema(config, 'orders', 'orders-a');
  const fill = Date.now();
  await sql(config, 'orders-a', 'CREATE TABLE loadtest.big (id INT PRIMARY KEY, note VARCHAR(40), n INT)');
  for (let from = 0; from < ROWS; from += 100_000) {
    await sql(config, 'orders-a', `INSERT INTO loadtest.big SELECT seq, CONCAT('row ', seq), seq % 97 FROM mysql.seq_${from + 1}_to_${Math.min(ROWS, from + 100_000)}`);
  }
  const p = ((await rowsOn(config, 'orders-a', 'SELECT @@gtid_binlog_pos AS p')) as { p: string }[])[0]!.p;
  for (const r of ['orders-b', 'orders-c']) await rowsOn(config, r, `SELECT MASTER_GTID_WAIT('${p}', 600)`);
  console.log(`${ROWS} rows loaded and replicated in ${Date.now() - fill} ms`);

  // orders-b leaves; the primary goes on writing: the failback has a backlog to catch up.
  await sql(config, 'orders-b', 'STOP SLAVE', 'RESET SLAVE ALL');
  await sql(config, 'orders-a', `UPDATE loadtest.big SET n = n + 1 WHERE id <= ${BEHIND}`);

  const worker = await createRunbookWorker({ connection: native, namespace: 'default', taskQueue, config });
  const running = worker.run();
  const load = new WriteLoad(config, 'orders', 'orders-a', 1);
  load.start();
  await eventually('writes flowing', async () => load.acks.length > 50);
  const started = Date.now();
  const incidentId = `BENCH${Date.now()}`;
  const handle = await client.workflow.start('failback', {
    taskQueue,
    workflowId: `failback-orders-${incidentId}`,
    args: [{ cluster: 'orders', instance: 'orders-b', switchBack: true, reason: 'bench', requester: 'bench', incidentId } satisfies FailbackInput],
  });
  const result = (await handle.result()) as FailbackResult;
  const total = Date.now() - started;
  await eventually('writes on orders-b', async () => load.acks.some((a) => a.instance === 'orders-b'), 60_000);
  await load.stop();
  const state = await handle.query<RunbookState>('runbookState');
  const took = (name: string) => {
    const s = state.steps.find((x) => x.name === name && x.endedAt !== undefined);
    return s ? s.endedAt! - s.startedAt : NaN;
  };
  const between = (first: string, last: string) => {
    const a = state.steps.find((x) => x.name === first);
    const b = state.steps.find((x) => x.name === last && x.endedAt !== undefined);
    return a && b ? b.endedAt! - a.startedAt : NaN;
  };
  console.log(`\nfailback of orders-b (${ROWS} rows, ${BEHIND} rows changed while it was out): ${result.status}, method ${result.method}`);
  console.log(`  errant analysis     ${took('errant analysis')} ms (${result.analysis.errant.length} errant)`);
  console.log(`  rejoin              ${took('rejoin')} ms`);
  console.log(`  catch up            ${took('catch up')} ms`);
  console.log(`  consistency check   ${took('consistency check')} ms (${result.consistency?.rowsCompared} rows, ${result.consistency?.differences} differences)`);
  console.log(`  switch back         ${between('compare-and-swap primary (switch back)', 'verify')} ms (compare-and-swap → verify)`);
  console.log(`  whole run           ${total} ms`);
  const windows = load.unavailabilityWindows();
  console.log(`  write-unavailability of the switch back: ${windows.map((w) => `${w.from} → ${w.to} ${w.ms} ms`).join('; ') || 'none measured'}`);
  console.log(`  acknowledged writes lost: ${(await load.missingOn('orders-b')).length} of ${load.acks.length}`);

  // Errant DDL on orders-c while it is out: a reseed, logical (auto's choice), then physical.
  for (const method of ['reseed-logical', 'reseed-physical'] as const) {
    const step = method === 'reseed-logical' ? 'reseed (logical)' : 'reseed (physical)';
    await sql(config, 'orders-c', 'STOP SLAVE', 'RESET SLAVE ALL', `CREATE TABLE loadtest.errant_${method.replace('-', '_')} (id INT PRIMARY KEY)`);
    await sql(config, 'orders-b', `UPDATE loadtest.big SET n = n + 1 WHERE id <= ${BEHIND}`);
    const reseedStarted = Date.now();
    const incident2 = `BENCHR${Date.now()}`;
    const reseedHandle = await client.workflow.start('failback', {
      taskQueue,
      workflowId: `failback-orders-${incident2}`,
      args: [{ cluster: 'orders', instance: 'orders-c', method, reason: `bench ${method}`, requester: 'bench', incidentId: incident2 } satisfies FailbackInput],
    });
    const reseeded = (await reseedHandle.result()) as FailbackResult;
    const reseedTotal = Date.now() - reseedStarted;
    const state2 = await reseedHandle.query<RunbookState>('runbookState');
    const took2 = (name: string) => {
      const s = state2.steps.find((x) => x.name === name && x.endedAt !== undefined);
      return s ? s.endedAt! - s.startedAt : NaN;
    };
    const note = state2.steps.find((x) => x.name === step)?.note;
    console.log(`\nfailback of orders-c (errant DDL): ${reseeded.status}, method ${reseeded.method}`);
    console.log(`  errant analysis     ${took2('errant analysis')} ms (${reseeded.analysis.errant.length} errant)`);
    console.log(`  ${step.padEnd(19)} ${took2(step)} ms${note ? ` (${note})` : ''}`);
    console.log(`  rejoin              ${took2('rejoin')} ms`);
    console.log(`  catch up            ${took2('catch up')} ms`);
    console.log(`  consistency check   ${took2('consistency check')} ms (${reseeded.consistency?.rowsCompared} rows, ${reseeded.consistency?.differences} differences)`);
    console.log(`  whole run           ${reseedTotal} ms`);
  }
  worker.shutdown();
  await running;
} finally {
  await sandbox.destroy();
  await native.close();
  await client.connection.close();
  await stopDevServer(stateDir).catch(() => undefined);
}
