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
 * Every refusal is logged in failover_log: a signed, fresh request's on its own row; one that proves
 * nothing counted per source and minute, and a source past its share is answered 429 at once (see
 * ./refusals.ts). Bodies are bounded: a larger one is answered 413. Hand-written rather than
 * @slack/bolt: Bolt would pull a second @slack/web-api major and express for a 20-line HMAC check.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebClient } from '@slack/web-api';
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { getCluster, type RunbookConfig } from '../config/load';
import { approvalLinkUsed, recordSlackRequest, useApprovalLink, withControl } from '../adapters/control/store';
import { escapeHtml } from '../adapters/notify/emailTemplates';
import { verifyApprovalToken, type ApprovalLinkClaims } from '../adapters/notify/links';
import { INPUT_LIMITS, textProblem } from '../core/inputs';
import { sendDecision, type SentDecision } from '../adapters/temporal/decision';
import { RefusalLog } from './refusals';
import { createPanelHandler } from './panel/handler';

const MAX_SKEW_SECONDS = 5 * 60;
const MAX_BODY_BYTES = 256 * 1024;
/** A body past MAX_BODY_BYTES is read and dropped up to here, so the 413 reaches the client; past it the connection is cut. */
const MAX_DRAIN_BYTES = 16 * 1024 * 1024;

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
  /** Refusals per source and minute before it is answered 429 without being read (default 30). */
  refusalsPerMinute?: number;
  /** Behind a proxy that appends the client to X-Forwarded-For (RUNBOOK_HTTP_TRUST_PROXY): the source is that. */
  trustProxy?: boolean;
  now?: () => number;
  log?: (line: string) => void;
  /** The status panel at `/` (RUNBOOK_PANEL_TOKEN; without it `/` answers 503), and where its links to the Temporal UI go. */
  panel?: { token?: string; uiUrl?: string; namespace?: string };
}

export interface ApprovalServer {
  url: string;
  close(): Promise<void>;
}

/**
 * A request answered with `status`. `signed`: it came with a valid signature or link, so it is
 * audited on its own row; otherwise it is counted with its source's other refusals.
 */
class Refusal extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly audit?: { signed: true; detail?: Record<string, unknown>; workflowId?: string; approver?: string },
  ) {
    super(message);
  }
}

/** The body, or a 413 once it passes MAX_BODY_BYTES: the rest is read and dropped so the answer arrives. */
function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let size = 0;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= MAX_BODY_BYTES) chunks.push(c);
      else if (size > MAX_DRAIN_BYTES) req.destroy();
    });
    const tooLarge = () => new Refusal(413, `request body too large (over ${MAX_BODY_BYTES} bytes)`);
    req.on('end', () => (size > MAX_BODY_BYTES ? reject(tooLarge()) : resolve(Buffer.concat(chunks).toString('utf8'))));
    req.on('error', reject);
    req.on('close', () => reject(size > MAX_BODY_BYTES ? tooLarge() : new Error('the client went away mid-request'))); // no-op once settled
  });
}

/** Slack's v0 signature: HMAC-SHA256 of `v0:<timestamp>:<raw body>`, compared in constant time. */
export function verifySlackSignature(secret: string, timestamp: string | undefined, signature: string | undefined, body: string, nowSeconds: number): void {
  if (!timestamp || !/^\d{1,12}$/.test(timestamp)) throw new Refusal(401, 'missing or malformed X-Slack-Request-Timestamp');
  if (Math.abs(nowSeconds - Number(timestamp)) > MAX_SKEW_SECONDS) throw new Refusal(401, `stale request: timestamp ${timestamp} is more than 5 minutes off`);
  const expected = Buffer.from(`v0=${createHmac('sha256', secret).update(`v0:${timestamp}:${body}`).digest('hex')}`);
  const given = Buffer.from(signature ?? '');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw new Refusal(401, 'bad signature');
}

/** A Slack button click, as our approval message sends it, with every field bounded. */
interface Click {
  decision: 'approve' | 'reject';
  workflowId: string;
  userId: string;
  channelId?: string;
}

const SLACK_ID = /^[A-Z0-9]{1,32}$/;
const WORKFLOW_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,254}$/;

/** The click a signed payload carries, or a refusal saying what is wrong with it. */
function parseClick(body: string): Click | { refused: string; detail: Record<string, unknown> } {
  let payload: any;
  try {
    payload = JSON.parse(new URLSearchParams(body).get('payload') ?? '');
  } catch {
    return { refused: 'malformed payload: not the JSON of a Slack interaction', detail: {} };
  }
  const action = Array.isArray(payload?.actions) ? payload.actions[0] : undefined;
  const userId = payload?.user?.id;
  const channelId = payload?.channel?.id;
  const detail = { userId: typeof userId === 'string' ? userId.slice(0, 40) : undefined, actionId: typeof action?.action_id === 'string' ? action.action_id.slice(0, 40) : undefined };
  const decision = action?.action_id === 'runbook_approve' ? 'approve' : action?.action_id === 'runbook_reject' ? 'reject' : undefined;
  if (!decision) return { refused: 'not an approval action', detail };
  if (typeof userId !== 'string' || !SLACK_ID.test(userId)) return { refused: 'malformed payload: no Slack user id', detail };
  if (channelId !== undefined && (typeof channelId !== 'string' || !SLACK_ID.test(channelId))) return { refused: 'malformed payload: bad channel id', detail };
  const workflowId = action?.value;
  if (typeof workflowId !== 'string' || !WORKFLOW_ID.test(workflowId)) return { refused: 'malformed payload: the button names no runbook', detail };
  return { decision, workflowId, userId, channelId };
}

function page(res: ServerResponse, status: number, title: string, body: string): void {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store', 'referrer-policy': 'no-referrer' });
  res.end(`<!doctype html><html><head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head><body style="font-family:sans-serif;max-width:40em;margin:2em auto"><h2>${escapeHtml(title)}</h2>${body}</body></html>`);
}

export async function startApprovalServer(opts: ApprovalServerOptions): Promise<ApprovalServer> {
  const { config, client } = opts;
  const now = opts.now ?? Date.now;
  const log = opts.log ?? ((line: string) => console.log(line));
  const refusals = new RefusalLog(config, log, now, opts.refusalsPerMinute);

  const sourceOf = (req: IncomingMessage): string => {
    const forwarded = opts.trustProxy ? String(req.headers['x-forwarded-for'] ?? '').split(',').pop()?.trim() : undefined;
    return (forwarded || req.socket.remoteAddress || 'unknown').slice(0, 45);
  };

  const clusterOf = async (workflowId: string): Promise<string | undefined> => {
    const d = await client.workflow.getHandle(workflowId).describe();
    const cluster = d.typedSearchAttributes.getAll().find((p) => p.key.name === 'Cluster')?.value;
    return typeof cluster === 'string' ? cluster : undefined;
  };

  const decide = (workflowId: string, decision: 'approve' | 'reject', approver: string, channel: 'slack' | 'email', comment?: string): Promise<SentDecision> =>
    sendDecision(client, workflowId, { decision, approver, channel, comment });

  // ---- Slack ----------------------------------------------------------------------------------
  const handleSlack = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (!opts.slackSigningSecret) throw new Refusal(503, 'Slack is not configured (SLACK_SIGNING_SECRET)');
    const body = await readBody(req);
    const ts = req.headers['x-slack-request-timestamp'] as string | undefined;
    const sig = req.headers['x-slack-signature'] as string | undefined;
    verifySlackSignature(opts.slackSigningSecret, ts, sig, body, Math.floor(now() / 1000));
    const fresh = await withControl(config, (c) => recordSlackRequest(c, sig!.slice(3), Number(ts)));
    if (!fresh) throw new Refusal(409, 'replayed request');
    const click = parseClick(body);
    if ('refused' in click) throw new Refusal(400, click.refused, { signed: true, detail: click.detail });
    // Acknowledge now (Slack wants an answer within 3 s); the verdict goes back as an ephemeral message.
    res.writeHead(200).end();

    const { decision, workflowId, userId, channelId } = click;
    const tell = async (text: string) => {
      if (!opts.slack || !channelId) return;
      await opts.slack.chat.postEphemeral({ channel: channelId, user: userId, text }).catch((err) => log(`ephemeral reply failed: ${(err as Error).message}`));
    };
    const refuse = async (reason: string, detail: Record<string, unknown>, approver?: string) => {
      await refusals.audit('slack', reason, { userId, decision, ...detail }, workflowId, approver);
      await tell(`Not recorded: ${reason}.`);
    };
    let cluster: string | undefined;
    try {
      cluster = await clusterOf(workflowId);
    } catch (err) {
      if (!(err instanceof WorkflowNotFoundError)) throw err;
      return refuse(`no runbook ${workflowId}`, {});
    }
    if (!cluster || !config.clusters[cluster]) return refuse(`${workflowId} is not a runbook of a cluster this endpoint knows`, { cluster });
    const person = getCluster(config, cluster).people.find((p) => p.slack === userId);
    if (!person) return refuse(`Slack user ${userId} is not one of ${cluster}'s people`, { cluster });
    const verdict = await decide(workflowId, decision, person.name, 'slack', `Slack user ${userId}`);
    if (!verdict.accepted) return refuse(verdict.reason ?? 'refused', { ...(verdict.runOver ? { runOver: verdict.runOver } : {}) }, person.name);
    await tell(`Recorded: ${decision === 'approve' ? 'approved' : 'rejected'} by ${person.name}.`);
  };

  // ---- Email links ----------------------------------------------------------------------------
  const claimsOf = (token: string): ApprovalLinkClaims => {
    if (!opts.linkKey) throw new Refusal(503, 'approval links are not configured (RUNBOOK_LINK_SIGNING_KEY)');
    const v = verifyApprovalToken(token, opts.linkKey, now());
    if (v.ok) {
      const bad = textProblem('approver', v.claims.approver, INPUT_LIMITS.identity) ?? (WORKFLOW_ID.test(v.claims.workflowId) ? undefined : 'the link names no runbook');
      if (bad) throw new Refusal(400, `This link is not valid: ${bad}.`, { signed: true, detail: { link: bad } });
      return v.claims;
    }
    if (v.reason === 'expired') {
      throw new Refusal(410, 'This link is not valid: expired.', { signed: true, detail: { link: 'expired' }, workflowId: v.claims.workflowId, approver: v.claims.approver });
    }
    throw new Refusal(400, `This link is not valid: ${v.reason}.`);
  };

  const used = (nonce: string) =>
    withControl(config, (c) => approvalLinkUsed(c, nonce));

  const alreadyUsed = (claims: ApprovalLinkClaims) => new Refusal(410, 'This link has already been used.', { signed: true, workflowId: claims.workflowId, approver: claims.approver });

  const handleLinkGet = async (token: string, res: ServerResponse): Promise<void> => {
    const claims = claimsOf(token);
    if (await used(claims.nonce)) throw alreadyUsed(claims);
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
    const claims = claimsOf(token);
    const first = await withControl(config, (c) => useApprovalLink(c, claims));
    if (!first) throw alreadyUsed(claims);
    const verdict = await decide(claims.workflowId, claims.decision, claims.approver, 'email');
    if (!verdict.accepted) throw new Refusal(409, verdict.reason ?? 'refused', { signed: true, workflowId: claims.workflowId, approver: claims.approver, detail: verdict.runOver ? { runOver: verdict.runOver } : {} });
    page(res, 200, claims.decision === 'approve' ? 'Approved' : 'Rejected', `<p>Recorded for <code>${escapeHtml(claims.workflowId)}</code> as ${escapeHtml(claims.approver)}.</p>`);
  };

  const panel = createPanelHandler({ config, client, token: opts.panel?.token, uiUrl: opts.panel?.uiUrl, namespace: opts.panel?.namespace });

  const server: Server = createServer((req, res) => {
    const source = sourceOf(req);
    const url = new URL(req.url ?? '/', 'http://localhost');
    const link = /^\/approve\/([A-Za-z0-9_.-]{1,4096})$/.exec(url.pathname);
    const channel = link ? 'email' : url.pathname === '/slack/interactions' ? 'slack' : 'http';
    if (url.pathname !== '/healthz' && refusals.limited(source)) {
      // This source has had its share of refusals this minute: answered without reading it.
      refusals.count(source, channel, 'rate limited');
      res.writeHead(429, { 'content-type': 'text/plain', 'retry-after': '60', connection: 'close' }).end('too many refused requests from this address; try again in a minute\n');
      req.resume();
      return;
    }
    const isPanel = url.pathname === '/' || url.pathname === '/login';
    const route = isPanel
      ? panel.handle(req, res, url, (reason) => refusals.count(source, 'panel', reason)).then(() => undefined)
      : req.method === 'POST' && url.pathname === '/slack/interactions'
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
      if (!refusal) log(`approval endpoint error on ${req.method} ${url.pathname}: ${(err as Error).message}`);
      else if (refusal.status === 503) {
        /* not configured: not a refusal of the request */
      } else if (refusal.audit) await refusals.audit(channel, refusal.message, { ...refusal.audit.detail, source }, refusal.audit.workflowId, refusal.audit.approver);
      else refusals.count(source, channel, refusal.status === 404 ? `${req.method} ${url.pathname.slice(0, 60)}: not found` : refusal.message.replace(/timestamp \d+/, 'timestamp'));
      if (res.headersSent) return;
      const status = refusal?.status ?? 500;
      // Anything not read yet is dropped: the answer must still reach the client.
      if (!req.complete) req.resume();
      if (link) page(res, status, 'Not recorded', `<p>${escapeHtml(refusal?.message ?? 'internal error')}</p>`);
      else res.writeHead(status, { 'content-type': 'text/plain' }).end(`${refusal?.message ?? 'internal error'}\n`);
    });
  });
  // A slow sender holds nothing for long.
  server.requestTimeout = 30_000;
  server.headersTimeout = 10_000;
  await new Promise<void>((resolve) => server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${opts.host ?? '127.0.0.1'}:${port}`,
    close: async () => {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await refusals.close();
    },
  };
}
