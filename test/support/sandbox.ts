/**
 * A private copy of the shipped sandbox topology for one test file: same clusters and settings as
 * runbooks/sandbox.yaml, its own ports and datadirs, so files can run side by side.
 */
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import YAML from 'yaml';
import { loadConfig, type RunbookConfig } from '../../src/config/load';
import { Sandbox } from '../../src/adapters/mariadbd/sandbox';

export const SHIPPED_SANDBOX = resolve('runbooks/sandbox.yaml');

/**
 * `change` may edit the parsed YAML (policies, promotion rules) before it is written.
 * RUNBOOK_TEST_PORT_OFFSET moves every port, so that two checkouts can run the same files at once.
 */
/** A test's base port as its sandbox has it, after RUNBOOK_TEST_PORT_OFFSET (server ids follow ports). */
export const testPort = (port: number) => port + Number(process.env.RUNBOOK_TEST_PORT_OFFSET ?? 0);

export function testSandboxConfig(name: string, basePort: number, change?: (doc: any) => void): RunbookConfig {
  basePort = testPort(basePort);
  const dir = mkdtempSync(join(tmpdir(), `runbook-${name}-`));
  const doc = YAML.parse(readFileSync(SHIPPED_SANDBOX, 'utf8'));
  doc.envFile = resolve('runbooks/sandbox.env');
  doc.sandboxDir = join(dir, 'sandbox');
  doc.control.port = basePort;
  let next = basePort + 1;
  for (const cluster of Object.values(doc.clusters) as { instances: { port: number }[]; recovery?: { port: number } }[]) {
    for (const inst of cluster.instances) inst.port = next++;
    if (cluster.recovery) cluster.recovery.port = next++;
  }
  change?.(doc);
  const file = join(dir, 'sandbox.yaml');
  writeFileSync(file, YAML.stringify(doc));
  return loadConfig(file);
}

export async function startTestSandbox(name: string, basePort: number, change?: (doc: any) => void): Promise<{ config: RunbookConfig; sandbox: Sandbox }> {
  const config = testSandboxConfig(name, basePort, change);
  const sandbox = new Sandbox(config);
  await sandbox.up();
  return { config, sandbox };
}

/** Poll until `check` returns a value (replication is asynchronous; never a fixed sleep). */
export async function eventually<T>(what: string, check: () => Promise<T | undefined | false>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The mariadbd processes a restore started under this config's backup directory (binlog server, scratch recovery instance). */
export function scratchServerPids(config: RunbookConfig): number[] {
  return readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(`${config.backupDir}/`);
      } catch {
        return false; // gone already
      }
    })
    .map(Number);
}

/** Kill them: they are not the sandbox's, and a failed case leaves them. */
export function killScratchServers(config: RunbookConfig): void {
  for (const pid of scratchServerPids(config)) process.kill(pid, 'SIGKILL');
}
