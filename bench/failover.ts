/**
 * Failover benchmark on the local sandbox (figures printed, never asserted):
 *
 *   planned:   N switchovers back and forth under a steady write load: the write-unavailability
 *              window seen by the client (last acknowledged write on the old primary → first on
 *              the new one), total runbook time, time per step, acknowledged writes lost.
 *   emergency: M times, SIGKILL the primary and start an auto-approved emergency failover (a
 *              STONITH hook confirms fencing): SIGKILL → first write accepted on the new primary.
 *
 *   npm run bench -- [--planned N] [--emergency M]
 * Targets on the sandbox: planned window p50 ≤ 300 ms; emergency ≤ 5 s; writes lost: 0.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import type { RunbookConfig } from '../src/config/load';
import { Sandbox } from '../src/adapters/mariadbd/sandbox';
import { startDevServer, stopDevServer } from '../src/adapters/temporal/devServer';
import { createRunbookWorker } from '../src/worker/createWorker';
import type { FailoverResult } from '../src/workflows/failover';
import type { RunbookState } from '../src/core/runbookDefinitions';
import { shape, startFailover } from '../test/support/failover';
import { eventually, testSandboxConfig } from '../test/support/sandbox';
import { prepareLoadSchema, WriteLoad } from '../test/support/writeLoad';

const { values } = parseArgs({ options: { planned: { type: 'string', default: '10' }, emergency: { type: 'string', default: '3' } } });
const PLANNED = Number(values.planned);
const EMERGENCY = Number(values.emergency);

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] ?? NaN;
}
const fmt = (xs: number[]) => `p50 ${percentile(xs, 50).toFixed(0)} ms, p95 ${percentile(xs, 95).toFixed(0)} ms, max ${Math.max(...xs).toFixed(0)} ms (n=${xs.length})`;

Runtime.install({ logger: new DefaultLogger('ERROR') });
const stateDir = mkdtempSync(join(tmpdir(), 'runbook-bench-temporal-'));
const server = await startDevServer({ stateDir, headless: true });
const client = new Client({ connection: await Connection.connect({ address: server.address }) });
const native = await NativeConnection.connect({ address: server.address });

async function withStack<T>(name: string, base: number, fn: (config: RunbookConfig, taskQueue: string) => Promise<T>): Promise<T> {
  const config = testSandboxConfig(name, base, (doc) => {
    doc.clusters.orders.approval.failover = { planned: { mode: 'auto' }, emergency: { mode: 'auto' } };
    doc.clusters.orders.fencing = { hooks: [{ name: 'stonith', command: 'true', timeoutSeconds: 5 }] };
  });
  const sandbox = new Sandbox(config);
  await sandbox.up();
  await prepareLoadSchema(config, 'orders', 'orders-a');
  const taskQueue = `bench-${name}`;
  const worker = await createRunbookWorker({ connection: native, namespace: 'default', taskQueue, config });
  const run = worker.run();
  try {
    return await fn(config, taskQueue);
  } finally {
    worker.shutdown();
    await run;
    await sandbox.destroy();
  }
}

// ---- planned ----
const planned = await withStack('bench-planned', 26100, async (config, taskQueue) => {
  const load = new WriteLoad(config, 'orders', 'orders-a', 1);
  load.start();
  await eventually('writes flowing', async () => load.acks.length > 50);
  const totals: number[] = [];
  const perStep = new Map<string, number[]>();
  for (let i = 0; i < PLANNED; i++) {
    const target = i % 2 === 0 ? 'orders-b' : 'orders-a';
    const started = Date.now();
    const handle = await startFailover(client, taskQueue, { target, reason: `bench ${i + 1}` });
    const result = (await handle.result()) as FailoverResult;
    totals.push(Date.now() - started);
    if (result.status !== 'succeeded') throw new Error(`switchover ${i + 1}: ${result.status}`);
    const state = await handle.query<RunbookState>('runbookState');
    for (const s of state.steps) if (s.endedAt !== undefined && s.status === 'succeeded') perStep.set(s.name.replace(/^repoint .*/, 'repoint (each)'), [...(perStep.get(s.name.replace(/^repoint .*/, 'repoint (each)')) ?? []), s.endedAt - s.startedAt]);
    const acked = load.acks.length;
    await eventually('writes on the new primary', async () => load.acks.length > acked + 20 && load.acks.at(-1)!.instance === target);
  }
  await load.stop();
  await eventually('replicas caught up', async () => (await shape(config)).problems.length === 0);
  const primary = (await shape(config)).primary!;
  return { windows: load.unavailabilityWindows().map((w) => w.ms), totals, perStep, lost: (await load.missingOn(primary)).length, acks: load.acks.length, errors: load.errors };
});

// ---- emergency ----
const emergency: number[] = [];
let emergencyLost = 0;
for (let i = 0; i < EMERGENCY; i++) {
  await withStack(`bench-emergency-${i}`, 26200 + i * 10, async (config, taskQueue) => {
    const load = new WriteLoad(config, 'orders', 'orders-a', 1);
    load.start();
    await eventually('writes flowing', async () => load.acks.length > 50);
    const sandbox = new Sandbox(config);
    const killedAt = Date.now();
    process.kill(sandbox.state(sandbox.instance('orders-a')).pid!, 'SIGKILL');
    const handle = await startFailover(client, taskQueue, { mode: 'emergency', reason: `bench emergency ${i + 1}` });
    const result = (await handle.result()) as FailoverResult;
    await eventually('a write on the new primary', async () => load.acks.some((a) => a.at > killedAt && a.instance === result.plan.to.instance), 30_000);
    emergency.push(load.acks.find((a) => a.at > killedAt && a.instance === result.plan.to.instance)!.at - killedAt);
    await load.stop();
    // Writes acknowledged by the dead primary that no replica received are the emergency's loss.
    emergencyLost += (await load.missingOn(result.plan.to.instance)).length;
  });
}

await native.close();
await client.connection.close();
await stopDevServer(stateDir);
rmSync(stateDir, { recursive: true, force: true });

console.log(`\nplanned switchover under load (${PLANNED} runs, ${planned.acks} acknowledged writes, ${planned.errors} refused attempts)`);
console.log(`  write-unavailability window: ${fmt(planned.windows)}   target p50 <= 300 ms`);
console.log(`  total runbook time:          ${fmt(planned.totals)}`);
for (const [step, xs] of planned.perStep) console.log(`    ${step.padEnd(22)} ${fmt(xs)}`);
console.log(`  acknowledged writes lost:    ${planned.lost}   (must be 0)`);
console.log(`\nemergency failover, SIGKILL -> first write accepted on the new primary (${EMERGENCY} runs)`);
console.log(`  ${fmt(emergency)}   target <= 5000 ms`);
console.log(`  acknowledged writes not on the new primary: ${emergencyLost} (asynchronous replication: the dead primary's unreplicated tail)`);
