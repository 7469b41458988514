/**
 * Which instance an emergency failover is about: the one every reachable replica replicates from,
 * when it does not answer. Its last known position is the most any replica received from it.
 * Pure and workflow-safe.
 */
import type { Thresholds } from './configSchema';
import { formatMariaGtidList, parseMariaGtidList, type MariaGtid } from './gtid';
import { nameProblem } from './inputs';
import type { Topology, TopologyInstance } from './types';

export type FailedPrimary =
  | { ok: true; primary: string; lastKnownPosition: string | null; replicas: TopologyInstance[] }
  | { ok: false; reason: string };

/** Per domain, the highest sequence any of the positions reached. */
export function highestPositions(positions: (string | null | undefined)[]): string | null {
  const best = new Map<number, MariaGtid>();
  for (const pos of positions) {
    if (!pos) continue;
    for (const g of parseMariaGtidList(pos)) if ((best.get(g.domain)?.seq ?? -1) < g.seq) best.set(g.domain, g);
  }
  return best.size ? formatMariaGtidList([...best.values()]) : null;
}

export function lastKnownPrimary(t: Topology): FailedPrimary {
  const replicas = t.instances.filter((i) => i.reachable && i.replication);
  const sources = [...new Set(replicas.map((r) => r.replication!.sourceInstance ?? `${r.replication!.sourceHost}:${r.replication!.sourcePort}`))];
  if (!replicas.length) return { ok: false, reason: 'no reachable replica: nothing to promote' };
  if (sources.length !== 1) return { ok: false, reason: `the replicas disagree on their primary (${sources.join(', ')})` };
  const primary = sources[0]!;
  const source = t.instances.find((i) => i.instance === primary);
  if (!source) return { ok: false, reason: `the replicas replicate from ${primary}, which is not an instance of ${t.cluster}` };
  if (source.reachable) {
    return { ok: false, reason: `${primary} answers (read_only=${source.readOnly ? 'ON' : 'OFF'}): the primary is not down; use a planned switchover` };
  }
  return { ok: true, primary, lastKnownPosition: highestPositions(replicas.map((r) => r.replication!.receivedGtid)), replicas };
}

/**
 * A dead primary the runbook was started for by the monitor, which judged it dead after missing it
 * `failureThreshold` rounds in a row with every reachable replica's IO thread agreeing (and every
 * observer, when there are some): a stronger confirmation than the runbook's own probes.
 */
export interface ConfirmedDead {
  primary: string;
  /** When the monitor decided (epoch ms, the monitor's workflow clock). */
  atMs: number;
}

export function confirmedDeadProblem(value: ConfirmedDead | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'object' || value === null) return 'confirmedDead must be { primary, atMs }';
  if (!Number.isSafeInteger(value.atMs) || value.atMs <= 0) return 'confirmedDead.atMs must be a time in epoch milliseconds';
  return nameProblem('confirmedDead.primary', value.primary, { required: true });
}

/**
 * How many probes the runbook's own `confirm failure` makes: all of `confirmProbes`, unless the
 * monitor confirmed this same primary dead at most `monitorConfirmationSeconds` before the run
 * started. Then one: the primary must still not answer now, and every replica must still have
 * lost it (the activity checks both as always); probing it again for seconds would only delay the
 * recovery the monitor already decided on.
 */
export function confirmationProbes(
  thresholds: Pick<Thresholds, 'confirmProbes' | 'monitorConfirmationSeconds'>,
  confirmed: ConfirmedDead | undefined,
  primary: string,
  runStartedAtMs: number,
): { attempts: number; because?: string } {
  if (!confirmed || confirmed.primary !== primary) return { attempts: thresholds.confirmProbes };
  const ageMs = runStartedAtMs - confirmed.atMs;
  if (ageMs < 0 || ageMs > thresholds.monitorConfirmationSeconds * 1000) return { attempts: thresholds.confirmProbes };
  return { attempts: 1, because: `the monitor confirmed ${primary} dead ${(ageMs / 1000).toFixed(1)} s before this run started: one probe to see it is still down` };
}
