/**
 * Failover benchmark on the local sandbox (figures printed, never asserted):
 *
 *   planned:   on ONE sandbox, under ONE independent writer (bench/writer.ts: its own process, a
 *              non-SUPER account writing as fast as it can and following whichever instance takes
 *              its writes), switchovers alternate between the best by-hand method a DBA would
 *              script (plain SQL on connections opened beforehand, no Temporal: fence + end the
 *              client sessions, MASTER_GTID_WAIT for the final position, promote, then repoint)
 *              and `runbook failover` planned. For each: the write-unavailability window the writer
 *              saw (last ack on the old primary → first ack on the new one), p50/p95 and the ratio
 *              of the p50s; acknowledged writes lost (counted after every replica applied the final
 *              primary's GTID position, not after a sleep); samples with two writable instances
 *              (the writer's prober) and writes that went back to an old primary; the runbook's
 *              total time and the hand-over's sub-steps as the servers saw them.
 *   emergency: M times on a fresh sandbox, SIGKILL the primary and start an auto-approved
 *              emergency failover (a fencing hook confirms the fence; no monitor: the run starts
 *              at once): SIGKILL → first write acknowledged by the new primary, and per phase
 *              (detection, confirm, prepare, promote, switch).
 *
 *   npm run bench -- [--planned N] [--emergency M]     (N switchovers of each kind, default 10; M default 5)
 * Targets: planned window p50 ≤ 2 × the hand-run p50 of the same run, 0 acknowledged writes lost,
 * never two writers, runbook total p50 ≤ 1 s; emergency SIGKILL → first write p50 ≤ 3 s.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import { getCluster, getInstance, resolveCredential, type RunbookConfig } from '../src/config/load';
import { Sandbox } from '../src/adapters/mariadbd/sandbox';
import { connect, instanceEndpoint } from '../src/adapters/mysql/connect';
import { startDevServer, stopDevServer } from '../src/adapters/temporal/devServer';
import { createRunbookWorker } from '../src/worker/createWorker';
import type { HandOverResult } from '../src/activities/handOver';
import type { FailoverResult } from '../src/workflows/failover';
import type { RunbookState } from '../src/core/runbookDefinitions';
import { activityRuns, shape, startFailover } from '../test/support/failover';
import { eventually, testSandboxConfig } from '../test/support/sandbox';
import { prepareLoadSchema } from '../test/support/writeLoad';

const { values } = parseArgs({ options: { planned: { type: 'string', default: '10' }, emergency: { type: 'string', default: '5' } } });
const PLANNED = Number(values.planned);
const EMERGENCY = Number(values.emergency);

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] ?? NaN;
}
const fmt = (xs: number[]) => (xs.length ? `p50 ${percentile(xs, 50).toFixed(0)} ms, p95 ${percentile(xs, 95).toFixed(0)} ms, min ${Math.min(...xs).toFixed(0)}, max ${Math.max(...xs).toFixed(0)} ms (n=${xs.length})` : 'no samples');

// ---- the independent writer, in its own process ----
interface WriterReport {
  acks: [number, string, number][];
  errors: number;
  probes: number;
  twoWriters: { at: number; writable: string[] }[];
}

class Writer {
  private proc!: ChildProcess;
  private report?: Promise<WriterReport>;
  constructor(private readonly config: RunbookConfig) {}

  async start(firstId: number): Promise<void> {
    const instances = getCluster(this.config, 'orders').instances.map((i) => ({ name: i.name, host: i.host, port: i.port }));
    this.proc = fork(new URL('./writer.ts', import.meta.url).pathname, [], {
      execArgv: ['--import', 'tsx'],
      env: { ...process.env, BENCH_WRITER: JSON.stringify({ instances, user: 'load_app', password: process.env.LOAD_APP_PASSWORD, firstId }) },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const [first] = await once(this.proc, 'message');
    if (first !== 'ready') throw new Error(`writer: ${JSON.stringify(first)}`);
  }

  async stop(): Promise<WriterReport> {
    this.report ??= new Promise<WriterReport>((resolve) => this.proc.once('message', (m) => resolve(m as WriterReport)));
    this.proc.send('stop');
    return this.report;
  }
}

/** Rows the writer's inserts left on an instance (its ids only). */
async function idsOn(config: RunbookConfig, instance: string, from: number): Promise<Set<number>> {
  const conn = await connect(instanceEndpoint(config, 'orders', instance));
  try {
    const [rows] = await conn.query('SELECT id FROM loadtest.acks WHERE id >= ?', [from]);
    return new Set((rows as { id: string | number }[]).map((r) => Number(r.id)));
  } finally {
    conn.destroy();
  }
}

/** Wait until every reachable replica has applied the primary's GTID position (no sleeps). */
async function waitForGtids(config: RunbookConfig, primary: string, replicas: string[]): Promise<string> {
  const p = await connect(instanceEndpoint(config, 'orders', primary));
  let pos: string;
  try {
    const [rows] = await p.query('SELECT @@gtid_binlog_pos AS pos');
    pos = (rows as { pos: string }[])[0]!.pos;
  } finally {
    p.destroy();
  }
  for (const r of replicas) {
    const c = await connect(instanceEndpoint(config, 'orders', r));
    try {
      const [rows] = await c.query('SELECT MASTER_GTID_WAIT(?, 60) AS w', [pos]);
      if (Number((rows as { w: number }[])[0]!.w) !== 0) throw new Error(`${r} did not apply ${pos} within 60 s`);
    } finally {
      c.destroy();
    }
  }
  return pos;
}

// ---- the hand-run switchover: plain SQL, as a DBA would script it ----
const CLIENT_SESSIONS = `SELECT ID FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID()
  AND USER NOT IN ('system user', 'event_scheduler') AND COMMAND NOT IN ('Binlog Dump', 'Binlog Dump GTID', 'Daemon', 'Slave_IO', 'Slave_SQL', 'Slave_worker')`;

async function handSwitchover(config: RunbookConfig, from: string, to: string, others: string[]): Promise<{ blockedMs: number }> {
  const admin = (name: string) => connect(instanceEndpoint(config, 'orders', name));
  const repl = resolveCredential(getCluster(config, 'orders').credentials.replication);
  const target = getInstance(config, 'orders', to);
  const change = `CHANGE MASTER TO MASTER_HOST = ?, MASTER_PORT = ?, MASTER_USER = ?, MASTER_PASSWORD = ?, MASTER_USE_GTID = slave_pos, MASTER_CONNECT_RETRY = 1`;
  const changeArgs = [target.host, target.port, repl.user, repl.password];
  // Opened and checked before the fence, as a careful script would.
  const [old, cand] = await Promise.all([admin(from), admin(to)]);
  const others_ = await Promise.all(others.map(admin));
  try {
    const [status] = await cand.query('SHOW SLAVE STATUS');
    const s = (status as Record<string, unknown>[])[0];
    if (!s || s.Slave_SQL_Running !== 'Yes' || s.Slave_IO_Running !== 'Yes') throw new Error(`${to} is not replicating`);
    const started = performance.now();
    await old.query('SET SESSION lock_wait_timeout = 5');
    await old.query('SET GLOBAL read_only = ON');
    const [sessions] = await old.query(CLIENT_SESSIONS);
    for (const { ID } of sessions as { ID: number }[]) await old.query(`KILL ${Number(ID)}`).catch(() => undefined);
    const [[{ pos }]] = (await old.query('SELECT @@gtid_binlog_pos AS pos')) as unknown as [[{ pos: string }]];
    const [[{ w }]] = (await cand.query('SELECT MASTER_GTID_WAIT(?, 30) AS w', [pos])) as unknown as [[{ w: number }]];
    if (Number(w) !== 0) {
      await old.query('SET GLOBAL read_only = OFF');
      throw new Error(`${to} did not reach ${pos}`);
    }
    await cand.query('STOP SLAVE');
    await cand.query('RESET SLAVE ALL');
    await cand.query('SET GLOBAL read_only = OFF');
    const blockedMs = performance.now() - started;
    // Repoint the old primary and the other replica (outside the window).
    const [[{ cur }]] = (await old.query('SELECT @@gtid_current_pos AS cur')) as unknown as [[{ cur: string }]];
    await old.query('SET GLOBAL gtid_slave_pos = ?', [cur]);
    await old.query(change, changeArgs);
    await old.query('START SLAVE');
    for (const o of others_) {
      await o.query('STOP SLAVE');
      await o.query(change, changeArgs);
      await o.query('START SLAVE');
    }
    return { blockedMs };
  } finally {
    for (const c of [old, cand, ...others_]) c.destroy();
  }
}

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

/** Writes are flowing on `instance`: the writer's rows there keep growing. */
async function writesFlowingOn(config: RunbookConfig, instance: string, from: number): Promise<void> {
  const before = (await idsOn(config, instance, from)).size;
  try {
    await eventually(`writes on ${instance}`, async () => (await idsOn(config, instance, from)).size > before + 50, 30_000);
  } catch (err) {
    // Seen once under load after a "succeeded" emergency run: say whether the server refused the
    // writes (still read-only) or the writer never reached it, so the next run tells them apart.
    const facts = await (async () => {
      const conn = await connect(instanceEndpoint(config, 'orders', instance));
      try {
        const [[row]] = (await conn.query('SELECT @@read_only AS ro, @@gtid_binlog_pos AS pos')) as unknown as [[{ ro: number; pos: string }]];
        return `${instance} read_only=${row.ro}, gtid_binlog_pos ${row.pos}, ${(await idsOn(config, instance, from)).size - before} new writer row(s)`;
      } finally {
        conn.destroy();
      }
    })().catch((e: Error) => `${instance} unreadable: ${e.message}`);
    throw new Error(`${(err as Error).message} (${facts})`);
  }
}

// ---- planned: hand-run and runbook, alternating, on one sandbox under one writer ----
interface Switch {
  kind: 'hand' | 'runbook';
  from: string;
  to: string;
  start: number;
  end: number;
  serverBlockedMs?: number;
  totalMs?: number;
  subSteps?: HandOverResult['subSteps'];
  steps?: StepTiming[];
}

/** One step of a run as its timeline has it (the workflow's clock), for the per-step figures. */
interface StepTiming {
  name: string;
  startedAt: number;
  durationMs: number;
}
/** The run's steps from its state query, repoints named alike so that runs compare. */
async function stepTimings(handle: { query: <T>(q: string) => Promise<T> }): Promise<StepTiming[]> {
  const state = await handle.query<RunbookState>('runbookState');
  return state.steps
    .filter((s) => s.endedAt !== undefined && s.status !== 'skipped')
    .map((s) => ({ name: s.name.replace(/^repoint .*/, 'repoint (each)'), startedAt: s.startedAt, durationMs: s.endedAt! - s.startedAt }));
}
/** p50 per step name, in the order steps first ran, and what the steps together leave unexplained. */
function printSteps(label: string, runs: { totalMs: number; steps: StepTiming[] }[]): void {
  const names = [...new Set(runs.flatMap((r) => r.steps.map((s) => s.name)))];
  console.log(`  ${label} (p50 / p95 over ${runs.length} runs, workflow clock):`);
  for (const name of names) {
    const xs = runs.flatMap((r) => r.steps.filter((s) => s.name === name).map((s) => s.durationMs));
    console.log(`    ${name.padEnd(28)} ${percentile(xs, 50).toFixed(0).padStart(5)} / ${percentile(xs, 95).toFixed(0).padStart(5)} ms${xs.length > runs.length ? ` (${xs.length / runs.length} per run)` : ''}`);
  }
  const wall = runs.map((r) => (r.steps.length ? Math.max(...r.steps.map((s) => s.startedAt + s.durationMs)) - r.steps[0]!.startedAt : 0));
  console.log(`    ${'first step start → last end'.padEnd(28)} ${percentile(wall, 50).toFixed(0).padStart(5)} / ${percentile(wall, 95).toFixed(0).padStart(5)} ms`);
  const outside = runs.map((r, i) => r.totalMs - wall[i]!);
  console.log(`    ${'client start/result + finish'.padEnd(28)} ${percentile(outside, 50).toFixed(0).padStart(5)} / ${percentile(outside, 95).toFixed(0).padStart(5)} ms (the run's end: audit drained)`);
}

const FIRST_ID = 1_000_000;
/** `withStack` on the first free block of ports from `base` (see the emergency runs). */
async function onFreePorts<T>(name: string, base: number, last: number, fn: (config: RunbookConfig, taskQueue: string) => Promise<T>): Promise<T> {
  for (;;) {
    try {
      return await withStack(name, base, fn);
    } catch (err) {
      if (!/already in use/.test((err as Error).message) || base >= last) throw err;
      console.error(`${name}: ${(err as Error).message}; trying ports ${base + 10}+`);
      base += 10;
    }
  }
}

const planned = await onFreePorts('bench-planned', 30500, 30590, async (config, taskQueue) => {
  const writer = new Writer(config);
  await writer.start(FIRST_ID);
  const switches: Switch[] = [];
  let primary = 'orders-a';
  await writesFlowingOn(config, primary, FIRST_ID);
  for (let i = 0; i < 2 * PLANNED; i++) {
    const kind = i % 2 === 0 ? 'hand' : 'runbook';
    const to = primary === 'orders-a' ? 'orders-b' : 'orders-a';
    await eventually('a healthy cluster', async () => (await shape(config)).problems.length === 0, 30_000);
    const s: Switch = { kind, from: primary, to, start: Date.now(), end: 0 };
    if (kind === 'hand') {
      s.serverBlockedMs = (await handSwitchover(config, primary, to, ['orders-c'])).blockedMs;
    } else {
      const handle = await startFailover(client, taskQueue, { target: to, reason: `bench ${i + 1}` });
      const result = (await handle.result()) as FailoverResult;
      if (result.status !== 'succeeded') throw new Error(`switchover ${i + 1}: ${result.status}`);
      s.totalMs = Date.now() - s.start;
      const [run] = await activityRuns(handle, 'handOverWrites');
      const r = run?.result as HandOverResult | undefined;
      s.serverBlockedMs = r?.writesBlockedMs;
      s.subSteps = r?.subSteps;
      s.steps = await stepTimings(handle);
    }
    s.end = Date.now();
    switches.push(s);
    primary = to;
    await writesFlowingOn(config, primary, FIRST_ID);
  }
  const report = await writer.stop();
  const others = ['orders-a', 'orders-b', 'orders-c'].filter((x) => x !== primary);
  const finalPos = await waitForGtids(config, primary, others);
  const acked = report.acks.map(([id]) => id);
  const lost: Record<string, number> = {};
  for (const inst of [primary, ...others]) {
    const present = await idsOn(config, inst, FIRST_ID);
    lost[inst] = acked.filter((id) => !present.has(id)).length;
  }
  return { switches, report, lost, finalPos };
});

// Each change of writer in the ack stream belongs to the switchover whose time range holds it.
const windows = { hand: [] as number[], runbook: [] as number[] };
let flipBacks = 0;
{
  const acks = planned.report.acks;
  const changes: { at: number; ms: number; from: string; to: string }[] = [];
  for (let i = 1; i < acks.length; i++) if (acks[i]![1] !== acks[i - 1]![1]) changes.push({ at: acks[i]![2], ms: acks[i]![2] - acks[i - 1]![2], from: acks[i - 1]![1], to: acks[i]![1] });
  for (const s of planned.switches) {
    const mine = changes.filter((c) => c.at >= s.start && c.at <= s.end + 30_000 && c.from === s.from && c.to === s.to);
    if (mine[0]) windows[s.kind].push(mine[0].ms);
  }
  // A write that went back to an instance after another one took writes: two writers.
  const seen = new Set<string>();
  let current = acks[0]?.[1];
  for (const [, inst] of acks) {
    if (inst === current) continue;
    seen.add(current!);
    if (seen.has(inst) && planned.switches.every((s) => s.to !== inst)) flipBacks++;
    current = inst;
  }
  flipBacks += Math.max(0, changes.length - planned.switches.length);
}

const runbookSwitches = planned.switches.filter((s) => s.kind === 'runbook');
const handSwitches = planned.switches.filter((s) => s.kind === 'hand');
const ratio = percentile(windows.runbook, 50) / percentile(windows.hand, 50);
console.log(`\nplanned switchover, side by side on one sandbox under one independent writer (${PLANNED} of each, alternating)`);
console.log(`  writer: ${planned.report.acks.length} acknowledged writes, ${planned.report.errors} refused attempts, ${planned.report.probes} read_only probe rounds`);
console.log(`  write-unavailability, hand-run SQL:    ${fmt(windows.hand)}`);
console.log(`  write-unavailability, runbook:         ${fmt(windows.runbook)}`);
console.log(`  ratio runbook / hand-run (p50):        ${ratio.toFixed(2)}   target <= 2`);
console.log(`  fence → promoted as the servers saw it: hand ${fmt(handSwitches.map((s) => s.serverBlockedMs!))}`);
console.log(`                                          runbook ${fmt(runbookSwitches.filter((s) => s.serverBlockedMs !== undefined).map((s) => s.serverBlockedMs!))}`);
for (const name of ['check connections', 'fence old primary', 'wait for catch-up', 'promote candidate', 'writer endpoint'] as const) {
  const xs = runbookSwitches.flatMap((s) => s.subSteps?.filter((x) => x.name === name).map((x) => x.endedAt - x.startedAt) ?? []);
  console.log(`    ${name.padEnd(20)} ${fmt(xs)}`);
}
console.log(`  runbook total time:                    ${fmt(runbookSwitches.map((s) => s.totalMs!))}   target p50 <= 1000 ms`);
printSteps('runbook steps', runbookSwitches.map((s) => ({ totalMs: s.totalMs!, steps: s.steps ?? [] })));
console.log(`  acknowledged writes lost (after every replica applied ${planned.finalPos}): ${Object.entries(planned.lost).map(([i, n]) => `${i} ${n}`).join(', ')}   (must be 0)`);
console.log(`  two writers: ${planned.report.twoWriters.length} probe rounds saw two writable instances${planned.report.twoWriters.length ? ` (${planned.report.twoWriters.slice(0, 3).map((t) => t.writable.join('+')).join('; ')})` : ''}; ${flipBacks} writes went back to an old writer   (must be 0)`);
console.log(`  windows matched: hand ${windows.hand.length}/${handSwitches.length}, runbook ${windows.runbook.length}/${runbookSwitches.length}`);


// ---- emergency ----
interface EmergencyRun {
  total: number;
  detection: number;
  confirm: number;
  prepare: number;
  promote: number;
  switch: number;
  notOnNew: number;
  runMs: number;
  steps: StepTiming[];
}
const emergency: EmergencyRun[] = [];
let thresholds = '';
let portBlock = 30600;
for (let i = 0; i < EMERGENCY; i++) {
  // Ports in the ephemeral range can be held by someone's outgoing connection (or TIME_WAIT):
  // a block that is taken is skipped for the next one, up to the bench's range (30500–30990).
  for (;;) {
    try {
      await emergencyRun(i, portBlock);
      portBlock += 10;
      break;
    } catch (err) {
      if (!/already in use/.test((err as Error).message) || portBlock >= 30980) throw err;
      console.error(`emergency run ${i + 1}: ${(err as Error).message}; trying ports ${portBlock + 10}+`);
      portBlock += 10;
    }
  }
}

async function emergencyRun(i: number, base: number): Promise<void> {
  await withStack(`bench-emergency-${i}`, base, async (config, taskQueue) => {
    const t = getCluster(config, 'orders').thresholds;
    thresholds = `confirmProbes ${t.confirmProbes} × ${t.confirmIntervalMs} ms, replicaGraceSeconds ${t.replicaGraceSeconds}`;
    const writer = new Writer(config);
    await writer.start(FIRST_ID);
    await writesFlowingOn(config, 'orders-a', FIRST_ID);
    // A worker in production runs for days: its workflow code is loaded and its connections to the
    // control database are open before any incident. A dry run (reads only, no lock) does that here.
    await (await startFailover(client, taskQueue, { dryRun: true, reason: `bench warm-up ${i + 1}` })).result();
    const sandbox = new Sandbox(config);
    const killedAt = Date.now();
    process.kill(sandbox.state(sandbox.instance('orders-a')).pid!, 'SIGKILL');
    const handle = await startFailover(client, taskQueue, { mode: 'emergency', reason: `bench emergency ${i + 1}` });
    const startedAt = Date.now();
    const result = (await handle.result()) as FailoverResult;
    const runMs = Date.now() - startedAt;
    const to = result.plan.to.instance;
    await writesFlowingOn(config, to, FIRST_ID);
    const report = await writer.stop();
    const first = report.acks.find(([, inst, at]) => inst === to && at > killedAt)!;
    const state = await handle.query<RunbookState>('runbookState');
    const step = (name: string) => state.steps.find((s) => s.name === name)!;
    const runStart = state.steps[0]!.startedAt;
    const confirmEnd = step('confirm failure').endedAt!;
    const promote = step('promote candidate');
    const present = await idsOn(config, to, FIRST_ID);
    emergency.push({
      total: first[2] - killedAt,
      detection: runStart - killedAt,
      confirm: confirmEnd - runStart,
      prepare: promote.startedAt - confirmEnd,
      promote: promote.endedAt! - promote.startedAt,
      switch: first[2] - promote.endedAt!,
      notOnNew: report.acks.filter(([id]) => !present.has(id)).length,
      runMs,
      steps: await stepTimings(handle),
    });
  });
}

await native.close();
await client.connection.close();
await stopDevServer(stateDir);
rmSync(stateDir, { recursive: true, force: true });

console.log(`\nemergency failover, SIGKILL → first write acknowledged by the new primary (${EMERGENCY} runs; auto-approval, fencing hook; ${thresholds})`);
console.log(`  total:     ${fmt(emergency.map((e) => e.total))}   target p50 <= 3000 ms`);
console.log(`  detection: ${fmt(emergency.map((e) => e.detection))}   (SIGKILL → run started: no monitor, the bench starts it at once)`);
console.log(`  confirm:   ${fmt(emergency.map((e) => e.confirm))}   (run start → failure confirmed: probes and replicas' IO threads)`);
console.log(`  prepare:   ${fmt(emergency.map((e) => e.prepare))}   (fencing hook, stop IO, apply relay logs, choose, approval)`);
console.log(`  promote:   ${fmt(emergency.map((e) => e.promote))}`);
console.log(`  switch:    ${fmt(emergency.map((e) => e.switch))}   (promoted → the writer's first acknowledged write there)`);
console.log(`  acknowledged writes not on the new primary: ${emergency.map((e) => e.notOnNew).join(', ')} (asynchronous replication: the dead primary's unreplicated tail)`);
printSteps('emergency steps', emergency.map((e) => ({ totalMs: e.runMs, steps: e.steps })));
