/**
 * The Slack notifier against a local fake of Slack's Web API: one root message per run, updated in
 * place, thread replies for steps, decisions and the summary; bounded retries when Slack is slow
 * or down; errors that name the method and Slack's code, never the token. No database, no Temporal.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { loadConfig, type RunbookConfig } from '../../src/config/load';
import { buildRootMessage, buildThreadReply, markdownToMrkdwn, SlackNotifier } from '../../src/adapters/notify/slack';
import type { NotifyThread, RunbookNotification, TimelineEntry } from '../../src/core/notifications';
import { FakeSlack, type FakeSlackCall } from '../support/fakeSlack';

const TOKEN = 'xoxb-1234567890-secret-test-token';
const CHANNEL_ID = 'C0DBINCIDENTS';
const WORKFLOW_ID = 'failover-orders-20240101-0001';
const T0 = Date.UTC(2024, 0, 1, 12, 0, 0);

const fake = new FakeSlack(TOKEN);
let apiUrl = '';
const config: RunbookConfig = loadConfig('runbooks/sandbox.yaml', { ...process.env });

function withCluster(change: (cluster: RunbookConfig['clusters'][string]) => void): RunbookConfig {
  const copy = structuredClone(config);
  change(copy.clusters.orders!);
  return copy;
}

const zhConfig = withCluster((c) => {
  c.locale = 'zh-CN';
});

function notifier(opts: Partial<ConstructorParameters<typeof SlackNotifier>[0]> = {}): SlackNotifier {
  return new SlackNotifier({ config, token: TOKEN, apiUrl, retries: 3, maxRetryTimeMs: 10_000, timeoutMs: 2_000, ...opts });
}

const timeline: TimelineEntry[] = [
  { seq: 1, name: 'probe', status: 'succeeded', startedAt: T0, durationMs: 420, note: '3 instances reachable' },
  { seq: 2, name: 'plan', status: 'succeeded', startedAt: T0 + 500, durationMs: 80 },
  { seq: 3, name: 'approval', status: 'approved', startedAt: T0 + 30_000, durationMs: 0, note: 'alice via slack' },
  { seq: 4, name: 'promote', status: 'succeeded', startedAt: T0 + 31_000, durationMs: 1_234, note: 'orders-b is primary' },
  { seq: 5, name: 'repoint', status: 'succeeded', startedAt: T0 + 33_000, durationMs: 61_500 },
];

function notification(kind: RunbookNotification['kind'], extra: Partial<RunbookNotification> = {}): RunbookNotification {
  return {
    kind,
    cluster: 'orders',
    runbook: 'failover',
    workflowId: WORKFLOW_ID,
    incidentId: 'INC-42',
    title: 'failover orders: region-a → region-b (emergency) by carol',
    severity: 'L1',
    requester: 'carol',
    reason: 'region-a <unreachable> & orders lost',
    status: 'waiting for approval',
    plan: '**Emergency failover** of `orders`: `orders-a` → `orders-b`\n- Measured lag: 0 s\n- Risks: none',
    timeline: timeline.slice(0, 2),
    startedAt: T0,
    ...extra,
  };
}

const approval = { approvers: ['alice', 'bob'], fourEyes: true, deadline: T0 + 15 * 60_000, forcedBecause: 'fencing not confirmed' };

function blocksOf(call: FakeSlackCall | undefined): any[] {
  expect(call, 'a recorded call').toBeDefined();
  return call!.body.blocks as any[];
}

function actionsOf(call: FakeSlackCall | undefined): any | undefined {
  return blocksOf(call).find((b) => b.type === 'actions');
}

/** Everything a human can read in a message: fallback text and every string inside its blocks. */
function textOf(call: FakeSlackCall | undefined): string {
  expect(call, 'a recorded call').toBeDefined();
  const strings: string[] = [String(call!.body.text ?? '')];
  const walk = (v: unknown): void => {
    if (typeof v === 'string') strings.push(v);
    else if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === 'object') Object.values(v).forEach(walk);
  };
  walk(call!.body.blocks);
  return strings.join('\n');
}

async function errorOf(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(Error);
    return err as Error;
  }
  throw new Error('expected send to throw');
}

beforeAll(async () => {
  ({ url: apiUrl } = await fake.start());
});

afterAll(async () => {
  await fake.stop();
});

beforeEach(() => {
  fake.reset();
});

describe('SlackNotifier', () => {
  it('posts the root message in the cluster channel with Approve/Reject buttons carrying the workflowId', async () => {
    const thread = await notifier().send(notification('approval-needed', { approval }), {});

    expect(fake.calls.map((c) => c.method)).toEqual(['chat.postMessage']);
    const post = fake.calls[0]!;
    expect(post.body.channel).toBe('#db-incidents');
    expect(post.body.thread_ts).toBeUndefined();
    expect(post.body.text).toContain('failover orders');
    expect(thread).toEqual({ slack: { channel: CHANNEL_ID, ts: expect.stringMatching(/^\d{10}\.\d{6}$/) } });
    expect(fake.messages.has(`${CHANNEL_ID}:${(thread as NotifyThread).slack!.ts}`)).toBe(true);

    const blocks = blocksOf(post);
    expect(blocks[0]).toMatchObject({ type: 'header', text: { type: 'plain_text', text: 'failover orders: region-a → region-b (emergency) by carol' } });
    const fields = blocks.find((b) => b.type === 'section' && b.fields)!.fields.map((f: { text: string }) => f.text);
    expect(fields).toEqual([
      '*Cluster*\norders',
      '*Runbook*\nfailover',
      '*Incident*\nINC-42',
      '*Severity*\n🔴 L1',
      '*Requester*\n<@U0CAROL>',
      '*Reason*\nregion-a &lt;unreachable&gt; &amp; orders lost',
      '*Status*\n✋ waiting for approval',
    ]);
    // Markdown plan rendered as Slack mrkdwn.
    expect(textOf(post)).toContain('*Plan*\n*Emergency failover* of `orders`: `orders-a` → `orders-b`\n• Measured lag: 0 s');

    const actions = actionsOf(post);
    expect(actions.elements).toEqual([
      expect.objectContaining({ type: 'button', action_id: 'runbook_approve', style: 'primary', value: WORKFLOW_ID, text: expect.objectContaining({ text: 'Approve' }) }),
      expect.objectContaining({ type: 'button', action_id: 'runbook_reject', style: 'danger', value: WORKFLOW_ID, text: expect.objectContaining({ text: 'Reject' }) }),
    ]);
    const approvalContext = blocks[blocks.indexOf(actions) + 1];
    expect(approvalContext.type).toBe('context');
    const line = approvalContext.elements[0].text as string;
    expect(line).toContain('Approvers: <@U0ALICE>, <@U0BOB>');
    expect(line).toContain('four-eyes');
    expect(line).toContain('2024-01-01 12:15 UTC');
    expect(line).toContain('fencing not confirmed');
    expect(textOf(post)).toContain('✅ *probe* succeeded · 420 ms — 3 instances reachable');
  });

  it('a step updates the root in place and posts one line in its thread', async () => {
    const n = notifier();
    const thread = (await n.send(notification('incident-opened', { status: 'started', timeline: [] }), {})) as NotifyThread;
    const ts = thread.slack!.ts;
    expect(actionsOf(fake.calls[0])).toBeUndefined();

    const step = timeline[3]!;
    const next = await n.send(notification('step', { step, status: 'promote: succeeded', timeline: timeline.slice(0, 4) }), thread);
    expect(next).toEqual(thread);

    const updates = fake.callsTo('chat.update');
    expect(updates).toHaveLength(1);
    expect(updates[0]!.body).toMatchObject({ channel: CHANNEL_ID, ts });
    expect(updates[0]!.answer).toBe('ok');
    expect(textOf(updates[0])).toContain('promote: succeeded');
    expect(textOf(updates[0])).toContain('✅ *promote* succeeded · 1.2 s — orders-b is primary');

    const replies = fake.callsTo('chat.postMessage').filter((c) => c.body.thread_ts);
    expect(replies).toHaveLength(1);
    expect(replies[0]!.body).toMatchObject({ channel: CHANNEL_ID, thread_ts: ts });
    expect(replies[0]!.body.text).toBe('✅ *promote* succeeded · 1.2 s — orders-b is primary');
    expect(fake.messages.get(`${CHANNEL_ID}:${ts}`)!.edits).toBe(1);
  });

  it('approval-decided removes the buttons; completed posts a summary of the whole timeline', async () => {
    const n = notifier();
    const thread = (await n.send(notification('approval-needed', { approval }), {})) as NotifyThread;
    expect(actionsOf(fake.calls[0])).toBeDefined();

    await n.send(
      notification('approval-decided', {
        status: 'approved by alice',
        decision: { decision: 'approve', approver: 'alice', channel: 'slack', comment: 'go' },
        timeline: timeline.slice(0, 3),
      }),
      thread,
    );
    const decidedUpdate = fake.callsTo('chat.update').at(-1);
    expect(decidedUpdate!.body.ts).toBe(thread.slack!.ts);
    expect(actionsOf(decidedUpdate)).toBeUndefined();
    expect(textOf(decidedUpdate)).toContain('Approved by: <@U0ALICE> (via slack) — go');
    const decidedReply = fake.callsTo('chat.postMessage').at(-1)!;
    expect(decidedReply.body.thread_ts).toBe(thread.slack!.ts);
    expect(decidedReply.body.text).toContain('Approved by: <@U0ALICE>');

    await n.send(notification('completed', { status: 'succeeded', timeline, endedAt: T0 + 95_000 }), thread);
    const finalUpdate = fake.callsTo('chat.update').at(-1);
    expect(actionsOf(finalUpdate)).toBeUndefined();
    expect(textOf(finalUpdate)).toContain('✅ succeeded');

    const summary = fake.callsTo('chat.postMessage').at(-1)!;
    expect(summary.body.thread_ts).toBe(thread.slack!.ts);
    const text = textOf(summary);
    expect(text).toContain('Completed');
    expect(text).toContain('Total: 1 min 35 s');
    for (const [e, took] of [
      [timeline[0]!, '420 ms'],
      [timeline[1]!, '80 ms'],
      [timeline[2]!, '0 ms'],
      [timeline[3]!, '1.2 s'],
      [timeline[4]!, '1 min 2 s'],
    ] as const) {
      expect(text).toContain(`*${e.name}* ${e.status} · ${took}`);
    }
    expect(text).toContain('+33.0 s');
    // Root (1) + decision reply + summary reply; two updates; nothing failed.
    expect(fake.callsTo('chat.postMessage')).toHaveLength(3);
    expect(fake.callsTo('chat.update')).toHaveLength(2);
    expect(fake.calls.every((c) => c.answer === 'ok')).toBe(true);
  });

  it('renders Chinese labels for a zh-CN cluster', async () => {
    const n = notifier({ config: zhConfig });
    const thread = (await n.send(notification('approval-needed', { approval }), {})) as NotifyThread;
    const root = textOf(fake.calls[0]);
    for (const label of ['*集群*', '*运行手册*', '*事件*', '*影响等级*', '*发起人*', '*原因*', '*状态*', '*时间线*', '审批人：<@U0ALICE>', '四眼原则']) {
      expect(root).toContain(label);
    }
    expect(root).not.toContain('*Cluster*');
    expect(actionsOf(fake.calls[0]).elements.map((e: any) => e.text.text)).toEqual(['批准', '拒绝']);

    await n.send(notification('failed', { status: 'failed: promote timed out', timeline, endedAt: T0 + 95_000 }), thread);
    const summary = textOf(fake.callsTo('chat.postMessage').at(-1));
    expect(summary).toContain('失败');
    expect(summary).toContain('总耗时');
    expect(summary).toContain('*时间线*');
  });

  it('retries a ratelimited call after Retry-After and succeeds', async () => {
    fake.rateLimitNext('chat.postMessage', 1);
    const thread = await notifier().send(notification('incident-opened', { status: 'started' }), {});

    expect(thread).toEqual({ slack: { channel: CHANNEL_ID, ts: expect.any(String) } });
    expect(fake.callsTo('chat.postMessage').map((c) => c.answer)).toEqual(['http_429', 'ok']);
    // Not before Retry-After said (a lower bound: a loaded machine only makes the gap longer).
    expect(fake.calls[1]!.at - fake.calls[0]!.at).toBeGreaterThanOrEqual(950);
  });

  it('a Retry-After longer than the retry budget fails at once with ratelimited', async () => {
    // Had it waited the 120 s, this case would run into vitest's timeout instead.
    fake.rateLimitNext('chat.postMessage', 120);
    const err = await errorOf(notifier({ maxRetryTimeMs: 2_000 }).send(notification('incident-opened'), {}));
    expect(err.message).toMatch(/^chat\.postMessage failed: ratelimited \(Retry-After 120 s/);
    expect(fake.callsTo('chat.postMessage')).toHaveLength(1);
  });

  it('Slack down (503) makes send throw within the bounded time, naming the method, never the token', async () => {
    fake.down(true);
    const err = await errorOf(notifier({ retries: 2, maxRetryTimeMs: 1_500, timeoutMs: 1_000 }).send(notification('incident-opened'), {}));

    expect(err.message).toMatch(/^chat\.postMessage failed: http_503/);
    expect(err.message).not.toContain(TOKEN);
    expect(String(err.stack)).not.toContain(TOKEN);
    // Bounded by attempts, not by a clock: at most the first try and its retries.
    const attempts = fake.callsTo('chat.postMessage');
    expect(attempts.length).toBeGreaterThanOrEqual(2);
    expect(attempts.length).toBeLessThanOrEqual(3);
    expect(attempts.every((c) => c.answer === 'http_503')).toBe(true);
  });

  it('a Slack that never answers is cut off by the request timeout', async () => {
    fake.hang(); // without the request timeout, this case would hang until vitest's timeout
    const err = await errorOf(notifier({ retries: 0, timeoutMs: 300 }).send(notification('incident-opened'), {}));
    expect(err.message).toMatch(/^chat\.postMessage failed: timeout \(no answer within 300 ms/);
  });

  it("Slack's error code is reported as `<method> failed: <code>`", async () => {
    fake.failNext('chat.postMessage', 'channel_not_found');
    const err = await errorOf(notifier().send(notification('incident-opened'), {}));
    expect(err.message).toBe('chat.postMessage failed: channel_not_found');
    expect(fake.callsTo('chat.postMessage')).toHaveLength(1); // a platform error is not retried

    // A failing update is named as such, and the reply still goes out.
    const thread = (await notifier().send(notification('incident-opened'), {})) as NotifyThread;
    fake.failNext('chat.update', 'cant_update_message');
    const err2 = await errorOf(notifier().send(notification('step', { step: timeline[0]! }), thread));
    expect(err2.message).toBe('chat.update failed: cant_update_message');
    expect(fake.okCallsTo('chat.postMessage').filter((c) => c.body.thread_ts === thread.slack!.ts)).toHaveLength(1);
  });

  it('a wrong token is invalid_auth and never appears in the error', async () => {
    const err = await errorOf(notifier({ token: 'xoxb-wrong-token' }).send(notification('incident-opened'), {}));
    expect(err.message).toBe('chat.postMessage failed: invalid_auth');
    expect(err.message).not.toContain('xoxb');
  });

  it('does nothing for a cluster without a Slack channel, or an unknown cluster', async () => {
    const noSlack = withCluster((c) => {
      delete c.notify.slack;
    });
    const thread: NotifyThread = {};
    expect(await notifier({ config: noSlack }).send(notification('incident-opened'), thread)).toBe(thread);
    expect(await notifier().send(notification('incident-opened', { cluster: 'nope' }), thread)).toBe(thread);
    expect(fake.calls).toHaveLength(0);
  });

  it('fromEnv needs SLACK_BOT_TOKEN and honours SLACK_API_URL', async () => {
    expect(SlackNotifier.fromEnv(config, {})).toBeUndefined();
    const n = SlackNotifier.fromEnv(config, { SLACK_BOT_TOKEN: TOKEN, SLACK_API_URL: apiUrl });
    expect(n?.name).toBe('slack');
    await n!.send(notification('incident-opened'), {});
    expect(fake.okCallsTo('chat.postMessage')).toHaveLength(1);
  });

  it('the fake accepts JSON bodies, answers auth.test and chat.postEphemeral', async () => {
    const post = (method: string, body: unknown, token = TOKEN) =>
      fetch(`${apiUrl}${method}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json; charset=utf-8' },
        body: JSON.stringify(body),
      }).then((r) => r.json() as Promise<any>);
    expect(await post('auth.test', {})).toMatchObject({ ok: true, user_id: 'U0FAKEBOT' });
    expect(await post('chat.postEphemeral', { channel: '#db-incidents', user: 'U0ALICE', text: 'only you' })).toMatchObject({ ok: true });
    expect(await post('auth.test', {}, 'bad')).toEqual({ ok: false, error: 'invalid_auth' });
    expect(fake.callsTo('chat.postEphemeral')[0]!.body).toEqual({ channel: '#db-incidents', user: 'U0ALICE', text: 'only you' });
  });
});

describe('Slack messages (pure)', () => {
  it('buttons only when asked; no reply for kinds that only update the root', () => {
    const n = notification('approval-reminder', { approval });
    expect(buildRootMessage(n, 'en', true).blocks.some((b) => b.type === 'actions')).toBe(true);
    expect(buildRootMessage(n, 'en', false).blocks.some((b) => b.type === 'actions')).toBe(false);
    expect(buildThreadReply(notification('incident-opened'), 'en')).toBeUndefined();
    expect(buildThreadReply(notification('approval-needed', { approval }), 'en')).toBeUndefined();
    expect(buildThreadReply(n, 'zh-CN')!.text).toContain('提醒');
  });

  it('a run that needs attention gets a thread reply naming the step, what is left and the resume command', () => {
    const attention = { step: 'record', error: 'the control database does not answer', left: ['record', 'unlock cluster'], resume: `runbook resume ${WORKFLOW_ID} --as YOUR_NAME` };
    const reply = buildThreadReply(notification('needs-attention', { status: 'needs attention: record', attention }), 'en')!;
    expect(reply.text).toBe(
      `🆘 *Needs attention: past its point of no return, the run cannot finish by itself and waits*\n*record*: the control database does not answer\nLeft: record, unlock cluster\nWhen the cause is fixed: \`runbook resume ${WORKFLOW_ID} --as YOUR_NAME\``,
    );
    expect(buildRootMessage(notification('needs-attention', { status: 'needs attention: record', attention }), 'en', false).text).toContain('🆘');
  });

  it('the root timeline shows the last 8 entries', () => {
    const many = Array.from({ length: 12 }, (_, i): TimelineEntry => ({ seq: i + 1, name: `step-${i + 1}`, status: 'succeeded', startedAt: T0, durationMs: 10 }));
    const text = buildRootMessage(notification('step', { timeline: many, step: many[11] }), 'en', false).blocks.map((b) => JSON.stringify(b)).join('\n');
    expect(text).not.toContain('*step-4*');
    expect(text).toContain('*step-5*');
    expect(text).toContain('*step-12*');
    expect(text).toContain('4 earlier entries');
  });

  it('markdown to mrkdwn', () => {
    expect(markdownToMrkdwn('**bold** and *it* and `**code**` [x](https://e.x/a?b=1) <!channel>')).toBe(
      '*bold* and _it_ and `**code**` <https://e.x/a?b=1|x> &lt;!channel&gt;',
    );
    expect(markdownToMrkdwn('# Plan\n- one\n  - two')).toBe('*Plan*\n• one\n  • two');
  });
});
