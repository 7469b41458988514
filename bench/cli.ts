/**
 * CLI start-up benchmark (figures printed, never asserted): how long `runbook --help` and
 * `runbook status <id>` take from exec to exit, as an on-call engineer runs them dozens of times
 * in an incident. Target (issue #18): p50 ≤ 300 ms for both. Also timed, without a target: `log`
 * of the run, and `approve` of it (refused, the run being over: start-up and the same calls to
 * Temporal an accepted approval makes first).
 *
 * The status is of a real run (a dry-run failover on the sandbox, its worker in this process, so
 * the query is answered) and reads its failover_log trail from the control database, as always.
 * Beside it, the same in the same run: `node -e 0` (the floor), the CLI run from source through
 * tsx (how it started before the build), and the by-hand way to ask Temporal the same question,
 * `temporal workflow describe` (a Go binary; it does not read failover_log or the run's state).
 *
 *   npm run bench:cli -- [--runs N]
 */
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import { Sandbox } from '../src/adapters/mariadbd/sandbox';
import { startDevServer, stopDevServer, temporalCliPath } from '../src/adapters/temporal/devServer';
import { migrateControl } from '../src/adapters/control/store';
import { createRunbookWorker } from '../src/worker/createWorker';
import { startFailover } from '../test/support/failover';
import { testSandboxConfig } from '../test/support/sandbox';

const run = promisify(execFile);
const { values } = parseArgs({ options: { runs: { type: 'string', default: '20' } } });
const RUNS = Number(values.runs);

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] ?? NaN;
}

/**
 * Exec → exit of one command, `RUNS` times (after one warm-up run: the page cache, a fresh build).
 * Spawned asynchronously: the worker in this process must stay free to answer the status query.
 */
async function timeCommand(what: string, cmd: string, args: string[], env: NodeJS.ProcessEnv, refusal?: RegExp): Promise<number[]> {
  const once = async () => {
    const started = process.hrtime.bigint();
    try {
      await run(cmd, args, { env });
      if (refusal) throw new Error(`${what} succeeded; expected it to be refused`);
    } catch (err) {
      const e = err as { code?: number; stderr?: string; stdout?: string };
      // A command timed as it refuses (approve of a run that is over) must refuse for that reason.
      if (!refusal || !refusal.test(e.stderr ?? '')) throw new Error(`${what} exited ${e.code}: ${(e.stderr || e.stdout || String(err)).split('\n')[0]}`);
    }
    return Number(process.hrtime.bigint() - started) / 1e6;
  };
  await once();
  const xs: number[] = [];
  for (let i = 0; i < RUNS; i++) xs.push(await once());
  return xs;
}

const line = (what: string, xs: number[], target = '') =>
  console.log(`  ${what.padEnd(44)} p50 ${percentile(xs, 50).toFixed(0).padStart(5)} ms   p95 ${percentile(xs, 95).toFixed(0).padStart(5)} ms${target}`);

Runtime.install({ logger: new DefaultLogger('ERROR') });
const stateDir = mkdtempSync(join(tmpdir(), 'runbook-bench-cli-temporal-'));
const server = await startDevServer({ stateDir, headless: true });
const config = testSandboxConfig('bench-cli', 28500, (doc) => {
  doc.clusters.orders.approval.failover = { planned: { mode: 'auto' }, emergency: { mode: 'auto' } };
});
const sandbox = new Sandbox(config);
await sandbox.up();
await migrateControl(config);
const native = await NativeConnection.connect({ address: server.address });
const client = new Client({ connection: await Connection.connect({ address: server.address }) });
const taskQueue = 'bench-cli';
const worker = await createRunbookWorker({ connection: native, namespace: 'default', taskQueue, config });
const running = worker.run();
try {
  const handle = await startFailover(client, taskQueue, { dryRun: true, reason: 'bench: a run to ask about' });
  await handle.result();
  const runbook = resolve('bin/runbook');
  const env = { ...process.env, TEMPORAL_ADDRESS: server.address, RUNBOOK_CONFIG: config.files[0]!, RUNBOOK_TASK_QUEUE: taskQueue };
  const fromSource = { ...env, RUNBOOK_FROM_SOURCE: '1' };
  const status = ['status', handle.workflowId];
  await run(runbook, ['--help'], { env }); // builds dist/ if a source changed

  console.log(`\nCLI start to exit (${RUNS} runs each, after one warm-up; this machine: load ${execFileSync('cat', ['/proc/loadavg'], { encoding: 'utf8' }).split(' ').slice(0, 3).join(' ')})`);
  const floor = await timeCommand('node', process.execPath, ['-e', '0'], env);
  line('node -e 0 (the floor)', floor);
  line('runbook --help', await timeCommand('--help', runbook, ['--help'], env), '   target p50 <= 300 ms');
  const statusTimes = await timeCommand('status', runbook, status, env);
  line('runbook status <id>', statusTimes, '   target p50 <= 300 ms');
  line('runbook log --workflow <id>', await timeCommand('log', runbook, ['log', '--workflow', handle.workflowId], env));
  line('runbook approve <id> (refused: the run is over)', await timeCommand('approve', runbook, ['approve', handle.workflowId, '--as', 'bob'], env, /approve refused: .* is over/));
  line('runbook --help, from source (tsx)', await timeCommand('--help from source', runbook, ['--help'], fromSource));
  line('runbook status <id>, from source (tsx)', await timeCommand('status from source', runbook, status, fromSource));
  // The machine is shared: the ratio to the floor, measured in the same run, says more than the time.
  console.log(`  status / node -e 0 (p50):                    ${(percentile(statusTimes, 50) / percentile(floor, 50)).toFixed(2)}`);
  line('by hand: temporal workflow describe', await timeCommand('temporal', temporalCliPath(), ['workflow', 'describe', '--address', server.address, '-w', handle.workflowId], env));
} finally {
  worker.shutdown();
  await running;
  await sandbox.destroy();
  await stopDevServer(stateDir);
  rmSync(stateDir, { recursive: true, force: true });
}
