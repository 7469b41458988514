/**
 * Hooks and the worker's secrets, end to end: the real worker process runs with a Slack token, an
 * SMTP password, a link-signing key and the cluster's database passwords in its environment, and
 * a planned switchover runs traffic hooks that print their environment, print a password their
 * config hands them, and print the sandbox's password file. No secret may be found in the real
 * workflow history, in failover_log, in the worker's log, or in what Slack and email were sent.
 */
import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { resolve } from 'node:path';
import type { RunbookConfig } from '../../src/config/load';
import { failoverHistory, withControl } from '../../src/adapters/control/store';
import type { Sandbox } from '../../src/adapters/mariadbd/sandbox';
import type { FailoverResult } from '../../src/workflows/failover';
import { startFailover } from '../support/failover';
import { FakeSlack } from '../support/fakeSlack';
import { startTestSandbox } from '../support/sandbox';
import { startSmtp, type TestSmtp } from '../support/smtp';
import { killWorkerProcesses, startWorkerProcess, type WorkerChild } from '../support/workerProcess';

const taskQueue = `hook-secrets-${process.pid}`;
const SECRETS = {
  SLACK_BOT_TOKEN: 'xoxb-hook-test-slack-token-5121',
  SLACK_SIGNING_SECRET: 'slack-signing-secret-hook-test-77',
  SMTP_PASSWORD: 'smtp-password-hook-test-9034',
  RUNBOOK_LINK_SIGNING_KEY: 'link-signing-key-for-the-hook-test-0123456789',
  PROXY_ADMIN_PASSWORD: 'proxy-admin-password-hook-test-42',
};
let config: RunbookConfig;
let sandbox: Sandbox;
let client: Client;
let slack: FakeSlack;
let smtp: TestSmtp;
let worker: WorkerChild;
/** Prints the sandbox's database passwords, one `pw <value>` a line. */
const passwords = `sed -n 's/^[A-Z_]*=/pw /p' ${resolve('runbooks/sandbox.env')}`;

beforeAll(async () => {
  ({ config, sandbox } = await startTestSandbox('hook-secrets', 27500, (doc) => {
    doc.clusters.orders.traffic = {
      hooks: [
        { name: 'print-env', command: 'env; env >&2', timeoutSeconds: 10 },
        // Its config hands it one secret on purpose; what it prints of it must still be redacted.
        { name: 'proxy', command: 'echo "proxy login admin:$PROXY_ADMIN_PASSWORD"', timeoutSeconds: 10, env: ['PROXY_ADMIN_PASSWORD'] },
        // Reads the passwords from a file and fails: stdout, stderr and the failure message all hold them.
        { name: 'leaky', command: `${passwords}; ${passwords} >&2; exit 3`, timeoutSeconds: 10, onFailure: 'continue' },
      ],
    };
  }));
  client = new Client({ connection: await Connection.connect({ address: inject('temporalAddress') }) });
  slack = new FakeSlack(SECRETS.SLACK_BOT_TOKEN);
  const { url } = await slack.start();
  smtp = await startSmtp();
  worker = await startWorkerProcess(config, taskQueue, {
    ...SECRETS,
    SLACK_API_URL: url,
    SMTP_HOST: '127.0.0.1',
    SMTP_PORT: String(smtp.port),
    SMTP_USER: 'runbooks',
    SMTP_ALLOW_INSECURE: 'true', // the loopback relay has no TLS
    SMTP_FROM: 'runbooks@example.test',
    RUNBOOK_PUBLIC_URL: 'https://runbooks.example.test',
    RUNBOOK_LOG_LEVEL: 'INFO',
  });
});

afterAll(async () => {
  killWorkerProcesses();
  await client?.connection.close();
  await slack?.stop();
  await smtp?.close();
  await sandbox?.destroy();
});

/** Every string in a history, payloads decoded (they are JSON bytes). */
function textOf(value: unknown, out: string[] = []): string[] {
  if (value instanceof Uint8Array) out.push(Buffer.from(value).toString('utf8'));
  else if (typeof value === 'string') out.push(value);
  else if (Array.isArray(value)) for (const v of value) textOf(v, out);
  else if (value && typeof value === 'object') for (const v of Object.values(value)) textOf(v, out);
  return out;
}

describe('hooks and secrets', () => {
  let handle: WorkflowHandle;

  it('a switchover runs the hooks; they see none of the worker secrets they were not given', async () => {
    handle = await startFailover(client, taskQueue, { target: 'orders-b', reason: 'hook secrets' });
    expect(((await handle.result()) as FailoverResult).status).toBe('succeeded');
    const history = textOf((await handle.fetchHistory()).events).join('\n');
    // The hooks really ran, and their output is in history: that is what is checked below.
    expect(history).toContain('RUNBOOK_NEW_INSTANCE=orders-b');
    expect(history).toContain('proxy login admin:***');
    expect(history).toContain(String.raw`pw ***\npw ***\npw ***\n`); // payloads are JSON: newlines escaped
    // The environment a hook got: none of the worker's secrets by name either.
    expect(history).not.toMatch(/SLACK_BOT_TOKEN=|SMTP_PASSWORD=|RUNBOOK_LINK_SIGNING_KEY=|RUNBOOK_CONTROL_PASSWORD=|SLACK_SIGNING_SECRET=/);
  });

  it('no secret value anywhere: history, failover_log, the worker log, Slack, email', async () => {
    const secrets = [...Object.values(SECRETS), process.env.ORDERS_ADMIN_PASSWORD!, process.env.ORDERS_REPL_PASSWORD!, process.env.RUNBOOK_CONTROL_PASSWORD!];
    const rows = await withControl(config, (c) => failoverHistory(c, { workflowId: handle.workflowId, pageSize: 500 }));
    expect(JSON.stringify(rows)).toContain('leaky FAILED'); // the hooks' results are logged
    const places = {
      history: textOf((await handle.fetchHistory()).events).join('\n'),
      failover_log: JSON.stringify(rows),
      'worker log': worker.output(),
      slack: JSON.stringify(slack.calls.map((c) => c.body)),
      email: smtp.received.map((r) => `${r.mail.subject}\n${r.mail.text}\n${r.mail.html}`).join('\n'),
    };
    expect(places.slack.length).toBeGreaterThan(100);
    expect(places.email.length).toBeGreaterThan(100);
    for (const [where, text] of Object.entries(places)) {
      for (const secret of secrets) expect(text.includes(secret), `${where} holds ${secret.slice(0, 6)}…`).toBe(false);
    }
  });
});
