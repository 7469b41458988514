/** `runbook revoke`'s inputs, bounded before anything starts; the workflow repeats the same checks. */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readGrantsFile, revokeInputOf, type RevokeCliOptions } from '../../src/cli/actions/revoke';
import { revokeInputProblems } from '../../src/core/grants';

const base: RevokeCliOptions = { cluster: 'orders', reason: 'r', as: 'alice', object: 'hr.patients' };
const now = Date.UTC(2026, 11, 2, 12);
const file = (text: string) => {
  const f = join(mkdtempSync(join(tmpdir(), 'revoke-cli-')), 'g.yaml');
  writeFileSync(f, text);
  return f;
};

describe('revoke CLI input', () => {
  it('takes objects, a pattern, a zoned window and a grants file', () => {
    const f = file('accounts:\n  - account: staff_user1@%\n    grants:\n      - SELECT, INSERT ON medical_db.appointment\n      - SELECT ON medical_db.department\n');
    const input = revokeInputOf({ ...base, object: 'hr.patients, hr.notes', accounts: 'staff_%', lock: true, since: '2026-12-02T18:30:00+08:00', grantsFile: f }, 'alice', 'INC-1', now);
    expect(input).toMatchObject({
      objects: ['hr.patients', 'hr.notes'], accounts: 'staff_%', lock: true, since: Date.UTC(2026, 11, 2, 10, 30), until: undefined,
      declared: [{ account: 'staff_user1@%', grants: ['SELECT, INSERT ON medical_db.appointment', 'SELECT ON medical_db.department'] }],
    });
  });

  it('refuses in one line: a table without its database, a time without a zone, an empty window, a future start, a bad grants file', () => {
    expect(() => revokeInputOf({ ...base, object: 'patients' }, 'a', 'I', now)).toThrow(/^--object must be db.table/);
    expect(() => revokeInputOf({ ...base, since: '2026-12-02 10:00' }, 'a', 'I', now)).toThrow(/no time zone/);
    expect(() => revokeInputOf({ ...base, since: '2026-12-02T11:00:00Z', until: '2026-12-02T10:00:00Z' }, 'a', 'I', now)).toThrow('since is after until');
    expect(() => revokeInputOf({ ...base, since: '2026-12-03T10:00:00Z' }, 'a', 'I', now)).toThrow('--since is in the future');
    expect(() => revokeInputOf({ ...base, until: '2026-12-02T10:00:00Z' }, 'a', 'I', now)).toThrow('until needs since');
    expect(() => revokeInputOf({ ...base, accounts: 'x'.repeat(101) }, 'a', 'I', now)).toThrow(/^--accounts is 101 characters long/);
    expect(() => revokeInputOf({ ...base, grantsFile: file('accounts:\n  - account: a@%\n    grants: ["SELEC ON x.y"]\n') }, 'a', 'I', now)).toThrow('a@%: unknown privilege SELEC');
    expect(() => readGrantsFile(file('- just a list'))).toThrow(/expected "accounts:"/);
    expect(() => readGrantsFile(file(`accounts: []\n#${'x'.repeat(300 * 1024)}`))).toThrow(/at most 262144/);
  });

  it('the workflow checks the same bounds (a client can start it without the CLI)', () => {
    expect(revokeInputProblems({ objects: [] }).filter(Boolean)).toEqual(['objects: name at least one sensitive table, db.table']);
    expect(revokeInputProblems({ objects: Array.from({ length: 21 }, (_, i) => `d.t${i}`) }).filter(Boolean)).toEqual(['objects: at most 20 tables, got 21']);
    expect(revokeInputProblems({ objects: ['d.t'], since: Number.NaN }).filter(Boolean)).toEqual(['since must be a time (epoch ms), got NaN']);
    expect(revokeInputProblems({ objects: ['d.t'], declared: [{ account: 'a@%', grants: 'SELECT ON x.y' }] }).filter(Boolean)[0]).toMatch(/grants must be a list/);
  });
});
