/**
 * Evidence of reads where the audit plugin cannot be had, on a real MariaDB 10.11: a server whose
 * plugin_dir holds no server_audit falls back to general_log (and says why), and its
 * performance_schema statement history is read too. Both name the account that read the sensitive
 * table while it is connected; the history says `unknown` once the connection has ended (it keeps
 * no user), and each source says from when it covers.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mysql from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pathsOf, startServer, stopServer, withRoot, type MariadbdInstance } from '../../src/adapters/mariadbd/server';
import { enableAudit, readReadEvidence } from '../../src/adapters/mysql/grants';

const PORT = 29540 + Number(process.env.RUNBOOK_TEST_PORT_OFFSET ?? 0);
const dir = mkdtempSync(join(tmpdir(), 'runbook-revoke-evidence-'));
const server: MariadbdInstance = {
  key: 'evidence',
  host: '127.0.0.1',
  port: PORT,
  serverId: 4321,
  initialRole: 'replica',
  dir,
  extraCnf: [
    // No plugin here: INSTALL SONAME 'server_audit' fails, as on a build without it.
    `plugin_dir=${join(dir, 'no-plugins')}`,
    'performance_schema=ON',
    // Both: MariaDB 10.11 keeps no statement history while events_statements_current is off.
    'performance_schema_consumer_events_statements_current=ON',
    'performance_schema_consumer_events_statements_history_long=ON',
  ],
};
const patients = [{ db: 'hr', table: 'patients' }];

/** Root over the socket, with the options every engine connection has (adapters/mysql/connect.ts): dates and big numbers as text. */
async function asEngine<T>(fn: (c: mysql.Connection) => Promise<T>): Promise<T> {
  const c = await mysql.createConnection({ socketPath: pathsOf(server).socket, user: 'root', dateStrings: true, supportBigNumbers: true, bigNumberStrings: true });
  try {
    return await fn(c);
  } finally {
    c.destroy();
  }
}

const login = () => mysql.createConnection({ host: '127.0.0.1', port: PORT, user: 'staff', password: 'pw', database: 'hr' });

beforeAll(async () => {
  await startServer(server);
  await withRoot(server, async (c) => {
    await c.query('SET GLOBAL read_only = OFF');
    await c.query('CREATE DATABASE IF NOT EXISTS hr');
    await c.query('CREATE TABLE IF NOT EXISTS hr.patients (id INT PRIMARY KEY, name VARCHAR(32))');
    await c.query("INSERT IGNORE INTO hr.patients VALUES (1, 'ann'), (2, 'bob')");
    await c.query("CREATE USER IF NOT EXISTS staff@'%' IDENTIFIED BY 'pw'");
    await c.query("GRANT SELECT ON hr.patients TO staff@'%'");
  });
}, 120_000);

afterAll(async () => {
  await stopServer(server).catch(() => undefined);
  rmSync(dir, { recursive: true, force: true });
});

describe('evidence of reads without server_audit', () => {
  it('falls back to general_log and says why; general_log and the statement history both name the reader, the history only while it is connected', async () => {
    const enabled = await asEngine((c) => enableAudit(c));
    expect(enabled.method).toBe('general_log');
    expect(enabled.fallbackBecause).toMatch(/server_audit cannot be loaded/);
    expect(enabled.changes).toContain('SET GLOBAL general_log = ON');

    const since = Date.now() - 60_000;
    const stays = await login();
    const leaves = await login();
    try {
      await stays.query('SELECT name FROM hr.patients WHERE id = 1');
      await leaves.query('SELECT * FROM patients');
    } finally {
      await leaves.end();
    }
    const evidence = await asEngine((c) => readReadEvidence(c, 'evidence', patients, since, Date.now() + 60_000, { localFiles: true }));
    await stays.end();

    const from = (source: string) => evidence.events.filter((e) => e.source === source);
    // general_log names both readers, with the statement.
    expect(from('general_log').map((e) => [e.account.split('@')[0], e.object, e.detail])).toEqual(
      expect.arrayContaining([
        ['staff', 'hr.patients', 'SELECT name FROM hr.patients WHERE id = 1'],
        ['staff', 'hr.patients', 'SELECT * FROM patients'],
      ]),
    );
    // The statement history: the one still connected by name, the one gone as unknown.
    const history = from('performance_schema');
    expect(history.find((e) => e.detail === 'SELECT name FROM hr.patients WHERE id = 1')?.account).toMatch(/^staff@/);
    expect(history.find((e) => e.detail === 'SELECT * FROM patients')?.account).toMatch(/^unknown/);
    for (const e of history) expect(Math.abs(e.at - Date.now())).toBeLessThan(120_000); // placed in time by the server's own timer
    // Each source says what it covers.
    const ps = evidence.sources.find((s) => s.kind === 'performance_schema')!;
    expect(ps.from).toBeLessThanOrEqual(Math.min(...history.map((e) => e.at)));
    expect(ps.note).toMatch(/ring buffer/);
    expect(evidence.sources.find((s) => s.kind === 'general_log')!.from).toBeDefined();
    expect(evidence.sources.find((s) => s.kind === 'server_audit')!.note).toBe('not installed');
  }, 120_000);

  it('says so when the history is not kept: MariaDB records none while events_statements_current is off (pinned here)', async () => {
    await asEngine((c) => c.query("UPDATE performance_schema.setup_consumers SET ENABLED = 'NO' WHERE NAME = 'events_statements_current'"));
    try {
      const count = () => asEngine(async (c) => Number(((await c.query('SELECT COUNT(*) AS n FROM performance_schema.events_statements_history_long'))[0] as { n: string }[])[0]!.n));
      const before = await count();
      const reader = await login();
      await reader.query('SELECT name FROM hr.patients WHERE id = 2');
      await reader.end();
      expect(await count()).toBe(before); // the behaviour the check below exists for
      const evidence = await asEngine((c) => readReadEvidence(c, 'evidence', patients, Date.now() - 60_000, Date.now() + 60_000, { localFiles: true }));
      const ps = evidence.sources.find((s) => s.kind === 'performance_schema')!;
      expect(ps.note).toBe('ON, but its events_statements_current consumer is off: no statement history kept');
      expect(ps.from).toBeUndefined(); // covers nothing: the report says reads there cannot be proven or excluded
    } finally {
      await asEngine((c) => c.query("UPDATE performance_schema.setup_consumers SET ENABLED = 'YES' WHERE NAME = 'events_statements_current'"));
    }
  }, 120_000);
});
