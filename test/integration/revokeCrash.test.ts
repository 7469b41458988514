/**
 * The revoke runbook with the real worker process SIGKILLed (issue #14's idempotency): in the
 * middle of the KILL sweep, after its first KILL and before the rest; and inside the REVOKE on the
 * primary, after the statements ran and before the completion was reported. Another worker
 * finishes the run: every affected session ends exactly once, an untargeted one survives, the
 * REVOKE is in the binlog once, and every step is logged once.
 */
import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { RunbookConfig } from '../../src/config/load';
import type { Sandbox } from '../../src/adapters/mariadbd/sandbox';
import type { RevokeInput, RevokeResult } from '../../src/workflows/revoke';
import { activityRuns, stepLog } from '../support/failover';
import { closeLogins, connectionIdOf, login, replicated as waitReplicated, sessionAlive } from '../support/grants';
import { eventually, startTestSandbox } from '../support/sandbox';
import { rowsOn, sql } from '../support/stack';
import { killWorkerProcesses, startWorkerProcess } from '../support/workerProcess';

const taskQueue = `revoke-crash-${process.pid}`;
let config: RunbookConfig;
let sandbox: Sandbox;
let client: Client;

/** A session of `user` that ran USE hr. */
async function session(instance: string, user: string): Promise<{ instance: string; id: number }> {
  const c = await login(config, instance, user);
  await c.query('USE hr');
  return { instance, id: await connectionIdOf(c) };
}
const alive = (s: { instance: string; id: number }) => sessionAlive(config, s.instance, s.id);
const replicated = () => waitReplicated(config);
const input = (over: Partial<RevokeInput>): RevokeInput => ({ cluster: 'orders', objects: ['hr.patients'], requester: 'alice', reason: 'crash test', incidentId: 'INC-RVC', ...over });

beforeAll(async () => {
  ({ config, sandbox } = await startTestSandbox('revoke-crash', 29520, (doc) => {
    doc.clusters.orders.approval.revoke = { default: { mode: 'auto' } };
  }));
  client = new Client({ connection: await Connection.connect({ address: inject('temporalAddress') }) });
  await sql(
    config,
    'orders-a',
    'CREATE DATABASE hr',
    'CREATE TABLE hr.patients (id INT PRIMARY KEY)',
    'CREATE TABLE hr.salaries (id INT PRIMARY KEY)',
    "CREATE USER k1@'%' IDENTIFIED BY 'pw'",
    "CREATE USER k2@'%' IDENTIFIED BY 'pw'",
    "CREATE USER keep@'%' IDENTIFIED BY 'pw'",
    "CREATE USER j1@'%' IDENTIFIED BY 'pw'",
    "GRANT SELECT ON hr.* TO k1@'%'",
    "GRANT SELECT ON hr.* TO k2@'%'",
    "GRANT SELECT ON hr.salaries TO keep@'%'",
    "GRANT SELECT ON hr.salaries TO j1@'%'",
  );
  await replicated();
}, 120_000);

afterAll(async () => {
  killWorkerProcesses();
  closeLogins();
  await client?.connection.close();
  await sandbox?.destroy();
});

describe('revoke with the worker SIGKILLed', () => {
  it('in the middle of the KILL sweep: the run finishes, each affected session is ended once, an untargeted one survives, every step is logged once', async () => {
    const onPrimary = [await session('orders-a', 'k1'), await session('orders-a', 'k1'), await session('orders-a', 'k2')];
    const onReplicas = [await session('orders-b', 'k1'), await session('orders-c', 'k2')];
    const keep = await session('orders-a', 'keep');
    const doomed = await startWorkerProcess(config, taskQueue, { CRASH_DURING_ACTIVITY: 'endSessions' });
    const handle = await client.workflow.start('revoke', { taskQueue, workflowId: `revoke-crash-sweep-${process.pid}`, args: [input({ accounts: 'k%' })] });
    await Promise.race([doomed.exited, handle.result().then((r) => Promise.reject(new Error(`run ended before the crash: ${JSON.stringify(r)}`)))]);
    expect(doomed.proc.signalCode).toBe('SIGKILL');
    // Mid-sweep: one session of orders-a ended by the first KILL, the others still there.
    const firstKilled = await eventually('the first KILL to take effect', async () => {
      const gone = [];
      for (const s of onPrimary) if (!(await alive(s))) gone.push(s.id);
      return gone.length ? gone : undefined;
    });
    expect(firstKilled).toHaveLength(1);
    for (const s of onReplicas) expect(await alive(s)).toBe(true);

    await startWorkerProcess(config, taskQueue);
    const result = (await handle.result()) as RevokeResult;
    expect(result.status).toBe('succeeded');
    for (const s of [...onPrimary, ...onReplicas]) expect(await alive(s)).toBe(false);
    expect(await alive(keep)).toBe(true);

    const sweeps = await activityRuns(handle, 'endSessions');
    expect(sweeps.map((r) => r.input.instance)).toEqual(['orders-a', 'orders-b', 'orders-c']);
    const a = sweeps[0]!;
    expect(a.attempt).toBe(2);
    const killedByRetry = a.result.killed.map((s: { id: number }) => s.id);
    expect(a.result.alreadyGone).toEqual(firstKilled);
    expect(killedByRetry.filter((id: number) => firstKilled.includes(id))).toEqual([]); // nobody killed twice
    expect([...killedByRetry, ...firstKilled].sort()).toEqual(onPrimary.map((s) => s.id).sort());
    expect(sweeps[1]!.result.killed.map((s: { id: number }) => s.id)).toEqual([onReplicas[0]!.id]);
    expect(sweeps[2]!.result.killed.map((s: { id: number }) => s.id)).toEqual([onReplicas[1]!.id]);

    const log = await stepLog(config, handle.workflowId);
    const keys = log.map((r) => `${r.seq}:${r.status}`);
    expect(new Set(keys).size).toBe(keys.length);
    for (const step of ['assess', 'snapshot', 'revoke on orders-a', 'apply on orders-b', 'end sessions on orders-a', 'end sessions on orders-b', 'verify containment', 'record']) {
      expect(log.filter((r) => r.step === step).map((r) => r.status)).toEqual(['started', 'succeeded']);
    }
  });

  it('inside the REVOKE on the primary, after it ran and before it was reported: the retry finds it applied and runs nothing; the REVOKE is binlogged once', async () => {
    const revokes = async () => (await rowsOn(config, 'orders-a', 'SHOW BINLOG EVENTS')).filter((e) => /REVOKE SELECT ON `hr`\.`salaries` FROM `j1`/.test(String(e.Info))).length;
    expect(await revokes()).toBe(0);
    // Its own task queue: the first case's surviving worker must not pick this run up.
    const queue = `${taskQueue}-apply`;
    const doomed = await startWorkerProcess(config, queue, { CRASH_INSIDE_ACTIVITY: 'applyGrantChanges', CRASH_INSIDE_WHEN: '{"instance":"orders-a"}' });
    const handle = await client.workflow.start('revoke', { taskQueue: queue, workflowId: `revoke-crash-apply-${process.pid}`, args: [input({ objects: ['hr.salaries'], accounts: 'j1', incidentId: 'INC-RVC2' })] });
    await Promise.race([doomed.exited, handle.result().then((r) => Promise.reject(new Error(`run ended before the crash: ${JSON.stringify(r)}`)))]);
    expect(doomed.proc.signalCode).toBe('SIGKILL');
    expect(await revokes()).toBe(1); // made before the crash

    await startWorkerProcess(config, queue);
    const result = (await handle.result()) as RevokeResult;
    expect(result.status).toBe('succeeded');
    const applies = (await activityRuns(handle, 'applyGrantChanges')).filter((r) => r.input.instance === 'orders-a');
    expect(applies).toHaveLength(1);
    expect(applies[0]).toMatchObject({ attempt: 2, result: { executed: [] } });
    expect(await revokes()).toBe(1);
    await replicated();
    for (const i of ['orders-a', 'orders-b', 'orders-c']) {
      expect((await rowsOn(config, i, "SHOW GRANTS FOR j1@'%'")).map((r) => String(Object.values(r)[0])).join('\n')).not.toMatch(/salaries/);
      expect((await rowsOn(config, i, "SHOW GRANTS FOR keep@'%'")).map((r) => String(Object.values(r)[0])).join('\n')).toMatch(/salaries/);
    }
    const log = await stepLog(config, handle.workflowId);
    expect(log.filter((r) => r.step === 'revoke on orders-a').map((r) => r.status)).toEqual(['started', 'succeeded']);
  });
});
