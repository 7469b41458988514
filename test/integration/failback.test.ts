/**
 * The failback runbook on the real sandbox and a real Temporal worker:
 *
 * - the primary is SIGKILLed (its write load stopped just before, so that every write it
 *   acknowledged reached a replica), an emergency failover promotes a replica, a new write load
 *   runs against the writer endpoint; the old primary restarts WRITABLE (read_only=0 in its
 *   config): the failback makes it read-only before anything else, finds nothing errant, rejoins
 *   it, proves 0 differences and switches back to it while the load writes on; every
 *   acknowledged write is on the final primary, whose rows equal every replica's (the test's own
 *   fingerprint, not the engine's digest);
 * - a failover while a failback waits for its approval: the switch back is refused, and the
 *   failback changes nothing;
 * - writes made directly on an isolated instance are found as errant (GTID, tables, statement),
 *   exported (the files hold them), shown; a rejoin is refused and changes nothing; the flashback
 *   method undoes them (while the primary wrote on), the instance rejoins, catches up, has 0
 *   differences, and its rows fingerprint (here, in the test) as the primary's;
 * - errant DDL: reseed-logical wipes and loads it from a healthy replica's dump, the export holds
 *   the DDL, 0 differences, fingerprints equal.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { WorkflowFailedError, type Client, type WorkflowHandle } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunbookConfig } from '../../src/config/load';
import { listSyncStatus, withControl } from '../../src/adapters/control/store';
import { connect, instanceEndpoint } from '../../src/adapters/mysql/connect';
import { Sandbox } from '../../src/adapters/mariadbd/sandbox';
import type { FailbackInput, FailbackResult } from '../../src/workflows/failback';
import { decide, runFailover, shape, stateOf, stepLog } from '../support/failover';
import { fingerprint } from '../support/reference';
import { eventually, startTestSandbox } from '../support/sandbox';
import { rowsOn, sql, startInProcessWorker, type InProcessWorker } from '../support/stack';
import { prepareLoadSchema, WriteLoad } from '../support/writeLoad';

const BASE = 31500;
const taskQueue = `failback-${process.pid}`;
let config: RunbookConfig;
let sandbox: Sandbox;
let client: Client;
let stack: InProcessWorker;
let counter = 0;

beforeAll(async () => {
  ({ config, sandbox } = await startTestSandbox('failback', BASE, (doc) => {
    doc.clusters.orders.approval.failover.emergency = { mode: 'auto' };
    // Failback falls to the cluster's default: alice or bob, four-eyes.
  }));
  await prepareLoadSchema(config, 'orders', 'orders-a');
  stack = await startInProcessWorker(config, taskQueue);
  client = stack.client;
}, 120_000);

afterAll(async () => {
  await stack?.stop();
  await sandbox?.destroy();
});

function startFailback(over: Partial<FailbackInput> & { instance: string }): Promise<WorkflowHandle> {
  const incidentId = `FB${Date.now()}-${++counter}`;
  return client.workflow.start('failback', {
    taskQueue,
    workflowId: `failback-orders-${incidentId}`,
    args: [{ cluster: 'orders', reason: 'bring it back', requester: 'carol', incidentId, ...over } satisfies FailbackInput],
  });
}

/** The approval request, or the run's own failure if it ended first (a clear message, not a timeout). */
async function pendingApproval(handle: WorkflowHandle) {
  return eventually('approval request', async () => {
    if ((await handle.describe()).status.name !== 'RUNNING') throw new Error(`the run ended: ${await handle.result().then(JSON.stringify, (e) => e.cause?.message ?? e.message)}`);
    const s = await stateOf(handle);
    return (s.details.approval as { status: string } | undefined)?.status === 'pending' ? s : undefined;
  }, 120_000).catch(async (err) => {
    const s = await stateOf(handle).catch(() => undefined);
    throw new Error(`${err.message}; steps: ${s?.steps.map((x) => `${x.name}:${x.status}`).join(', ')}`);
  });
}

async function approveAndWait(handle: WorkflowHandle): Promise<FailbackResult> {
  await pendingApproval(handle);
  expect(await decide(handle, 'approve', 'bob')).toMatchObject({ accepted: true });
  return (await handle.result()) as FailbackResult;
}

const position = async (instance: string) => ((await rowsOn(config, instance, 'SELECT @@gtid_binlog_pos AS p')) as { p: string }[])[0]!.p;
const readOnly = async (instance: string) => Number(((await rowsOn(config, instance, 'SELECT @@read_only AS r')) as { r: number }[])[0]!.r) === 1;

async function fingerprintOf(instance: string, table: string) {
  const conn = await connect(instanceEndpoint(config, 'orders', instance));
  try {
    return await fingerprint(conn, table);
  } finally {
    conn.destroy();
  }
}

describe('failback', () => {
  it('after an emergency failover: the old primary restarted writable is made read-only first, rejoins, has 0 differences, and the switch back loses no acknowledged write', async () => {
    const before = new WriteLoad(config, 'orders', 'orders-a');
    before.start();
    await eventually('writes acknowledged on orders-a', async () => before.acks.length >= 200, 60_000);
    // Stopped just before the crash and replicated: then no acknowledged write can be lost by
    // asynchronous replication, and the old primary holds nothing errant (that case is tested below).
    await before.stop();
    const last = await position('orders-a');
    for (const r of ['orders-b', 'orders-c']) await rowsOn(config, r, `SELECT MASTER_GTID_WAIT('${last}', 60)`);
    await sandbox.killInstance('orders-a');

    const { result: fo } = await runFailover(client, taskQueue, { mode: 'emergency', reason: 'orders-a died' });
    expect(fo.status).toBe('succeeded');
    const promoted = fo.plan.to.instance;
    const after = new WriteLoad(config, 'orders', promoted, 2, 1_000_000);
    after.start();
    await eventually('writes on the new primary', async () => after.acks.length >= 100, 60_000);

    // The old primary comes back with read_only=0 in its config: writable.
    const a = sandbox.instance('orders-a');
    a.extraCnf = ['read_only=OFF'];
    await sandbox.startInstance(a);
    a.extraCnf = undefined;
    expect(await readOnly('orders-a')).toBe(false);
    const sync = await withControl(config, (c) => listSyncStatus(c, 'orders'));
    expect(sync.find((r) => r.region === 'region-a')).toMatchObject({ status: 'needs_failback', instance: 'orders-a' });

    const handle = await startFailback({ instance: 'orders-a', switchBack: true });
    const pending = await pendingApproval(handle);
    // Read-only before anything else, long before the approval.
    expect(await readOnly('orders-a')).toBe(true);
    expect(pending.steps.map((s) => s.name).filter((n) => n !== 'load policy')[0]).toBe('fence returning instance');
    expect(pending.details.failback).toMatchObject({ method: 'rejoin', primary: promoted, errant: 0 });
    // Four-eyes: the requester may not approve.
    expect(await decide(handle, 'approve', 'carol')).toMatchObject({ accepted: false });
    const result = await approveAndWait(handle);
    expect(result).toMatchObject({ status: 'succeeded', method: 'rejoin', wasWritable: true, primaryBefore: promoted, primaryAfter: 'orders-a', consistency: { differences: 0 } });
    expect(result.consistency!.rowsCompared).toBeGreaterThanOrEqual(before.acks.length + 100);

    await eventually('writes through the switched-back primary', async () => after.acks.some((x) => x.instance === 'orders-a') && after.acks.filter((x) => x.instance === 'orders-a').length >= 50, 60_000);
    await after.stop();
    expect(await shape(config)).toMatchObject({ primary: 'orders-a', writable: ['orders-a'], sources: { 'orders-a': null, 'orders-b': 'orders-a', 'orders-c': 'orders-a' } });
    expect(await before.missingOn('orders-a')).toEqual([]);
    expect(await after.missingOn('orders-a')).toEqual([]);
    // The test's own truth: every copy's rows, fingerprinted independently of the engine.
    const last2 = await position('orders-a');
    for (const r of ['orders-b', 'orders-c']) await rowsOn(config, r, `SELECT MASTER_GTID_WAIT('${last2}', 60)`);
    const truth = await fingerprintOf('orders-a', 'loadtest.acks');
    expect(truth!.rows).toBe(before.acks.length + after.acks.length);
    for (const r of ['orders-b', 'orders-c']) expect(await fingerprintOf(r, 'loadtest.acks')).toEqual(truth);

    const log = (await stepLog(config, handle.workflowId)).filter((r) => r.status === 'succeeded').map((r) => r.step);
    expect(log).toEqual(expect.arrayContaining(['fence returning instance', 'errant analysis', 'decide', 'rejoin', 'catch up', 'consistency check', 'compare-and-swap primary (switch back)', 'promote returning instance', 'switch traffic', 'verify', 'record']));
    const rows = await withControl(config, (c) => listSyncStatus(c, 'orders'));
    expect(rows.find((r) => r.region === 'region-a')).toMatchObject({ status: 'primary', instance: 'orders-a' });
  }, 360_000);

  it('a failover while the failback waits for approval: the switch back is refused and the failback changes nothing', async () => {
    // orders-b leaves the topology (replicating from nobody, read-only), as a returning member does.
    await sql(config, 'orders-b', 'STOP SLAVE', 'RESET SLAVE ALL');
    const handle = await startFailback({ instance: 'orders-b', switchBack: true });
    await pendingApproval(handle);
    const { result: fo } = await runFailover(client, taskQueue, { mode: 'planned', target: 'orders-c', reason: 'maintenance of orders-a' });
    expect(fo.status).toBe('succeeded');
    // (The failover repoints every replica it finds, orders-b included: its doing, not the failback's.)
    const afterFailover = await shape(config);

    await decide(handle, 'approve', 'bob');
    const err = await handle.result().catch((e) => e);
    expect(err).toBeInstanceOf(WorkflowFailedError);
    expect(err.cause.message).toMatch(/compare-and-swap primary.*no longer orders-a/);
    const log = (await stepLog(config, handle.workflowId)).map((r) => r.step);
    expect(log).not.toContain('rejoin');
    expect(log).not.toContain('fence old primary');
    expect(log).not.toContain('hand over writes');
    expect(await shape(config)).toEqual(afterFailover);
    expect((await stateOf(handle).catch(() => undefined))?.details.failback).toBeDefined();
  }, 240_000);

  it('writes made directly on an isolated instance are errant: found, exported, shown; a rejoin is refused and changes nothing; flashback undoes them and it rejoins with 0 differences', async () => {
    // Row 1 exists everywhere (the cases above wrote it; alone, this case writes it), then orders-b
    // is isolated again and takes writes directly, as the engine's admin (SUPER passes read_only).
    const current = (await shape(config)).primary!;
    await sql(config, current, "INSERT IGNORE INTO loadtest.acks VALUES (1, 'seed', NOW(6))");
    await rowsOn(config, 'orders-b', `SELECT MASTER_GTID_WAIT('${await position(current)}', 60)`);
    await sql(
      config,
      'orders-b',
      'STOP SLAVE',
      'RESET SLAVE ALL',
      "INSERT INTO loadtest.acks VALUES (900001, 'errant', NOW(6)), (900002, 'errant', NOW(6))",
      "UPDATE loadtest.acks SET via = 'errant-update' WHERE id = 1",
    );
    const dry = await startFailback({ instance: 'orders-b', dryRun: true });
    const shown = (await dry.result()) as FailbackResult;
    expect(shown).toMatchObject({ status: 'dry_run', method: 'flashback' });
    expect(shown.analysis.errant).toHaveLength(2);
    expect(shown.analysis.errant[0]).toMatchObject({ tables: ['loadtest.acks'], statement: expect.stringMatching(/^INSERT INTO loadtest.acks VALUES \(900001/) });
    expect(shown.analysis.errant[1]).toMatchObject({ statement: expect.stringMatching(/^UPDATE loadtest.acks SET via = 'errant-update'/) });
    const files = shown.analysis.export!;
    expect(files.dir).toBe(join(config.backupDir, 'orders', 'failback', dry.workflowId.replace('failback-orders-', '')));
    const readable = readFileSync(files.sql, 'utf8');
    for (const e of shown.analysis.errant) expect(readable).toContain(e.gtid);
    expect(readable).toMatch(/### INSERT INTO `loadtest`.`acks`[\s\S]*900001/);
    expect(readable).toMatch(/### UPDATE `loadtest`.`acks`[\s\S]*errant-update/);
    expect(readFileSync(files.binlog, 'utf8')).toMatch(/BINLOG '/);
    expect(existsSync(files.json)).toBe(true);

    const before = await shape(config);
    const positionB = await position('orders-b');
    const refused = await startFailback({ instance: 'orders-b', method: 'rejoin' });
    const err = await refused.result().catch((e) => e);
    expect(err).toBeInstanceOf(WorkflowFailedError);
    expect(err.cause.message).toMatch(/--method rejoin refused: 2 errant transaction\(s\)/);
    expect(await shape(config)).toEqual(before);
    expect(await position('orders-b')).toBe(positionB);
    expect(Number((await rowsOn(config, 'orders-b', 'SELECT COUNT(*) AS n FROM loadtest.acks WHERE id BETWEEN 900001 AND 900002'))[0]!.n)).toBe(2);

    // The primary writes on meanwhile: its sequence numbers pass the errant ones, so orders-b can
    // rejoin only if the errant GTIDs left its binlog state (gtid_strict_mode refuses them otherwise).
    const primary = before.primary!;
    await sql(config, primary, ...Array.from({ length: 5 }, (_, i) => `INSERT INTO loadtest.acks VALUES (${910001 + i}, 'primary meanwhile', NOW(6))`));
    const handle = await startFailback({ instance: 'orders-b' });
    const flashed = await approveAndWait(handle);
    expect(flashed).toMatchObject({ status: 'succeeded', method: 'flashback', primaryAfter: primary, consistency: { differences: 0 } });
    expect(flashed.analysis.errant.map((e) => e.gtid)).toEqual(shown.analysis.errant.map((e) => e.gtid));
    const undo = (await stepLog(config, handle.workflowId)).filter((r) => r.status === 'succeeded').map((r) => r.step);
    expect(undo).toEqual(expect.arrayContaining(['undo errant transactions', 'rejoin', 'catch up', 'consistency check', 'record']));
    expect((await shape(config)).sources['orders-b']).toBe(primary);
    await rowsOn(config, 'orders-b', `SELECT MASTER_GTID_WAIT('${await position(primary)}', 60)`);
    // Its GTID history is the primary's: no errant or undo GTID is left in it.
    expect(await position('orders-b')).toBe(await position(primary));
    const state = String(((await rowsOn(config, 'orders-b', 'SELECT @@gtid_binlog_state AS s')) as { s: string }[])[0]!.s);
    for (const e of shown.analysis.errant) expect(state.split(',')).not.toContain(e.gtid);
    expect(Number((await rowsOn(config, 'orders-b', "SELECT COUNT(*) AS n FROM loadtest.acks WHERE id BETWEEN 900001 AND 900002 OR via = 'errant-update'"))[0]!.n)).toBe(0);
    // The test's own truth, not the engine's digest: the rows of both, fingerprinted here.
    const truth = await fingerprintOf(primary, 'loadtest.acks');
    expect(truth!.rows).toBeGreaterThan(5);
    expect(await fingerprintOf('orders-b', 'loadtest.acks')).toEqual(truth);
    // The export still holds what was undone.
    expect(readFileSync(files.sql, 'utf8')).toMatch(/900001/);

    // DDL is errant too, and no flashback can undo it: a reseed is what auto decides.
    await sql(config, 'orders-b', 'STOP SLAVE', 'RESET SLAVE ALL', 'CREATE TABLE loadtest.errant_ddl (id INT PRIMARY KEY)');
    const ddl = (await (await startFailback({ instance: 'orders-b', dryRun: true })).result()) as FailbackResult;
    expect(ddl).toMatchObject({ status: 'dry_run', method: 'reseed-logical', why: expect.stringMatching(/is DDL/) });
    expect(ddl.analysis.errant.map((e) => e.statement)).toContainEqual(expect.stringMatching(/CREATE TABLE loadtest.errant_ddl/));
  }, 300_000);

  it('sandbox up after a restart takes the primary from the writer endpoint, keeps the returned member read-only and names its failback', async () => {
    // As the last case left it: orders-c the primary (the writer endpoint says so), orders-b isolated.
    const before = await shape(config);
    expect(before).toMatchObject({ primary: 'orders-c', sources: { 'orders-b': null } });
    await sandbox.down();
    const said: string[] = [];
    await new Sandbox(config, (l) => said.push(l)).up();
    expect(said).toContain('orders-b needs failback: runbook failback orders --instance orders-b');
    expect(await shape(config)).toMatchObject({ primary: 'orders-c', writable: ['orders-c'], sources: { 'orders-b': null } });
  });

  it('errant DDL: reseed-logical rebuilds the instance from a healthy replica\'s dump, the export holds the DDL, 0 differences', async () => {
    // As the cases above leave it (or made so here): orders-b isolated, with errant DDL, while the primary writes on.
    const primary = (await shape(config)).primary!;
    await sql(config, 'orders-b', 'STOP SLAVE', 'RESET SLAVE ALL', 'CREATE TABLE IF NOT EXISTS loadtest.errant_ddl (id INT PRIMARY KEY)', 'ALTER TABLE loadtest.errant_ddl ADD COLUMN note VARCHAR(20)', "INSERT INTO loadtest.acks VALUES (920001, 'errant', NOW(6))");
    await sql(config, primary, 'CREATE TABLE IF NOT EXISTS loadtest.more (id INT PRIMARY KEY, v VARCHAR(64))', 'INSERT INTO loadtest.more SELECT seq, \'while b was away\' FROM mysql.seq_1_to_3000 ON DUPLICATE KEY UPDATE v = VALUES(v)');
    const handle = await startFailback({ instance: 'orders-b' });
    const pending = await pendingApproval(handle);
    expect(pending.details.failback).toMatchObject({ method: 'reseed-logical' });
    const result = await approveAndWait(handle);
    expect(result).toMatchObject({ status: 'succeeded', method: 'reseed-logical', primaryAfter: primary, consistency: { differences: 0 } });
    expect(result.analysis.errant.map((e) => e.statement)).toContainEqual(expect.stringMatching(/ALTER TABLE loadtest.errant_ddl ADD COLUMN note/));
    // The export holds the DDL it threw away.
    const exported = readFileSync(result.analysis.export!.sql, 'utf8');
    expect(exported).toMatch(/ALTER TABLE loadtest.errant_ddl ADD COLUMN note/);
    expect(exported).toMatch(/920001/);
    const state = await stateOf(handle);
    expect(state.steps.find((x) => x.name === 'reseed (logical)')?.status).toBe('succeeded');
    expect(existsSync(join(config.backupDir, 'orders', 'failback', 'reseeding-orders-b.json'))).toBe(false);

    await rowsOn(config, 'orders-b', `SELECT MASTER_GTID_WAIT('${await position(primary)}', 60)`);
    expect((await shape(config)).sources['orders-b']).toBe(primary);
    expect(await readOnly('orders-b')).toBe(true);
    // Its GTID state is the primary's (its binlog started afresh: what it applied since, if anything).
    expect(String((await rowsOn(config, 'orders-b', 'SELECT @@gtid_current_pos AS p'))[0]!.p)).toBe(await position(primary));
    expect(Number((await rowsOn(config, 'orders-b', "SELECT COUNT(*) AS n FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'loadtest' AND TABLE_NAME = 'errant_ddl'"))[0]!.n)).toBe(0);
    // The test's own truth: both tables' rows fingerprinted here.
    for (const table of ['loadtest.acks', 'loadtest.more']) {
      const truth = await fingerprintOf(primary, table);
      if (table === 'loadtest.more') expect(truth!.rows).toBeGreaterThanOrEqual(3000);
      expect(await fingerprintOf('orders-b', table)).toEqual(truth);
    }
  }, 360_000);
});
