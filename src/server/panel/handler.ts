/**
 * The status panel's routes on the approval endpoint's server (`runbook serve`): `GET /` the page,
 * `POST /login` trades the token for a session cookie. Read-only: no route here changes anything.
 *
 * Access: the panel shows topology and operator names, so every request needs the panel token
 * (RUNBOOK_PANEL_TOKEN) as `Authorization: Bearer …` or the session cookie `POST /login` sets. The
 * cookie holds an HMAC of the token, never the token: nothing the server sends contains it.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { collectPanel, type PanelSources, type PanelView } from './data';
import { renderLogin, renderPanel } from './render';

export const PANEL_COOKIE = 'runbook_panel';
const MAX_LOGIN_BODY = 4096;

export interface PanelHandler {
  /** Answers the request if it is the panel's; false when the route is not the panel's. */
  handle(req: IncomingMessage, res: ServerResponse, url: URL, onRefused?: (reason: string) => void): Promise<boolean>;
}

function sameSecret(a: string, b: string): boolean {
  const x = createHmac('sha256', 'compare').update(a).digest();
  const y = createHmac('sha256', 'compare').update(b).digest();
  return timingSafeEqual(x, y);
}

function cookieOf(req: IncomingMessage, name: string): string | undefined {
  for (const part of String(req.headers.cookie ?? '').split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === name) return v.join('=');
  }
  return undefined;
}

async function readSmallBody(req: IncomingMessage): Promise<string | undefined> {
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_LOGIN_BODY) return undefined;
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

const SECURITY_HEADERS = {
  'cache-control': 'no-store',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
};

export function createPanelHandler(src: PanelSources & { token: string | undefined }): PanelHandler {
  const session = src.token ? createHmac('sha256', src.token).update('runbook panel session').digest('base64url') : undefined;
  // Several viewers (and the 2 s refresh) share one read of the servers per second.
  let cached: { at: number; view: Promise<PanelView> } | undefined;
  const view = () => {
    const now = Date.now();
    if (!cached || now - cached.at >= 1000) cached = { at: now, view: collectPanel(src) };
    return cached.view;
  };

  const authorized = (req: IncomingMessage): boolean => {
    if (!src.token || !session) return false;
    const auth = String(req.headers.authorization ?? '');
    if (auth.startsWith('Bearer ') && sameSecret(auth.slice(7), src.token)) return true;
    const cookie = cookieOf(req, PANEL_COOKIE);
    return cookie !== undefined && sameSecret(cookie, session);
  };

  const html = (res: ServerResponse, status: number, body: string, extra: Record<string, string> = {}) => {
    res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'", ...SECURITY_HEADERS, ...extra });
    res.end(body);
  };

  return {
    async handle(req, res, url, onRefused) {
      if (url.pathname !== '/' && url.pathname !== '/login') return false;
      if (!src.token) {
        res.writeHead(503, { 'content-type': 'text/plain', ...SECURITY_HEADERS }).end('the status panel is not configured (set RUNBOOK_PANEL_TOKEN)\n');
        return true;
      }
      if (url.pathname === '/login') {
        if (req.method !== 'POST') {
          html(res, 405, renderLogin('log in with the form'));
          return true;
        }
        const body = await readSmallBody(req);
        const token = body === undefined ? undefined : new URLSearchParams(body).get('token');
        if (!token || !sameSecret(token, src.token)) {
          onRefused?.('panel login: wrong token');
          html(res, 401, renderLogin('wrong token'));
          return true;
        }
        res.writeHead(303, { location: '/', 'set-cookie': `${PANEL_COOKIE}=${session}; HttpOnly; SameSite=Strict; Path=/; Max-Age=43200`, ...SECURITY_HEADERS }).end();
        return true;
      }
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { 'content-type': 'text/plain', allow: 'GET', ...SECURITY_HEADERS }).end('the panel is read-only\n');
        return true;
      }
      if (!authorized(req)) {
        onRefused?.('panel: no or wrong token');
        html(res, 401, renderLogin('the status panel needs its token (RUNBOOK_PANEL_TOKEN)'), { 'www-authenticate': 'Bearer realm="runbook panel"' });
        return true;
      }
      const nonce = randomBytes(16).toString('base64');
      const page = renderPanel(await view(), nonce);
      res.writeHead(200, {
        'content-type': 'text/html; charset=utf-8',
        'content-security-policy': `default-src 'none'; style-src 'unsafe-inline'; script-src 'nonce-${nonce}'; connect-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'`,
        ...SECURITY_HEADERS,
      });
      res.end(req.method === 'HEAD' ? undefined : page);
      return true;
    },
  };
}
