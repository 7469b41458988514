/**
 * Continuous binlog archiving against the real sandbox and a real worker process: the primary's
 * binlogs are archived as it writes them (only whole transactions, byte for byte what the server
 * wrote once a file is closed), a restore finds an event written after the last backup, a worker
 * SIGKILLed mid-stream resumes without losing or doubling a byte, a planned failover is followed
 * to the new primary, and once archiving stops a restore target past the archive's end is refused
 * with how far behind the primary the archive is.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { archiveStatus } from '../../src/cli/actions/archive';
import type { RunbookConfig } from '../../src/config/load';
import type { BinlogArchiveEntry } from '../../src/core/manifest';
import { Sandbox } from '../../src/adapters/mariadbd/sandbox';
import { binlogArchiveWorkflowId } from '../../src/workflows/binlogArchive';
import type { RestoreInput, RestoreResult } from '../../src/workflows/restore';
import { runFailover, stepLog } from '../support/failover';
import { eventually, startTestSandbox } from '../support/sandbox';
import { rowsOn, sql } from '../support/stack';
import { killWorkerProcesses, startWorkerProcess, type WorkerChild } from '../support/workerProcess';

const BASE = 28100;
const taskQueue = `binlog-archive-${process.pid}`;
let config: RunbookConfig;
let sandbox: Sandbox;
let client: Client;
let worker: WorkerChild;

const position = async (instance: string) => String((await rowsOn(config, instance, 'SELECT @@gtid_binlog_pos AS p'))[0]!.p);
const archiveIndex = (instance: string): BinlogArchiveEntry[] => JSON.parse(readFileSync(join(config.backupDir, 'orders/binlogs', instance, 'index.json'), 'utf8')) as BinlogArchiveEntry[];
const serverBinlog = (instance: string, file: string) => join(sandbox.instances.find((i) => i.name === instance)!.dir, 'binlog', file);
const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');
/** The archiver reports the primary's last transaction as archived. */
const caughtUp = (primary: string) =>
  eventually(`the archive to reach ${primary}'s position`, async () => {
    const s = await archiveStatus('orders', client);
    const at = await position(primary);
    return s.progress?.primary === primary && s.progress.lagSeconds === 0 && at.endsWith(`-${s.progress.archivedTo?.split('-').pop()}`) ? s : undefined;
  }, 60_000);
const restore = (over: Partial<RestoreInput>, id: string) =>
  client.workflow.execute('restore', {
    taskQueue,
    workflowId: `${id}-${Date.now()}`,
    args: [{ cluster: 'orders', target: { kind: 'gtid', gtid: '0-0-0' }, requester: 'alice', reason: 'archive test', incidentId: id, dryRun: true, ...over } satisfies RestoreInput],
  }) as Promise<RestoreResult>;
const failureOf = (p: Promise<unknown>) => p.then((r) => `no failure: ${JSON.stringify(r)}`, (e: { cause?: Error }) => e.cause?.message ?? String(e));

beforeAll(async () => {
  ({ config, sandbox } = await startTestSandbox('binlog-archive', BASE));
  client = new Client({ connection: await Connection.connect({ address: inject('temporalAddress') }) });
  worker = await startWorkerProcess(config, taskQueue);
  await sql(config, 'orders-a', 'CREATE DATABASE shop', 'CREATE TABLE shop.items (id INT PRIMARY KEY, v VARCHAR(40))', 'CREATE TABLE shop.gone (id INT PRIMARY KEY)', 'INSERT INTO shop.gone VALUES (1)');
  await client.workflow.execute('backup', { taskQueue, workflowId: `archive-backup-${Date.now()}`, args: [{ cluster: 'orders', instance: 'orders-a', kind: 'logical', requester: 'alice' }] });
  await client.workflow.start('binlogArchive', { taskQueue, workflowId: binlogArchiveWorkflowId('orders'), args: [{ cluster: 'orders', requester: 'alice' }] });
}, 180_000);

afterAll(async () => {
  await client?.workflow.getHandle(binlogArchiveWorkflowId('orders')).terminate().catch(() => undefined);
  killWorkerProcesses();
  await client?.connection.close();
  await sandbox?.destroy();
});

describe('continuous binlog archiving', () => {
  it("archives the primary's transactions as they are written, and a closed file byte for byte", async () => {
    for (let i = 1; i <= 50; i++) await sql(config, 'orders-a', `INSERT INTO shop.items VALUES (${i}, 'item ${i}')`);
    const s = await caughtUp('orders-a');
    expect(s.status).toBe('RUNNING');
    const current = archiveIndex('orders-a').at(-1)!;
    expect(current.complete).toBe(false);
    await sql(config, 'orders-a', 'FLUSH BINARY LOGS');
    // Once the server closes the file, the archive's copy is that file, byte for byte.
    await eventually('the rotated file archived whole', async () => archiveIndex('orders-a').find((e) => e.file === current.file)?.complete);
    const closed = archiveIndex('orders-a').find((e) => e.file === current.file)!;
    expect(closed.sha256).toBe(sha256(serverBinlog('orders-a', current.file)));
    expect(sha256(join(config.backupDir, 'orders/binlogs/orders-a', current.file))).toBe(closed.sha256);
  });

  it('a restore finds an event written after the last backup (it used to say "0 events match")', async () => {
    await sql(config, 'orders-a', 'DROP TABLE shop.gone');
    await caughtUp('orders-a');
    const result = await restore({ target: { kind: 'before-event', event: { table: 'shop.gone', statement: '^DROP TABLE' } }, skip: true }, 'INC-ARCH-DROP');
    expect(result.status).toBe('dry_run');
    expect(result.target.event!.statements).toEqual(['DROP TABLE `shop`.`gone`']);
  });

  it('a worker SIGKILLed while streaming: archiving resumes where the archive ends, nothing lost or doubled', async () => {
    worker.proc.kill('SIGKILL');
    await worker.exited;
    for (let i = 51; i <= 80; i++) await sql(config, 'orders-a', `INSERT INTO shop.items VALUES (${i}, 'while no worker ran')`);
    worker = await startWorkerProcess(config, taskQueue);
    await caughtUp('orders-a');
    const file = archiveIndex('orders-a').at(-1)!.file;
    await sql(config, 'orders-a', 'FLUSH BINARY LOGS');
    await eventually('the resumed file archived whole', async () => archiveIndex('orders-a').find((e) => e.file === file)?.complete);
    expect(archiveIndex('orders-a').find((e) => e.file === file)!.sha256).toBe(sha256(serverBinlog('orders-a', file)));
  });

  it('follows a planned switchover to the new primary, and the audit shows each primary archived', async () => {
    const { result } = await runFailover(client, taskQueue, { mode: 'planned', target: 'orders-b', requester: 'carol' });
    expect(result.status).toBe('succeeded');
    await sql(config, 'orders-b', "INSERT INTO shop.items VALUES (1000, 'on the new primary')");
    await caughtUp('orders-b');
    const steps = (await stepLog(config, binlogArchiveWorkflowId('orders'))).filter((r) => r.step === "archive the primary's binlogs");
    expect(steps.map((r) => r.status)).toEqual(expect.arrayContaining(['started', 'succeeded', 'started']));
  });

  it("stopped: a target past the archive's end is refused with how far behind the primary it is", async () => {
    await client.workflow.getHandle(binlogArchiveWorkflowId('orders')).cancel();
    await eventually('archiving stopped', async () => (await archiveStatus('orders', client)).status === 'CANCELLED');
    await sql(config, 'orders-b', "INSERT INTO shop.items VALUES (1001, 'not archived')", 'DROP TABLE shop.items');
    const now = new Date(Date.now() + 1000).toISOString();
    expect(await failureOf(restore({ target: { kind: 'time', at: now } }, 'INC-ARCH-LATE'))).toMatch(
      /^step "locate target" failed \(precondition\): \S+ is after the end of the archive: the archive ends at \S+ \(0-\d+-\d+\); \d+ s behind the primary orders-b, which is 2 transaction\(s\) further \(at 0-\d+-\d+\)\. Recovery would stop at the archive's end/,
    );
    const late = await restore({ target: { kind: 'time', at: now, confirmLate: true } }, 'INC-ARCH-LATE-OK');
    expect(late.target.warnings).toEqual([expect.stringMatching(/^the time asked for is after the end of the archive .*as confirmed \(--confirm-late\)$/)]);
    expect(await failureOf(restore({ target: { kind: 'before-event', event: { table: 'shop.items', statement: '^DROP' } }, skip: true }, 'INC-ARCH-MISSING'))).toMatch(
      /^step "locate target" failed \(precondition\): no archived event matches, and the archive ends at .*behind the primary orders-b.*: the event may not be archived yet; archive the newer binlogs \(runbook archive start orders --as <your name>, or a backup\), then try again/,
    );
  });
});
