/**
 * A local stand-in for Slack's Web API (node:http on 127.0.0.1, a free port) speaking the methods
 * the runbook engine calls: chat.postMessage, chat.update, chat.postEphemeral and auth.test.
 *
 * It parses bodies the way WebClient sends them (form-encoded, nested fields such as `blocks` as
 * JSON strings) and JSON bodies, checks `Authorization: Bearer <token>`, answers Slack-shaped JSON
 * and records every call. Tests can make the next calls fail, rate-limit them (HTTP 429 with
 * Retry-After), take Slack down (HTTP 503 everywhere) or make it hang (no answer until reset).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FakeSlackCall {
  method: string;
  /** The parsed request: form fields, with JSON-valued ones (`blocks`, `attachments`, …) decoded. */
  body: Record<string, any>;
  /** Epoch ms when the request arrived. */
  at: number;
  /** What it was answered: `ok`, Slack's error code, or `http_429` / `http_503`. */
  answer: string;
}

export interface FakeSlackMessage {
  channel: string;
  ts: string;
  thread_ts?: string;
  text?: string;
  blocks?: any[];
  /** How many times chat.update replaced it. */
  edits: number;
}

/** Fields WebClient JSON-encodes inside a form body. */
const JSON_FIELDS = new Set(['blocks', 'attachments', 'metadata', 'unfurls', 'user_auth_blocks', 'view']);

const BOT = { user_id: 'U0FAKEBOT', bot_id: 'B0FAKEBOT', team_id: 'T0FAKETEAM' };

/** `#db-incidents` → `C0DBINCIDENTS`; ids (`C…`, `G…`, `D…`) stay as they are. */
export function fakeChannelId(channel: string): string {
  if (/^[CGD][A-Z0-9]{2,}$/.test(channel)) return channel;
  return `C0${channel.replace(/^#/, '').toUpperCase().replace(/[^A-Z0-9]/g, '')}`;
}

export class FakeSlack {
  readonly calls: FakeSlackCall[] = [];
  /** Every message posted, by `channel:ts` (replies included). */
  readonly messages = new Map<string, FakeSlackMessage>();
  private server?: Server;
  private isDown = false;
  private hanging = false;
  /** Answers held back while hanging, released by reset() or stop(). */
  private held: (() => void)[] = [];
  private readonly failures = new Map<string, { error: string; times: number }[]>();
  private readonly rateLimits = new Map<string, { retryAfterSeconds: number; times: number }[]>();
  private tsCounter = 0;

  constructor(readonly token = 'xoxb-fake-test-token') {}

  async start(): Promise<{ url: string }> {
    const server = createServer((req, res) => {
      this.handle(req, res).catch((err) => {
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
        res.end(String(err));
      });
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    const { port } = server.address() as AddressInfo;
    return { url: `http://127.0.0.1:${port}/api/` };
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    this.releaseHeld();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** The next `times` calls of `method` answer `{ ok: false, error }` (HTTP 200, as Slack does). */
  failNext(method: string, error: string, times = 1): void {
    this.queueFor(this.failures, method).push({ error, times });
  }

  /** The next `times` calls of `method` answer HTTP 429 with `Retry-After: retryAfterSeconds`. */
  rateLimitNext(method: string, retryAfterSeconds: number, times = 1): void {
    this.queueFor(this.rateLimits, method).push({ retryAfterSeconds, times });
  }

  /** While down, every request answers HTTP 503. */
  down(on = true): void {
    this.isDown = on;
  }

  /** No answer at all until reset() or stop(): a hung Slack, for request timeouts. */
  hang(): void {
    this.hanging = true;
  }

  private releaseHeld(): void {
    for (const release of this.held.splice(0)) release();
  }

  /** Forget calls, messages and pending controls (the server keeps running). */
  reset(): void {
    this.calls.length = 0;
    this.messages.clear();
    this.failures.clear();
    this.rateLimits.clear();
    this.isDown = false;
    this.hanging = false;
    this.releaseHeld();
  }

  callsTo(method: string): FakeSlackCall[] {
    return this.calls.filter((c) => c.method === method);
  }

  /** Calls Slack answered `ok`. */
  okCallsTo(method: string): FakeSlackCall[] {
    return this.callsTo(method).filter((c) => c.answer === 'ok');
  }

  channelId(name: string): string {
    return fakeChannelId(name);
  }

  // -------------------------------------------------------------------------------------------

  private queueFor<T>(map: Map<string, T[]>, method: string): T[] {
    let q = map.get(method);
    if (!q) map.set(method, (q = []));
    return q;
  }

  /** Take one use of the first pending control for `method`, if any. */
  private take<T extends { times: number }>(map: Map<string, T[]>, method: string): T | undefined {
    const q = map.get(method);
    const first = q?.[0];
    if (!q || !first) return undefined;
    first.times -= 1;
    if (first.times <= 0) q.shift();
    return first;
  }

  private nextTs(): string {
    this.tsCounter += 1;
    const micros = 100 * this.tsCounter;
    const seconds = 1_700_000_000 + Math.floor(micros / 1_000_000);
    return `${seconds}.${String(micros % 1_000_000).padStart(6, '0')}`;
  }

  private async readBody(req: IncomingMessage): Promise<Record<string, any>> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const raw = Buffer.concat(chunks).toString('utf8');
    if (!raw) return {};
    const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    if (type === 'application/json') return JSON.parse(raw) as Record<string, any>;
    const body: Record<string, any> = {};
    for (const [key, value] of new URLSearchParams(raw)) {
      if (JSON_FIELDS.has(key)) {
        try {
          body[key] = JSON.parse(value);
          continue;
        } catch {
          // Not JSON: keep the string (Slack would answer invalid_blocks_format).
        }
      }
      body[key] = value;
    }
    return body;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const at = Date.now();
    const url = new URL(req.url ?? '/', 'http://fake-slack');
    const method = url.pathname.replace(/^\/api\//, '').replace(/^\//, '');
    const body = req.method === 'POST' ? await this.readBody(req) : Object.fromEntries(url.searchParams);
    const call: FakeSlackCall = { method, body, at, answer: 'ok' };
    this.calls.push(call);
    if (this.hanging) await new Promise<void>((release) => this.held.push(release));

    const send = (status: number, payload: unknown, headers: Record<string, string> = {}) => {
      if (res.destroyed) return;
      res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', ...headers });
      res.end(JSON.stringify(payload));
    };
    const fail = (error: string) => {
      call.answer = error;
      send(200, { ok: false, error });
    };

    if (this.isDown) {
      call.answer = 'http_503';
      res.writeHead(503, { 'content-type': 'text/plain' });
      res.end('Service Unavailable');
      return;
    }

    const auth = req.headers.authorization;
    const given = auth?.startsWith('Bearer ') ? auth.slice('Bearer '.length) : typeof body.token === 'string' ? body.token : undefined;
    if (!given) return fail('not_authed');
    if (given !== this.token) return fail('invalid_auth');

    const limited = this.take(this.rateLimits, method);
    if (limited) {
      call.answer = 'http_429';
      send(429, { ok: false, error: 'ratelimited' }, { 'retry-after': String(limited.retryAfterSeconds) });
      return;
    }
    const failure = this.take(this.failures, method);
    if (failure) return fail(failure.error);

    switch (method) {
      case 'auth.test':
        return send(200, { ok: true, url: 'https://fake-slack.example/', team: 'Fake Team', user: 'runbook-bot', ...BOT });

      case 'chat.postMessage': {
        if (!body.channel) return fail('channel_not_found');
        if (!body.text && !body.blocks && !body.attachments) return fail('no_text');
        const channel = fakeChannelId(String(body.channel));
        if (body.thread_ts && !this.messages.has(`${channel}:${body.thread_ts}`)) return fail('thread_not_found');
        const ts = this.nextTs();
        const msg: FakeSlackMessage = { channel, ts, thread_ts: body.thread_ts, text: body.text, blocks: body.blocks, edits: 0 };
        this.messages.set(`${channel}:${ts}`, msg);
        return send(200, {
          ok: true,
          channel,
          ts,
          message: { type: 'message', subtype: 'bot_message', text: body.text ?? '', blocks: body.blocks, ts, thread_ts: body.thread_ts, user: BOT.user_id, bot_id: BOT.bot_id },
        });
      }

      case 'chat.update': {
        if (!body.channel) return fail('channel_not_found');
        if (!body.ts) return fail('message_not_found');
        const channel = fakeChannelId(String(body.channel));
        const msg = this.messages.get(`${channel}:${body.ts}`);
        if (!msg) return fail('message_not_found');
        if (body.text !== undefined) msg.text = body.text;
        if (body.blocks !== undefined) msg.blocks = body.blocks;
        msg.edits += 1;
        return send(200, {
          ok: true,
          channel,
          ts: msg.ts,
          text: msg.text ?? '',
          message: { type: 'message', text: msg.text ?? '', blocks: msg.blocks, user: BOT.user_id, bot_id: BOT.bot_id, edited: { user: BOT.user_id, ts: this.nextTs() } },
        });
      }

      case 'chat.postEphemeral': {
        if (!body.channel) return fail('channel_not_found');
        if (!body.user) return fail('user_not_in_channel');
        if (!body.text && !body.blocks && !body.attachments) return fail('no_text');
        return send(200, { ok: true, message_ts: this.nextTs() });
      }

      default:
        return fail('unknown_method');
    }
  }
}
