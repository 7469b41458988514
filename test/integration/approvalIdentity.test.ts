/**
 * Who decides, through which channel, and with which config: the `runbook` CLI as an operator
 * types it, against a real worker, dev server and sandbox whose cluster does NOT allow declared
 * identities (production's default). A CLI user is the person their OS login is (people[].login);
 * a `--as` naming someone else is refused; a run's approval channels are its policy; a CLI given
 * a config the worker does not run is refused before the run does anything.
 */
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { WorkflowHandle } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import YAML from 'yaml';
import type { RunbookConfig } from '../../src/config/load';
import { failoverHistory, migrateControl, withControl } from '../../src/adapters/control/store';
import type { Sandbox } from '../../src/adapters/mariadbd/sandbox';
import type { AwaitApprovalInput } from '../fixtures/workflows';
import { waitForApprovalRequest } from '../support/failover';
import { startTestSandbox } from '../support/sandbox';
import { startInProcessWorker, type InProcessWorker } from '../support/stack';

const exec = promisify(execFile);
const taskQueue = `approval-identity-${process.pid}`;
const login = userInfo().username; // who runs these tests: the OS login the CLI reports
let config: RunbookConfig;
let sandbox: Sandbox;
let stack: InProcessWorker;
let counter = 0;

beforeAll(async () => {
  ({ config, sandbox } = await startTestSandbox('approval-identity', 27000, (doc) => {
    const orders = doc.clusters.orders;
    delete orders.cliIdentity; // the default: identities come from OS logins
    orders.people = [
      { name: 'alice', slack: 'U0ALICE', login: 'alice' },
      { name: 'bob', slack: 'U0BOB', login },
      { name: 'carol', slack: 'U0CAROL', login: 'carol' },
    ];
    orders.approval.failover.planned = { mode: 'required', approvers: ['alice', 'bob'], fourEyes: true, timeoutMinutes: 5 };
    orders.approval.drill = { slackonly: { mode: 'required', approvers: ['alice', 'bob'], channels: ['slack'] } };
  }));
  await migrateControl(config);
  stack = await startInProcessWorker(config, taskQueue, { workflowsPath: fileURLToPath(new URL('../fixtures/workflows.ts', import.meta.url)) });
});

afterAll(async () => {
  await stack?.stop();
  await sandbox?.destroy();
});

async function runbook(args: string[], opts: { configFile?: string; temporal?: string } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await exec('bin/runbook', ['--config', opts.configFile ?? config.files[0]!, ...args], {
      env: { ...process.env, NO_COLOR: '1', TEMPORAL_ADDRESS: opts.temporal ?? inject('temporalAddress'), RUNBOOK_TASK_QUEUE: taskQueue },
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

async function awaitingApproval(input: Omit<AwaitApprovalInput, 'cluster'>): Promise<WorkflowHandle> {
  const handle = await stack.client.workflow.start('awaitApproval', {
    taskQueue,
    workflowId: `approval-identity-${Date.now()}-${++counter}`,
    args: [{ cluster: 'orders', ...input } satisfies AwaitApprovalInput],
  });
  await waitForApprovalRequest(handle);
  return handle;
}

const decisionRows = async (workflowId: string) =>
  (await withControl(config, (c) => failoverHistory(c, { workflowId, pageSize: 100 }))).filter((r) => r.step !== 'runbook' && ['approved', 'rejected', 'refused'].includes(r.status)).reverse();

describe('CLI identities come from the OS login', () => {
  it('a --as naming someone else is refused, four-eyes holds against the login, and the decision records channel and verified identity', async () => {
    const byCarol = await awaitingApproval({ requester: 'carol', runbook: 'failover', mode: 'planned' });
    const impostor = await runbook(['approve', byCarol.workflowId, '--as', 'alice']);
    expect(impostor.code).toBe(1);
    expect(impostor.stderr.trim()).toBe(`runbook: approve refused: --as alice is not who you are: OS login ${login} is bob (people[].login)`);

    const approved = await runbook(['approve', byCarol.workflowId]);
    expect(approved.stdout.trim()).toBe(`approved ${byCarol.workflowId} as bob (os-login)`);
    expect(await byCarol.result()).toBe('approved');
    expect((await decisionRows(byCarol.workflowId)).map((r) => [r.status, r.step, r.detail])).toEqual([
      ['refused', `approve by login ${login} via cli`, expect.objectContaining({ channel: 'cli', login, declared: 'alice', reason: expect.stringContaining('is not who you are') })],
      ['approved', 'approve by bob via cli', expect.objectContaining({ approver: 'bob', channel: 'cli', verifiedBy: 'os-login', login })],
    ]);

    // bob asks: the login that requested may not approve, under any name; it may call its run off.
    const byBob = await awaitingApproval({ requester: 'bob', runbook: 'failover', mode: 'planned' });
    expect((await runbook(['approve', byBob.workflowId])).stderr.trim()).toBe('runbook: approve refused: four-eyes: bob requested this run and may not approve it');
    expect((await runbook(['approve', byBob.workflowId, '--as', 'alice'])).stderr.trim()).toContain('--as alice is not who you are');
    expect((await runbook(['reject', byBob.workflowId])).code).toBe(0);
    expect(await byBob.result()).toBe('rejected');

    // A decision on a run that is over says how it ended, not that the run is unknown.
    const late = await runbook(['approve', byBob.workflowId]);
    expect(late.code).toBe(1);
    expect(late.stderr.trim()).toBe(`runbook: approve refused: ${byBob.workflowId} is over: it ended rejected`);
  });

  it("a run's approval channels are its policy: a CLI decision on a Slack-only approval is refused and logged", async () => {
    const handle = await awaitingApproval({ requester: 'carol', runbook: 'drill', mode: 'slackonly' });
    const out = await runbook(['approve', handle.workflowId]);
    expect(out.stderr.trim()).toBe('runbook: approve refused: cli is not an approval channel of this run (slack)');
    // A name no column can hold, sent past every edge: refused, logged cut to fit, and the trail goes on.
    await handle.signal('approve', { approver: 'm'.repeat(200), channel: 'slack' });
    await handle.signal('reject', { approver: 'alice', channel: 'slack' });
    expect(await handle.result()).toBe('rejected');
    const rows = await decisionRows(handle.workflowId);
    expect(rows.map((r) => [r.status, (r.detail as { reason?: string }).reason])).toEqual([
      ['refused', 'cli is not an approval channel of this run (slack)'],
      ['refused', 'approver is 200 characters long; at most 64'],
      ['rejected', undefined],
    ]);
    expect(rows[1]!.step).toBe(`approve by ${'m'.repeat(64 - 12)}…[truncated] via slack`);
  });

  it("a run is started only for the person the operator's OS login is", async () => {
    // No Temporal answers here: the refusal must come before anything starts.
    const out = await runbook(['failover', 'orders', '--reason', 'not me', '--as', 'alice', '--dry-run'], { temporal: '127.0.0.1:1' });
    expect(out.code).toBe(1);
    expect(out.stderr.trim()).toBe(`runbook: --as alice is not who you are: OS login ${login} is bob (people[].login)`);
  });
});

describe('the config the CLI was given', () => {
  it('is refused before the run does anything when the worker runs another one; the same one goes through', async () => {
    const doc = YAML.parse(readFileSync(config.files[0]!, 'utf8'));
    doc.clusters.orders.thresholds.maxLagSeconds = 60; // another policy than the worker's
    const other = join(dirname(config.files[0]!), 'other.yaml');
    writeFileSync(other, YAML.stringify(doc));

    const refused = await runbook(['failover', 'orders', '--reason', 'other config', '--as', 'bob', '--dry-run', '--incident', `CFG-${Date.now()}`], { configFile: other });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/failed: step "check config" failed \(precondition\): the CLI's config \(sha256:[0-9a-f]{16}\) is not the worker's \(sha256:[0-9a-f]{16}, .*sandbox\.yaml\)/);
    expect(refused.stderr).not.toContain('preflight');

    const same = await runbook(['failover', 'orders', '--reason', 'same config', '--as', 'bob', '--dry-run', '--incident', `CFG-${Date.now()}-same`]);
    expect(same.code).toBe(0);
    expect(same.stderr).toContain("check config succeeded");
  });
});
