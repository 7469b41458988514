/**
 * Replication lag over time, pure (workflow-safe): what the monitor remembers of each replica's lag
 * for the last hour, so that the status panel draws the monitor's samples (one history per
 * cluster, kept across continue-as-new) rather than samples of its own.
 *
 * Lag is dated by the primary's own positions, as the worker's `runbook_replication_lag_seconds`
 * is (pt-heartbeat's idea at the monitor's resolution, without writing a heartbeat): the monitor
 * keeps the primary's GTID position round by round; a replica that does not hold the position the
 * primary had at time T lacks transactions committed before T, so it is at least `now - T` behind,
 * and one that holds it is at most `now - T` behind. Unlike Seconds_Behind_Master (NULL then), this
 * keeps rising while the replica's SQL thread is stopped.
 *
 * Bounded: at most LAG_MAX_POINTS points per replica (neighbours merged, keeping the worse lag,
 * when more arrive) and POSITIONS_MAX primary positions (thinned more the older they are), all
 * younger than an hour; replicas that stop replicating age out. A few kilobytes per cluster.
 */
import { mariaErrantDomains } from './gtid';
import type { Observation } from './monitor';

export const LAG_WINDOW_MS = 3_600_000;
export const LAG_MAX_POINTS = 120;
export const POSITIONS_MAX = 48;
/** A longer position (hundreds of replication domains) is not kept: lag then falls back to the server's. */
const POSITION_MAX_CHARS = 400;

/** `[epoch ms, seconds behind]`; null when it could not be measured (unreachable, no position). */
export type LagPoint = [at: number, lag: number | null];

export interface LagMemory {
  /** The primary's position round by round (`[epoch ms, GTID position]`), oldest first, thinned. */
  positions: [at: number, position: string][];
  /** Per replica, oldest first. */
  series: Record<string, LagPoint[]>;
}

export const EMPTY_LAG_MEMORY: LagMemory = { positions: [], series: {} };

/** Whether `replica` holds every transaction of `position`; undefined when either cannot be read. */
function holds(position: string, replica: string): boolean | undefined {
  try {
    return mariaErrantDomains(position, replica).length === 0;
  } catch {
    return undefined;
  }
}

/**
 * How far behind a replica at `replicaPosition` is at `now`, dated by the primary's `positions`
 * (`[at, position]`, oldest first): `atLeast` from the oldest remembered position it lacks,
 * `atMost` from the newest it holds (absent when it holds none we remember). Undefined when a
 * position cannot be compared (not MariaDB GTIDs) or nothing is remembered.
 */
export function appliedLag(positions: readonly (readonly [number, string])[], replicaPosition: string | undefined, now: number): { atLeast: number; atMost?: number } | undefined {
  if (!positions.length || !replicaPosition) return undefined;
  const seconds = (at: number) => Math.max(0, (now - at) / 1000);
  for (let k = positions.length - 1; k >= 0; k--) {
    const held = holds(positions[k]![1], replicaPosition);
    if (held === undefined) return undefined;
    if (held) return { atLeast: k + 1 < positions.length ? seconds(positions[k + 1]![0]) : 0, atMost: seconds(positions[k]![0]) };
  }
  return { atLeast: seconds(positions[0]![0]) };
}

const worse = (a: number | null, b: number | null) => (a === null ? b : b === null ? a : Math.max(a, b));

/**
 * At most `max` points: while over, the two neighbours whose merged point would span the least
 * time become one (the later time, the worse lag), so points stay evenly spread over the window
 * and a spike survives. The newest point is never merged (the chart's "now").
 */
export function thinSeries(points: LagPoint[], max = LAG_MAX_POINTS): LagPoint[] {
  const out = [...points]; // points are never changed in place: a merge makes a new one
  while (out.length > Math.max(2, max)) {
    let best = 0;
    let bestSpan = Infinity;
    for (let i = 0; i + 2 < out.length; i++) {
      const span = out[i + 1]![0] - (i > 0 ? out[i - 1]![0] : out[i]![0]);
      if (span < bestSpan) [best, bestSpan] = [i, span];
    }
    out.splice(best, 2, [out[best + 1]![0], worse(out[best]![1], out[best + 1]![1])]);
  }
  return out;
}

/**
 * At most `max` positions: while over, drop the inner one whose neighbours are closest relative to
 * its age, so recent lag is dated to about a round and old lag to a fraction of its size.
 */
export function thinPositions(positions: [number, string][], now: number, max = POSITIONS_MAX): [number, string][] {
  const out = [...positions];
  while (out.length > Math.max(2, max)) {
    let best = 1;
    let bestCost = Infinity;
    for (let i = 1; i + 1 < out.length; i++) {
      const cost = (out[i + 1]![0] - out[i - 1]![0]) / Math.max(1, now - out[i]![0]);
      if (cost < bestCost) [best, bestCost] = [i, cost];
    }
    out.splice(best, 1);
  }
  return out;
}

const tenth = (n: number) => Math.round(n * 10) / 10;

/**
 * One round into the memory: the primary's position (`primary` is the one the monitor follows),
 * then a point per replica: lag dated by those positions (at least that far behind), else the
 * server's own Seconds_Behind_Master, else unknown; unreachable ones get an unknown point.
 */
export function recordLag(memory: LagMemory | undefined, obs: Observation, primary: string | null): LagMemory {
  const now = obs.at;
  const since = now - LAG_WINDOW_MS;
  const mem = memory ?? EMPTY_LAG_MEMORY;
  const p = obs.instances.find((i) => i.instance === primary && i.reachable);
  let positions = mem.positions.filter(([at]) => at >= since && at < now);
  if (p?.gtid && p.gtid.length <= POSITION_MAX_CHARS) positions = thinPositions([...positions, [now, p.gtid]], now);
  const series: Record<string, LagPoint[]> = {};
  for (const [name, points] of Object.entries(mem.series)) {
    const kept = points.filter(([at]) => at >= since && at < now);
    if (kept.length) series[name] = kept;
  }
  for (const i of obs.instances) {
    // The primary, and an instance that no longer replicates, get no point (its history ages out).
    if (i.instance === primary || (i.reachable ? !i.replicating : !(i.instance in series))) continue;
    const dated = i.reachable ? appliedLag(positions, i.gtid, now) : undefined;
    const lag = !i.reachable ? null : dated ? tenth(dated.atLeast) : (i.lagSeconds ?? null);
    series[i.instance] = thinSeries([...(series[i.instance] ?? []), [now, lag]]);
  }
  return { positions, series };
}

/** What the monitor's state query shows of it: the series alone (the positions are its working memory). */
export function lagSeriesOf(memory: LagMemory | undefined): Record<string, LagPoint[]> {
  return memory?.series ?? {};
}
