/** Spawning the real worker process (test/fixtures/workerEntry.ts) with a test's config. */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { inject } from 'vitest';
import type { RunbookConfig } from '../../src/config/load';
import { freePort } from '../../src/adapters/temporal/devServer';
import { eventually } from './sandbox';

export interface WorkerChild {
  proc: ChildProcess;
  output: () => string;
  metricsAddress: string;
  exited: Promise<number | null>;
}

const children: ChildProcess[] = [];

export async function startWorkerProcess(config: RunbookConfig, taskQueue: string, env: Record<string, string> = {}): Promise<WorkerChild> {
  const metricsAddress = `127.0.0.1:${await freePort()}`;
  // node --import tsx, not the tsx CLI: that one is a wrapper process, and a SIGKILL sent to it
  // would leave the real worker running.
  const proc = spawn(process.execPath, ['--import', 'tsx', 'test/fixtures/workerEntry.ts'], {
    env: {
      ...process.env,
      TEMPORAL_ADDRESS: inject('temporalAddress'),
      TEMPORAL_NAMESPACE: 'default',
      RUNBOOK_CONFIG: config.files[0],
      RUNBOOK_TASK_QUEUE: taskQueue,
      RUNBOOK_METRICS_ADDRESS: metricsAddress,
      RUNBOOK_LOG_LEVEL: 'WARN',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(proc);
  let output = '';
  proc.stdout!.on('data', (d) => (output += d));
  proc.stderr!.on('data', (d) => (output += d));
  const exited = once(proc, 'exit').then(([code]) => code as number | null);
  const early = exited.then((code) => Promise.reject(new Error(`worker exited (${code}) before it was ready:\n${output}`)));
  early.catch(() => {});
  const ready = eventually('worker ready', async () => output.includes('worker ready'), 180_000).catch((err: Error) => Promise.reject(new Error(`${err.message}; its output:\n${output.slice(-2000)}`)));
  await Promise.race([ready, early]);
  return { proc, output: () => output, metricsAddress, exited };
}

/** SIGKILL every worker process still running (afterAll). */
export function killWorkerProcesses(): void {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
}
