/**
 * `runbook drill` as a new user runs it (on a private copy of the sandbox and the test's Temporal
 * server): it succeeds, and everything it prints fits 120 columns (audit trails, topology and
 * sync_status compact; `--wide` is for the full tables).
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { holdExclusive } from '../support/exclusive';
import { Sandbox } from '../../src/adapters/mariadbd/sandbox';
import { testSandboxConfig } from '../support/sandbox';

const exec = promisify(execFile);
const config = testSandboxConfig('drill', 31400);
// The drill starts the cluster's monitor (monitor-orders): not while another file runs one.
let release: (() => void) | undefined;
beforeAll(async () => {
  release = await holdExclusive('monitor-orders');
}, 900_000);
afterAll(async () => {
  await new Sandbox(config).destroy();
  release?.();
});

it('runs the drill end to end, every line within 120 columns', async () => {
  const { stdout, stderr } = await exec('bin/runbook', ['--config', config.files[0]!, 'drill'], {
    env: { ...process.env, NO_COLOR: '1', TEMPORAL_ADDRESS: inject('temporalAddress') },
    maxBuffer: 16 * 1024 * 1024,
  });
  const lines = stdout.split('\n');
  // The live progress of each run goes to stderr: it must fit too.
  const wide = [...lines, ...stderr.split('\n')].filter((l) => [...l].length > 120);
  expect(wide, 'lines over 120 columns').toEqual([]);
  for (const heading of ['== MariaDB sandbox', '== live topology of orders after the switchover', '== sync_status', '== done']) expect(lines).toContain(heading);
  // The switchover's compact trail: one line per step, the hand-over among them.
  expect(stdout).toMatch(/^[\d:.]+ +\d+ hand over writes +succeeded/m);
}, 300_000);
