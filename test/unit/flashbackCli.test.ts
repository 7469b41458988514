import { describe, expect, it } from 'vitest';
import { flashbackEventOf, type FlashbackCliOptions } from '../../src/cli/actions/flashback';

const base: FlashbackCliOptions = { cluster: 'orders', reason: 'r', as: 'alice' };

describe('flashback event from CLI options', () => {
  it('reads the table, statement pattern and zoned window as restore does', () => {
    expect(flashbackEventOf({ ...base, table: 'shop.users', statement: '^UPDATE', from: '2026-03-14T09:00:00+08:00', to: '2026-03-14T01:30:00Z' })).toEqual({
      table: 'shop.users', statement: '^UPDATE', from: Date.UTC(2026, 2, 14, 1), to: Date.UTC(2026, 2, 14, 1, 30),
    });
    expect(flashbackEventOf({ ...base, statement: 'DELETE FROM' })).toEqual({ table: undefined, statement: 'DELETE FROM', from: undefined, to: undefined });
  });

  it('refuses no event, or a time without a zone, in one line', () => {
    expect(() => flashbackEventOf(base)).toThrow(/^name the bad event: --table and\/or --statement, optionally --from\/--to, or --event <gtid>$/);
    expect(() => flashbackEventOf({ ...base, table: 't', from: '2026-03-14 09:26' })).toThrow('--from "2026-03-14 09:26" has no time zone');
  });
});
