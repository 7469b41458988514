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
 * Each single run also prints where its time went, phase by phase, from failover_log's own times.
 * The fleet: CLUSTERS clusters of 2 instances lose their primaries at once (one region down);
 * the time to the last one recovered, against the single-cluster p50.
 *
 *   npm run bench:monitor -- [--runs N] [--manual M] [--fleet CLUSTERS] [--fleet-runs K]
 * Target on the sandbox: p50 ≤ 5 s (orchestrator at GitHub: 10–13 s; MaxScale defaults ≈ 25 s);
 * the fleet's last cluster ≤ 2× the single-cluster p50.
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
import { automaticFailovers, monitorRows } from '../test/support/monitor';
import { failoverHistory, withControl, type HistoryRow } from '../src/adapters/control/store';
import { monitorWorkflowId as monitorId } from '../src/core/monitorDefinitions';
import { eventually, testSandboxConfig } from '../test/support/sandbox';
import { prepareLoadSchema, WriteLoad } from '../test/support/writeLoad';

const { values } = parseArgs({
  options: { runs: { type: 'string', default: '5' }, manual: { type: 'string', default: '3' }, fleet: { type: 'string', default: '10' }, 'fleet-runs': { type: 'string', default: '1' } },
});
const RUNS = Number(values.runs);
const MANUAL = Number(values.manual);
/** Clusters of 2 instances each that lose their primaries at once (0: no fleet figure). */
const FLEET = Number(values.fleet);
const FLEET_RUNS = Number(values['fleet-runs']);

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
async function killAndMeasure(config: RunbookConfig, sandbox: Sandbox, recover: () => Promise<void>): Promise<{ ms: number; lost: number; to: string; killedAt: number; firstWriteAt: number }> {
  const load = new WriteLoad(config, 'orders', 'orders-a', 1);
  load.start();
  await eventually('writes flowing', async () => load.acks.length > 50);
  const killedAt = Date.now();
  process.kill(sandbox.state(sandbox.instance('orders-a')).pid!, 'SIGKILL');
  await recover();
  const first = await eventually('a write on the new primary', async () => load.acks.find((a) => a.at > killedAt && a.instance !== 'orders-a'), 120_000);
  await load.stop();
  return { ms: first.at - killedAt, lost: (await load.missingOn(first.instance)).length, to: first.instance, killedAt, firstWriteAt: first.at };
}

/**
 * Where the time from SIGKILL to the first write on the new primary went, from the failover_log
 * rows' own times (switch_time, ms): the monitor's rounds until it confirmed, the hand-over to the
 * failover run, each of that run's steps, and the writer's reconnect after the new primary is
 * writable. Phases in order, ms each.
 */
async function breakdown(config: RunbookConfig, cluster: string, killedAt: number, firstWriteAt: number): Promise<[string, number][] | undefined> {
  const [workflowId] = await automaticFailovers(config, cluster);
  if (!workflowId) return undefined;
  const rows = await withControl(config, async (c) => ({
    monitor: await failoverHistory(c, { workflowId: monitorId(cluster), pageSize: 1000 }),
    failover: await failoverHistory(c, { workflowId, pageSize: 1000 }),
  }));
  const at = (r: HistoryRow | undefined) => (r ? Date.parse(`${r.switch_time.replace(' ', 'T')}Z`) : NaN);
  const mon = rows.monitor.reverse();
  const fo = rows.failover.reverse();
  const confirmed = mon.find((r) => r.status === 'state_change' && String(r.step).endsWith('→ primary_dead'));
  const firstMiss = mon.find((r) => r.status === 'state_change' && String(r.step).endsWith('→ primary_unreachable'));
  const runStart = fo.find((r) => r.step === 'runbook' && r.status === 'started');
  const phases: [string, number][] = [
    ['kill→first missed round', at(firstMiss) - killedAt],
    ['→confirmed dead', at(confirmed) - at(firstMiss)],
    ['→child started', at(runStart) - at(confirmed)],
  ];
  let last = at(runStart);
  // Each step of the failover run that ended before the first write: the time since the previous one ended.
  for (const r of fo.filter((x) => x.status === 'succeeded' && x.step !== 'runbook' && (x.sub_step ?? 0) === 0 && at(x) <= firstWriteAt)) {
    phases.push([String(r.step), at(r) - last]);
    last = at(r);
  }
  phases.push(['→first write', firstWriteAt - last]);
  return phases;
}

const breakdowns: [string, number][][] = [];

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
    const b = await breakdown(config, 'orders', r.killedAt, r.firstWriteAt);
    if (b) {
      breakdowns.push(b);
      console.log(`  ${b.map(([what, ms]) => `${what} ${(ms / 1000).toFixed(2)}`).join(' | ')}`);
    }
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

/**
 * The fleet: FLEET clusters of 2 instances each (primary in region-a, replica in region-b), one
 * monitor each on one worker, a write load on each; every primary SIGKILLed at once (region-a
 * down). Per cluster: SIGKILL → first acknowledged write on its new primary; the figure is the
 * last cluster's.
 */
const fleet: { last: number; each: number[]; lost: number; recovered: number }[] = [];
const fleetBreakdowns: [string, number][][] = [];
for (let run = 0; FLEET > 0 && run < FLEET_RUNS; run++) {
  const clusters = Array.from({ length: FLEET }, (_, k) => `f${k}`);
  const fleetConfig = (doc: any) => {
    const t = doc.clusters.orders;
    delete t.recovery;
    let port = doc.control.port + 1;
    doc.clusters = Object.fromEntries(
      clusters.map((c) => [
        c,
        {
          ...structuredClone(t),
          regions: ['region-a', 'region-b'],
          instances: [
            { name: `${c}-a`, region: 'region-a', host: '127.0.0.1', port: port++, role: 'primary', promotion: 'prefer' },
            { name: `${c}-b`, region: 'region-b', host: '127.0.0.1', port: port++, promotion: 'prefer' },
          ],
          approval: { ...t.approval, failover: { planned: { mode: 'auto' }, emergency: { mode: 'auto' } } },
          fencing: { hooks: [{ name: 'stonith', command: 'true', timeoutSeconds: 5 }] },
          monitor: { intervalSeconds: 1, failureThreshold: 3, autoFailover: 'auto' },
          thresholds: { ...t.thresholds, probeTimeoutSeconds: 1, confirmProbes: 2, confirmIntervalMs: 300 },
        },
      ]),
    );
  };
  const config = testSandboxConfig(`bench-fleet-${run}`, 30400 + run * 30, fleetConfig);
  const sandbox = new Sandbox(config);
  const upAt = Date.now();
  await sandbox.up();
  console.log(`fleet run ${run + 1}: ${clusters.length * 2 + 1} mariadbd up in ${((Date.now() - upAt) / 1000).toFixed(1)} s`);
  const taskQueue = `bench-fleet-${run}-${process.pid}`;
  const worker = await createRunbookWorker({ connection: native, namespace: 'default', taskQueue, config });
  const running = worker.run();
  try {
    for (const c of clusters) await prepareLoadSchema(config, c, `${c}-a`);
    for (const c of clusters) await startMonitor(client, config, c, 'bench', taskQueue);
    await eventually('every monitor healthy', async () => {
      for (const c of clusters) if (!(await monitorRows(config, c)).some((r) => r.step === `${c}: unknown → healthy`)) return false;
      return true;
    }, 180_000);
    const loads = clusters.map((c) => new WriteLoad(config, c, `${c}-a`, 5));
    for (const l of loads) l.start();
    await eventually('writes flowing on every cluster', async () => loads.every((l) => l.acks.length > 20), 60_000);
    const killedAt = Date.now();
    for (const c of clusters) process.kill(sandbox.state(sandbox.instance(`${c}-a`)).pid!, 'SIGKILL');
    const each = await Promise.all(
      clusters.map(async (c, k) => {
        const first = await eventually(`a write on ${c}'s new primary`, async () => loads[k]!.acks.find((a) => a.at > killedAt && a.instance !== `${c}-a`), 300_000);
        return first.at - killedAt;
      }),
    );
    for (const l of loads) await l.stop();
    let lost = 0;
    for (const [k, c] of clusters.entries()) lost += (await loads[k]!.missingOn(`${c}-b`)).length;
    const recovered = (await Promise.all(clusters.map(async (c) => (await automaticFailovers(config, c)).length))).filter((n) => n === 1).length;
    // Where the time went, per phase, over the fleet's clusters (what concurrency slows down).
    for (const [k, c] of clusters.entries()) {
      const b = await breakdown(config, c, killedAt, killedAt + each[k]!);
      if (b) fleetBreakdowns.push(b);
    }
    fleet.push({ last: Math.max(...each), each, lost, recovered });
    console.log(`fleet run ${run + 1}: last cluster ${(Math.max(...each) / 1000).toFixed(2)} s; each: ${each.map((ms) => (ms / 1000).toFixed(1)).join(', ')}`);
  } finally {
    for (const c of clusters) await client.workflow.getHandle(monitorWorkflowId(c)).terminate('bench run over').catch(() => undefined);
    worker.shutdown();
    await running;
    await sandbox.destroy();
  }
}

await native.close();
await client.connection.close();
await stopDevServer(stateDir);
rmSync(stateDir, { recursive: true, force: true });

if (automatic.length) {
  console.log(`\nprimary SIGKILL -> first acknowledged write on the new primary, monitor with autoFailover auto (interval 1 s, threshold 3)`);
  console.log(`  ${fmt(automatic)}   target p50 <= 5 s`);
  console.log(`  detection (first missed round -> confirmed dead): ${fmt(detection)}`);
  console.log(`  acknowledged writes not on the new primary: ${lostAuto}`);
}
if (manual.length) {
  console.log(`\nby hand, the emergency failover started the instant the primary died (zero human reaction time)`);
  console.log(`  ${fmt(manual)}`);
  console.log(`  monitor / by hand (p50): ${(percentile(automatic, 50) / percentile(manual, 50)).toFixed(2)}x`);
}

function printBreakdown(title: string, list: [string, number][][]): void {
  if (!list.length) return;
  console.log(`\n${title}: where the time went, per phase (p50 over ${list.length}, from failover_log's own times)`);
  const names = [...new Set(list.flatMap((b) => b.map(([n]) => n)))];
  for (const n of names) {
    const xs = list.map((b) => b.find(([m]) => m === n)?.[1]).filter((x): x is number => x !== undefined && Number.isFinite(x));
    if (xs.length) console.log(`  ${n.padEnd(28)} p50 ${(percentile(xs, 50) / 1000).toFixed(2)} s, max ${(Math.max(...xs) / 1000).toFixed(2)} s`);
  }
}
printBreakdown('single cluster', breakdowns);
printBreakdown(`fleet (${FLEET} clusters at once)`, fleetBreakdowns);
for (const [i, f] of fleet.entries()) {
  console.log(`\nfleet ${i + 1}: ${FLEET} clusters of 2 instances lose their primaries at once: ${f.recovered}/${FLEET} failed over automatically once`);
  console.log(`  SIGKILL -> first write on the new primary: last cluster ${(f.last / 1000).toFixed(2)} s, ${fmt(f.each)}; acknowledged writes lost: ${f.lost}`);
  if (automatic.length) console.log(`  last cluster / single-cluster p50: ${(f.last / percentile(automatic, 50)).toFixed(2)}x   target <= 2x`);
}
