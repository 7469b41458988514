/**
 * One test file at a time for what the shared Temporal dev server can hold only once: a cluster's
 * monitor has the fixed workflow id `monitor-<cluster>` (one per cluster, by design), and every
 * test sandbox calls its cluster `orders`. Files that start a monitor take this lock for their
 * whole run, so one never attaches to, or terminates, another's monitor.
 */
import { mkdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inject } from 'vitest';
import { eventually } from './sandbox';

/** Wait until `name` is ours (polled by the project's one `eventually`); returns its release. */
export async function holdExclusive(name: string, timeoutMs = 900_000): Promise<() => void> {
  const dir = join(tmpdir(), `runbook-test-lock-${name}-${inject('temporalAddress').replace(/[^0-9a-z]/gi, '_')}`);
  const taken = () => {
    try {
      mkdirSync(dir);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      // A file that died holding it (its server is this run's, so the lock is at most one run old).
      const age = Date.now() - (statSync(dir, { throwIfNoEntry: false })?.mtimeMs ?? Date.now());
      if (age > timeoutMs) rmSync(dir, { recursive: true, force: true });
      return false;
    }
  };
  await eventually(`${name}, held by another test file`, async () => taken(), timeoutMs);
  return () => rmSync(dir, { recursive: true, force: true });
}
