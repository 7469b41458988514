/**
 * The archived binlogs on a real sandbox: the DROP TABLE and the UPDATE without WHERE are found by
 * table and statement; the UPDATE is undone by flashback (later writes kept); flashback over the
 * DROP is refused. Activities run in the SDK's activity test environment (real code, real servers).
 */
import { MockActivityEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBackupActivities } from '../../src/activities/backup';
import { createBinlogActivities } from '../../src/activities/binlog';
import type { RunbookConfig } from '../../src/config/load';
import { connect, instanceEndpoint } from '../../src/mysql/connect';
import type { Sandbox } from '../../src/sandbox/sandbox';
import { startTestSandbox } from '../support/sandbox';
import { sql } from '../support/stack';

let config: RunbookConfig;
let sandbox: Sandbox;
const env = new MockActivityEnvironment();
/** Run an activity function inside the SDK's activity context (heartbeats work), typed. */
const inActivity = <T>(fn: () => Promise<T>): Promise<T> => env.run(fn) as Promise<T>;

beforeAll(async () => {
  ({ config, sandbox } = await startTestSandbox('binlog', 25400));
  await sql(
    config,
    'orders-a',
    'CREATE DATABASE shop',
    'CREATE TABLE shop.orders (id INT PRIMARY KEY, amount INT)',
    'INSERT INTO shop.orders VALUES (1, 10), (2, 20), (3, 30)',
    'CREATE TABLE shop.users (id INT PRIMARY KEY, points INT)',
    'INSERT INTO shop.users VALUES (1, 100), (2, 200)',
    'UPDATE shop.users SET points = 0', // the mistake: no WHERE
    'DROP TABLE shop.orders', // the other mistake
    'INSERT INTO shop.users VALUES (3, 300)', // later work that must survive
  );
  await inActivity(() => createBackupActivities({ config }).archiveBinlogs({ cluster: 'orders', instance: 'orders-a' }));
});
afterAll(() => sandbox?.destroy());

const binlog = () => createBinlogActivities({ config });

async function users(): Promise<[number, number][]> {
  const conn = await connect(instanceEndpoint(config, 'orders', 'orders-a'));
  const [rows] = await conn.query('SELECT id, points FROM shop.users ORDER BY id');
  conn.destroy();
  return (rows as { id: number; points: number }[]).map((r) => [r.id, r.points]);
}

describe('archived binlogs', () => {
  it('finds the DROP TABLE and the UPDATE without WHERE, with exact positions', async () => {
    const drops = await inActivity(() => binlog().findBadEvents({ cluster: 'orders', query: { table: 'orders', statement: 'DROP TABLE' } }));
    expect(drops).toHaveLength(1);
    expect(drops[0]).toMatchObject({ kind: 'ddl', statements: ['DROP TABLE `shop`.`orders`'], file: 'mysql-bin.000001' });
    expect(drops[0]!.endPosition).toBeGreaterThan(drops[0]!.startPosition);
    const updates = await inActivity(() => binlog().findBadEvents({ cluster: 'orders', query: { table: 'shop.users', statement: '^UPDATE(?!.*WHERE)' } }));
    expect(updates.map((u) => [u.statements, u.rowEvents])).toEqual([[['UPDATE shop.users SET points = 0'], [{ type: 'UPDATE', table: 'shop.users', rows: 2 }]]]);
    expect(updates[0]!.gtid).toMatch(/^0-25401-\d+$/);
  });

  it('undoes the UPDATE by flashback and keeps the later writes', async () => {
    const [update] = await inActivity(() => binlog().findBadEvents({ cluster: 'orders', query: { statement: '^UPDATE' } }));
    expect(await users()).toEqual([[1, 0], [2, 0], [3, 300]]);
    const prepared = await inActivity(() => binlog().flashbackTransaction({ cluster: 'orders', instance: 'orders-a', gtid: update!.gtid, file: update!.file, apply: false }));
    expect(prepared.applied).toBe(false);
    expect(await users()).toEqual([[1, 0], [2, 0], [3, 300]]); // preparing changes nothing
    await inActivity(() => binlog().flashbackTransaction({ cluster: 'orders', instance: 'orders-a', gtid: update!.gtid, file: update!.file, apply: true }));
    expect(await users()).toEqual([[1, 100], [2, 200], [3, 300]]);
  });

  it('refuses flashback over the DROP TABLE', async () => {
    const [drop] = await inActivity(() => binlog().findBadEvents({ cluster: 'orders', query: { statement: 'DROP TABLE' } }));
    await expect(inActivity(() => binlog().flashbackTransaction({ cluster: 'orders', instance: 'orders-a', gtid: drop!.gtid, file: drop!.file, apply: true }))).rejects.toThrow(
      `${drop!.gtid} is DDL (DROP TABLE \`shop\`.\`orders\`): flashback cannot undo it; use restore and replay`,
    );
  });
});
