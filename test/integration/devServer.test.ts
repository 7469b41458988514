/**
 * The embedded dev server launcher against real `temporal server start-dev` processes: it never
 * reports an address its own server does not serve. The suite's dev server (started in
 * globalSetup) plays "another Temporal server" holding a port.
 */
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Connection } from '@temporalio/client';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { listeningPorts } from '../../src/adapters/process/processes';
import { startDevServer, stopDevServer } from '../../src/adapters/temporal/devServer';

const other = inject('temporalAddress');
const otherPort = Number(other.split(':').pop());
const dirs: string[] = [];
const stateDir = () => {
  const dir = mkdtempSync(join(tmpdir(), 'runbook-devserver-'));
  dirs.push(dir);
  return dir;
};

afterAll(async () => {
  for (const dir of dirs) {
    await stopDevServer(dir);
    rmSync(dir, { recursive: true, force: true });
  }
});

describe('startDevServer', () => {
  it('refuses a port another Temporal server holds, instead of reporting that server as its own', async () => {
    const dir = stateDir();
    await expect(startDevServer({ stateDir: dir, port: otherPort, headless: true })).rejects.toThrow(
      `Temporal dev server: gRPC port ${otherPort} is already in use by another process`,
    );
    expect(existsSync(join(dir, 'temporal.json'))).toBe(false);
  });

  it('takes a free port when the preferred one is held, and records the address its own process serves', async () => {
    const dir = stateDir();
    const server = await startDevServer({ stateDir: dir, preferredPort: otherPort, headless: true });
    const port = Number(server.address.split(':').pop());
    expect(port).not.toBe(otherPort);
    expect(server.started).toBe(true);
    expect([...(listeningPorts(server.pid) ?? [])]).toContain(port);
    expect(JSON.parse(readFileSync(join(dir, 'temporal.json'), 'utf8'))).toMatchObject({ address: server.address, pid: server.pid });
    const conn = await Connection.connect({ address: server.address });
    try {
      await conn.workflowService.getSystemInfo({});
    } finally {
      await conn.close();
    }
    // Asked again, it reuses the server it recorded, at the same address.
    expect(await startDevServer({ stateDir: dir, preferredPort: otherPort, headless: true })).toMatchObject({ address: server.address, pid: server.pid, started: false });
  });

  it('fails with its own server\'s reason when that server exits at start, and records nothing', async () => {
    const dir = stateDir();
    // A stand-in CLI that fails as temporal does when it loses the port between check and bind.
    const fake = join(dir, 'temporal');
    writeFileSync(fake, '#!/bin/sh\necho "listen tcp 127.0.0.1: bind: address already in use" >&2\nexit 1\n');
    chmodSync(fake, 0o755);
    const saved = process.env.TEMPORAL_CLI_PATH;
    process.env.TEMPORAL_CLI_PATH = fake;
    try {
      await expect(startDevServer({ stateDir: dir, headless: true })).rejects.toThrow(/^Temporal dev server: temporal exited \(1\): listen tcp 127\.0\.0\.1: bind: address already in use; see /);
    } finally {
      if (saved === undefined) delete process.env.TEMPORAL_CLI_PATH;
      else process.env.TEMPORAL_CLI_PATH = saved;
    }
    expect(existsSync(join(dir, 'temporal.json'))).toBe(false);
  });
});
