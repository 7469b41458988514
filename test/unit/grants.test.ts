/**
 * The pure grant logic of the revoke runbook: SHOW GRANTS parsing (no password hash survives), the
 * effective matrix (direct, role, PUBLIC, patterns), containment with rewriting, the statements
 * between two states (and that applying them leaves nothing to do), the per-server plan under
 * drift, LIKE matching, and the access report's statements where no evidence exists.
 */
import { describe, expect, it } from 'vitest';
import {
  accessReportMarkdown, accountMatches, buildAccessReport, chooseTargets, containmentTarget, DATABASE_PRIVILEGES, declaredGrantSet, declaredProblems,
  effectiveMatrix, emptyGrantSet, exposedAccounts, grantDrift, grantStatements, likeMatch, mentions, normaliseGrantSet, parseAuditLine, parsePrivilegeClause,
  parseShowGrants, planGrantChanges, redactStatement, sameGrants, sessionsOf, TABLE_PRIVILEGES, uncovered, type GrantSet, type GrantState,
} from '../../src/core/grants';

const user = (name: string, lines: string[], host = '%', locked = false) => parseShowGrants('user', name, host, lines, locked);
const role = (name: string, lines: string[]) => parseShowGrants('role', name, '', lines);
const pub = (lines: string[]) => parseShowGrants('public', 'PUBLIC', '', lines);
const stateOf = (...sets: GrantSet[]): GrantState => Object.fromEntries(sets.map((g) => [g.kind === 'user' ? `${g.user}@${g.host}` : g.kind === 'public' ? 'PUBLIC' : g.user, g]));

describe('parseShowGrants', () => {
  it('reads privileges per level, columns, roles, default role and drops authentication', () => {
    const g = user('staff2', [
      "GRANT USAGE ON *.* TO `staff2`@`%` IDENTIFIED BY PASSWORD '*89063080929868A5DFEC18596EC951918DC26DB5'",
      'GRANT SELECT, INSERT ON `hr`.* TO `staff2`@`%` WITH GRANT OPTION',
      'GRANT SELECT (`name`, `id`), UPDATE ON `hr`.`patients` TO `staff2`@`%`',
      'GRANT `hr_reader` TO `staff2`@`%` WITH ADMIN OPTION',
      'GRANT EXECUTE ON PROCEDURE `hr`.`report` TO `staff2`@`%`',
      'SET DEFAULT ROLE `hr_reader` FOR `staff2`@`%`',
    ]);
    expect(g.global).toEqual({ privileges: [], grantOption: false });
    expect(g.databases).toEqual({ hr: { privileges: ['INSERT', 'SELECT'], grantOption: true } });
    expect(g.tables).toEqual({ 'hr.patients': { privileges: ['UPDATE'], grantOption: false } });
    expect(g.columns).toEqual({ 'hr.patients': { SELECT: ['id', 'name'] } });
    expect(g.roles).toEqual({ hr_reader: { admin: true } });
    expect(g.defaultRole).toBe('hr_reader');
    expect(g.routines).toEqual(['EXECUTE ON PROCEDURE `hr`.`report`']);
    expect(JSON.stringify(g)).not.toContain('89063080');
  });

  it('expands ALL PRIVILEGES to the level, so a later partial revoke compares', () => {
    const all = user('a', ['GRANT ALL PRIVILEGES ON `hr`.* TO `a`@`%`']);
    expect(all.databases.hr!.privileges).toEqual([...DATABASE_PRIVILEGES].sort());
    const t = user('a', ['GRANT ALL PRIVILEGES ON `hr`.`t` TO `a`@`%`']);
    expect(t.tables['hr.t']!.privileges).toEqual([...TABLE_PRIVILEGES].sort());
  });

  it('reads roles, PUBLIC and quoted names with backticks inside', () => {
    expect(role('r', ['GRANT SELECT ON `hr`.`patients` TO `r`']).tables['hr.patients']!.privileges).toEqual(['SELECT']);
    expect(pub(['GRANT SELECT ON `hr`.* TO PUBLIC']).databases.hr!.privileges).toEqual(['SELECT']);
    expect(user('o`dd', ['GRANT SELECT ON `we``ird`.* TO `o``dd`@`%`']).databases['we`ird']!.privileges).toEqual(['SELECT']);
  });

  it('refuses what it cannot read instead of guessing', () => {
    expect(() => user('a', ['REVOKE SELECT ON *.* FROM a'])).toThrow(/not a grant/);
    expect(() => parsePrivilegeClause('SELECT FROM hr.t')).toThrow(/ON/);
    expect(() => parsePrivilegeClause('DELETE (a) ON hr.t')).toThrow(/cannot be granted on columns/);
  });
});

describe('likeMatch', () => {
  it('matches % and _ and escapes, without backtracking blow-up', () => {
    expect(likeMatch('staff_%', 'staff_user1')).toBe(true);
    expect(likeMatch('staff\\_%', 'staffXuser')).toBe(false);
    expect(likeMatch('h%', 'hr')).toBe(true);
    expect(likeMatch('hr', 'hrx')).toBe(false);
    expect(likeMatch('%', '')).toBe(true);
    expect(likeMatch('%a%a%a%a%a%a%a%a%b', 'a'.repeat(5000))).toBe(false); // linear-ish, returns
    expect(accountMatches('staff%@%', 'staff1', '10.0.0.1')).toBe(true);
    expect(accountMatches('staff%@localhost', 'staff1', '%')).toBe(false);
  });
});

describe('effectiveMatrix', () => {
  const state = stateOf(
    user('staff1', ['GRANT USAGE ON *.* TO `staff1`@`%`']),
    user('staff2', ['GRANT USAGE ON *.* TO `staff2`@`%`', 'GRANT `hr_reader` TO `staff2`@`%`', 'SET DEFAULT ROLE `hr_reader` FOR `staff2`@`%`']),
    user('staff3', ['GRANT USAGE ON *.* TO `staff3`@`%`', 'GRANT `hr_outer` TO `staff3`@`%`']),
    user('dba', ['GRANT SELECT ON *.* TO `dba`@`%`']),
    role('hr_reader', ['GRANT SELECT ON `hr`.`patients` TO `hr_reader`']),
    role('hr_outer', ['GRANT `hr_reader` TO `hr_outer`']),
    pub(['GRANT SELECT ON `hr`.* TO PUBLIC']),
  );
  const matrix = effectiveMatrix(state, [{ db: 'hr', table: 'patients' }]);

  it('lists every account, with PUBLIC and role paths that SHOW GRANTS FOR the user omits', () => {
    expect(matrix.map((m) => m.account)).toEqual(['dba@%', 'staff1@%', 'staff2@%', 'staff3@%']);
    const s2 = matrix.find((m) => m.account === 'staff2@%')!;
    expect(s2.paths.map((p) => `${p.via}:${p.role ?? ''}:${p.active ?? ''}:${p.level}`).sort()).toEqual(['public:::database', 'role:hr_reader:default:table']);
    const s3 = matrix.find((m) => m.account === 'staff3@%')!;
    expect(s3.paths.find((p) => p.via === 'role')).toMatchObject({ role: 'hr_reader', heldRole: 'hr_outer', active: 'set-role' });
  });

  it('chooses targets: protected users out, global grants excluded (or refused under --accounts)', () => {
    const all = chooseTargets(matrix, undefined, ['runbook_admin']);
    expect(all.targets).toEqual(['staff1@%', 'staff2@%', 'staff3@%']);
    expect(all.excluded.map((e) => e.account)).toEqual(['dba@%']);
    expect(all.publicChanged).toBe(true);
    expect(chooseTargets(matrix, '%', []).refusals[0]).toMatch(/dba@% is exposed through a global grant/);
    expect(chooseTargets(matrix, 'staff2', []).targets).toEqual(['staff2@%']);
  });

  it('contains: PUBLIC rewritten to the other tables, the role revoked with its default, the account locked', () => {
    const targets = chooseTargets(matrix, 'staff%', []).targets;
    const c = containmentTarget(state, matrix, targets, [{ db: 'hr', table: 'patients' }], { databases: ['hr', 'shop'], tables: { hr: ['depts', 'patients'] } }, true);
    expect(c.targets.PUBLIC!.databases).toEqual({});
    expect(c.targets.PUBLIC!.tables).toEqual({ 'hr.depts': { privileges: ['SELECT'], grantOption: false } });
    expect(c.targets['staff2@%']).toMatchObject({ roles: {}, defaultRole: null, locked: true });
    expect(c.targets['staff3@%']!.roles).toEqual({});
    expect(c.targets['staff1@%']!.locked).toBe(true);
    const after: GrantState = { ...state, ...c.targets };
    const left = exposedAccounts(effectiveMatrix(after, [{ db: 'hr', table: 'patients' }]));
    expect(left.map((a) => a.account)).toEqual(['dba@%']);
    expect(c.rewrites.find((r) => r.grantee === 'PUBLIC')!.note).toMatch(/rewritten as hr\.depts/);
  });

  it('a database pattern is rewritten at database level for the other databases it matches', () => {
    const s = stateOf(user('etl', ['GRANT SELECT, CREATE ON `h%`.* TO `etl`@`%`']));
    const m = effectiveMatrix(s, [{ db: 'hr', table: 'patients' }]);
    const c = containmentTarget(s, m, ['etl@%'], [{ db: 'hr', table: 'patients' }], { databases: ['hr', 'hist', 'shop'], tables: { hr: ['patients', 'x'] } }, false);
    expect(c.targets['etl@%']!.databases).toEqual({ 'h%': { privileges: ['CREATE'], grantOption: false }, hist: { privileges: ['SELECT'], grantOption: false } });
    expect(c.targets['etl@%']!.tables).toEqual({ 'hr.x': { privileges: ['SELECT'], grantOption: false } });
  });
});

describe('grantStatements', () => {
  it('moves between two states, in an order a live server accepts', () => {
    const from = user('a', ['GRANT SELECT, INSERT ON `hr`.* TO `a`@`%`', 'GRANT SELECT (`x`) ON `hr`.`t` TO `a`@`%`', 'GRANT `r1` TO `a`@`%`', 'SET DEFAULT ROLE `r1` FOR `a`@`%`']);
    const to = user('a', ['GRANT SELECT ON `hr`.`u` TO `a`@`%` WITH GRANT OPTION', 'GRANT `r2` TO `a`@`%`', 'SET DEFAULT ROLE `r2` FOR `a`@`%`'], '%', true);
    expect(grantStatements(from, to)).toEqual([
      'GRANT `r2` TO `a`@`%`',
      'GRANT SELECT ON `hr`.`u` TO `a`@`%` WITH GRANT OPTION',
      'REVOKE INSERT, SELECT ON `hr`.* FROM `a`@`%`',
      'REVOKE SELECT (`x`) ON `hr`.`t` FROM `a`@`%`',
      'REVOKE `r1` FROM `a`@`%`',
      'SET DEFAULT ROLE `r2` FOR `a`@`%`',
      'ALTER USER `a`@`%` ACCOUNT LOCK',
    ]);
    expect(grantStatements(to, to)).toEqual([]); // on the real server: revokeBehaviour.test.ts
    expect(grantStatements(to, from).at(-1)).toBe('ALTER USER `a`@`%` ACCOUNT UNLOCK');
  });

  it('compares normalised grants', () => {
    const a = user('a', ['GRANT INSERT, SELECT ON `hr`.* TO `a`@`%`']);
    const b = user('a', ['GRANT SELECT ON `hr`.* TO `a`@`%`', 'GRANT INSERT ON `hr`.* TO `a`@`%`']);
    expect(sameGrants(a, b)).toBe(true);
    expect(sameGrants(a, normaliseGrantSet({ ...a, locked: true }))).toBe(false);
  });
});

describe('planGrantChanges', () => {
  const staff = user('s', ['GRANT SELECT ON `hr`.* TO `s`@`%`']);
  const contained = normaliseGrantSet({ ...emptyGrantSet('user', 's', '%'), locked: true });
  it('the same statements everywhere: once on the primary, replicated', () => {
    const states = { a: { 's@%': staff }, b: { 's@%': staff } };
    const plan = planGrantChanges(states, { a: { 's@%': contained }, b: { 's@%': contained } }, 'a');
    expect(plan.replicated).toEqual([{ grantee: 's@%', statements: ['REVOKE SELECT ON `hr`.* FROM `s`@`%`', 'ALTER USER `s`@`%` ACCOUNT LOCK'] }]);
    expect(plan.servers.every((s) => !s.unlogged.length)).toBe(true);
  });
  it('an account missing on a replica: unlogged on each server that has it, skipped (drift) where it does not', () => {
    const states = { a: { 's@%': staff }, b: {} as GrantState, c: { 's@%': staff } };
    const plan = planGrantChanges(states, { a: { 's@%': contained }, b: {}, c: { 's@%': contained } }, 'a');
    expect(plan.replicated).toEqual([]);
    expect(plan.servers.map((s) => [s.instance, s.unlogged.length])).toEqual([['a', 1], ['b', 0], ['c', 1]]);
    expect(grantDrift(states, 'a')).toEqual([{ grantee: 's@%', missingOn: ['b'], differs: [] }]);
  });
});

describe('declared state', () => {
  it('parses a grants file entry and refuses bad ones', () => {
    const current = user('u', ['GRANT SELECT ON `hr`.* TO `u`@`%`', 'GRANT EXECUTE ON PROCEDURE `hr`.`p` TO `u`@`%`'], '%', true);
    const d = declaredGrantSet({ account: 'u@%', grants: ['SELECT, INSERT ON medical_db.appointment', 'SELECT ON `medical_db`.`department`'] }, current);
    expect(d.tables).toEqual({ 'medical_db.appointment': { privileges: ['INSERT', 'SELECT'], grantOption: false }, 'medical_db.department': { privileges: ['SELECT'], grantOption: false } });
    expect(d.routines).toEqual(current.routines);
    expect(d.locked).toBe(true);
    expect(declaredProblems([{ account: 'u', grants: [] }, { account: 'v@%', grants: ['SELEC ON'] }, { account: 'w@%', grants: [], defaultRole: 'r' }])).toHaveLength(3);
  });
});

describe('sessions', () => {
  it('never keeps a statement that may hold a password', () => {
    expect(redactStatement("ALTER USER x IDENTIFIED BY 'secret'")).toBe('ALTER … (may hold a password: not shown)');
    expect(redactStatement("SET PASSWORD FOR x = PASSWORD('s')")).not.toContain('s\')');
    expect(redactStatement('SELECT name FROM hr.patients')).toBe('SELECT name FROM hr.patients');
  });

  it('picks the accounts\' sessions that connected before the change', () => {
    const s = (id: number, u: string, host = '127.0.0.1') => ({ id, user: u, host, db: null, command: 'Sleep', timeSeconds: 1, state: null, info: null });
    const list = [s(5, 'staff1'), s(9, 'staff1'), s(6, 'other'), s(7, 'staff1', '10.1.1.1')];
    expect(sessionsOf(list, [{ user: 'staff1', host: '127.%' }], 8).map((x) => x.id)).toEqual([5]);
    expect(sessionsOf(list, [{ user: 'staff1', host: '%' }]).map((x) => x.id)).toEqual([5, 9, 7]);
  });
});

describe('access report', () => {
  const objects = [{ db: 'hr', table: 'patients' }];
  it('reads server_audit lines: READ by the account, queries naming the table', () => {
    const read = parseAuditLine('20261202 06:59:40,vm,staff3,127.0.0.1,24,70,READ,hr,patients,', 'a', objects, 60);
    expect(read).toMatchObject({ account: 'staff3@127.0.0.1', action: 'read', object: 'hr.patients', at: Date.UTC(2026, 11, 2, 5, 59, 40) });
    const q = parseAuditLine("20261202 06:59:40,vm,staff3,127.0.0.1,24,73,QUERY,hr,'select name from patients',0", 'a', objects, 0);
    expect(q).toMatchObject({ action: 'query', detail: 'select name from patients' });
    expect(parseAuditLine('20261202 06:59:40,vm,staff3,127.0.0.1,24,70,READ,hr,depts,', 'a', objects, 0)).toBeUndefined();
    expect(mentions('select * from otherdb.patients', objects[0]!, 'hr')).toBe(false);
    expect(mentions('SELECT * FROM `hr`.`patients`', objects[0]!, 'x')).toBe(true);
  });

  it('says where no evidence exists, per instance and period', () => {
    expect(uncovered(0, 100, [{ from: 20, to: 50 }, { from: 40, to: 60 }])).toEqual([{ from: 0, to: 20 }, { from: 60, to: 100 }]);
    const t = (m: number) => Date.UTC(2024, 10, 11, 10, m);
    const r = buildAccessReport({
      cluster: 'orders', incidentId: 'INC', objects: ['hr.patients'], since: t(0), until: t(50), generatedAt: t(55), instances: ['a', 'b'], primary: 'a',
      sources: [
        { instance: 'a', kind: 'server_audit', shows: 'reads', from: t(20), to: t(55), note: 'on' },
        { instance: 'a', kind: 'binlog', shows: 'writes', from: t(0), to: t(55), note: 'binlog' },
      ],
      events: [{ instance: 'a', at: t(30), account: 'staff3@127.0.0.1', action: 'read', object: 'hr.patients', source: 'server_audit' }],
      exposedAtAssessment: ['staff3@%'],
    });
    expect(r.accesses).toMatchObject([{ account: 'staff3@127.0.0.1', instance: 'a', reads: 1 }]);
    expect(r.gaps.map((g) => [g.instance, g.shows, g.from, g.to])).toEqual([['a', 'reads', t(0), t(20)], ['b', 'reads', t(0), t(50)]]);
    expect(r.gaps[0]!.statement).toMatch(/cannot be proven or excluded/);
    expect(accessReportMarkdown(r)).toContain('reads there cannot be proven or excluded');
  });
});
