import { describe, expect, it } from 'vitest';
import { confirmationProbes, confirmedDeadProblem } from '../../src/core/failedPrimary';

const thresholds = { confirmProbes: 3, monitorConfirmationSeconds: 10 };
const started = 1_800_000_000_000;

describe("the emergency runbook's own confirmation of a dead primary", () => {
  it('probes as often as the policy says when nobody confirmed it before (a human started the run)', () => {
    expect(confirmationProbes(thresholds, undefined, 'orders-a', started)).toEqual({ attempts: 3 });
  });

  it("probes once when the monitor confirmed the same primary dead moments before, and says so", () => {
    expect(confirmationProbes(thresholds, { primary: 'orders-a', atMs: started - 1500 }, 'orders-a', started)).toEqual({
      attempts: 1,
      because: 'the monitor confirmed orders-a dead 1.5 s before this run started: one probe to see it is still down',
    });
    expect(confirmationProbes(thresholds, { primary: 'orders-a', atMs: started - 10_000 }, 'orders-a', started).attempts).toBe(1);
  });

  it('does not trust a confirmation of another instance, one too old, one from the future, or any when the policy says 0', () => {
    expect(confirmationProbes(thresholds, { primary: 'orders-b', atMs: started - 100 }, 'orders-a', started)).toEqual({ attempts: 3 });
    expect(confirmationProbes(thresholds, { primary: 'orders-a', atMs: started - 10_001 }, 'orders-a', started)).toEqual({ attempts: 3 });
    expect(confirmationProbes(thresholds, { primary: 'orders-a', atMs: started + 1 }, 'orders-a', started)).toEqual({ attempts: 3 });
    expect(confirmationProbes({ confirmProbes: 3, monitorConfirmationSeconds: 0 }, { primary: 'orders-a', atMs: started - 1 }, 'orders-a', started)).toEqual({ attempts: 3 });
  });

  it('refuses a malformed confirmation in the workflow input with a line naming the field', () => {
    expect(confirmedDeadProblem(undefined)).toBeUndefined();
    expect(confirmedDeadProblem({ primary: 'orders-a', atMs: started })).toBeUndefined();
    expect(confirmedDeadProblem({ primary: 'orders-a', atMs: 1.5 })).toBe('confirmedDead.atMs must be a time in epoch milliseconds');
    expect(confirmedDeadProblem({ primary: '../x', atMs: started })).toMatch(/^confirmedDead\.primary /);
    expect(confirmedDeadProblem('x' as never)).toBe('confirmedDead must be { primary, atMs }');
  });
});
