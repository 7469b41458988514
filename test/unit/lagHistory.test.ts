/** The monitor's lag history: dated by the primary's positions, bounded in points, positions and size. */
import { describe, expect, it } from 'vitest';
import { appliedLag, LAG_MAX_POINTS, POSITIONS_MAX, recordLag, thinSeries, type LagMemory } from '../../src/core/lagHistory';
import type { InstanceObservation, Observation } from '../../src/core/monitor';

const T0 = Date.UTC(2026, 11, 2, 10, 0, 0);
const primary = (seq: number): InstanceObservation => ({ instance: 'a', region: 'r1', reachable: true, readOnly: false, replicating: false, source: null, gtid: `0-1-${seq}` });
const replica = (name: string, seq: number, over: Partial<InstanceObservation> = {}): InstanceObservation => ({
  instance: name, region: `r-${name}`, reachable: true, readOnly: true, replicating: true, source: 'a', ioRunning: 'Yes', sqlRunning: 'Yes', lagSeconds: 0, gtid: `0-1-${seq}`, ...over,
});
const round = (at: number, ...instances: InstanceObservation[]): Observation => ({ cluster: 'orders', at, instances });

describe('lag dated by the primary position', () => {
  const positions: [number, string][] = [[T0, '0-1-10'], [T0 + 1000, '0-1-20'], [T0 + 2000, '0-1-30']];
  it('holds the newest: 0; holds an older one: between the first it lacks and the last it holds', () => {
    expect(appliedLag(positions, '0-1-30', T0 + 2000)).toEqual({ atLeast: 0, atMost: 0 });
    expect(appliedLag(positions, '0-1-12', T0 + 5000)).toEqual({ atLeast: 4, atMost: 5 });
  });
  it('holds none it remembers: at least as old as the oldest; unknown positions: unknown', () => {
    expect(appliedLag(positions, '0-1-5', T0 + 5000)).toEqual({ atLeast: 5 });
    expect(appliedLag(positions, '3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5', T0 + 5000)).toBeUndefined();
    expect(appliedLag([], '0-1-5', T0)).toBeUndefined();
  });
});

describe("the monitor's lag history", () => {
  it('keeps rising while the SQL thread is stopped (Seconds_Behind_Master NULL), and an unreachable replica is a gap', () => {
    let mem: LagMemory | undefined;
    // The replica stops applying at seq 5 while the primary writes one transaction a second.
    for (let s = 0; s <= 20; s++) {
      const c = s <= 5 ? replica('c', s) : replica('c', 5, { sqlRunning: 'No', lagSeconds: null });
      mem = recordLag(mem, round(T0 + s * 1000, primary(s), c, replica('b', s, { reachable: s !== 20 })), 'a');
    }
    const c = mem!.series.c!.map(([, lag]) => lag);
    expect(c.slice(0, 6)).toEqual([0, 0, 0, 0, 0, 0]);
    expect(c.slice(6)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]);
    expect(mem!.series.b!.at(-1)).toEqual([T0 + 20_000, null]);
    expect(mem!.series.a).toBeUndefined(); // the primary has no lag
  });

  it('stays bounded over hours of one-second rounds: ≤ 120 points per replica within the hour, ≤ 48 positions, a few KB', () => {
    let mem: LagMemory | undefined;
    const hours = 2;
    for (let s = 0; s <= hours * 3600; s++) {
      // orders-c falls behind for ten minutes in the second hour, then catches up.
      const behind = s > 5400 && s < 6000 ? 5400 : s;
      mem = recordLag(mem, round(T0 + s * 1000, primary(s), replica('b', s), replica('c', behind), replica('d', s), replica('e', s)), 'a');
    }
    const now = T0 + hours * 3600_000;
    for (const points of Object.values(mem!.series)) {
      expect(points.length).toBeLessThanOrEqual(LAG_MAX_POINTS);
      expect(points.length).toBeGreaterThan(LAG_MAX_POINTS - 5);
      expect(points[0]![0]).toBeGreaterThanOrEqual(now - 3600_000);
      expect(points.at(-1)![0]).toBe(now);
      // Spread over the hour: no gap much wider than an even share.
      const gaps = points.slice(1).map(([at], i) => at - points[i]![0]);
      expect(Math.max(...gaps)).toBeLessThanOrEqual(2 * (3600_000 / LAG_MAX_POINTS));
    }
    expect(mem!.positions.length).toBeLessThanOrEqual(POSITIONS_MAX);
    // The ten minutes behind survive the thinning, with a peak near 600 s (dated to a fraction of it).
    const peak = Math.max(...mem!.series.c!.map(([, lag]) => lag ?? 0));
    expect(peak).toBeGreaterThan(500);
    expect(peak).toBeLessThanOrEqual(600);
    expect(mem!.series.c!.at(-1)![1]).toBe(0);
    // What continue-as-new carries and the query returns stays small.
    expect(JSON.stringify(mem).length).toBeLessThan(16_000);
  }, 60_000); // 7200 rounds: a few seconds on a loaded machine

  it('a replica that is promoted (no longer replicates) ages out; one never seen replicating has no series', () => {
    let mem = recordLag(undefined, round(T0, primary(1), replica('b', 1)), 'a');
    expect(Object.keys(mem.series)).toEqual(['b']);
    const promoted: InstanceObservation = { ...primary(2), instance: 'b' };
    mem = recordLag(mem, round(T0 + 1000, { ...primary(1), reachable: false }, promoted), 'b');
    expect(mem.series.b).toHaveLength(1);
    mem = recordLag(mem, round(T0 + 3700_000, promoted), 'b');
    expect(mem.series).toEqual({});
  });

  it('thinning merges neighbours into the later time and the worse lag, never the newest point', () => {
    const points: [number, number | null][] = [[0, 1], [20, 9], [21, 2], [30, null], [40, 0]];
    // 21 and 30 span 20 → 30 merged, the least: one point at 30 with the lag that was known.
    expect(thinSeries(points, 4)).toEqual([[0, 1], [20, 9], [30, 2], [40, 0]]);
    expect(thinSeries(points, 2).at(-1)).toEqual([40, 0]);
  });
});
