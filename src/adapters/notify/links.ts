/**
 * Signed, expiring approval links for email. A token is `base64url(JSON claims)` + `.` +
 * `base64url(HMAC-SHA256(key, first part))`: whoever holds the link may open the confirmation page
 * for exactly that run, decision and approver, until it expires. Single use is enforced by whoever
 * redeems the token (by its nonce); this module only signs and checks.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export interface ApprovalLinkClaims {
  workflowId: string;
  decision: 'approve' | 'reject';
  /** The approver identity (a `people` name, else the recipient's email address). */
  approver: string;
  /** Epoch milliseconds after which the token is refused. */
  expiresAt: number;
  /** Random, so each link is distinct and can be redeemed once. */
  nonce: string;
}

export type VerifyResult =
  | { ok: true; claims: ApprovalLinkClaims }
  | { ok: false; reason: 'malformed' | 'bad signature' }
  /** Signed by us, but too old: whose link it was is known (and worth auditing). */
  | { ok: false; reason: 'expired'; claims: ApprovalLinkClaims };

export const LINK_KEY_ENV = 'RUNBOOK_LINK_SIGNING_KEY';
export const MIN_LINK_KEY_LENGTH = 32;

const BASE64URL = /^[A-Za-z0-9_-]+$/;

function mac(payload: string, key: string): Buffer {
  return createHmac('sha256', key).update(payload).digest();
}

export function signApprovalToken(claims: ApprovalLinkClaims, key: string): string {
  // A fixed field order, so the same claims always give the same token.
  const { workflowId, decision, approver, expiresAt, nonce } = claims;
  const payload = Buffer.from(JSON.stringify({ workflowId, decision, approver, expiresAt, nonce }), 'utf8').toString('base64url');
  return `${payload}.${mac(payload, key).toString('base64url')}`;
}

function isClaims(v: unknown): v is ApprovalLinkClaims {
  if (!v || typeof v !== 'object') return false;
  const c = v as Record<string, unknown>;
  return (
    typeof c.workflowId === 'string' && c.workflowId.length > 0 &&
    (c.decision === 'approve' || c.decision === 'reject') &&
    typeof c.approver === 'string' && c.approver.length > 0 &&
    typeof c.expiresAt === 'number' && Number.isFinite(c.expiresAt) &&
    typeof c.nonce === 'string' && c.nonce.length > 0
  );
}

export function verifyApprovalToken(token: string, key: string, now: number = Date.now()): VerifyResult {
  if (typeof token !== 'string') return { ok: false, reason: 'malformed' };
  const parts = token.split('.');
  if (parts.length !== 2) return { ok: false, reason: 'malformed' };
  const [payload, signature] = parts as [string, string];
  if (!BASE64URL.test(payload) || !BASE64URL.test(signature)) return { ok: false, reason: 'malformed' };

  // The signature is checked before the payload is trusted (or even parsed).
  const expected = mac(payload, key);
  const given = Buffer.from(signature, 'base64url');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return { ok: false, reason: 'bad signature' };

  let claims: unknown;
  try {
    claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
  } catch {
    return { ok: false, reason: 'malformed' };
  }
  if (!isClaims(claims)) return { ok: false, reason: 'malformed' };
  const { workflowId, decision, approver, expiresAt, nonce } = claims;
  if (now >= claims.expiresAt) return { ok: false, reason: 'expired', claims: { workflowId, decision, approver, expiresAt, nonce } };
  return { ok: true, claims: { workflowId, decision, approver, expiresAt, nonce } };
}

/** An approve and a reject link for one approver, each with its own nonce. */
export function approvalLinks(input: {
  baseUrl: string;
  key: string;
  workflowId: string;
  approver: string;
  ttlMs: number;
  now?: number;
}): { approve: string; reject: string } {
  const base = input.baseUrl.replace(/\/+$/, '');
  const expiresAt = (input.now ?? Date.now()) + input.ttlMs;
  const link = (decision: 'approve' | 'reject') => {
    const token = signApprovalToken(
      { workflowId: input.workflowId, decision, approver: input.approver, expiresAt, nonce: randomBytes(16).toString('base64url') },
      input.key,
    );
    return `${base}/approve/${token}`;
  };
  return { approve: link('approve'), reject: link('reject') };
}

/** The link signing key, if configured; a key too short to be safe is refused (its value never shown). */
export function linkKeyFromEnv(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const key = env[LINK_KEY_ENV];
  if (key === undefined || key === '') return undefined;
  if (key.length < MIN_LINK_KEY_LENGTH) {
    throw new Error(
      `${LINK_KEY_ENV} is too short: it must be at least ${MIN_LINK_KEY_LENGTH} characters; generate one with: openssl rand -base64 48`,
    );
  }
  return key;
}
