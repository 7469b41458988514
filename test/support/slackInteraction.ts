/** A Slack interactive payload (a button click) signed exactly as Slack signs it (v0, HMAC-SHA256). */
import { createHmac } from 'node:crypto';

export interface Click {
  secret: string;
  userId: string;
  actionId: 'runbook_approve' | 'runbook_reject';
  workflowId: string;
  channelId?: string;
  /** Seconds since the epoch; default now. */
  timestamp?: number;
}

export function signedClick(c: Click): { body: string; headers: Record<string, string> } {
  const payload = {
    type: 'block_actions',
    user: { id: c.userId, username: c.userId.toLowerCase() },
    channel: { id: c.channelId ?? 'C0DBINCIDENTS' },
    actions: [{ action_id: c.actionId, block_id: 'runbook_approval', value: c.workflowId, type: 'button' }],
    response_url: 'https://hooks.slack.invalid/actions/1',
  };
  return signedRequest(c.secret, new URLSearchParams({ payload: JSON.stringify(payload) }).toString(), c.timestamp);
}

/** Any body, signed as Slack signs its requests. */
export function signedRequest(secret: string, body: string, timestamp?: number): { body: string; headers: Record<string, string> } {
  const ts = String(timestamp ?? Math.floor(Date.now() / 1000));
  const signature = `v0=${createHmac('sha256', secret).update(`v0:${ts}:${body}`).digest('hex')}`;
  return { body, headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-slack-request-timestamp': ts, 'x-slack-signature': signature } };
}

export async function postClick(serverUrl: string, click: { body: string; headers: Record<string, string> }): Promise<{ status: number; text: string }> {
  const res = await fetch(`${serverUrl}/slack/interactions`, { method: 'POST', body: click.body, headers: click.headers });
  return { status: res.status, text: await res.text() };
}
