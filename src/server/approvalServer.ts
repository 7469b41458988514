/**
 * The approval endpoint: one HTTP server for Slack's interactive payloads (the Approve / Reject
 * buttons) and for the signed links in approval emails, so approval still works when Slack is down.
 *
 * Slack: the v0 request signature is checked with the signing secret in constant time; a timestamp
 * more than 5 minutes off and a replayed request are refused; the click is acknowledged at once
 * (Slack wants an answer within 3 s) and the verdict follows as an ephemeral message. The Slack
 * user becomes an approver only through the cluster's `people`.
 * Email: a GET only shows a confirmation page (mail scanners follow links); the POST from that page
 * decides, once: every link is signed, expiring and single-use.
 * Every refusal is logged in failover_log. Hand-written rather than @slack/bolt: Bolt would pull a
 * second @slack/web-api major and express for a 20-line HMAC check.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebClient } from '@slack/web-api';
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { getCluster, type RunbookConfig } from '../config/load';
import { withControl } from '../control/store';
import { escapeHtml } from '../notify/emailTemplates';
import { verifyApprovalToken, type ApprovalLinkClaims } from '../notify/links';
import type { DecisionVerdict } from '../workflows/approval';

const MAX_SKEW_SECONDS = 5 * 60;
const MAX_BODY_BYTES = 256 * 1024;

export interface ApprovalServerOptions {
  config: RunbookConfig;
  client: Client;
  port?: number;
  host?: string;
  /** SLACK_SIGNING_SECRET; without it the Slack route answers 503. */
  slackSigningSecret?: string;
  /** For the ephemeral verdicts (SLACK_BOT_TOKEN, SLACK_API_URL). */
  slack?: WebClient;
  /** RUNBOOK_LINK_SIGNING_KEY; without it the link routes answer 503. */
  linkKey?: string;
  now?: () => number;
  log?: (line: string) => void;
}

export interface ApprovalServer {
  url: string;
  close(): Promise<void>;
}

class Refusal extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let size = 0;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY_BYTES) {
        reject(new Refusal(413, 'request body too large'));
        req.destroy();
      } else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/** Slack's v0 signature: HMAC-SHA256 of `v0:<timestamp>:<raw body>`, compared in constant time. */
export function verifySlackSignature(secret: string, timestamp: string | undefined, signature: string | undefined, body: string, nowSeconds: number): void {
  if (!timestamp || !/^\d+$/.test(timestamp)) throw new Refusal(401, 'missing or malformed X-Slack-Request-Timestamp');
  if (Math.abs(nowSeconds - Number(timestamp)) > MAX_SKEW_SECONDS) throw new Refusal(401, `stale request: timestamp ${timestamp} is more than 5 minutes off`);
  const expected = Buffer.from(`v0=${createHmac('sha256', secret).update(`v0:${timestamp}:${body}`).digest('hex')}`);
  const given = Buffer.from(signature ?? '');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw new Refusal(401, 'bad signature');
}

function page(res: ServerResponse, status: number, title: string, body: string): void {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store', 'referrer-policy': 'no-referrer' });
  res.end(`<!doctype html><html><head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head><body style="font-family:sans-serif;max-width:40em;margin:2em auto"><h2>${escapeHtml(title)}</h2>${body}</body></html>`);
}

export async function startApprovalServer(opts: ApprovalServerOptions): Promise<ApprovalServer> {
  const { config, client } = opts;
  const now = opts.now ?? Date.now;
  const log = opts.log ?? ((line: string) => console.log(line));

  /** Refusals are part of the audit trail, whichever run they claimed to be about. */
  const logRefusal = async (channel: string, reason: string, detail: Record<string, unknown>, workflowId?: string): Promise<void> => {
    log(`refused ${channel} request: ${reason}`);
    await withControl(config, (c) =>
      c.query(
        `INSERT INTO failover_log (status, runbook, step, workflow_id, operator, detail, switch_time)
         VALUES ('refused', 'approval-endpoint', ?, ?, ?, ?, UTC_TIMESTAMP(3))`,
        [`${channel} approval refused`, workflowId ?? null, (detail.approver as string) ?? null, JSON.stringify({ reason, ...detail })],
      ),
    ).catch((err) => log(`could not log the refusal: ${(err as Error).message}`));
  };

  const clusterOf = async (workflowId: string): Promise<string> => {
    const d = await client.workflow.getHandle(workflowId).describe();
    const cluster = d.typedSearchAttributes.getAll().find((p) => p.key.name === 'Cluster')?.value;
    if (typeof cluster !== 'string') throw new Refusal(404, `${workflowId} is not a runbook of a known cluster`);
    return cluster;
  };

  const decide = async (workflowId: string, decision: 'approve' | 'reject', approver: string, channel: string, comment?: string): Promise<DecisionVerdict> => {
    try {
      return await client.workflow.getHandle(workflowId).executeUpdate<DecisionVerdict, [unknown]>('decide', { args: [{ decision, approver, channel, comment }] });
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) return { accepted: false, status: 'not_requested', reason: `no runbook ${workflowId}` };
      // An update to a closed run fails: the run finished.
      const d = await client.workflow.getHandle(workflowId).describe().catch(() => undefined);
      if (d && d.status.name !== 'RUNNING') return { accepted: false, status: 'not_requested', reason: `the run has finished (${d.status.name.toLowerCase()})` };
      throw err;
    }
  };

  // ---- Slack ----------------------------------------------------------------------------------
  const handleSlack = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (!opts.slackSigningSecret) throw new Refusal(503, 'Slack is not configured (SLACK_SIGNING_SECRET)');
    const body = await readBody(req);
    const ts = req.headers['x-slack-request-timestamp'] as string | undefined;
    const sig = req.headers['x-slack-signature'] as string | undefined;
    verifySlackSignature(opts.slackSigningSecret, ts, sig, body, Math.floor(now() / 1000));
    const fresh = await withControl(config, async (c) => {
      const [r] = await c.query('INSERT IGNORE INTO slack_request_seen (signature, request_ts) VALUES (?, ?)', [sig!.slice(3), Number(ts)]);
      return (r as { affectedRows: number }).affectedRows === 1;
    });
    if (!fresh) throw new Refusal(409, 'replayed request');
    // Acknowledge now; the verdict goes back as an ephemeral message.
    res.writeHead(200).end();

    const payload = JSON.parse(new URLSearchParams(body).get('payload') ?? '{}');
    const action = payload.actions?.[0];
    const userId: string | undefined = payload.user?.id;
    const channelId: string | undefined = payload.channel?.id;
    const workflowId: string | undefined = action?.value;
    const decision = action?.action_id === 'runbook_approve' ? 'approve' : action?.action_id === 'runbook_reject' ? 'reject' : undefined;
    const tell = async (text: string) => {
      if (!opts.slack || !channelId || !userId) return;
      await opts.slack.chat.postEphemeral({ channel: channelId, user: userId, text }).catch((err) => log(`ephemeral reply failed: ${(err as Error).message}`));
    };
    if (!decision || !workflowId || !userId) {
      await logRefusal('slack', 'not an approval action', { userId, actionId: action?.action_id }, workflowId);
      return;
    }
    const cluster = await clusterOf(workflowId);
    const person = getCluster(config, cluster).people.find((p) => p.slack === userId);
    if (!person) {
      const reason = `Slack user ${userId} is not one of ${cluster}'s people`;
      await logRefusal('slack', reason, { userId, decision, cluster }, workflowId);
      await tell(`Not recorded: ${reason}.`);
      return;
    }
    const verdict = await decide(workflowId, decision, person.name, 'slack', `Slack user ${userId}`);
    if (!verdict.accepted) await logRefusal('slack', verdict.reason ?? 'refused', { userId, approver: person.name, decision }, workflowId);
    await tell(verdict.accepted ? `Recorded: ${decision === 'approve' ? 'approved' : 'rejected'} by ${person.name}.` : `Not recorded: ${verdict.reason}.`);
  };

  // ---- Email links ----------------------------------------------------------------------------
  const claimsOf = async (token: string): Promise<ApprovalLinkClaims> => {
    if (!opts.linkKey) throw new Refusal(503, 'approval links are not configured (RUNBOOK_LINK_SIGNING_KEY)');
    const v = verifyApprovalToken(token, opts.linkKey, now());
    if (!v.ok) {
      await logRefusal('email', `link ${v.reason}`, {});
      throw new Refusal(v.reason === 'expired' ? 410 : 400, `This link is not valid: ${v.reason}.`);
    }
    return v.claims;
  };

  const used = (nonce: string) =>
    withControl(config, async (c) => ((await c.query('SELECT 1 FROM approval_link_used WHERE nonce = ?', [nonce]))[0] as unknown[]).length > 0);

  const handleLinkGet = async (token: string, res: ServerResponse): Promise<void> => {
    const claims = await claimsOf(token);
    if (await used(claims.nonce)) {
      await logRefusal('email', 'link already used', { approver: claims.approver }, claims.workflowId);
      throw new Refusal(410, 'This link has already been used.');
    }
    const verb = claims.decision === 'approve' ? 'Approve' : 'Reject';
    page(
      res,
      200,
      `${verb} ${claims.workflowId}?`,
      `<p>You are about to <b>${escapeHtml(claims.decision)}</b> runbook <code>${escapeHtml(claims.workflowId)}</code> as <b>${escapeHtml(claims.approver)}</b>.</p>
       <form method="post"><button type="submit">${verb}</button></form>
       <p><small>This link works once and expires at ${escapeHtml(new Date(claims.expiresAt).toISOString())}.</small></p>`,
    );
  };

  const handleLinkPost = async (token: string, res: ServerResponse): Promise<void> => {
    const claims = await claimsOf(token);
    const first = await withControl(config, async (c) => {
      const [r] = await c.query('INSERT IGNORE INTO approval_link_used (nonce, workflow_id, approver) VALUES (?, ?, ?)', [claims.nonce, claims.workflowId, claims.approver]);
      return (r as { affectedRows: number }).affectedRows === 1;
    });
    if (!first) {
      await logRefusal('email', 'link already used', { approver: claims.approver }, claims.workflowId);
      throw new Refusal(410, 'This link has already been used.');
    }
    const verdict = await decide(claims.workflowId, claims.decision, claims.approver, 'email');
    if (!verdict.accepted) {
      await logRefusal('email', verdict.reason ?? 'refused', { approver: claims.approver }, claims.workflowId);
      page(res, 409, 'Not recorded', `<p>${escapeHtml(verdict.reason ?? 'refused')}</p>`);
      return;
    }
    page(res, 200, claims.decision === 'approve' ? 'Approved' : 'Rejected', `<p>Recorded for <code>${escapeHtml(claims.workflowId)}</code> as ${escapeHtml(claims.approver)}.</p>`);
  };

  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const link = /^\/approve\/([A-Za-z0-9_.-]+)$/.exec(url.pathname);
    const route =
      req.method === 'POST' && url.pathname === '/slack/interactions'
        ? handleSlack(req, res)
        : link && req.method === 'GET'
          ? handleLinkGet(link[1]!, res)
          : link && req.method === 'POST'
            ? handleLinkPost(link[1]!, res)
            : url.pathname === '/healthz'
              ? Promise.resolve(void res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n'))
              : Promise.reject(new Refusal(404, 'not found'));
    route.catch(async (err) => {
      const refusal = err instanceof Refusal ? err : undefined;
      if (refusal && url.pathname === '/slack/interactions' && refusal.status !== 503) {
        await logRefusal('slack', refusal.message, { remote: req.socket.remoteAddress });
      }
      if (!refusal) log(`approval endpoint error on ${req.method} ${url.pathname}: ${(err as Error).message}`);
      if (res.headersSent) return;
      const status = refusal?.status ?? 500;
      if (link) page(res, status, 'Not recorded', `<p>${escapeHtml(refusal?.message ?? 'internal error')}</p>`);
      else res.writeHead(status, { 'content-type': 'text/plain' }).end(`${refusal?.message ?? 'internal error'}\n`);
    });
  });
  await new Promise<void>((resolve) => server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${opts.host ?? '127.0.0.1'}:${port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
