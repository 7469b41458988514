/**
 * Approvals through Slack and email, end to end: a real worker and dev server, the real sandbox, a
 * local Slack Web API, a local SMTP server and the approval endpoint. A planned failover approved by
 * a signed Slack click; forged, stale, replayed, unknown and self approvals refused and logged while
 * the run keeps waiting; and a failover approved through an emailed link while Slack answers errors.
 */
import { WebClient } from '@slack/web-api';
import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { RunbookConfig } from '../../src/config/load';
import { failoverHistory, migrateControl, withControl } from '../../src/adapters/control/store';
import { EmailNotifier } from '../../src/adapters/notify/email';
import { signApprovalToken } from '../../src/adapters/notify/links';
import { SlackNotifier } from '../../src/adapters/notify/slack';
import type { Sandbox } from '../../src/adapters/mariadbd/sandbox';
import { startApprovalServer, type ApprovalServer } from '../../src/server/approvalServer';
import type { FailoverResult } from '../../src/workflows/failover';
import { FakeSlack } from '../support/fakeSlack';
import { shape, startFailover, stateOf, waitForApprovalRequest } from '../support/failover';
import { eventually, startTestSandbox } from '../support/sandbox';
import { postClick, signedClick, signedRequest } from '../support/slackInteraction';
import { startSmtp, type TestSmtp } from '../support/smtp';
import { startInProcessWorker, type InProcessWorker } from '../support/stack';

const SECRET = 'test-slack-signing-secret';
const KEY = 'test-link-signing-key-0123456789abcdef';
const taskQueue = `approval-channels-${process.pid}`;
let config: RunbookConfig;
let sandbox: Sandbox;
let slack: FakeSlack;
let smtp: TestSmtp;
let server: ApprovalServer;
let serverClient: Client;
let stack: InProcessWorker;
let startWorker: () => Promise<InProcessWorker>;

beforeAll(async () => {
  ({ config, sandbox } = await startTestSandbox('approval-channels', 25100, (doc) => {
    doc.clusters.orders.approval.failover.planned = { mode: 'required', approvers: ['alice', 'bob'], fourEyes: true, timeoutMinutes: 5 };
  }));
  await migrateControl(config);
  slack = new FakeSlack();
  const { url: slackUrl } = await slack.start();
  smtp = await startSmtp();
  serverClient = new Client({ connection: await Connection.connect({ address: inject('temporalAddress') }) });
  server = await startApprovalServer({
    config,
    client: serverClient,
    slackSigningSecret: SECRET,
    slack: new WebClient(slack.token, { slackApiUrl: slackUrl }),
    linkKey: KEY,
    log: () => {},
  });
  startWorker = () =>
    startInProcessWorker(config, taskQueue, {
      notifiers: [
        new SlackNotifier({ config, token: slack.token, apiUrl: slackUrl, retries: 1, maxRetryTimeMs: 1000, timeoutMs: 2000 }),
        new EmailNotifier({ config, transport: { host: '127.0.0.1', port: smtp.port, secure: false, ignoreTLS: true }, from: 'runbooks@example.test', linkKey: KEY, publicUrl: server.url }),
      ],
    });
  stack = await startWorker();
});

afterAll(async () => {
  await stack?.stop();
  await server?.close();
  await serverClient?.connection.close();
  await slack?.stop();
  await smtp?.close();
  await sandbox?.destroy();
});

/** The root message of a run, once it carries the Approve / Reject buttons. */
async function rootWithButtons(workflowId: string) {
  return eventually('Slack root message with buttons', async () =>
    slack.calls.find(
      (c) => (c.method === 'chat.postMessage' || c.method === 'chat.update') && c.answer === 'ok' && JSON.stringify(c.body.blocks ?? []).includes(workflowId) && JSON.stringify(c.body.blocks).includes('runbook_approve'),
    ),
  );
}

const click = (userId: string, actionId: 'runbook_approve' | 'runbook_reject', workflowId: string, over: { secret?: string; timestamp?: number } = {}) =>
  signedClick({ secret: over.secret ?? SECRET, userId, actionId, workflowId, timestamp: over.timestamp });

const ephemeralFor = (userId: string) => slack.calls.filter((c) => c.method === 'chat.postEphemeral' && c.body.user === userId).map((c) => String(c.body.text));

/** Why the endpoint refused, from its own rows and from its per-source counts. */
async function endpointReasons(sinceId = 0): Promise<string[]> {
  const [rows] = await withControl(config, (c) => c.query("SELECT detail FROM failover_log WHERE status = 'refused' AND runbook = 'approval-endpoint' AND id > ? ORDER BY id", [sinceId]));
  return (rows as { detail: { reason?: string; reasons?: Record<string, number> } }[]).flatMap((r) =>
    r.detail.reason ? [r.detail.reason] : Object.keys(r.detail.reasons ?? {}).map((k) => k.replace(/^\w+: /, '')),
  );
}

const lastLogId = async () => Number((((await withControl(config, (c) => c.query('SELECT COALESCE(MAX(id), 0) AS id FROM failover_log')))[0] as { id: number }[])[0]!.id));

const refusedRows = async (workflowId: string) =>
  (await withControl(config, (c) => failoverHistory(c, { workflowId, pageSize: 200 }))).filter((r) => r.status === 'refused');

describe('approval through Slack', () => {
  it('a planned failover approved by a click in Slack', async () => {
    const handle = await startFailover(stack.client, taskQueue, { requester: 'carol', reason: 'slack approval' });
    const root = await rootWithButtons(handle.workflowId);
    expect(['#db-incidents', 'C0DBINCIDENTS']).toContain(root.body.channel);

    // No worker can take the decision now: the click is acknowledged all the same, without waiting
    // for a verdict (Slack wants its answer within 3 s); the verdict follows once a worker runs.
    await stack.stop();
    const answer = await postClick(server.url, click('U0BOB', 'runbook_approve', handle.workflowId));
    expect(answer.status).toBe(200);
    expect(ephemeralFor('U0BOB')).toEqual([]);
    stack = await startWorker();
    expect(((await stack.client.workflow.getHandle(handle.workflowId).result()) as FailoverResult).status).toBe('succeeded');
    await eventually('ephemeral verdict', async () => ephemeralFor('U0BOB').length > 0);
    expect(ephemeralFor('U0BOB')).toEqual(['Recorded: approved by bob.']);

    // The root was updated in place, each step went to its thread, the summary came last.
    const ts = (await eventually('root ts', async () => slack.calls.find((c) => c.method === 'chat.postMessage' && !c.body.thread_ts && c.answer === 'ok'))).body;
    const updates = slack.calls.filter((c) => c.method === 'chat.update');
    expect(updates.length).toBeGreaterThan(3);
    const replies = await eventually('summary reply', async () => {
      const r = slack.calls.filter((c) => c.method === 'chat.postMessage' && c.body.thread_ts);
      return JSON.stringify(r.at(-1)?.body ?? {}).includes('verify') && r.length > 5 ? r : undefined;
    });
    expect(replies.some((r) => JSON.stringify(r.body).includes('hand over writes'))).toBe(true);
    expect(JSON.stringify(updates.at(-1)!.body.blocks)).not.toContain('runbook_approve'); // buttons gone
    expect(ts.channel).toBe('#db-incidents');

    const approved = (await withControl(config, (c) => failoverHistory(c, { workflowId: handle.workflowId, pageSize: 200 }))).find((r) => r.status === 'approved');
    expect(approved).toMatchObject({ step: 'approve by bob via slack', detail: { approver: 'bob', channel: 'slack' } });
  });

  it('refuses forged, stale, replayed, unknown-user and self approvals, logs each, and the run keeps waiting', async () => {
    const handle = await startFailover(stack.client, taskQueue, { requester: 'carol', reason: 'refusals' });
    await rootWithButtons(handle.workflowId);
    const before = await shape(config);

    expect((await postClick(server.url, click('U0BOB', 'runbook_approve', handle.workflowId, { secret: 'not-the-secret' }))).status).toBe(401);
    expect((await postClick(server.url, click('U0BOB', 'runbook_approve', handle.workflowId, { timestamp: Math.floor(Date.now() / 1000) - 600 }))).status).toBe(401);
    const stranger = click('U0MALLORY', 'runbook_approve', handle.workflowId);
    expect((await postClick(server.url, stranger)).status).toBe(200);
    expect((await postClick(server.url, stranger)).status).toBe(409); // the same signed request again
    expect((await postClick(server.url, click('U0CAROL', 'runbook_approve', handle.workflowId))).status).toBe(200);

    await eventually('ephemeral refusals', async () => ephemeralFor('U0MALLORY').length > 0 && ephemeralFor('U0CAROL').length > 0);
    expect(ephemeralFor('U0MALLORY')).toEqual(["Not recorded: Slack user U0MALLORY is not one of orders's people."]);
    expect(ephemeralFor('U0CAROL')).toEqual(['Not recorded: four-eyes: carol requested this run and may not approve it.']);
    expect(((await stateOf(handle)).details.approval as { status: string }).status).toBe('pending');
    expect(await shape(config)).toEqual(before);

    // Signed, fresh requests each have their row; the rest are counted on their source's row of the minute.
    const reasons = await eventually('every refusal logged', async () => {
      const r = await endpointReasons();
      const all = ['bad signature', "Slack user U0MALLORY is not one of orders's people", 'replayed request', 'four-eyes: carol requested this run and may not approve it', 'stale request: timestamp is more than 5 minutes off'];
      return all.every((x) => r.includes(x)) ? r : undefined;
    });
    expect(reasons).toContain('bad signature');
    expect((await refusedRows(handle.workflowId)).map((r) => (r.detail as { reason: string }).reason)).toContain('four-eyes: carol requested this run and may not approve it');

    expect((await postClick(server.url, click('U0ALICE', 'runbook_reject', handle.workflowId))).status).toBe(200);
    expect(((await handle.result()) as FailoverResult).status).toBe('rejected');
    expect(await shape(config)).toEqual(before);
  });
});

describe('approval through an emailed link', () => {
  it('approves a failover from the link while Slack answers errors; the link is single-use', async () => {
    slack.down(true);
    try {
      const handle = await startFailover(stack.client, taskQueue, { requester: 'carol', reason: 'slack is down' });
      await waitForApprovalRequest(handle);
      const mail = await eventually('approval mail to bob', async () =>
        smtp.received.find((m) => m.envelopeTo.includes('bob@example.com') && String(m.mail.subject).startsWith('[APPROVAL NEEDED]') && String(m.mail.text).includes(handle.workflowId)),
      );
      const approveLink = /https?:\/\/\S+\/approve\/[A-Za-z0-9_.-]+/.exec(String(mail.mail.text))![0];
      const rejectLink = [...String(mail.mail.text).matchAll(/https?:\/\/\S+\/approve\/[A-Za-z0-9_.-]+/g)].map((m) => m[0]).find((l) => l !== approveLink)!;

      // A GET only shows the confirmation page: mail scanners follow links.
      const confirm = await fetch(approveLink);
      expect(confirm.status).toBe(200);
      expect(await confirm.text()).toMatch(/<form method="post">.*Approve/s);
      expect(((await stateOf(handle)).details.approval as { status: string }).status).toBe('pending');

      const done = await fetch(approveLink, { method: 'POST' });
      expect(done.status).toBe(200);
      expect(await done.text()).toContain('Recorded for');
      expect(((await handle.result()) as FailoverResult).status).toBe('succeeded');

      expect((await fetch(approveLink, { method: 'POST' })).status).toBe(410); // used
      expect((await fetch(rejectLink, { method: 'POST' })).status).toBe(409); // valid link, but the run is decided
      const token = approveLink.split('/approve/')[1]!;
      const tampered = `${token.slice(0, -2)}${token.endsWith('A') ? 'BB' : 'AA'}`;
      expect((await fetch(`${server.url}/approve/${tampered}`)).status).toBe(400);
      const expired = signApprovalToken({ workflowId: handle.workflowId, decision: 'approve', approver: 'bob', expiresAt: Date.now() - 1000, nonce: 'expired-nonce' }, KEY);
      expect((await fetch(`${server.url}/approve/${expired}`)).status).toBe(410);

      const rows = await withControl(config, (c) => failoverHistory(c, { workflowId: handle.workflowId, pageSize: 200 }));
      expect(rows.find((r) => r.status === 'approved')).toMatchObject({ step: 'approve by bob via email' });
      expect(rows.filter((r) => r.status === 'notify_failed').length).toBeGreaterThan(0); // Slack's failures, logged
    } finally {
      slack.down(false);
    }
  });
});

describe('the endpoint under hostile traffic', () => {
  it('refusals that prove nothing are rate-limited per source and counted: one row per source per minute, not one per request', async () => {
    const before = await lastLogId();
    const own = await startApprovalServer({ config, client: serverClient, slackSigningSecret: SECRET, linkKey: KEY, log: () => {} });
    const statuses: number[] = [];
    try {
      for (let i = 0; i < 100; i++) statuses.push((await postClick(own.url, click('U0BOB', 'runbook_approve', 'failover-orders-x', { secret: 'not-the-secret' }))).status);
    } finally {
      await own.close(); // writes the last counts
    }
    expect(new Set(statuses)).toEqual(new Set([401, 429])); // a source past its share is answered at once
    const [rows] = await withControl(config, (c) => c.query("SELECT step, detail FROM failover_log WHERE runbook = 'approval-endpoint' AND id > ? ORDER BY id", [before]));
    const counted = rows as { step: string; detail: { source: string; count: number; reasons: Record<string, number> } }[];
    expect(counted.length).toBeLessThanOrEqual(2); // one per minute: two if the minute turned meanwhile
    expect(counted.every((r) => r.step === 'requests refused from 127.0.0.1' && r.detail.source === '127.0.0.1')).toBe(true);
    expect(counted.reduce((n, r) => n + r.detail.count, 0)).toBe(100);
    expect(Object.keys(Object.assign({}, ...counted.map((r) => r.detail.reasons)))).toEqual(expect.arrayContaining(['slack: bad signature', 'slack: rate limited']));
  });

  it('a signed request that is refused is audited on its own row, whatever was wrong with it; a finished run is reported as finished', async () => {
    const before = await lastLogId();
    const malformed = await postClick(server.url, signedRequest(SECRET, 'payload=%7Bnot-json'));
    expect(malformed.status).toBe(400);
    expect(malformed.text.trim()).toBe('malformed payload: not the JSON of a Slack interaction');

    expect((await postClick(server.url, click('U0BOB', 'runbook_approve', 'failover-orders-NO-SUCH-RUN'))).status).toBe(200);
    const handle = await startFailover(stack.client, taskQueue, { requester: 'carol', reason: 'finished run' });
    await rootWithButtons(handle.workflowId);
    expect((await postClick(server.url, click('U0ALICE', 'runbook_reject', handle.workflowId))).status).toBe(200);
    expect(((await handle.result()) as FailoverResult).status).toBe('rejected');
    expect((await postClick(server.url, click('U0BOB', 'runbook_approve', handle.workflowId))).status).toBe(200);

    const reasons = await eventually('the three refusals on their own rows', async () => {
      const r = await endpointReasons(before);
      return r.length >= 3 ? r : undefined;
    });
    expect(reasons).toEqual([
      'malformed payload: not the JSON of a Slack interaction',
      'no runbook failover-orders-NO-SUCH-RUN',
      `${handle.workflowId} is over: it ended rejected`,
    ]);
    await eventually('ephemeral verdicts', async () => ephemeralFor('U0BOB').some((t) => t.includes('is over')));
    expect(ephemeralFor('U0BOB')).toEqual(expect.arrayContaining(['Not recorded: no runbook failover-orders-NO-SUCH-RUN.', `Not recorded: ${handle.workflowId} is over: it ended rejected.`]));
  });

  it('a body too large is answered 413, not a reset connection', async () => {
    const res = await fetch(`${server.url}/slack/interactions`, { method: 'POST', body: 'x'.repeat(4 * 1024 * 1024), headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    expect(res.status).toBe(413);
    expect((await res.text()).trim()).toBe('request body too large (over 262144 bytes)');
  });
});
