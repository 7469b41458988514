/**
 * The email notifier against a real SMTP server on loopback (smtp-server), each delivered message
 * parsed back with mailparser: recipients, subjects per locale, per-recipient signed approval links,
 * the recovery timeline, and failures that name the SMTP host without leaking credentials.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunbookConfig } from '../../src/config/load';
import { EmailNotifier } from '../../src/adapters/notify/email';
import { verifyApprovalToken } from '../../src/adapters/notify/links';
import type { RunbookNotification } from '../../src/core/notifications';
import { testSandboxConfig } from '../support/sandbox';
import { startSmtp, type Received, type TestSmtp } from '../support/smtp';

const KEY = 'integration-test-link-signing-key-0123456789';
const PUBLIC_URL = 'https://runbooks.example.test';
const FROM = '"DB runbooks" <runbooks@example.test>';
const T0 = Date.now();

function notification(kind: RunbookNotification['kind'], extra: Partial<RunbookNotification> = {}): RunbookNotification {
  return {
    kind,
    cluster: 'orders',
    runbook: 'failover',
    workflowId: `failover-orders-${T0}`,
    incidentId: 'INC-7',
    title: 'failover orders: region-a → region-b (emergency) by carol',
    severity: 'L1',
    requester: 'carol',
    reason: 'primary orders-a unreachable',
    status: 'waiting for approval',
    impact: 'order writes failing',
    eta: '15 min',
    contact: 'DBA on-call, +1 555 0100',
    timeline: [],
    startedAt: T0,
    ...extra,
  };
}

// Further away than the 30-minute link lifetime, which is then what limits the links.
const approval = { approvers: ['alice', 'bob'], fourEyes: true, deadline: T0 + 60 * 60_000 };

let smtp: TestSmtp;
let en: RunbookConfig;
let zh: RunbookConfig;

beforeAll(async () => {
  smtp = await startSmtp();
  // Config copies only (nothing is started): the shipped sandbox, and a Chinese-speaking variant
  // that also mails someone who is not in `people`.
  en = testSandboxConfig('email-en', 26100);
  zh = testSandboxConfig('email-zh', 26200, (doc) => {
    doc.clusters.orders.locale = 'zh-CN';
    doc.clusters.orders.notify.email.to.push('dave@example.test');
  });
});

afterAll(async () => {
  await smtp?.close();
});

function notifier(config: RunbookConfig, port: number, extra: Partial<ConstructorParameters<typeof EmailNotifier>[0]> = {}): EmailNotifier {
  return new EmailNotifier({
    config,
    transport: { host: '127.0.0.1', port, secure: false, ignoreTLS: true },
    from: FROM,
    linkKey: KEY,
    publicUrl: PUBLIC_URL,
    ...extra,
  });
}

/** Messages delivered while `fn` ran. */
async function capture(fn: () => Promise<unknown>): Promise<Received[]> {
  const before = smtp.received.length;
  await fn();
  return smtp.received.slice(before);
}

function linksIn(text: string): string[] {
  return [...text.matchAll(/https:\/\/runbooks\.example\.test\/approve\/([A-Za-z0-9_.-]+)/g)].map((m) => m[1]!);
}

describe('EmailNotifier over real SMTP', () => {
  it('sends the incident notice to every recipient (en)', async () => {
    const got = await capture(() => notifier(en, smtp.port).send(notification('incident-opened'), {}));
    expect(got).toHaveLength(1);
    const [m] = got;
    expect(m!.envelopeTo.sort()).toEqual(['alice@example.com', 'bob@example.com']);
    expect(m!.mail.subject).toBe('[URGENT] MySQL database incident - impact level L1: failover orders: region-a → region-b (emergency) by carol');
    expect(m!.mail.from?.text).toContain('runbooks@example.test');
    expect(m!.mail.text).toContain('Contact: DBA on-call, +1 555 0100');
    expect(m!.mail.text).toContain(`Workflow ID: failover-orders-${T0}`);
    expect(m!.mail.html).toContain('<h2');
    expect(m!.mail.headers.get('x-runbook-workflow-id')).toBe(`failover-orders-${T0}`);
  });

  it('sends the incident notice in Chinese to every recipient (zh-CN)', async () => {
    const got = await capture(() => notifier(zh, smtp.port).send(notification('incident-opened', { severity: 'L2' }), {}));
    expect(got).toHaveLength(1);
    expect(got[0]!.envelopeTo.sort()).toEqual(['alice@example.com', 'bob@example.com', 'dave@example.test']);
    expect(got[0]!.mail.subject).toBe('[紧急] MySQL数据库故障 - 影响等级L2：failover orders: region-a → region-b (emergency) by carol');
    expect(got[0]!.mail.text).toContain('联系人：DBA on-call');
    expect(got[0]!.mail.text).toContain('影响：order writes failing');
  });

  it('sends one approval mail per recipient, with links signed for that recipient', async () => {
    const n = notification('approval-needed', { plan: '1. fence orders-a\n2. promote orders-b', approval });
    const got = await capture(() => notifier(en, smtp.port, { now: () => T0 }).send(n, {}));
    expect(got).toHaveLength(2);
    const byRecipient = new Map(got.map((r) => [r.envelopeTo.join(','), r.mail]));
    expect([...byRecipient.keys()].sort()).toEqual(['alice@example.com', 'bob@example.com']);
    const nonces = new Set<string>();
    for (const [address, person] of [['alice@example.com', 'alice'], ['bob@example.com', 'bob']] as const) {
      const mail = byRecipient.get(address)!;
      expect(mail.subject).toBe('[APPROVAL NEEDED] failover orders: region-a → region-b (emergency) by carol');
      expect(mail.to && !Array.isArray(mail.to) ? mail.to.text : '').toBe(address);
      expect(mail.text).toContain('1. fence orders-a\n2. promote orders-b');
      const tokens = linksIn(mail.text ?? '');
      expect(tokens).toHaveLength(2);
      const [approve, reject] = tokens.map((t) => verifyApprovalToken(t, KEY));
      if (!approve?.ok || !reject?.ok) throw new Error(`links for ${address} do not verify`);
      expect(approve.claims).toMatchObject({ workflowId: n.workflowId, decision: 'approve', approver: person });
      expect(reject.claims).toMatchObject({ workflowId: n.workflowId, decision: 'reject', approver: person });
      expect(approve.claims.expiresAt).toBe(T0 + 30 * 60_000); // the link lifetime, not the later deadline
      nonces.add(approve.claims.nonce).add(reject.claims.nonce);
      // The HTML part carries the same links.
      for (const t of tokens) expect(mail.html).toContain(`${PUBLIC_URL}/approve/${t}`);
      // A wrong key does not verify them.
      expect(verifyApprovalToken(tokens[0]!, `${KEY}x`).ok).toBe(false);
    }
    expect(nonces.size).toBe(4);
  });

  it('personalises links in Chinese, using the address for someone not in people; links end at the deadline', async () => {
    const n = notification('approval-reminder', { approval: { ...approval, deadline: Date.now() + 5 * 60_000 } });
    const got = await capture(() => notifier(zh, smtp.port).send(n, {}));
    expect(got).toHaveLength(3);
    const dave = got.find((r) => r.envelopeTo[0] === 'dave@example.test')!;
    expect(dave.mail.subject).toBe('[提醒] [需要审批] failover orders: region-a → region-b (emergency) by carol');
    const verdict = verifyApprovalToken(linksIn(dave.mail.text ?? '')[0]!, KEY);
    if (!verdict.ok) throw new Error(verdict.reason);
    expect(verdict.claims.approver).toBe('dave@example.test');
    expect(verdict.claims.expiresAt).toBeLessThanOrEqual(n.approval!.deadline);
    const alice = got.find((r) => r.envelopeTo[0] === 'alice@example.com')!;
    const aliceVerdict = verifyApprovalToken(linksIn(alice.mail.text ?? '')[1]!, KEY);
    expect(aliceVerdict.ok && aliceVerdict.claims.approver).toBe('alice');
  });

  it('without a signing key, approval mails point to the CLI', async () => {
    const n = notification('approval-needed', { approval });
    const got = await capture(() => notifier(en, smtp.port, { linkKey: undefined }).send(n, {}));
    expect(got).toHaveLength(2);
    for (const r of got) {
      expect(linksIn(r.mail.text ?? '')).toEqual([]);
      expect(r.mail.text).toContain(`runbook approve ${n.workflowId} --as YOUR_NAME`);
    }
  });

  it('sends the recovery notice with the timeline and measured durations, threaded under the incident notice', async () => {
    const n = notification('completed', {
      status: 'completed',
      rootCause: 'primary orders-a lost its disk',
      followUp: ['alert on datadir free space'],
      endedAt: T0 + 125_000,
      timeline: [
        { seq: 1, name: 'check replicas', status: 'succeeded', startedAt: T0 + 1_000, durationMs: 1_250 },
        { seq: 2, name: 'promote orders-b', status: 'succeeded', startedAt: T0 + 3_000, durationMs: 95_000 },
      ],
    });
    const mailer = notifier(en, smtp.port);
    const [opened] = await capture(() => mailer.send(notification('incident-opened'), {}));
    const got = await capture(() => mailer.send(n, {}));
    expect(got).toHaveLength(1);
    const mail = got[0]!.mail;
    expect(mail.subject).toBe('[RESOLVED] MySQL database incident recovered: failover orders: region-a → region-b (emergency) by carol');
    expect(mail.text).toContain('(total 2 min 5 s)');
    expect(mail.text).toContain('Root cause: primary orders-a lost its disk');
    expect(mail.text).toContain('  - alert on datadir free space');
    expect(mail.text).toMatch(/1\s+check replicas\s+succeeded\s+\d\d:\d\d:\d\d\s+1\.3 s/);
    expect(mail.text).toMatch(/2\s+promote orders-b\s+succeeded\s+\d\d:\d\d:\d\d\s+1 min 35 s/);
    expect(mail.html).toContain('>1 min 35 s</td>');
    expect(opened!.mail.messageId).toMatch(/^<run-[0-9a-f]+@example\.test>$/);
    expect(mail.inReplyTo).toBe(opened!.mail.messageId);
  });

  it('sends nothing for steps, or when the cluster has no email recipients', async () => {
    const noEmail = testSandboxConfig('email-none', 26300, (doc) => {
      delete doc.clusters.orders.notify.email;
    });
    const got = await capture(async () => {
      await notifier(en, smtp.port).send(notification('step', { step: { seq: 1, name: 'x', status: 'succeeded', startedAt: T0 } }), {});
      await notifier(noEmail, smtp.port).send(notification('incident-opened'), {});
    });
    expect(got).toEqual([]);
  });

  it('throws naming the SMTP host when the server refuses, without credentials', async () => {
    const refusing = await startSmtp({ rejectRcpt: 'mailbox unavailable' });
    try {
      const password = 'smtp-secret-password-123';
      const mailer = notifier(en, refusing.port, {
        transport: { host: '127.0.0.1', port: refusing.port, secure: false, ignoreTLS: true, auth: { user: 'runbooks', pass: password } },
        allowInsecureAuth: true, // this relay offers no TLS; the case is about the refusal
      });
      const error = await mailer.send(notification('incident-opened'), {}).then(
        () => undefined,
        (err: Error) => err,
      );
      expect(error).toBeInstanceOf(Error);
      expect(error!.message).toContain(`127.0.0.1:${refusing.port}`);
      expect(error!.message).toContain('mailbox unavailable');
      expect(error!.message).not.toContain(password);
      expect(refusing.received).toEqual([]);

      // Approval mails: every recipient's failure is reported, with no token in the message.
      const approvalError = await mailer.send(notification('approval-needed', { approval }), {}).then(
        () => undefined,
        (err: Error) => err,
      );
      expect(approvalError!.message).toMatch(/not delivered to 2 of 2 recipient/);
      expect(approvalError!.message).toContain('alice@example.com');
      expect(approvalError!.message).not.toContain('/approve/');
      expect(approvalError!.message).not.toContain(password);
    } finally {
      await refusing.close();
    }
  });

  it('throws naming the host when nothing listens', async () => {
    const closed = await startSmtp();
    const port = closed.port;
    await closed.close();
    const error = await notifier(en, port).send(notification('incident-opened'), {}).then(() => undefined, (err: Error) => err);
    expect(error?.message).toMatch(new RegExp(`^email via SMTP 127\\.0\\.0\\.1:${port} failed: .*ECONNREFUSED`));
  });
});

describe('EmailNotifier.fromEnv', () => {
  it('is off without SMTP_HOST and refuses half a setup', () => {
    expect(EmailNotifier.fromEnv(en, {})).toBeUndefined();
    expect(() => EmailNotifier.fromEnv(en, { SMTP_HOST: 'smtp.example.test' })).toThrow(/SMTP_FROM/);
    expect(() => EmailNotifier.fromEnv(en, { SMTP_HOST: 'smtp.example.test', SMTP_FROM: FROM, SMTP_USER: 'u' })).toThrow(/SMTP_USER and SMTP_PASSWORD/);
    expect(() => EmailNotifier.fromEnv(en, { SMTP_HOST: 'smtp.example.test', SMTP_FROM: FROM, SMTP_PORT: 'smtp' })).toThrow(/SMTP_PORT/);
    expect(() => EmailNotifier.fromEnv(en, { SMTP_HOST: 'smtp.example.test', SMTP_FROM: FROM, SMTP_SECURE: 'yes' })).toThrow(/SMTP_SECURE/);
    expect(() => EmailNotifier.fromEnv(en, { SMTP_HOST: 'smtp.example.test', SMTP_FROM: FROM, SMTP_ALLOW_INSECURE: 'yes' })).toThrow(/SMTP_ALLOW_INSECURE must be "true" or "false"/);
    expect(() => EmailNotifier.fromEnv(en, { SMTP_HOST: 'h', SMTP_FROM: FROM, RUNBOOK_LINK_SIGNING_KEY: 'short-key' })).toThrow(/RUNBOOK_LINK_SIGNING_KEY/);
    expect(() => EmailNotifier.fromEnv(en, { SMTP_HOST: 'h', SMTP_FROM: FROM, RUNBOOK_PUBLIC_URL: PUBLIC_URL })).toThrow(/RUNBOOK_LINK_SIGNING_KEY/);
    const plain = EmailNotifier.fromEnv(en, { SMTP_HOST: 'smtp.example.test', SMTP_FROM: FROM })!;
    expect(plain.server).toBe('smtp.example.test:587');
    expect(plain.linksEnabled).toBe(false);
  });

  it('builds a working notifier from the environment', async () => {
    const mailer = EmailNotifier.fromEnv(en, {
      SMTP_HOST: '127.0.0.1',
      SMTP_PORT: String(smtp.port),
      SMTP_SECURE: 'false',
      SMTP_USER: 'runbooks',
      SMTP_PASSWORD: 'pw',
      SMTP_ALLOW_INSECURE: 'true', // the test relay offers no TLS
      SMTP_FROM: FROM,
      RUNBOOK_LINK_SIGNING_KEY: KEY,
      RUNBOOK_PUBLIC_URL: `${PUBLIC_URL}/`,
    })!;
    expect(mailer.linksEnabled).toBe(true);
    const got = await capture(() => mailer.send(notification('approval-needed', { approval }), {}));
    expect(got).toHaveLength(2);
    const bob = got.find((r) => r.envelopeTo[0] === 'bob@example.com')!;
    const verdict = verifyApprovalToken(linksIn(bob.mail.text ?? '')[0]!, KEY);
    expect(verdict.ok && verdict.claims.approver).toBe('bob');
  });
});

describe('SMTP credentials and TLS', () => {
  const PASSWORD = 'smtp-password-never-in-clear';
  const credentialsEnv = (port: number) => ({ SMTP_HOST: '127.0.0.1', SMTP_PORT: String(port), SMTP_SECURE: 'false', SMTP_USER: 'runbooks', SMTP_PASSWORD: PASSWORD, SMTP_FROM: FROM });

  it('never sends credentials to a relay that offers no STARTTLS, and says why', async () => {
    const mailer = EmailNotifier.fromEnv(en, credentialsEnv(smtp.port))!;
    const before = { received: smtp.received.length, auths: smtp.auths.length };
    const error = await mailer.send(notification('incident-opened'), {}).then(() => undefined, (err: Error) => err);
    expect(error?.message).toMatch(new RegExp(`^email via SMTP 127\\.0\\.0\\.1:${smtp.port} failed: .*credentials are sent only over TLS`));
    expect(error?.message).not.toContain(PASSWORD);
    expect(smtp.auths.length).toBe(before.auths); // no AUTH reached the relay
    expect(smtp.received.length).toBe(before.received);
  });

  it('sends them once the connection is upgraded by STARTTLS', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'runbook-smtp-tls-'));
    try {
      execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
        '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' });
      const cert = readFileSync(join(dir, 'cert.pem'), 'utf8');
      const tls = await startSmtp({ tls: { key: readFileSync(join(dir, 'key.pem'), 'utf8'), cert } });
      try {
        const mailer = new EmailNotifier({ config: en, from: FROM, transport: { host: '127.0.0.1', port: tls.port, secure: false, auth: { user: 'runbooks', pass: PASSWORD }, tls: { ca: cert } } });
        await mailer.send(notification('incident-opened'), {});
        expect(tls.auths).toEqual([{ username: 'runbooks', password: PASSWORD, secure: true }]);
        expect(tls.received).toHaveLength(1);
      } finally {
        await tls.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('sends them in clear only with SMTP_ALLOW_INSECURE=true', async () => {
    const plain = await startSmtp();
    try {
      await EmailNotifier.fromEnv(en, { ...credentialsEnv(plain.port), SMTP_ALLOW_INSECURE: 'true' })!.send(notification('incident-opened'), {});
      expect(plain.auths).toEqual([{ username: 'runbooks', password: PASSWORD, secure: false }]);
      expect(plain.received).toHaveLength(1);
    } finally {
      await plain.close();
    }
  });
});
