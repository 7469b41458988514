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

/** Wait (on the lock directory, no fixed sleep beyond the poll) until `name` is ours; returns its release. */
export async function holdExclusive(name: string, timeoutMs = 900_000): Promise<() => void> {
  const dir = join(tmpdir(), `runbook-test-lock-${name}-${inject('temporalAddress').replace(/[^0-9a-z]/gi, '_')}`);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      mkdirSync(dir);
      return () => rmSync(dir, { recursive: true, force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      // A file that died holding it (its server is this run's, so the lock is at most one run old).
      const age = Date.now() - (statSync(dir, { throwIfNoEntry: false })?.mtimeMs ?? Date.now());
      if (age > timeoutMs) rmSync(dir, { recursive: true, force: true });
      if (Date.now() > deadline) throw new Error(`another test file held ${name} for over ${timeoutMs / 1000} s`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}
