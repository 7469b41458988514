import { describe, expect, it } from 'vitest';
import { describeApproval } from '../../src/cli/actions/follow';
import { restoreTargetOf, type RestoreCliOptions } from '../../src/cli/actions/restore';
import type { ApprovalState } from '../../src/core/runbookDefinitions';

const base: RestoreCliOptions = { cluster: 'orders', reason: 'r', as: 'alice' };

describe('restore target from CLI options', () => {
  it('takes exactly one of an event, a GTID, a point in time', () => {
    expect(restoreTargetOf({ ...base, table: 'shop.orders', statement: 'DROP TABLE', from: '2026-03-14T09:00:00+08:00' })).toEqual({
      kind: 'before-event', event: { table: 'shop.orders', statement: 'DROP TABLE', from: Date.UTC(2026, 2, 14, 1), to: undefined },
    });
    expect(restoreTargetOf({ ...base, gtid: '0-1-42' })).toEqual({ kind: 'gtid', gtid: '0-1-42' });
    expect(restoreTargetOf({ ...base, event: '0-1-41', statement: 'DROP' })).toEqual({ kind: 'before-event', event: { statement: 'DROP', gtid: '0-1-41', table: undefined, from: undefined, to: undefined } });
    expect(restoreTargetOf({ ...base, at: '2026-03-14T09:26:53Z' })).toEqual({ kind: 'time', at: '2026-03-14T09:26:53Z' });
  });

  it('refuses none, two, or a time without a zone, in one line', () => {
    expect(() => restoreTargetOf(base)).toThrow('name exactly one target: an event (--table/--statement, --from/--to, --event), --gtid or --at');
    expect(() => restoreTargetOf({ ...base, event: '0-1-41', gtid: '0-1-42' })).toThrow('; got an event and --gtid');
    expect(() => restoreTargetOf({ ...base, event: 'mysql-bin.000002:4' })).toThrow('--event must be a GTID like 0-23101-4711, got "mysql-bin.000002:4"');
    expect(() => restoreTargetOf({ ...base, gtid: '0-1-2', table: 't' })).toThrow('; got an event and --gtid');
    expect(() => restoreTargetOf({ ...base, table: 't', to: '2026-03-14 09:26' })).toThrow('--to "2026-03-14 09:26" has no time zone');
  });

  it('refuses a time in the future, an impossible date and a bad pattern before anything starts', () => {
    const now = Date.UTC(2026, 11, 2, 12);
    expect(() => restoreTargetOf({ ...base, at: '2026-12-02T20:00:00+08:00' }, now)).not.toThrow(); // 12:00 UTC: now
    expect(() => restoreTargetOf({ ...base, at: '2026-12-02T20:00:00Z' }, now)).toThrow('--at 2026-12-02T20:00:00.000Z is in the future');
    expect(() => restoreTargetOf({ ...base, at: '2026-02-30T10:00:00Z' }, now)).toThrow('--at "2026-02-30T10:00:00Z" is not a valid date-time (2026-02 has 28 days)');
    expect(() => restoreTargetOf({ ...base, table: 't', statement: '^UPDATE(?!.*WHERE)' })).toThrow(/^--statement: invalid pattern .*lookaround is not supported/);
    expect(() => restoreTargetOf({ ...base, table: 't', statement: '^UPDATE', notStatement: '(' })).toThrow(/^--not-statement: invalid pattern/);
    expect(restoreTargetOf({ ...base, table: 't', statement: '^UPDATE', notStatement: 'WHERE' })).toMatchObject({ event: { statement: '^UPDATE', statementNot: 'WHERE' } });
    expect(restoreTargetOf({ ...base, at: '2026-03-14T09:26:53Z', confirmLate: true }, now)).toEqual({ kind: 'time', at: '2026-03-14T09:26:53Z', confirmLate: true });
  });
});

describe('a pending approval, as the CLI shows it while following', () => {
  const approval = { status: 'pending', requester: 'alice', rule: { mode: 'required', approvers: ['alice', 'bob'], fourEyes: true, timeoutMinutes: 30, remindEveryMinutes: 5 } } as unknown as ApprovalState;

  it("does not take a restore's plan for a failover route (it used to crash the follow loop)", () => {
    const restorePlan = { target: { stopAt: '0-1-5' }, backup: 'logical-1', skip: true, method: 'sql-thread', cutover: 'copy-tables' };
    const text = describeApproval('restore-orders-INC-1', approval, restorePlan);
    expect(text).toContain('approvers: alice, bob, not alice');
    expect(text).not.toContain('→');
  });
});
