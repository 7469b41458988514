/** The monitor's pure decisions: holistic detection, state changes, the dead-primary policy, inputs. */
import { describe, expect, it } from 'vitest';
import {
  ackProblem,
  assess,
  deadPrimaryAction,
  expireDowntimes,
  INITIAL_STATE,
  parseDowntimeDuration,
  observerVote,
  observersAgree,
  recallMonitorMemory,
  type InstanceObservation,
  type MonitorState,
  type Observation,
} from '../../src/core/monitor';

const settings = { failureThreshold: 3, maxLagSeconds: 5 };
const primary = (reachable = true): InstanceObservation =>
  reachable ? { instance: 'a', region: 'r1', reachable: true, readOnly: false, replicating: false, source: null } : { instance: 'a', region: 'r1', reachable: false, error: 'connect ETIMEDOUT' };
const replica = (name: string, io: 'Yes' | 'No' | 'Connecting' = 'Yes', lag: number | null = 0, sql: 'Yes' | 'No' = 'Yes'): InstanceObservation => ({
  instance: name,
  region: `r-${name}`,
  reachable: true,
  readOnly: true,
  replicating: true,
  source: 'a',
  ioRunning: io,
  sqlRunning: sql,
  lagSeconds: lag,
});
let t = 0;
const round = (...instances: InstanceObservation[]): Observation => ({ cluster: 'orders', at: (t += 1000), instances });

function run(rounds: Observation[], from: MonitorState = INITIAL_STATE) {
  let state = from;
  const changes = [];
  for (const r of rounds) {
    const out = assess(state, r, settings);
    state = out.state;
    changes.push(out.changes);
  }
  return { state, changes };
}

describe('holistic detection', () => {
  it('the first round records one summary; identical rounds record nothing', () => {
    const { state, changes } = run([round(primary(), replica('b'), replica('c')), round(primary(), replica('b'), replica('c'))]);
    expect(changes[0]).toEqual([expect.objectContaining({ subject: 'orders', from: 'unknown', to: 'healthy', notify: false })]);
    expect(changes[1]).toEqual([]);
    expect(state).toMatchObject({ primary: 'a', misses: 0, verdict: 'healthy' });
  });

  it('dead only after failureThreshold misses AND every reachable replica lost it', () => {
    const healthy = round(primary(), replica('b'), replica('c'));
    const lost = () => round(primary(false), replica('b', 'Connecting'), replica('c', 'No'));
    const { state, changes } = run([healthy, lost(), lost(), lost()]);
    expect(changes[1]!.map((c) => c.to)).toEqual(['unreachable', 'disconnected', 'broken', 'primary_unreachable']);
    expect(changes[2]).toEqual([]);
    expect(changes[3]).toEqual([expect.objectContaining({ to: 'primary_dead', severity: 'critical', notify: true })]);
    expect(state).toMatchObject({ verdict: 'primary_dead', misses: 3, missingSince: expect.any(Number) });
  });

  it('one replica still streaming from the primary: a monitor-side partition, never dead', () => {
    const cut = () => round(primary(false), replica('b', 'Yes'), replica('c', 'Connecting'));
    const { state, changes } = run([round(primary(), replica('b'), replica('c')), cut(), cut(), cut(), cut()]);
    expect(state.verdict).toBe('monitor_partition');
    expect(changes[3]![0]).toMatchObject({ to: 'monitor_partition', notify: true });
    expect(changes[3]![0]!.summary).toMatch(/monitor-side partition.*b still replicate/);
  });

  it('fewer misses than the threshold, then an answer: no verdict beyond unreachable', () => {
    const { state, changes } = run([round(primary(), replica('b')), round(primary(false), replica('b', 'Connecting')), round(primary(false), replica('b', 'Connecting')), round(primary(), replica('b'))]);
    expect(state).toMatchObject({ verdict: 'healthy', misses: 0 });
    expect(changes.flat().map((c) => c.to)).not.toContain('primary_dead');
    expect(changes[3]!.find((c) => c.subject === 'a')).toMatchObject({ from: 'unreachable', to: 'primary', notify: true });
  });

  it('no reachable replica: unconfirmed, not dead', () => {
    const { state } = run([round(primary(), replica('b')), ...[1, 2, 3].map(() => round(primary(false), { instance: 'b', region: 'x', reachable: false }))]);
    expect(state.verdict).toBe('unconfirmed');
  });

  it('a new writable primary is followed; lag and broken replication are changes people hear of', () => {
    const { state, changes } = run([
      round(primary(), replica('b'), replica('c')),
      round(primary(false), { ...replica('b'), readOnly: false, replicating: false, source: null }, replica('c', 'Yes', 0)),
      round(primary(false), { ...replica('b'), readOnly: false, replicating: false, source: null }, replica('c', 'Yes', 30)),
      round(primary(false), { ...replica('b'), readOnly: false, replicating: false, source: null }, replica('c', 'Yes', 0, 'No')),
    ]);
    expect(state).toMatchObject({ primary: 'b', verdict: 'healthy', misses: 0 });
    expect(changes[1]!.find((c) => c.subject === 'orders')!.summary).toMatch(/new primary b \(was a\)/);
    expect(changes[2]).toEqual([expect.objectContaining({ subject: 'c', to: 'lagging', notify: true })]);
    expect(changes[3]).toEqual([expect.objectContaining({ subject: 'c', to: 'broken', notify: true })]);
  });

  it('two writable instances: split brain', () => {
    const { state } = run([round(primary(), { ...replica('b'), readOnly: false, replicating: false, source: null })]);
    expect(state.verdict).toBe('split_brain');
  });
});

describe('what to do about a dead primary', () => {
  const base = { cluster: 'orders', primary: 'a', downtimes: [], now: 10_000 };
  it('by policy', () => {
    expect(deadPrimaryAction({ ...base, policy: 'auto' })).toEqual({ kind: 'failover' });
    expect(deadPrimaryAction({ ...base, policy: 'notify' })).toMatchObject({ kind: 'page', because: 'policy' });
    expect(deadPrimaryAction({ ...base, policy: 'off' })).toMatchObject({ kind: 'record' });
  });
  it('an unacknowledged automatic recovery blocks the next: a page, whether or not it still runs', () => {
    const block = { incidentId: 'I1', workflowId: 'failover-orders-I1', since: 1, running: false, primary: 'a', outcome: 'succeeded' };
    expect(deadPrimaryAction({ ...base, policy: 'auto', block })).toMatchObject({ kind: 'page', because: 'blocked' });
    expect(deadPrimaryAction({ ...base, policy: 'auto', block: { ...block, running: true } })).toMatchObject({ kind: 'page', because: 'blocked' });
  });
  it('a downtime on the cluster or on the primary suppresses it; an expired one does not', () => {
    const d = { target: 'a', until: 20_000, reason: 'kernel upgrade', by: 'alice', since: 0 };
    expect(deadPrimaryAction({ ...base, policy: 'auto', downtimes: [d] })).toMatchObject({ kind: 'suppressed' });
    expect(deadPrimaryAction({ ...base, policy: 'auto', downtimes: [{ ...d, target: 'orders' }] })).toMatchObject({ kind: 'suppressed' });
    expect(deadPrimaryAction({ ...base, policy: 'auto', downtimes: [{ ...d, target: 'b' }] })).toEqual({ kind: 'failover' });
    expect(deadPrimaryAction({ ...base, policy: 'auto', downtimes: [{ ...d, until: 10_000 }] })).toEqual({ kind: 'failover' });
    expect(expireDowntimes([d, { ...d, until: 5 }], 10_000)).toEqual({ active: [d], ended: [{ ...d, until: 5 }] });
  });
  it('ack: refused with nothing to acknowledge and while the recovery runs', () => {
    const block = { incidentId: 'I1', workflowId: 'w', since: 1, running: true, primary: 'a' };
    expect(ackProblem(undefined, 'orders')).toMatch(/nothing to acknowledge/);
    expect(ackProblem(block, 'orders')).toMatch(/still runs/);
    expect(ackProblem({ ...block, running: false }, 'orders')).toBeUndefined();
  });
});

describe("the monitor's memory across stop and start, from its own rows", () => {
  const started = (id: string, at: number) => ({ status: 'state_change', at, detail: { incidentId: id, workflowId: `failover-orders-${id}`, primary: 'a', detectionMs: 3000 } });
  const ended = (id: string, at: number, outcome = 'succeeded') => ({ status: 'state_change', at, detail: { incidentId: id, workflowId: `failover-orders-${id}`, outcome, rtoMs: 5000 } });
  const ack = (id: string, at: number) => ({ status: 'acknowledged', at, detail: { operator: 'alice', comment: 'ok', incidentId: id, workflowId: `failover-orders-${id}` } });
  const down = (target: string, since: number, until: number, ended?: boolean) => ({ status: 'downtime', at: since, detail: { target, since, until, reason: 'kernel', by: 'bob', ...(ended ? { ended } : {}) } });
  it('an automatic failover not acknowledged blocks, running or ended; an acknowledged one does not', () => {
    expect(recallMonitorMemory([started('I1', 1)])).toEqual({ block: { incidentId: 'I1', workflowId: 'failover-orders-I1', since: 1, running: true, primary: 'a' }, downtimes: [] });
    expect(recallMonitorMemory([started('I1', 1), ended('I1', 2)]).block).toMatchObject({ incidentId: 'I1', running: false, outcome: 'succeeded' });
    expect(recallMonitorMemory([started('I1', 1), ended('I1', 2), ack('I1', 3)])).toEqual({ downtimes: [] });
    // An ack of another incident, or an end of another, changes nothing.
    expect(recallMonitorMemory([started('I1', 1), ended('I1', 2), ack('I1', 3), started('I2', 4), ack('I1', 5), ended('I0', 6)]).block).toMatchObject({ incidentId: 'I2', running: true });
  });
  it('downtimes: the last one per target, until its end row; one that lapsed meanwhile is returned to be logged as ended', () => {
    const d = recallMonitorMemory([down('a', 1, 100), down('orders', 2, 50), down('orders', 2, 50, true), down('b', 3, 10), down('b', 4, 200)]).downtimes;
    expect(d).toEqual([
      { target: 'a', since: 1, until: 100, reason: 'kernel', by: 'bob' },
      { target: 'b', since: 4, until: 200, reason: 'kernel', by: 'bob' },
    ]);
    // The end row of a replaced downtime does not end its successor.
    expect(recallMonitorMemory([down('b', 3, 10), down('b', 4, 200), down('b', 3, 10, true)]).downtimes).toHaveLength(1);
  });
});

describe("an observer's vote", () => {
  const at = 1;
  const o = { region: 'r2', taskQueue: 'q2' };
  const seen = (...instances: InstanceObservation[]): Observation => ({ cluster: 'orders', at, instances });
  it('agrees only when it cannot reach the primary and no replica it reaches streams from it', () => {
    expect(observerVote(seen(primary(false), replica('b', 'Connecting'), replica('c', 'No')), 'a', o)).toMatchObject({ vote: 'agree', region: 'r2', taskQueue: 'q2' });
    expect(observerVote(seen(primary(true), replica('b', 'Connecting')), 'a', o)).toMatchObject({ vote: 'disagree', summary: 'r2 reaches a (writable)' });
    expect(observerVote(seen(primary(false), replica('b', 'Yes')), 'a', o)).toMatchObject({ vote: 'disagree', summary: 'r2 sees b still streaming from a' });
  });
  it('the monitor acts only if every observer agrees; no answer is no agreement', () => {
    const agree = { ...o, vote: 'agree' as const, summary: 'r2 cannot reach a either' };
    expect(observersAgree([agree])).toMatchObject({ agree: true });
    expect(observersAgree([agree, { region: 'r3', taskQueue: 'q3', vote: 'no_answer', summary: 'r3 gave no answer' }])).toMatchObject({ agree: false, summary: expect.stringMatching(/r3: no answer/) });
    expect(observersAgree([agree, { ...agree, vote: 'disagree', summary: 'r2 reaches a' }]).agree).toBe(false);
  });
});

describe('downtime durations', () => {
  it('parses bounded durations and refuses the rest in one line', () => {
    expect(parseDowntimeDuration('30m')).toEqual({ ms: 1_800_000 });
    expect(parseDowntimeDuration('1h30m')).toEqual({ ms: 5_400_000 });
    expect(parseDowntimeDuration('45s')).toEqual({ ms: 45_000 });
    for (const bad of ['', '30', 'm', '8d', '0s', '1.5h', '30 m', 'x'.repeat(5000), '1h1h1h1h1h']) expect(parseDowntimeDuration(bad)).toHaveProperty('problem');
  });
});
