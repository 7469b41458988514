import { describe, expect, it } from 'vitest';
import { approvalLinks, linkKeyFromEnv, signApprovalToken, verifyApprovalToken, type ApprovalLinkClaims } from '../../src/adapters/notify/links';

const KEY = 'k'.repeat(16) + '-test-signing-key-0123456789';
const NOW = Date.UTC(2025, 0, 1, 12, 0, 0);
const claims: ApprovalLinkClaims = { workflowId: 'failover-orders-1', decision: 'approve', approver: 'alice', expiresAt: NOW + 60_000, nonce: 'n0nce' };

/** Flip one character of a base64url string, keeping it base64url. */
function flip(s: string, at: number): string {
  const c = s[at]!;
  return s.slice(0, at) + (c === 'A' ? 'B' : 'A') + s.slice(at + 1);
}

describe('approval link tokens', () => {
  it('round-trips the claims', () => {
    const token = signApprovalToken(claims, KEY);
    expect(token).toMatch(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
    expect(verifyApprovalToken(token, KEY, NOW)).toEqual({ ok: true, claims });
  });

  it('refuses a token signed with another key', () => {
    const token = signApprovalToken(claims, KEY);
    expect(verifyApprovalToken(token, `${KEY}-other`, NOW)).toEqual({ ok: false, reason: 'bad signature' });
  });

  it('refuses a tampered payload', () => {
    const token = signApprovalToken(claims, KEY);
    const [, sig] = token.split('.');
    // A well-formed payload for someone else, with alice's signature.
    const forged = Buffer.from(JSON.stringify({ ...claims, approver: 'mallory' })).toString('base64url');
    expect(verifyApprovalToken(`${forged}.${sig}`, KEY, NOW)).toEqual({ ok: false, reason: 'bad signature' });
    expect(verifyApprovalToken(flip(token, 3), KEY, NOW)).toEqual({ ok: false, reason: 'bad signature' });
  });

  it('refuses a tampered or truncated signature', () => {
    const token = signApprovalToken(claims, KEY);
    expect(verifyApprovalToken(flip(token, token.length - 3), KEY, NOW)).toEqual({ ok: false, reason: 'bad signature' });
    expect(verifyApprovalToken(token.slice(0, -4), KEY, NOW)).toEqual({ ok: false, reason: 'bad signature' });
  });

  it('calls garbage malformed', () => {
    for (const garbage of ['', 'abc', 'a.b.c', 'not base64!.sig', '.', `${signApprovalToken(claims, KEY)}.extra`]) {
      expect(verifyApprovalToken(garbage, KEY, NOW), garbage).toEqual({ ok: false, reason: 'malformed' });
    }
    // Correctly signed, but not claims.
    const payload = Buffer.from(JSON.stringify({ hello: 'world' })).toString('base64url');
    const signed = signApprovalToken(claims, KEY).split('.')[1]!;
    expect(verifyApprovalToken(`${payload}.${signed}`, KEY, NOW).ok).toBe(false);
  });

  it('refuses a signed token whose payload is not claims as malformed', async () => {
    const { createHmac } = await import('node:crypto');
    const payload = Buffer.from(JSON.stringify({ workflowId: 'x', decision: 'maybe' })).toString('base64url');
    const sig = createHmac('sha256', KEY).update(payload).digest('base64url');
    expect(verifyApprovalToken(`${payload}.${sig}`, KEY, NOW)).toEqual({ ok: false, reason: 'malformed' });
  });

  it('refuses an expired token', () => {
    const token = signApprovalToken(claims, KEY);
    expect(verifyApprovalToken(token, KEY, claims.expiresAt - 1).ok).toBe(true);
    expect(verifyApprovalToken(token, KEY, claims.expiresAt)).toMatchObject({ ok: false, reason: 'expired' });
    expect(verifyApprovalToken(token, KEY, claims.expiresAt + 3_600_000)).toMatchObject({ ok: false, reason: 'expired' });
  });

  it('builds approve and reject links with fresh nonces', () => {
    const links = approvalLinks({ baseUrl: 'https://runbooks.example.com/', key: KEY, workflowId: 'wf-1', approver: 'bob', ttlMs: 30 * 60_000, now: NOW });
    const tokenOf = (url: string) => {
      expect(url.startsWith('https://runbooks.example.com/approve/')).toBe(true);
      return url.slice('https://runbooks.example.com/approve/'.length);
    };
    const approve = verifyApprovalToken(tokenOf(links.approve), KEY, NOW);
    const reject = verifyApprovalToken(tokenOf(links.reject), KEY, NOW);
    if (!approve.ok || !reject.ok) throw new Error('links do not verify');
    expect(approve.claims).toMatchObject({ workflowId: 'wf-1', decision: 'approve', approver: 'bob', expiresAt: NOW + 30 * 60_000 });
    expect(reject.claims).toMatchObject({ workflowId: 'wf-1', decision: 'reject', approver: 'bob' });
    expect(approve.claims.nonce).not.toBe(reject.claims.nonce);
    const again = approvalLinks({ baseUrl: 'https://runbooks.example.com', key: KEY, workflowId: 'wf-1', approver: 'bob', ttlMs: 60_000, now: NOW });
    expect(again.approve).not.toBe(links.approve);
    expect(verifyApprovalToken(tokenOf(links.approve), KEY, NOW + 30 * 60_000)).toMatchObject({ ok: false, reason: 'expired' });
  });
});

describe('linkKeyFromEnv', () => {
  it('is undefined when unset and returns a long enough key', () => {
    expect(linkKeyFromEnv({})).toBeUndefined();
    expect(linkKeyFromEnv({ RUNBOOK_LINK_SIGNING_KEY: KEY })).toBe(KEY);
  });

  it('refuses a short key, naming the variable but never the value', () => {
    const secret = 'hunter2-short-secret';
    let error: Error | undefined;
    try {
      linkKeyFromEnv({ RUNBOOK_LINK_SIGNING_KEY: secret });
    } catch (err) {
      error = err as Error;
    }
    expect(error).toBeInstanceOf(Error);
    expect(error!.message).toContain('RUNBOOK_LINK_SIGNING_KEY');
    expect(error!.message).toContain('32');
    expect(error!.message).not.toContain(secret);
    expect(error!.message).not.toContain('hunter2');
  });
});
