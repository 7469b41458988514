import { describe, expect, it } from 'vitest';
import { restoreTargetOf, type RestoreCliOptions } from '../../src/cli/runbooks';

const base: RestoreCliOptions = { cluster: 'orders', reason: 'r', as: 'alice' };

describe('restore target from CLI options', () => {
  it('takes exactly one of an event, a GTID, a point in time', () => {
    expect(restoreTargetOf({ ...base, table: 'shop.orders', statement: 'DROP TABLE', from: '2026-03-14T09:00:00+08:00' })).toEqual({
      kind: 'before-event', event: { table: 'shop.orders', statement: 'DROP TABLE', from: Date.UTC(2026, 2, 14, 1), to: undefined },
    });
    expect(restoreTargetOf({ ...base, gtid: '0-1-42' })).toEqual({ kind: 'gtid', gtid: '0-1-42' });
    expect(restoreTargetOf({ ...base, at: '2026-03-14T09:26:53Z' })).toEqual({ kind: 'time', at: '2026-03-14T09:26:53Z' });
  });

  it('refuses none, two, or a time without a zone, in one line', () => {
    expect(() => restoreTargetOf(base)).toThrow('name exactly one target: an event (--table/--statement, --from/--to), --gtid or --at');
    expect(() => restoreTargetOf({ ...base, gtid: '0-1-2', table: 't' })).toThrow('; got an event and --gtid');
    expect(() => restoreTargetOf({ ...base, table: 't', to: '2026-03-14 09:26' })).toThrow('point in time "2026-03-14 09:26" has no time zone');
  });
});
