import { describe, expect, it } from 'vitest';
import { escapeHtml, renderEmail } from '../../src/adapters/notify/emailTemplates';
import type { RunbookNotification } from '../../src/core/notifications';

const T0 = Date.UTC(2025, 4, 1, 10, 0, 0);

function notification(kind: RunbookNotification['kind'], extra: Partial<RunbookNotification> = {}): RunbookNotification {
  return {
    kind,
    cluster: 'orders',
    runbook: 'failover',
    workflowId: 'failover-orders-20250501-1',
    incidentId: 'INC-42',
    title: 'failover orders: region-a → region-b (emergency) by carol',
    severity: 'L1',
    requester: 'carol',
    reason: 'primary orders-a unreachable',
    status: 'waiting for approval',
    impact: 'order writes failing for all users',
    eta: '15 min',
    contact: 'DBA on-call, +1 555 0100',
    timeline: [],
    startedAt: T0,
    ...extra,
  };
}

const approval = { approvers: ['alice', 'bob'], fourEyes: true, deadline: T0 + 15 * 60_000, forcedBecause: 'fencing of orders-a not confirmed' };
const plan = '## Plan\n1. fence **orders-a**\n2. promote orders-b\n3. repoint writers';
const links = { approve: 'https://rb.example.com/approve/AAA.sig1', reject: 'https://rb.example.com/approve/BBB.sig2' };
const timeline = [
  { seq: 1, name: 'check replicas', status: 'succeeded', startedAt: T0 + 1_000, durationMs: 1_250 },
  { seq: 2, name: 'promote orders-b', status: 'succeeded', startedAt: T0 + 3_000, durationMs: 95_000, note: 'GTID 0-2-1234' },
  { seq: 3, name: 'repoint writers', status: 'skipped', startedAt: T0 + 99_000 },
];

const TAG = /<\/?[a-z][a-z0-9]*(\s[^>]*)?>/i;

describe('renderEmail: incident-opened', () => {
  it('follows the seed notice in English', () => {
    const m = renderEmail(notification('incident-opened'), 'en')!;
    expect(m.subject).toBe('[URGENT] MySQL database incident - impact level L1: failover orders: region-a → region-b (emergency) by carol');
    for (const line of [
      'Time: 2025-05-01T10:00:00Z',
      'Impact: order writes failing for all users',
      'Status: waiting for approval',
      'ETA: 15 min',
      'Contact: DBA on-call, +1 555 0100',
      'Cluster: orders',
      'Incident: INC-42',
      'Requested by: carol',
      'Reason: primary orders-a unreachable',
      'Workflow ID: failover-orders-20250501-1',
    ]) expect(m.text).toContain(line);
    expect(m.html).toContain('order writes failing for all users');
    expect(m.text).not.toMatch(TAG);
  });

  it('follows the seed notice in Chinese', () => {
    const m = renderEmail(notification('incident-opened', { severity: 'L2' }), 'zh-CN')!;
    expect(m.subject).toBe('[紧急] MySQL数据库故障 - 影响等级L2：failover orders: region-a → region-b (emergency) by carol');
    for (const line of ['时间：2025-05-01T10:00:00Z', '影响：order writes failing', '现状：waiting for approval', 'ETA：15 min', '联系人：DBA on-call', '集群：orders', '事件编号：INC-42', '发起人：carol', '原因：primary orders-a unreachable', '工作流ID：failover-orders-20250501-1']) {
      expect(m.text).toContain(line);
    }
    expect(m.html).toContain('lang="zh-CN"');
  });

  it('leaves out absent fields', () => {
    const m = renderEmail(notification('incident-opened', { impact: undefined, eta: undefined, contact: undefined, incidentId: undefined }), 'en')!;
    expect(m.text).not.toMatch(/^(Impact|ETA|Contact|Incident):/m);
    expect(m.text).toContain('Status: waiting for approval');
    expect(m.html).not.toContain('>ETA<');
  });
});

describe('renderEmail: approval', () => {
  it('carries plan, approvers, four-eyes, deadline, reason and links (en)', () => {
    const m = renderEmail(notification('approval-needed', { plan, approval }), 'en', links)!;
    expect(m.subject).toBe('[APPROVAL NEEDED] failover orders: region-a → region-b (emergency) by carol');
    expect(m.text).toContain(plan);
    expect(m.text).toContain('Approvers: alice, bob');
    expect(m.text).toContain('Four-eyes: the requester (carol) may not approve this run.');
    expect(m.text).toContain('Decide by: 2025-05-01T10:15:00Z');
    expect(m.text).toContain('Why a human must decide: fencing of orders-a not confirmed');
    expect(m.text).toContain(`Approve: ${links.approve}`);
    expect(m.text).toContain(`Reject: ${links.reject}`);
    expect(m.text).toMatch(/confirmation page.*only once.*expires/);
    expect(m.text).not.toMatch(TAG);
    // HTML: the plan escaped, line breaks kept; links as anchors.
    expect(m.html).toContain('## Plan\n1. fence **orders-a**\n2. promote orders-b');
    expect(m.html).toMatch(/<pre[^>]*>## Plan\n/);
    expect(m.html).toContain(`href="${links.approve}"`);
    expect(m.html).toContain(`href="${links.reject}"`);
  });

  it('has the Chinese subject, reminder subjects and fields', () => {
    const zh = renderEmail(notification('approval-needed', { plan, approval }), 'zh-CN', { ...links, expiresAt: T0 + 1_800_000 })!;
    expect(zh.subject).toBe('[需要审批] failover orders: region-a → region-b (emergency) by carol');
    expect(zh.text).toContain('审批人：alice, bob');
    expect(zh.text).toContain('四眼原则');
    expect(zh.text).toContain('审批截止：2025-05-01T10:15:00Z');
    expect(zh.text).toContain(`批准：${links.approve}`);
    expect(zh.text).toContain(`拒绝：${links.reject}`);
    expect(zh.text).toContain('2025-05-01T10:30:00Z 过期');
    expect(renderEmail(notification('approval-reminder', { approval }), 'en', links)!.subject).toMatch(/^\[REMINDER\] \[APPROVAL NEEDED\] failover orders/);
    expect(renderEmail(notification('approval-reminder', { approval }), 'zh-CN', links)!.subject).toMatch(/^\[提醒\] \[需要审批\] failover orders/);
  });

  it('points to the CLI when there are no links', () => {
    const m = renderEmail(notification('approval-needed', { approval }), 'en')!;
    expect(m.text).toContain('runbook approve failover-orders-20250501-1 --as YOUR_NAME');
    expect(m.text).not.toContain('/approve/');
    expect(m.html).not.toContain('href=');
  });
});

describe('renderEmail: completed', () => {
  const done = notification('completed', {
    status: 'completed',
    rootCause: 'disk full on orders-a',
    followUp: ['alert on datadir free space', 'weekly failover drill'],
    timeline,
    endedAt: T0 + 125_000,
  });

  it('follows the seed recovery notice in English, with the timeline', () => {
    const m = renderEmail(done, 'en')!;
    expect(m.subject).toBe('[RESOLVED] MySQL database incident recovered: failover orders: region-a → region-b (emergency) by carol');
    expect(m.text).toContain('Recovery time: 2025-05-01T10:02:05Z (total 2 min 5 s)');
    expect(m.text).toContain('Root cause: disk full on orders-a');
    expect(m.text).toContain('Follow-up actions:');
    expect(m.text).toContain('  - alert on datadir free space');
    expect(m.text).toContain('Impact summary: order writes failing for all users');
    expect(m.text).toMatch(/1\s+check replicas\s+succeeded\s+10:00:01\s+1\.3 s/);
    expect(m.text).toMatch(/2\s+promote orders-b \(GTID 0-2-1234\)\s+succeeded\s+10:00:03\s+1 min 35 s/);
    expect(m.text).toMatch(/3\s+repoint writers\s+skipped\s+10:01:39\s+-/);
    expect(m.text).not.toMatch(TAG);
    expect(m.html).toContain('<td style="padding:4px 10px 4px 0;vertical-align:top;text-align:left">1 min 35 s</td>');
  });

  it('follows the seed recovery notice in Chinese; the reason stands in for a missing root cause', () => {
    const m = renderEmail({ ...done, rootCause: undefined }, 'zh-CN')!;
    expect(m.subject).toBe('[解决] MySQL数据库故障已恢复：failover orders: region-a → region-b (emergency) by carol');
    expect(m.text).toContain('恢复时间：2025-05-01T10:02:05Z (总耗时 2 min 5 s)');
    expect(m.text).toContain('根本原因：primary orders-a unreachable');
    expect(m.text).toContain('预防措施：');
    expect(m.text).toContain('影响总结：order writes failing');
    expect(m.text).toContain('时间线：');
  });
});

describe('renderEmail: other kinds', () => {
  it('sends failed and aborted as short updates', () => {
    const failed = renderEmail(notification('failed', { status: 'failed: promote timed out', timeline: [{ seq: 1, name: 'promote orders-b', status: 'failed', startedAt: T0, durationMs: 30_000, note: 'timed out' }] }), 'en')!;
    expect(failed.subject).toMatch(/^\[UPDATE\] MySQL database incident - runbook failed: failover orders/);
    expect(failed.text).toContain('NOT resolved');
    expect(failed.text).toContain('Failed step: promote orders-b: timed out');
    expect(failed.text).toContain('Contact: DBA on-call');
    expect(renderEmail(notification('aborted', { status: 'rejected by alice' }), 'zh-CN')!.subject).toMatch(/^\[更新\] MySQL数据库故障 - 处理已中止：/);
    expect(renderEmail(notification('failed'), 'zh-CN')!.subject).toMatch(/^\[更新\] /);
  });

  it('sends nothing for step and approval-decided', () => {
    expect(renderEmail(notification('step'), 'en')).toBeUndefined();
    expect(renderEmail(notification('approval-decided'), 'zh-CN')).toBeUndefined();
  });
});

describe('escaping', () => {
  it('escapes every interpolated value in HTML; text stays plain', () => {
    const evil = '<script>alert("x")</script> & <b>bold</b>';
    const evilTitle = 't <img src=x onerror=alert(1)>';
    for (const kind of ['incident-opened', 'approval-needed', 'completed', 'failed'] as const) {
      const m = renderEmail(
        notification(kind, { reason: evil, title: evilTitle, plan: evil, status: evil, approval, timeline: [{ seq: 1, name: evil, status: 'failed', startedAt: T0 }] }),
        'en',
        { approve: 'https://x.example/approve/a"><script>', reject: 'https://x.example/approve/b' },
      )!;
      expect(m.html, kind).not.toContain('<script>');
      expect(m.html, kind).not.toContain('<b>bold');
      expect(m.html, kind).not.toContain('<img');
      expect(m.html, kind).toContain('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;b&gt;');
      // The plain-text body shows the value as typed, with no markup of its own.
      expect(m.text, kind).toContain(evil);
      expect(m.text.split(evil).join('').split(evilTitle).join('').split('a"><script>').join(''), kind).not.toMatch(TAG);
      expect(m.subject, kind).not.toContain('\n');
    }
    expect(escapeHtml(`<a href='x'>&"`)).toBe('&lt;a href=&#39;x&#39;&gt;&amp;&quot;');
  });

  it('keeps subjects on one line', () => {
    expect(renderEmail(notification('incident-opened', { title: 'a\r\nBcc: evil@example.com' }), 'en')!.subject).toBe('[URGENT] MySQL database incident - impact level L1: a Bcc: evil@example.com');
  });
});

describe('renderEmail: needs-attention', () => {
  const attention = { step: 'record', error: 'the control database does not answer', left: ['record', 'unlock cluster'], resume: 'runbook resume failover-orders-20250501-1 --as YOUR_NAME' };

  it('says what cannot finish, what is left and how to carry on, in English and Chinese', () => {
    const en = renderEmail(notification('needs-attention', { status: 'needs attention: record', attention }), 'en')!;
    expect(en.subject).toBe('[ACTION NEEDED] MySQL database incident - runbook waits for a human: failover orders: region-a → region-b (emergency) by carol');
    for (const line of [
      'Step that cannot finish: record: the control database does not answer',
      'Steps left: record, unlock cluster',
      'When the cause is fixed: runbook resume failover-orders-20250501-1 --as YOUR_NAME',
    ]) expect(en.text).toContain(line);
    expect(en.html).toContain('runbook resume failover-orders-20250501-1 --as YOUR_NAME');
    const zh = renderEmail(notification('needs-attention', { status: 'needs attention: record', attention }), 'zh-CN')!;
    expect(zh.subject).toBe('[需要处理] MySQL数据库故障 - 运行手册等待人工处理：failover orders: region-a → region-b (emergency) by carol');
    expect(zh.text).toContain('剩余步骤：record, unlock cluster');
  });
});
