/**
 * What MariaDB 10.11 does with grants, sessions and audit, pinned on the real sandbox (a primary
 * and two replicas) before the revoke runbook relies on it (issue #14). Each test states one
 * behaviour and fails if the server does otherwise.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditState, enableAudit, listSessions, readGrants, readReadEvidence } from '../../src/adapters/mysql/grants';
import type { RunbookConfig } from '../../src/config/load';
import {
  DATABASE_PRIVILEGES, effectiveMatrix, GLOBAL_PRIVILEGES, grantStatements, parseShowGrants, TABLE_PRIVILEGES, type GrantSet,
} from '../../src/core/grants';
import { connect, instanceEndpoint, type Conn } from '../../src/adapters/mysql/connect';
import type { Sandbox } from '../../src/adapters/mariadbd/sandbox';
import { closeLogins, errnoOf, login as loginAs, replicated as waitReplicated } from '../support/grants';
import { eventually, startTestSandbox } from '../support/sandbox';
import { rowsOn, sql } from '../support/stack';

let config: RunbookConfig;
let sandbox: Sandbox;
const login = (instance: string, user: string, password: string) => loginAs(config, instance, user, password);
const errno = errnoOf;
const admin = async <T>(instance: string, fn: (c: Conn) => Promise<T>) => {
  const c = await connect(instanceEndpoint(config, 'orders', instance));
  try {
    return await fn(c);
  } finally {
    c.destroy();
  }
};
const gtid = async (instance: string) => String((await rowsOn(config, instance, 'SELECT @@gtid_binlog_pos AS p'))[0]!.p);
const replicated = () => waitReplicated(config);

beforeAll(async () => {
  ({ config, sandbox } = await startTestSandbox('revoke-behaviour', 29500));
  await sql(
    config,
    'orders-a',
    'CREATE DATABASE hr',
    'CREATE TABLE hr.patients (id INT PRIMARY KEY, name VARCHAR(20))',
    "INSERT INTO hr.patients VALUES (1, 'ann')",
    'CREATE TABLE hr.depts (id INT PRIMARY KEY)',
  );
  await replicated();
}, 120_000);

afterAll(async () => {
  closeLogins();
  await sandbox?.destroy();
});

describe('MariaDB 10.11 grant behaviour the revoke runbook relies on', () => {
  it('GRANT … TO PUBLIC exists, SHOW GRANTS FOR the user omits it, and the user reads through it; roles grant indirectly', async () => {
    await sql(config, 'orders-a', "CREATE USER pub1@'%' IDENTIFIED BY 'pw1'", 'GRANT SELECT ON hr.* TO PUBLIC', 'CREATE ROLE hr_reader', 'GRANT SELECT ON hr.patients TO hr_reader', "CREATE USER role1@'%' IDENTIFIED BY 'pw2'", "GRANT hr_reader TO role1@'%'", "SET DEFAULT ROLE hr_reader FOR role1@'%'");
    try {
      const shown = (await rowsOn(config, 'orders-a', "SHOW GRANTS FOR pub1@'%'")).map((r) => String(Object.values(r)[0]));
      expect(shown.join('\n')).not.toMatch(/hr/);
      const c = await login('orders-a', 'pub1', 'pw1');
      expect((await c.query('SELECT name FROM hr.patients'))[0]).toEqual([{ name: 'ann' }]);
      const r = await login('orders-a', 'role1', 'pw2');
      expect((await r.query('SELECT name FROM hr.patients'))[0]).toEqual([{ name: 'ann' }]);
      const matrix = effectiveMatrix(await admin('orders-a', (a) => readGrants(a)), [{ db: 'hr', table: 'patients' }]);
      expect(matrix.find((m) => m.account === 'pub1@%')!.paths.map((p) => p.via)).toEqual(['public']);
      expect(matrix.find((m) => m.account === 'role1@%')!.paths.map((p) => `${p.via}:${p.role ?? ''}`).sort()).toEqual(['public:', 'role:hr_reader']);
    } finally {
      // PUBLIC reaches every account: left in place it would grant the later tests' users too.
      await sql(config, 'orders-a', 'REVOKE SELECT ON hr.* FROM PUBLIC', "DROP USER pub1@'%', role1@'%'", 'DROP ROLE hr_reader');
    }
  });

  it('REVOKE at database level reaches a session that ran USE hr only at its next USE; table level at its next statement; global at reconnect', async () => {
    await sql(config, 'orders-a', "CREATE USER dbu@'%' IDENTIFIED BY 'pw'", "GRANT SELECT ON hr.* TO dbu@'%'", "CREATE USER tbu@'%' IDENTIFIED BY 'pw'", "GRANT SELECT ON hr.patients TO tbu@'%'", "CREATE USER glu@'%' IDENTIFIED BY 'pw'", "GRANT SELECT ON *.* TO glu@'%'");
    const db = await login('orders-a', 'dbu', 'pw');
    await db.query('USE hr');
    const tb = await login('orders-a', 'tbu', 'pw');
    await tb.query('SELECT 1 FROM hr.patients');
    const gl = await login('orders-a', 'glu', 'pw');
    await sql(config, 'orders-a', "REVOKE SELECT ON hr.* FROM dbu@'%'", "REVOKE SELECT ON hr.patients FROM tbu@'%'", "REVOKE SELECT ON *.* FROM glu@'%'");
    expect((await db.query('SELECT name FROM patients'))[0]).toEqual([{ name: 'ann' }]); // still reading
    expect(await errno(tb.query('SELECT name FROM hr.patients'))).toBe(1142); // at once
    expect((await gl.query('SELECT name FROM hr.patients'))[0]).toEqual([{ name: 'ann' }]); // still reading
    expect(await errno(db.query('USE hr'))).toBe(1044);
    expect(await errno(login('orders-a', 'glu', 'pw').then((c) => c.query('SELECT name FROM hr.patients')))).toBe(1142);
    await sql(config, 'orders-a', "DROP USER dbu@'%', tbu@'%', glu@'%'");
  });

  it('ACCOUNT LOCK refuses a new login with 4151 (only after the password is checked: 1045 without it) and leaves a live session alone', async () => {
    await sql(config, 'orders-a', "CREATE USER lck@'%' IDENTIFIED BY 'pw'", "GRANT SELECT ON hr.* TO lck@'%'");
    const live = await login('orders-a', 'lck', 'pw');
    await sql(config, 'orders-a', "ALTER USER lck@'%' ACCOUNT LOCK");
    expect(await errno(login('orders-a', 'lck', 'pw'))).toBe(4151);
    expect(await errno(login('orders-a', 'lck', 'wrong'))).toBe(1045);
    expect((await live.query('SELECT name FROM hr.patients'))[0]).toEqual([{ name: 'ann' }]);
    // ALTER USER replicates: the lock holds on the replicas too, and SHOW CREATE USER shows it there.
    await replicated();
    expect(await errno(login('orders-b', 'lck', 'pw'))).toBe(4151);
    expect(String(Object.values((await rowsOn(config, 'orders-c', "SHOW CREATE USER lck@'%'"))[0]!)[0])).toMatch(/ACCOUNT LOCK/);
    await sql(config, 'orders-a', "DROP USER lck@'%'");
  });

  it('KILL ends only the session on the server it runs on, and is not written to the binlog', async () => {
    await sql(config, 'orders-a', "CREATE USER kil@'%' IDENTIFIED BY 'pw'", "GRANT SELECT ON hr.* TO kil@'%'");
    await replicated();
    const onPrimary = await login('orders-a', 'kil', 'pw');
    const onReplica = await login('orders-b', 'kil', 'pw');
    const id = Number(((await onPrimary.query('SELECT CONNECTION_ID() AS id'))[0] as { id: number }[])[0]!.id);
    const before = await gtid('orders-a');
    await sql(config, 'orders-a', `KILL CONNECTION ${id}`);
    await expect(onPrimary.query('SELECT 1')).rejects.toThrow();
    expect(await gtid('orders-a')).toBe(before);
    expect((await onReplica.query('SELECT name FROM hr.patients'))[0]).toEqual([{ name: 'ann' }]);
    expect((await admin('orders-b', listSessions)).some((s) => s.user === 'kil')).toBe(true);
    await sql(config, 'orders-a', "DROP USER kil@'%'");
  });

  it('there are no negative grants: a table cannot be revoked out of a database grant (1147), and REVOKE has no IF EXISTS', async () => {
    await sql(config, 'orders-a', "CREATE USER neg@'%' IDENTIFIED BY 'pw'", "GRANT SELECT ON hr.* TO neg@'%'");
    expect(await errno(sql(config, 'orders-a', "REVOKE SELECT ON hr.patients FROM neg@'%'"))).toBe(1147);
    expect(await errno(sql(config, 'orders-a', "REVOKE IF EXISTS SELECT ON hr.* FROM neg@'%'"))).toBe(1064);
    await sql(config, 'orders-a', "DROP USER neg@'%'");
  });

  it('revoking a role leaves it named as the default role (SHOW GRANTS still says so) until SET DEFAULT ROLE NONE', async () => {
    await sql(config, 'orders-a', 'CREATE ROLE r_def', "CREATE USER rd@'%' IDENTIFIED BY 'pw'", "GRANT r_def TO rd@'%'", "SET DEFAULT ROLE r_def FOR rd@'%'", "REVOKE r_def FROM rd@'%'");
    const g = (await admin('orders-a', (c) => readGrants(c, new Set(['rd@%']))))['rd@%']!;
    expect(g.roles).toEqual({});
    expect(g.defaultRole).toBe('r_def');
    await sql(config, 'orders-a', "DROP USER rd@'%'", 'DROP ROLE r_def');
  });

  it('ALL PRIVILEGES per level is exactly the lists the runbook expands it to', async () => {
    await sql(config, 'orders-a', "CREATE USER allp@'%' IDENTIFIED BY 'pw'", "GRANT ALL ON hr.* TO allp@'%'", "GRANT ALL ON hr.depts TO allp@'%'", "REVOKE SELECT ON hr.* FROM allp@'%'", "REVOKE SELECT ON hr.depts FROM allp@'%'");
    let g = (await admin('orders-a', (c) => readGrants(c, new Set(['allp@%']))))['allp@%']!;
    expect(g.databases.hr!.privileges).toEqual(DATABASE_PRIVILEGES.filter((p) => p !== 'SELECT').sort());
    expect(g.tables['hr.depts']!.privileges).toEqual(TABLE_PRIVILEGES.filter((p) => p !== 'SELECT').sort());
    // Every global privilege, granted by name, is what the server prints as ALL PRIVILEGES.
    await sql(config, 'orders-a', `GRANT ${GLOBAL_PRIVILEGES.join(', ')} ON *.* TO allp@'%'`);
    const shown = (await rowsOn(config, 'orders-a', "SHOW GRANTS FOR allp@'%'")).map((r) => String(Object.values(r)[0]));
    expect(shown[0]).toMatch(/^GRANT ALL PRIVILEGES ON \*\.\* TO/);
    g = (await admin('orders-a', (c) => readGrants(c, new Set(['allp@%']))))['allp@%']!;
    expect(g.global.privileges).toEqual([...GLOBAL_PRIVILEGES].sort());
    await sql(config, 'orders-a', "DROP USER allp@'%'");
  });

  it('the statements between two grant states, run on the server, leave nothing to do (a retried apply is a no-op)', async () => {
    await sql(config, 'orders-a', 'CREATE ROLE r1', 'CREATE ROLE r2', "CREATE USER rt@'%' IDENTIFIED BY 'pw'", "GRANT SELECT, INSERT ON hr.* TO rt@'%'", "GRANT SELECT (name) ON hr.patients TO rt@'%'", "GRANT r1 TO rt@'%'", "SET DEFAULT ROLE r1 FOR rt@'%'");
    const read = async () => (await admin('orders-a', (c) => readGrants(c, new Set(['rt@%']))))['rt@%']!;
    const from = await read();
    const to: GrantSet = parseShowGrants('user', 'rt', '%', ['GRANT SELECT ON `hr`.`depts` TO `rt`@`%` WITH GRANT OPTION', 'GRANT UPDATE (`name`) ON `hr`.`patients` TO `rt`@`%`', 'GRANT `r2` TO `rt`@`%`', 'SET DEFAULT ROLE `r2` FOR `rt`@`%`'], true);
    for (const s of grantStatements(from, to)) await sql(config, 'orders-a', s);
    expect(grantStatements(await read(), to)).toEqual([]);
    for (const s of grantStatements(await read(), from)) await sql(config, 'orders-a', s);
    expect(grantStatements(await read(), from)).toEqual([]);
    await sql(config, 'orders-a', "DROP USER rt@'%'", 'DROP ROLE r1', 'DROP ROLE r2');
  });

  it('server_audit ships with Debian 10.11: INSTALL SONAME works on a read-only replica, is not binlogged, and records READ by the account', async () => {
    const before = await gtid('orders-a');
    const enabled = await admin('orders-b', enableAudit);
    expect(enabled).toMatchObject({ method: 'server_audit', alreadyOn: false });
    expect(enabled.changes[0]).toBe("INSTALL SONAME 'server_audit'");
    expect((await admin('orders-b', enableAudit)).changes).toEqual([]); // twice: nothing more
    expect(await gtid('orders-a')).toBe(before);
    expect(await gtid('orders-b')).toBe(before);
    expect((await admin('orders-c', auditState)).plugin).toBe('NOT INSTALLED');
    await sql(config, 'orders-a', "CREATE USER aud@'%' IDENTIFIED BY 'pw'", "GRANT SELECT ON hr.* TO aud@'%'");
    await replicated();
    const since = Date.now() - 5000;
    const c = await login('orders-b', 'aud', 'pw');
    await c.query('SELECT name FROM hr.patients');
    const evidence = await eventually('the READ in the audit log', async () => {
      const e = await admin('orders-b', (a) => readReadEvidence(a, 'orders-b', [{ db: 'hr', table: 'patients' }], since, Date.now() + 5000, { localFiles: true }));
      return e.events.some((x) => x.action === 'read') ? e : undefined;
    });
    expect(evidence.events.find((x) => x.action === 'read')).toMatchObject({ account: 'aud@127.0.0.1', object: 'hr.patients', source: 'server_audit' });
    expect(evidence.sources.find((s) => s.kind === 'server_audit')!.from).toBeDefined();
    await sql(config, 'orders-a', "DROP USER aud@'%'");
  });

  // Last: it breaks replication to orders-c on purpose, then repairs it.
  it('GRANT/REVOKE replicate, and a replicated REVOKE stops the SQL thread of a replica that lacks the account (1141)', async () => {
    await admin('orders-a', async (c) => {
      await c.query('SET SESSION sql_log_bin = 0');
      await c.query("CREATE USER drift@'%' IDENTIFIED BY 'pw'");
      await c.query("GRANT SELECT ON hr.* TO drift@'%'");
    });
    await admin('orders-b', async (c) => {
      await c.query('SET SESSION sql_log_bin = 0');
      await c.query("CREATE USER drift@'%' IDENTIFIED BY 'pw'");
      await c.query("GRANT SELECT ON hr.* TO drift@'%'");
    });
    await sql(config, 'orders-a', "REVOKE SELECT ON hr.* FROM drift@'%'");
    const status = await eventually('orders-c SQL thread stopped', async () => {
      const [r] = await rowsOn(config, 'orders-c', 'SHOW REPLICA STATUS');
      return r && r.Slave_SQL_Running === 'No' ? r : undefined;
    });
    expect(Number(status.Last_SQL_Errno)).toBe(1141);
    await eventually('orders-b applied the REVOKE', async () => (await rowsOn(config, 'orders-b', "SHOW GRANTS FOR drift@'%'")).length === 1);
    // Repair: skip that one transaction on orders-c.
    await sql(config, 'orders-c', 'STOP SLAVE', 'SET GLOBAL sql_slave_skip_counter = 1', 'START SLAVE');
    await replicated();
    await admin('orders-a', async (c) => {
      await c.query('SET SESSION sql_log_bin = 0');
      await c.query("DROP USER drift@'%'");
    });
    await admin('orders-b', async (c) => {
      await c.query('SET SESSION sql_log_bin = 0');
      await c.query("DROP USER drift@'%'");
    });
  });
});
