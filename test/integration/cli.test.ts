/** The `runbook` command as an operator types it: human output, --json, one-line errors. */
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { insertAuditRows, migrateControl, withControl } from '../../src/adapters/control/store';
import { eventually, startTestSandbox, testPort } from '../support/sandbox';
import { startFailover } from '../support/failover';
import { startInProcessWorker } from '../support/stack';
import type { RunbookConfig } from '../../src/config/load';
import type { Sandbox } from '../../src/adapters/mariadbd/sandbox';

const exec = promisify(execFile);
let config: RunbookConfig;
let sandbox: Sandbox;

async function runbook(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return runbookWith({}, ...args);
}

async function runbookWith(env: Record<string, string>, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await exec('bin/runbook', ['--config', config.files[0]!, ...args], {
      env: { ...process.env, NO_COLOR: '1', TEMPORAL_ADDRESS: inject('temporalAddress'), ...env },
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

beforeAll(async () => {
  ({ config, sandbox } = await startTestSandbox('cli', 24500));
  await migrateControl(config);
});
afterAll(() => sandbox?.destroy());

describe('runbook CLI', () => {
  it('topology shows the live roles; --json is the same view for scripts', async () => {
    const human = await runbook('topology', 'orders');
    expect(human.code).toBe(0);
    expect(human.stdout).toContain('cluster orders: primary orders-a');
    expect(human.stdout).toMatch(new RegExp(String.raw`orders-b\s*│ region-b\s*│ 127\.0\.0\.1:${testPort(24502)} │ replica\s*│ ON`));
    const json = JSON.parse((await runbook('topology', 'orders', '--json')).stdout);
    expect(json.primary).toBe('orders-a');
    expect(json.instances.map((i: { instance: string; role: string }) => `${i.instance}:${i.role}`)).toEqual(['orders-a:primary', 'orders-b:replica', 'orders-c:replica']);
  });

  it('log pages failover_log newest first, filtered by incident', async () => {
    await withControl(config, (c) =>
      insertAuditRows(
        c,
        Array.from({ length: 5 }, (_, i) => ({
          workflowId: 'wf-cli', runId: 'r1', runbook: 'failover', cluster: 'orders', incidentId: 'INC-CLI',
          step: `step-${i}`, stepSeq: i + 1, status: 'succeeded' as const, at: Date.UTC(2026, 0, 1, 0, 0, i),
        })),
      ),
    );
    const page2 = JSON.parse((await runbook('log', '--incident', 'INC-CLI', '--page', '2', '--page-size', '2', '--json')).stdout);
    expect(page2.map((r: { step: string }) => r.step)).toEqual(['step-2', 'step-1']);
    const human = await runbook('log', '--cluster', 'orders');
    expect(human.stdout.indexOf('step-4')).toBeLessThan(human.stdout.indexOf('step-0'));
  });

  it('unlock releases a lock left by a run that is over, and logs who did it', async () => {
    await withControl(config, (c) => c.query("INSERT INTO runbook_lock (cluster, workflow_id, runbook, operator) VALUES ('orders', 'failover-orders-GONE', 'failover', 'dave')"));
    expect((await runbook('unlock', 'orders', '--as', 'alice')).stdout.trim()).toBe("released orders's lock (held by failover-orders-GONE)");
    expect((await runbook('unlock', 'orders', '--as', 'alice')).stdout.trim()).toBe('orders is not locked');
    const rows = JSON.parse((await runbook('log', '--cluster', 'orders', '--page-size', '1', '--json')).stdout);
    expect(rows[0]).toMatchObject({ status: 'unlocked', operator: 'alice', workflow_id: 'failover-orders-GONE' });
  });

  it('unlock refuses while the holding run is still going (it is the lock that keeps two runbooks apart); --force releases it', async () => {
    const client = new Client({ connection: await Connection.connect({ address: inject('temporalAddress') }) });
    // A run no worker picks up: it stays RUNNING, as a failover waiting for approval would.
    const live = await client.workflow.start('healthCheck', { taskQueue: `nobody-${process.pid}`, workflowId: `failover-orders-LIVE-${Date.now()}`, args: [{}] });
    try {
      await withControl(config, (c) => c.query("INSERT INTO runbook_lock (cluster, workflow_id, runbook, operator) VALUES ('orders', ?, 'failover', 'dave')", [live.workflowId]));
      const refused = await runbook('unlock', 'orders', '--as', 'alice');
      expect(refused.code).toBe(1);
      expect(refused.stderr.trim()).toBe(
        `runbook: orders's lock is held by ${live.workflowId} (healthCheck), which is still running: cancel it, or terminate it in the Temporal UI, first; --force releases the lock anyway`,
      );
      const held = await withControl(config, async (c) => (await c.query('SELECT workflow_id FROM runbook_lock WHERE cluster = ?', ['orders']))[0] as unknown[]);
      expect(held).toEqual([{ workflow_id: live.workflowId }]);
      expect((await runbook('unlock', 'orders', '--as', 'alice', '--force')).stdout.trim()).toBe(`released orders's lock (held by ${live.workflowId})`);
    } finally {
      await live.terminate('test over').catch(() => undefined);
      await client.connection.close();
    }
  });

  it('backup warns at once when no worker polls its task queue, instead of waiting in silence', async () => {
    const taskQueue = `nobody-${process.pid}`;
    // It goes on following the run it started (which waits for a worker): read what it says, then stop it.
    const cli = spawn('bin/runbook', ['--config', config.files[0]!, 'backup', 'orders', '--as', 'alice', '--kind', 'logical'], {
      env: { ...process.env, NO_COLOR: '1', TEMPORAL_ADDRESS: inject('temporalAddress'), RUNBOOK_TASK_QUEUE: taskQueue },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    cli.stderr!.on('data', (d) => (stderr += d));
    const started = await eventually('the warning, then the run it started', async () => {
      const id = /started (backup-orders-\S+)/.exec(stderr)?.[1];
      return id && stderr.includes(`warning: no worker polls task queue "${taskQueue}"; start one with: bin/runbook worker`) ? id : undefined;
    }, 60_000).finally(() => cli.kill('SIGTERM'));
    const client = new Client({ connection: await Connection.connect({ address: inject('temporalAddress') }) });
    await client.workflow.getHandle(started).terminate('test over');
    await client.connection.close();
  });

  it('backup --schedule registers a Temporal Schedule for the backup runbook', async () => {
    const out = await runbook('backup', 'orders', '--as', 'alice', '--kind', 'logical', '--schedule', '30 2 * * *');
    expect(out.stdout.trim()).toBe('schedule backup-orders-logical created: 30 2 * * * (UTC); see it in the Temporal UI under Schedules');
    const client = new Client({ connection: await Connection.connect({ address: inject('temporalAddress') }) });
    try {
      const schedule = client.schedule.getHandle('backup-orders-logical');
      const d = await schedule.describe();
      expect(d.action).toMatchObject({ type: 'startWorkflow', workflowType: 'backup' });
      expect(d.spec.calendars?.[0]).toMatchObject({ hour: [{ start: 2, end: 2, step: 1 }], minute: [{ start: 30, end: 30, step: 1 }] });
      await schedule.delete();
    } finally {
      await client.connection.close();
    }
    expect((await runbook('backup', 'orders', '--as', 'alice', '--kind', 'incremental')).stderr).toContain("argument 'incremental' is invalid");
  });

  it('temporal up refuses a port another Temporal server holds, in one line, instead of reporting it as its own', async () => {
    const taken = inject('temporalAddress').split(':').pop()!;
    const out = await runbook('temporal', 'up', '--port', taken);
    expect(out.code).toBe(1);
    expect(out.stderr.trim()).toBe(`runbook: Temporal dev server: gRPC port ${taken} is already in use by another process`);
    expect(out.stdout).toBe('');
  });

  it('sync-status says when it is empty', async () => {
    const out = await runbook('sync-status');
    expect(out.code).toBe(0);
    expect(out.stdout).toContain('sync_status is empty');
  });

  it.each([
    [['topology', 'billing'], 'runbook: unknown cluster "billing"; known: orders'],
    [['log', '--page', 'two'], 'runbook: --page must be a whole number from 1 to 1000000000, got "two"'],
    [['frobnicate'], "error: unknown command 'frobnicate'"],
  ])('%j fails with one clear line and a non-zero exit', async (args, message) => {
    const out = await runbook(...args);
    expect(out.code).not.toBe(0);
    expect(out.stderr.trim().split('\n')[0]).toBe(message);
    expect(out.stderr.trim().split('\n').length).toBeLessThanOrEqual(2);
  });

  it('follow says when the run cannot be read, and status says what it could not read, one line each, exiting 1', async () => {
    const taskQueue = `nobody-follow-${process.pid}`;
    const incidentId = `FOLLOW-${Date.now()}`;
    // No worker polls this queue: the run is started, but nothing can answer its state query.
    const child = spawn('bin/runbook', ['--config', config.files[0]!, 'failover', 'orders', '--reason', 'follow', '--as', 'alice', '--incident', incidentId], {
      env: { ...process.env, NO_COLOR: '1', TEMPORAL_ADDRESS: inject('temporalAddress'), RUNBOOK_TASK_QUEUE: taskQueue },
    });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const client = new Client({ connection: await Connection.connect({ address: inject('temporalAddress') }) });
    const workflowId = `failover-orders-${incidentId}`;
    try {
      await eventually('follow to report the failing query', async () => /cannot read the run's progress \(state query failed\): .*no worker answered/.test(stderr), 60_000);
      child.kill();

      await sandbox.stopInstance('control');
      const out = await runbook('status', workflowId);
      expect(out.code).toBe(1);
      expect(out.stdout.trim()).toBe(`${workflowId}: RUNNING`);
      const lines = out.stderr.trim().split('\n');
      expect(lines).toHaveLength(2);
      expect(lines[0]).toMatch(/^runbook: cannot query the run's state: .*: no worker answered within 10 s$/);
      expect(lines[1]).toMatch(/^runbook: cannot read failover_log from the control database: \S/);
    } finally {
      child.kill();
      await sandbox.startInstance(sandbox.instance('control'));
      await client.workflow.getHandle(workflowId).terminate('test over').catch(() => undefined);
      await client.connection.close();
    }
  });

  it("status prints the same whether it reads Temporal without its client or, where the connection needs the client (here: gRPC metadata), through it", async () => {
    const worker = await startInProcessWorker(config, `cli-status-${process.pid}`);
    try {
      const handle = await startFailover(worker.client, worker.taskQueue, { dryRun: true, reason: 'status both ways' });
      await handle.result();
      // TEMPORAL_GRPC_META_*: metadata on every call, which only Temporal's client sends.
      const viaClient = { TEMPORAL_GRPC_META_X_RUNBOOK_TEAM: 'dba' };
      for (const args of [['status', handle.workflowId], ['status', handle.workflowId, '--json'], ['status', handle.workflowId, '--wide']]) {
        const quick = await runbook(...args);
        expect(quick.code, quick.stderr).toBe(0);
        expect(await runbookWith(viaClient, ...args)).toEqual(quick);
      }
      expect((await runbook('status', handle.workflowId)).stdout).toMatch(new RegExp(`^${handle.workflowId}: COMPLETED \\(dry_run\\)\n`));
      // A run Temporal does not know: the quick read hands the answer to the client, which words it.
      const missing = ['status', 'failover-orders-NO-SUCH-RUN'];
      const unknown = await runbook(...missing);
      expect([unknown.code, unknown.stdout, unknown.stderr]).toEqual([1, '', 'runbook: no runbook failover-orders-NO-SUCH-RUN\n']);
      expect(await runbookWith(viaClient, ...missing)).toEqual(unknown);
    } finally {
      await worker.stop();
    }
  });

  const long = (n: number) => 'x'.repeat(n);
  const incident = ['failover', 'orders', '--reason', 'r', '--as', 'alice', '--incident'];
  const restore = ['restore', 'orders', '--reason', 'r', '--as', 'alice'];
  it.each([
    [['failover', 'orders', '--reason', long(256), '--as', 'alice'], 'runbook: --reason is 256 characters long; at most 255'],
    [['failover', 'orders', '--reason', 'two\nlines', '--as', 'alice'], 'runbook: --reason holds a control character (a newline, a tab…): one line of text, please'],
    [['flashback', 'orders', '--table', 'shop.users', '--reason', 'r', '--as', long(65)], 'runbook: --as is 65 characters long; at most 64'],
    [[...incident, '../etc'], 'runbook: --incident "../etc" is not an incident id: a letter or digit, then letters, digits, ".", "_" or "-" (at most 64)'],
    [[...incident, 'INC 1'], 'runbook: --incident "INC 1" is not an incident id: a letter or digit, then letters, digits, ".", "_" or "-" (at most 64)'],
    [[...incident, `INC'1"`], `runbook: --incident "INC'1\"" is not an incident id: a letter or digit, then letters, digits, ".", "_" or "-" (at most 64)`],
    [[...incident, long(65)], 'runbook: --incident is 65 characters long; at most 64'],
    [['failover', 'orders', '--reason', 'r', '--as', 'alice', '--to', '../x'], 'runbook: --to "../x" is not a name: a lower-case letter, then letters, digits, "-" or "_"'],
    [[...restore, '--table', 'a; b'], 'runbook: --table must be db.table or a table name (letters, digits, "_" or "$", at most 64 each), got "a; b"'],
    [[...restore, '--gtid', '0-1'], 'runbook: --gtid must be a GTID like 0-23101-4711, got "0-1"'],
    [[...restore, '--gtid', '0-1-99999999999999999999'], 'runbook: --gtid must be a GTID like 0-23101-4711: 0-1-99999999999999999999 is out of range'],
    [['flashback', 'orders', '--event', '0-1-x', '--reason', 'r', '--as', 'alice'], 'runbook: --event must be a GTID like 0-23101-4711, got "0-1-x"'],
    [[...restore, '--table', 'shop.orders', '--compare', 'orders'], 'runbook: --compare must be db.table (letters, digits, "_" or "$", at most 64 each), got "orders"'],
    [['approve', 'failover-orders-X', '--as', long(65)], 'runbook: --as is 65 characters long; at most 64'],
    [['approve', 'failover-orders-X', '--as', 'bob', '--comment', long(300)], 'runbook: --comment is 300 characters long; at most 255'],
    [['unlock', 'orders', '--as', long(65)], 'runbook: --as is 65 characters long; at most 64'],
    [['backup', 'orders', '--as', long(65)], 'runbook: --as is 65 characters long; at most 64'],
    [['log', '--page', '99999999999999999999'], 'runbook: --page must be a whole number from 1 to 1000000000, got "99999999999999999999"'],
    [['log', '--incident', "x' OR '1"], `runbook: --incident "x' OR '1" is not an incident id: a letter or digit, then letters, digits, ".", "_" or "-" (at most 64)`],
  ])('%j is refused in one line before anything starts', async (args, message) => {
    // No Temporal answers here: a command that got as far as starting a run would fail otherwise.
    const out = await runbookWith({ TEMPORAL_ADDRESS: '127.0.0.1:1' }, ...args);
    expect(out.code).toBe(1);
    expect(out.stderr.trim()).toBe(message);
  });

  it('a config error is one line naming the file and field, and changes nothing', async () => {
    const out = await (async () => {
      try {
        await exec('bin/runbook', ['--config', '/nonexistent.yaml', 'sandbox', 'up']);
        return { code: 0, stderr: '' };
      } catch (err) {
        return err as { code: number; stderr: string };
      }
    })();
    expect(out.code).toBe(1);
    expect(out.stderr.trim()).toBe('runbook: /nonexistent.yaml: no such config file or directory');
  });
});
