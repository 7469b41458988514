/**
 * A config's fingerprint: a hash of what it says about the control database and the clusters,
 * normalised (defaults applied, keys sorted), without anything local to one machine (file paths,
 * the sandbox and backup directories) and without secrets (a config holds none: only the names of
 * the variables that do). The CLI puts it in every workflow input it starts and the worker compares
 * it with its own, so a `-c other.yaml` the worker does not run is refused instead of ignored.
 */
import { createHash } from 'node:crypto';
import type { RunbookConfig } from './load';

function stable(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(stable);
  if (value && typeof value === 'object') {
    return Object.fromEntries(
      Object.keys(value)
        .sort()
        .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
        .map((k) => [k, stable((value as Record<string, unknown>)[k])]),
    );
  }
  return value;
}

export function configFingerprint(config: Pick<RunbookConfig, 'control' | 'clusters'>): string {
  const content = JSON.stringify(stable({ control: config.control, clusters: config.clusters }));
  return `sha256:${createHash('sha256').update(content).digest('hex').slice(0, 16)}`;
}
