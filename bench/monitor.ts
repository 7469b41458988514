/**
 * Monitor benchmark on the local sandbox (figures printed, never asserted): the primary is
 * SIGKILLed under a steady write load and the monitor (interval 1 s, threshold 3, autoFailover
 * auto, a STONITH hook that confirms fencing) detects it and fails over on its own. Measured:
 * SIGKILL → first acknowledged write on the new primary, and the monitor's detection time.
 *
 * Compared, in the same run and on the same sandbox shape, with the best a DBA does by hand: an
 * emergency failover started the very instant the primary dies (zero reaction time, which no
 * human reaches; paging and reading alone take minutes), i.e. what the monitor adds is detection.
 *
 *   npm run bench:monitor -- [--runs N] [--manual M]
 * Target on the sandbox: p50 ≤ 5 s (orchestrator at GitHub: 10–13 s; MaxScale defaults ≈ 25 s).
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
import { monitorWorkflowId } from '../src/core/monitorDefinitions';
import type { FailoverResult } from '../src/workflows/failover';
import { startMonitor } from '../src/cli/actions/monitor';
import { startFailover } from '../test/support/failover';
import { monitorRows } from '../test/support/monitor';
import { eventually, testSandboxConfig } from '../test/support/sandbox';
import { prepareLoadSchema, WriteLoad } from '../test/support/writeLoad';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '5' }, manual: { type: 'string', default: '3' } } });
const RUNS = Number(values.runs);
const MANUAL = Number(values.manual);

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] ?? NaN;
}
const fmt = (xs: number[]) => `p50 ${(percentile(xs, 50) / 1000).toFixed(2)} s, p95 ${(percentile(xs, 95) / 1000).toFixed(2)} s, max ${(Math.max(...xs) / 1000).toFixed(2)} s (n=${xs.length})`;

Runtime.install({ logger: new DefaultLogger('ERROR') });
const stateDir = mkdtempSync(join(tmpdir(), 'runbook-bench-monitor-temporal-'));
const server = await startDevServer({ stateDir, headless: true });
const client = new Client({ connection: await Connection.connect({ address: server.address }) });
const native = await NativeConnection.connect({ address: server.address });

async function withStack<T>(name: string, base: number, fn: (config: RunbookConfig, taskQueue: string, sandbox: Sandbox) => Promise<T>): Promise<T> {
  // Ports a client socket holds for a moment (the offset may put them in the ephemeral range): try the next base.
  for (let attempt = 0; ; attempt++) {
    try {
      return await runStack(name, base + attempt * 100, fn);
    } catch (err) {
      if (attempt >= 3 || !/already in use/.test((err as Error).message)) throw err;
    }
  }
}

async function runStack<T>(name: string, base: number, fn: (config: RunbookConfig, taskQueue: string, sandbox: Sandbox) => Promise<T>): Promise<T> {
  const config = testSandboxConfig(name, base, (doc) => {
    const orders = doc.clusters.orders;
    orders.approval.failover = { planned: { mode: 'auto' }, emergency: { mode: 'auto' } };
    orders.fencing = { hooks: [{ name: 'stonith', command: 'true', timeoutSeconds: 5 }] };
    orders.monitor = { intervalSeconds: 1, failureThreshold: 3, autoFailover: 'auto' };
    orders.thresholds = { ...orders.thresholds, probeTimeoutSeconds: 1, confirmProbes: 2, confirmIntervalMs: 300 };
  });
  const sandbox = new Sandbox(config);
  await sandbox.up();
  await prepareLoadSchema(config, 'orders', 'orders-a');
  const taskQueue = `bench-${name}-${process.pid}`;
  const worker = await createRunbookWorker({ connection: native, namespace: 'default', taskQueue, config });
  const run = worker.run();
  try {
    return await fn(config, taskQueue, sandbox);
  } finally {
    await client.workflow.getHandle(monitorWorkflowId('orders')).terminate('bench run over').catch(() => undefined);
    worker.shutdown();
    await run;
    await sandbox.destroy();
  }
}

/** SIGKILL the primary under load; `recover` starts whatever recovers it; → ms to the first write on the new primary. */
async function killAndMeasure(config: RunbookConfig, sandbox: Sandbox, recover: () => Promise<void>): Promise<{ ms: number; lost: number; to: string }> {
  const load = new WriteLoad(config, 'orders', 'orders-a', 1);
  load.start();
  await eventually('writes flowing', async () => load.acks.length > 50);
  const killedAt = Date.now();
  process.kill(sandbox.state(sandbox.instance('orders-a')).pid!, 'SIGKILL');
  await recover();
  const first = await eventually('a write on the new primary', async () => load.acks.find((a) => a.at > killedAt && a.instance !== 'orders-a'), 120_000);
  await load.stop();
  return { ms: first.at - killedAt, lost: (await load.missingOn(first.instance)).length, to: first.instance };
}

const automatic: number[] = [];
const detection: number[] = [];
let lostAuto = 0;
for (let i = 0; i < RUNS; i++) {
  await withStack(`bench-monitor-${i}`, 30200 + i * 10, async (config, taskQueue, sandbox) => {
    await startMonitor(client, config, 'orders', 'bench', taskQueue);
    await eventually('monitor healthy', async () => (await monitorRows(config)).some((r) => r.step === 'orders: unknown → healthy'), 60_000);
    const r = await killAndMeasure(config, sandbox, async () => undefined);
    automatic.push(r.ms);
    lostAuto += r.lost;
    const started = (await monitorRows(config)).find((x) => x.step.startsWith('automatic failover') && x.step.endsWith('started'));
    if (started) detection.push(Number(started.detail.detectionMs));
    console.log(`monitor run ${i + 1}: ${(r.ms / 1000).toFixed(2)} s to the first write on ${r.to}`);
  });
}

const manual: number[] = [];
for (let i = 0; i < MANUAL; i++) {
  await withStack(`bench-manual-${i}`, 30300 + i * 10, async (config, taskQueue, sandbox) => {
    const r = await killAndMeasure(config, sandbox, async () => {
      const handle = await startFailover(client, taskQueue, { mode: 'emergency', reason: `bench manual ${i + 1}` });
      const result = (await handle.result()) as FailoverResult;
      if (result.status !== 'succeeded') throw new Error(`manual failover ${i + 1}: ${result.status}`);
    });
    manual.push(r.ms);
    console.log(`manual run ${i + 1}: ${(r.ms / 1000).toFixed(2)} s`);
  });
}

await native.close();
await client.connection.close();
await stopDevServer(stateDir);
rmSync(stateDir, { recursive: true, force: true });

console.log(`\nprimary SIGKILL -> first acknowledged write on the new primary, monitor with autoFailover auto (interval 1 s, threshold 3)`);
console.log(`  ${fmt(automatic)}   target p50 <= 5 s`);
console.log(`  detection (first missed round -> confirmed dead): ${fmt(detection)}`);
console.log(`  acknowledged writes not on the new primary: ${lostAuto}`);
if (manual.length) {
  console.log(`\nby hand, the emergency failover started the instant the primary died (zero human reaction time)`);
  console.log(`  ${fmt(manual)}`);
  console.log(`  monitor / by hand (p50): ${(percentile(automatic, 50) / percentile(manual, 50)).toFixed(2)}x`);
}
