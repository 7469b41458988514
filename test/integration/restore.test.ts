/**
 * Point-in-time recovery on the real sandbox and worker: a backup, more writes, a DROP TABLE, more
 * writes to another table; the restore runbook finds the DROP, restores the backup into a recovery
 * instance, replays up to it through the SQL thread, skips it, replays the rest.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunbookConfig } from '../../src/config/load';
import type { Sandbox } from '../../src/sandbox/sandbox';
import type { RestoreInput, RestoreResult } from '../../src/workflows/restore';
import { startTestSandbox } from '../support/sandbox';
import { sql, startInProcessWorker, type InProcessWorker } from '../support/stack';

const taskQueue = `restore-${process.pid}`;
let config: RunbookConfig;
let sandbox: Sandbox;
let stack: InProcessWorker;

const run = <T>(type: string, args: unknown[], id: string) => stack.client.workflow.execute(type, { taskQueue, workflowId: `${id}-${Date.now()}`, args }) as Promise<T>;
const input = (over: Partial<RestoreInput> = {}): RestoreInput => ({
  cluster: 'orders', badEvent: { table: 'orders', statement: 'DROP TABLE' }, skip: true, compare: ['shop.users'],
  requester: 'alice', reason: 'orders table dropped', incidentId: 'INC-DROP', ...over,
});

/** mariadbd processes started from this test's restore scratch directory. */
function scratchServers(): number {
  return readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
    try {
      return readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(`${config.backupDir}/orders/restore/`);
    } catch {
      return false;
    }
  }).length;
}

beforeAll(async () => {
  ({ config, sandbox } = await startTestSandbox('restore', 25800));
  stack = await startInProcessWorker(config, taskQueue);
  await sql(config, 'orders-a', 'CREATE DATABASE shop', 'CREATE TABLE shop.orders (id INT PRIMARY KEY, amount INT)', 'INSERT INTO shop.orders VALUES (1, 10), (2, 20)',
    'CREATE TABLE shop.users (id INT PRIMARY KEY, points INT)', 'INSERT INTO shop.users VALUES (1, 100)');
  await run('backup', [{ cluster: 'orders', instance: 'orders-a', kind: 'logical', requester: 'alice' }], 'backup-before');
  await sql(config, 'orders-a', 'INSERT INTO shop.orders VALUES (3, 30)', 'DROP TABLE shop.orders', 'INSERT INTO shop.users VALUES (2, 200)', 'UPDATE shop.users SET points = points + 1 WHERE id = 1');
  // The next backup run archives the binlogs that now hold the DROP.
  await run('backup', [{ cluster: 'orders', instance: 'orders-a', kind: 'logical', requester: 'alice' }], 'backup-after');
});

afterAll(async () => {
  await stack?.stop();
  await sandbox?.destroy();
});

describe('restore runbook', () => {
  it('dry-run names the event, the backup and the binlog range, and starts nothing', async () => {
    const result = await run<RestoreResult>('restore', [input({ dryRun: true })], 'restore-dry');
    expect(result.status).toBe('dry_run');
    expect(result.badEvent.statements).toEqual(['DROP TABLE `shop`.`orders`']);
    expect(result.backupId).toMatch(/^logical-/);
    expect(scratchServers()).toBe(0);
  });

  it('restores the backup, replays up to the DROP, skips it and replays the rest', async () => {
    const result = await run<RestoreResult>('restore', [input()], 'restore-drop');
    expect(result.status).toBe('succeeded');
    const orders = result.comparison!.tables.find((t) => t.table === 'shop.orders')!;
    expect(orders.production).toBeNull(); // still dropped in production: nothing touched it
    expect(orders.recovery?.rows).toBe(3); // as it was just before the DROP, with the write after the backup
    const users = result.comparison!.tables.find((t) => t.table === 'shop.users')!;
    expect(users.recovery).toEqual(users.production); // every later write to other tables
    expect(users.recovery?.rows).toBe(2);
    expect(result.appliedTo).toMatch(/^0-25801-\d+$/);
    expect(scratchServers()).toBe(0); // nothing left running
  });

  it('refuses when the pattern matches more than one event, before restoring anything', async () => {
    const err = (await run('restore', [input({ badEvent: { statement: 'INSERT' } })], 'restore-ambiguous').catch((e: unknown) => e)) as { cause: Error };
    expect(err.cause.message).toMatch(/^step "locate bad event" failed \(precondition\): \d+ events match; narrow the window, table or pattern/);
  });
});
