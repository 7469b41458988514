/** Starts one real Temporal dev server (headless, in memory) for every integration test file. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { startDevServer, stopDevServer } from '../../src/adapters/temporal/devServer';

declare module 'vitest' {
  export interface ProvidedContext {
    temporalAddress: string;
  }
}

export default async function setup(project: TestProject) {
  const stateDir = mkdtempSync(join(tmpdir(), 'runbook-temporal-'));
  const server = await startDevServer({ stateDir, headless: true });
  project.provide('temporalAddress', server.address);
  return async () => {
    await stopDevServer(stateDir);
    rmSync(stateDir, { recursive: true, force: true });
  };
}
