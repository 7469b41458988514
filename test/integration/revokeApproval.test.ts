/**
 * `runbook revoke` as an operator types it, under the cluster's default policy (a human approves,
 * four-eyes): the approval shows every statement per server; a rejected run changes nothing; an
 * account exposed through a global grant under --accounts is refused before anyone is asked; an
 * approved run without --lock contains without locking.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Notifier } from '../../src/activities/notify';
import type { RunbookConfig } from '../../src/config/load';
import { migrateControl } from '../../src/adapters/control/store';
import type { Sandbox } from '../../src/adapters/mariadbd/sandbox';
import type { RunbookNotification } from '../../src/core/notifications';
import type { RevokeResult } from '../../src/workflows/revoke';
import { waitForApprovalRequest } from '../support/failover';
import { closeLogins, errnoOf, grantsOn as grantsOnInstance, login, replicated } from '../support/grants';
import { eventually, startTestSandbox } from '../support/sandbox';
import { sql, startInProcessWorker, type InProcessWorker } from '../support/stack';

const exec = promisify(execFile);
const taskQueue = `revoke-approval-${process.pid}`;
const INSTANCES = ['orders-a', 'orders-b', 'orders-c'];
let config: RunbookConfig;
let sandbox: Sandbox;
let stack: InProcessWorker;
const notices: RunbookNotification[] = [];
const capture: Notifier = { name: 'capture', send: async (n) => void notices.push(n) };

async function runbook(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await exec('bin/runbook', ['--config', config.files[0]!, ...args], {
      env: { ...process.env, NO_COLOR: '1', TEMPORAL_ADDRESS: inject('temporalAddress'), RUNBOOK_TASK_QUEUE: taskQueue },
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}
const grantsOn = (instance: string) => grantsOnInstance(config, instance);
const session = (instance: string, user: string) => login(config, instance, user);
const errno = errnoOf;

beforeAll(async () => {
  ({ config, sandbox } = await startTestSandbox('revoke-approval', 29530));
  await migrateControl(config);
  stack = await startInProcessWorker(config, taskQueue, { notifiers: [capture] });
  await sql(
    config,
    'orders-a',
    'CREATE DATABASE hr',
    'CREATE TABLE hr.patients (id INT PRIMARY KEY)',
    "CREATE USER staff_1@'%' IDENTIFIED BY 'pw'",
    "CREATE USER dba_1@'%' IDENTIFIED BY 'pw'",
    "GRANT SELECT ON hr.* TO staff_1@'%'",
    "GRANT SELECT ON *.* TO dba_1@'%'",
  );
  await replicated(config);
}, 120_000);

afterAll(async () => {
  closeLogins();
  await stack?.stop();
  await sandbox?.destroy();
});

describe('runbook revoke, approved by a human', () => {
  it('the approval shows every statement per server; rejected, nothing changes', async () => {
    const before = await Promise.all(INSTANCES.map(grantsOn));
    const live = await session('orders-b', 'staff_1');
    await live.query('USE hr');
    const started = await runbook('revoke', 'orders', '--object', 'hr.patients', '--accounts', 'staff%', '--lock', '--reason', 'hr opened by mistake', '--as', 'alice', '--incident', 'INC-RVA', '--detach', '--json');
    expect(started.code).toBe(0);
    const { workflowId } = JSON.parse(started.stdout);
    expect(workflowId).toBe('revoke-orders-INC-RVA');
    const handle = stack.client.workflow.getHandle(workflowId);
    const state = await waitForApprovalRequest(handle);
    expect((state.details.revoke as { containPlan: { replicated: unknown[] } }).containPlan.replicated).toEqual([
      { grantee: 'staff_1@%', statements: ['REVOKE SELECT ON `hr`.* FROM `staff_1`@`%`', 'ALTER USER `staff_1`@`%` ACCOUNT LOCK'] },
    ]);
    const asked = await eventually('the approval notice', async () => notices.find((n) => n.workflowId === workflowId && n.kind === 'approval-needed'));
    expect(asked.plan).toContain('- on orders-a (binlogged: every replica applies it through replication):\n  - `REVOKE SELECT ON `hr`.* FROM `staff_1`@`%`;`\n  - `ALTER USER `staff_1`@`%` ACCOUNT LOCK;`');
    expect(asked.plan).toMatch(/- orders-b: `KILL CONNECTION \d+` \(#\d+ staff_1@127\.0\.0\.1 in hr/);
    // Four-eyes: the requester cannot approve; bob rejects.
    expect((await runbook('approve', workflowId, '--as', 'alice')).code).toBe(1);
    expect((await runbook('reject', workflowId, '--as', 'bob')).code).toBe(0);
    expect(((await handle.result()) as RevokeResult).status).toBe('rejected');
    expect(await Promise.all(INSTANCES.map(grantsOn))).toEqual(before);
    expect((await live.query('SELECT 1 FROM patients'))[0]).toBeDefined();
  });

  it('an account exposed through a global grant under --accounts is refused before anyone is asked', async () => {
    const out = await runbook('revoke', 'orders', '--object', 'hr.patients', '--accounts', '%_1', '--reason', 'r', '--as', 'alice', '--incident', 'INC-RVG');
    expect(out.code).toBe(1);
    expect(out.stderr).toMatch(/dba_1@% is exposed through a global grant \(SELECT direct on \*\.\* \(global\)\): narrowing \*\.\* would change its access to every database/);
    expect(notices.some((n) => n.workflowId === 'revoke-orders-INC-RVG' && n.kind === 'approval-needed')).toBe(false);
  });

  it('approved, without --lock: contained and not locked; the CLI prints what it did', async () => {
    const run = runbook('revoke', 'orders', '--object', 'hr.patients', '--accounts', 'staff%', '--reason', 'hr opened by mistake', '--as', 'alice', '--incident', 'INC-RVOK');
    await waitForApprovalRequest(stack.client.workflow.getHandle('revoke-orders-INC-RVOK'));
    expect((await runbook('approve', 'revoke-orders-INC-RVOK', '--as', 'bob')).code).toBe(0);
    const out = await run;
    expect(out.code).toBe(0);
    expect(out.stdout).toContain('succeeded: 1 account(s) contained: staff_1@%');
    expect(out.stdout).toMatch(/snapshot: .*revoke\/INC-RVOK\/snapshot\.json \(undo: runbook revoke orders --undo INC-RVOK/);
    for (const i of INSTANCES) {
      const c = await session(i, 'staff_1'); // not locked: it logs in
      expect(await errno(c.query('SELECT 1 FROM hr.patients'))).toBe(1142);
      expect((await grantsOn(i))['staff_1@%']!.locked).toBe(false);
    }
  });
});
