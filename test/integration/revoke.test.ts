/**
 * The revoke runbook (issue #14) on the real sandbox (a primary and two replicas) and a real
 * worker. `GRANT SELECT ON hr.* TO PUBLIC` and a role expose hr.patients; staff sessions are
 * connected to every server; a replica lacks one of the accounts (drift); server_audit was turned
 * on, on the primary only, partway through the exposure. The cases run in order on one sandbox:
 * dry run → containment with lock and report → undo to the snapshot → a grants file.
 */
import type { WorkflowHandle } from '@temporalio/client';
import mysql from 'mysql2/promise';
import { existsSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Notifier } from '../../src/activities/notify';
import { enableAudit } from '../../src/adapters/mysql/grants';
import type { RunbookConfig } from '../../src/config/load';
import { effectiveMatrix, exposedAccounts, normaliseGrantSet, type GrantState } from '../../src/core/grants';
import { closeLogins, connectionIdOf, errnoOf, grantsOn as grantsOnInstance, login as loginAs, replicated as waitReplicated, sessionAlive } from '../support/grants';
import { connect, instanceEndpoint } from '../../src/adapters/mysql/connect';
import { renderEmail } from '../../src/adapters/notify/emailTemplates';
import { buildThreadReply } from '../../src/adapters/notify/slack';
import type { Sandbox } from '../../src/adapters/mariadbd/sandbox';
import type { RunbookNotification } from '../../src/core/notifications';
import type { RevokeInput, RevokeResult, RevokeUndoResult } from '../../src/workflows/revoke';
import { stepLog } from '../support/failover';
import { startTestSandbox } from '../support/sandbox';
import { rowsOn, sql, startInProcessWorker, type InProcessWorker } from '../support/stack';

const taskQueue = `revoke-${process.pid}`;
const INSTANCES = ['orders-a', 'orders-b', 'orders-c'];
let config: RunbookConfig;
let sandbox: Sandbox;
let stack: InProcessWorker;
const notices: RunbookNotification[] = [];
const capture: Notifier = { name: 'capture', send: async (n) => void notices.push(n) };
const login = (instance: string, user: string) => loginAs(config, instance, user);
const alive = (instance: string, id: number) => sessionAlive(config, instance, id);
const errno = errnoOf;
const grantsOn = (instance: string) => grantsOnInstance(config, instance);
const replicated = () => waitReplicated(config);
const idOf = connectionIdOf;
const unlogged = async (instance: string, ...statements: string[]) => {
  const c = await connect(instanceEndpoint(config, 'orders', instance));
  try {
    await c.query('SET SESSION sql_log_bin = 0');
    for (const s of statements) await c.query(s);
  } finally {
    c.destroy();
  }
};
const sqlRunning = async (instance: string) => String((await rowsOn(config, instance, 'SHOW REPLICA STATUS'))[0]!.Slave_SQL_Running);

const base = (over: Partial<RevokeInput>): RevokeInput => ({
  cluster: 'orders', objects: ['hr.patients'], requester: 'alice', reason: 'hr.* opened to every staff account by mistake', incidentId: 'INC-RV', ...over,
});
const run = async <T>(type: 'revoke' | 'revokeUndo', input: unknown, id: string): Promise<{ result: T; handle: WorkflowHandle }> => {
  const handle = await stack.client.workflow.start(type, { taskQueue, workflowId: `${id}-${process.pid}`, args: [input] });
  return { result: (await handle.result()) as T, handle };
};

let exposureStarted: number;
let auditOnPrimaryFrom: number;
let before: Record<string, GrantState>;

beforeAll(async () => {
  ({ config, sandbox } = await startTestSandbox('revoke', 29510, (doc) => {
    doc.clusters.orders.approval.revoke = { default: { mode: 'auto' } };
  }));
  stack = await startInProcessWorker(config, taskQueue, { notifiers: [capture] });
  exposureStarted = Date.now() - 60_000;
  await sql(
    config,
    'orders-a',
    'CREATE DATABASE hr',
    'CREATE TABLE hr.patients (id INT PRIMARY KEY, name VARCHAR(20))',
    "INSERT INTO hr.patients VALUES (1, 'ann'), (2, 'bo')",
    'CREATE TABLE hr.depts (id INT PRIMARY KEY)',
    "CREATE USER staff_a@'%' IDENTIFIED BY 'pw'",
    "CREATE USER staff_b@'%' IDENTIFIED BY 'pw'",
    "CREATE USER staff_c@'%' IDENTIFIED BY 'pw'",
    "CREATE USER dba_x@'%' IDENTIFIED BY 'pw'",
    "GRANT SELECT ON *.* TO dba_x@'%'",
    // The mistake: every account may read hr; a role, and a direct grant on top.
    'GRANT SELECT ON hr.* TO PUBLIC',
    'CREATE ROLE hr_reader',
    'GRANT SELECT ON hr.patients TO hr_reader',
    "GRANT hr_reader TO staff_b@'%'",
    "SET DEFAULT ROLE hr_reader FOR staff_b@'%'",
    "GRANT SELECT, INSERT ON hr.* TO staff_c@'%'",
  );
  // Drift: staff_d exists on orders-a and orders-b only.
  for (const i of ['orders-a', 'orders-b']) await unlogged(i, "CREATE USER staff_d@'%' IDENTIFIED BY 'pw'", "GRANT SELECT ON hr.* TO staff_d@'%'");
  await replicated();
  // Audit turned on, on the primary only, partway through the exposure.
  const c = await connect(instanceEndpoint(config, 'orders', 'orders-a'));
  try {
    auditOnPrimaryFrom = Date.now() - 1000;
    await enableAudit(c);
  } finally {
    c.destroy();
  }
  before = Object.fromEntries(await Promise.all(INSTANCES.map(async (i) => [i, await grantsOn(i)] as const)));
}, 120_000);

afterAll(async () => {
  closeLogins();
  await stack?.stop();
  await sandbox?.destroy();
});

describe('runbook revoke', () => {
  it('assessment: every exposed account, including those whose SHOW GRANTS omits the grant (PUBLIC, role); the plan lists every statement per server; a dry run changes nothing', async () => {
    const shown = (await rowsOn(config, 'orders-a', "SHOW GRANTS FOR staff_a@'%'")).map((r) => String(Object.values(r)[0])).join('\n');
    expect(shown).not.toMatch(/hr/); // what the seed's procedure would have looked at
    const { result } = await run<RevokeResult>('revoke', base({ dryRun: true, accounts: 'staff%', lock: true }), 'revoke-dry');
    expect(result.status).toBe('dry_run');
    const a = result.assessment;
    expect(a.targets).toEqual(['staff_a@%', 'staff_b@%', 'staff_c@%', 'staff_d@%']);
    const onPrimary = exposedAccounts(a.matrix['orders-a']!);
    expect(onPrimary.find((e) => e.account === 'staff_a@%')!.paths.map((p) => p.via)).toEqual(['public']);
    expect(onPrimary.find((e) => e.account === 'staff_b@%')!.paths.map((p) => `${p.via}:${p.role ?? ''}:${p.active ?? ''}`).sort()).toEqual(['public::', 'role:hr_reader:default']);
    expect(onPrimary.find((e) => e.account === 'dba_x@%')).toBeDefined();
    expect(a.excluded.find((e) => e.account === 'dba_x@%')!.why).toBe('not matched by --accounts staff%');
    expect(a.drift.find((d) => d.grantee === 'staff_d@%')).toMatchObject({ missingOn: ['orders-c'] });
    // Per server: PUBLIC's grant rewritten once on the primary; staff_d by itself where it exists.
    expect(result.plan).toContain('on orders-a (binlogged');
    expect(result.plan).toContain('`REVOKE SELECT ON `hr`.* FROM PUBLIC;`');
    expect(result.plan).toContain('`GRANT SELECT ON `hr`.`depts` TO PUBLIC;`');
    expect(result.plan).toMatch(/on orders-b only \(sql_log_bin=0, grant drift\):\n(.*\n)*.*ACCOUNT LOCK/);
    expect(result.plan).toContain('on orders-c: nothing for staff_d@% (staff_d@% does not exist on orders-c)');
    for (const i of INSTANCES) expect(await grantsOn(i)).toEqual(before[i]);
  });

  it('contains: sessions that ran USE hr keep reading until the runbook ends them; afterwards none is left on any server, a locked login gets 4151, the matrix is clean, the drifted replica keeps replicating; the report names the audited SELECT and the period without evidence', async () => {
    // The audited read on the primary, by staff_a, during the exposure.
    const reader = await login('orders-a', 'staff_a');
    await reader.query('SELECT name FROM hr.patients');
    // Sessions that ran USE hr on every server, and one that must survive (not targeted).
    const sessions: [string, mysql.Connection, number][] = [];
    for (const [instance, user] of [['orders-a', 'staff_c'], ['orders-b', 'staff_b'], ['orders-c', 'staff_a']] as const) {
      const c = await login(instance, user);
      await c.query('USE hr');
      sessions.push([instance, c, await idOf(c)]);
    }
    const dba = await login('orders-a', 'dba_x');
    const dbaId = await idOf(dba);
    // After a REVOKE alone, the USE hr session still reads: only the runbook's KILL ends it (pinned in revokeBehaviour.test.ts).
    expect((await sessions[0]![1].query('SELECT name FROM patients'))[0]).toHaveLength(2);

    const { result, handle } = await run<RevokeResult>('revoke', base({ accounts: 'staff%', lock: true, since: exposureStarted }), 'revoke-contain');
    expect(result.status).toBe('succeeded');

    for (const [instance, , id] of [...sessions, ['orders-a', reader, await idOf(reader).catch(() => -1)] as const]) {
      if (id > 0) expect(await alive(instance, id)).toBe(false);
    }
    for (const [, c] of sessions) await expect(c.query('SELECT 1')).rejects.toThrow();
    expect(await alive('orders-a', dbaId)).toBe(true);
    for (const instance of INSTANCES) {
      expect(await errno(login(instance, 'staff_c'))).toBe(4151);
      expect(await errno(login(instance, 'staff_a'))).toBe(4151);
      const exposed = exposedAccounts(effectiveMatrix(await grantsOn(instance), [{ db: 'hr', table: 'patients' }])).map((e) => e.account);
      expect(exposed.filter((e) => e.startsWith('staff'))).toEqual([]);
      expect(exposed).toContain('dba_x@%'); // a global grant, and not matched by staff%: untouched
    }
    expect(await sqlRunning('orders-b')).toBe('Yes');
    expect(await sqlRunning('orders-c')).toBe('Yes'); // it lacks staff_d: nothing for it reached it through replication
    // Rewritten, not lost: PUBLIC and staff_c keep the rest of hr.
    const a = await grantsOn('orders-a');
    expect(a.PUBLIC!.tables).toEqual({ 'hr.depts': { privileges: ['SELECT'], grantOption: false } });
    expect(a['staff_c@%']!.tables['hr.depts']!.privileges).toEqual(['INSERT', 'SELECT']);
    expect(a['staff_b@%']).toMatchObject({ roles: {}, defaultRole: null, locked: true });
    expect((await grantsOn('orders-b'))['staff_d@%']!.locked).toBe(true);
    expect((await grantsOn('orders-c'))['staff_d@%']).toBeUndefined();
    // The drift is reported.
    expect(result.assessment.drift.map((d) => d.grantee)).toContain('staff_d@%');

    // Audit: server_audit on every instance, said which.
    expect(result.audit!.map((x) => [x.instance, x.method, x.alreadyOn])).toEqual([['orders-a', 'server_audit', true], ['orders-b', 'server_audit', false], ['orders-c', 'server_audit', false]]);

    // The report: the audited SELECT by staff_a on orders-a, and the periods without evidence.
    const report = JSON.parse(readFileSync(result.report!.files.find((f) => f.endsWith('.json'))!, 'utf8'));
    const access = report.accesses.find((x: { account: string; instance: string }) => x.account === 'staff_a@127.0.0.1' && x.instance === 'orders-a');
    expect(access.reads).toBeGreaterThanOrEqual(1);
    // Writes come from the primary's binlog, which never says who wrote: the INSERT of the setup.
    const writes = report.accesses.find((x: { account: string; instance: string }) => x.instance === 'orders-a' && x.account.startsWith('unknown'));
    expect(writes.writes).toBe(1);
    // The sandbox's binlog begins when the sandbox was made, after `since`: the time before it is said to have no evidence of writes.
    const writeGaps = report.gaps.filter((g: { shows: string }) => g.shows === 'writes');
    expect(writeGaps).toMatchObject([{ instance: 'orders-a', from: exposureStarted }]);
    expect(writeGaps[0].to).toBeLessThanOrEqual(writes.first);
    expect(writeGaps[0].statement).toMatch(/writes there cannot be proven or excluded/);
    const gap = (instance: string) => report.gaps.find((g: { instance: string; shows: string }) => g.instance === instance && g.shows === 'reads');
    expect(gap('orders-a')).toMatchObject({ from: exposureStarted });
    expect(gap('orders-a').to).toBeLessThanOrEqual(auditOnPrimaryFrom + 2000);
    expect(gap('orders-b').from).toBe(exposureStarted);
    expect(gap('orders-b').statement).toMatch(/reads there cannot be proven or excluded/);
    const md = readFileSync(result.report!.files.find((f) => f.endsWith('.md'))!, 'utf8');
    expect(md).toContain('## Where no evidence exists');
    expect(md).toContain('staff_a@127.0.0.1');

    // The notification carries the summary, in both locales.
    const done = notices.find((n) => n.workflowId === handle.workflowId && n.kind === 'completed')!;
    expect(done.accessReport!.gaps.length).toBeGreaterThan(0);
    expect(renderEmail(done, 'en')!.text).toMatch(/no evidence of reads on orders-b from .*cannot be proven or excluded/);
    expect(renderEmail(done, 'zh-CN')!.text).toMatch(/orders-b 在 .* 期间没有读取证据/);
    expect(renderEmail(done, 'zh-CN')!.text).toContain('staff_a@127.0.0.1（orders-a）：读取');
    expect(JSON.stringify(buildThreadReply(done, 'zh-CN'))).toContain('访问报告');

    // Every step logged once.
    const log = await stepLog(config, handle.workflowId);
    const keys = log.map((r) => `${r.seq}:${r.status}`);
    expect(new Set(keys).size).toBe(keys.length);
    for (const i of INSTANCES) expect(log.filter((r) => r.step === `end sessions on ${i}`).map((r) => r.status)).toEqual(['started', 'succeeded']);
    expect(existsSync(result.snapshotFile!)).toBe(true);
  });

  it('--undo restores the snapshot exactly: normalised grants compare equal on every server', async () => {
    const { result } = await run<RevokeUndoResult>('revokeUndo', { cluster: 'orders', undoIncident: 'INC-RV', requester: 'alice', reason: 'undo for the test', incidentId: 'INC-RV-UNDO' }, 'revoke-undo');
    expect(result.status).toBe('succeeded');
    expect(result.restored).toEqual(['PUBLIC', 'staff_a@%', 'staff_b@%', 'staff_c@%', 'staff_d@%']);
    for (const i of INSTANCES) {
      const now = await grantsOn(i);
      expect(Object.keys(now).sort()).toEqual(Object.keys(before[i]!).sort());
      for (const k of Object.keys(before[i]!)) expect(normaliseGrantSet(now[k]!)).toEqual(normaliseGrantSet(before[i]![k]!));
    }
    expect(await sqlRunning('orders-b')).toBe('Yes');
    expect(await sqlRunning('orders-c')).toBe('Yes');
    // Undone twice: nothing left to do.
    const again = await run<RevokeUndoResult>('revokeUndo', { cluster: 'orders', undoIncident: 'INC-RV', requester: 'alice', reason: 'again', incidentId: 'INC-RV-UNDO2' }, 'revoke-undo2');
    expect(again.result.plan.replicated).toEqual([]);
    expect(again.result.plan.servers.every((s) => !s.unlogged.length)).toBe(true);
  });

  it('--grants-file converges to exactly the declared grants', async () => {
    const declared = [{ account: 'staff_c@%', grants: ['SELECT, INSERT ON hr.depts', 'SELECT (name) ON hr.patients'] }];
    const { result } = await run<RevokeResult>('revoke', base({ accounts: 'staff_c', declared, incidentId: 'INC-RV-FILE' }), 'revoke-file');
    expect(result.status).toBe('succeeded');
    expect(result.plan).toContain('Converge to the grants file');
    for (const i of INSTANCES) {
      const g = (await grantsOn(i))['staff_c@%']!;
      expect({ global: g.global, databases: g.databases, tables: g.tables, columns: g.columns, roles: g.roles, defaultRole: g.defaultRole }).toEqual({
        global: { privileges: [], grantOption: false },
        databases: {},
        tables: { 'hr.depts': { privileges: ['INSERT', 'SELECT'], grantOption: false } },
        columns: { 'hr.patients': { SELECT: ['name'] } },
        roles: {},
        defaultRole: null,
      });
    }
  });
});
