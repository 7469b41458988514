/**
 * The status panel in a real browser (Debian's chromium, driven by puppeteer-core; no browser
 * download) against the sandbox, a real worker and the test dev server: during a planned
 * switchover the primary shown moves from region-a to region-b, the pending approval appears and
 * disappears; a `<script>` in the reason is shown as text; no token, no panel (401); no password
 * or token from the environment in any response. Screenshots go to test-artifacts/panel/.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Client } from '@temporalio/client';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunbookConfig } from '../../src/config/load';
import { migrateControl } from '../../src/adapters/control/store';
import type { Sandbox } from '../../src/adapters/mariadbd/sandbox';
import { startApprovalServer, type ApprovalServer } from '../../src/server/approvalServer';
import { decide, startFailover, waitForApprovalRequest } from '../support/failover';
import { startTestSandbox } from '../support/sandbox';
import { startInProcessWorker, type InProcessWorker } from '../support/stack';

// The page functions run in the browser; the test's own types have no DOM.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
declare const document: any, window: any;

const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = join(process.cwd(), 'test-artifacts', 'panel');
const TOKEN = `panel-token-${process.pid}-${Math.random().toString(36).slice(2)}`;
const taskQueue = `panel-${process.pid}`;

let config: RunbookConfig;
let sandbox: Sandbox;
let client: Client;
let stack: InProcessWorker;
let server: ApprovalServer;
let browser: Browser;
/** Every body and header the server sent to the browser, for the secrets check. */
const seen: string[] = [];

/** Every password the config names (by environment variable), and the panel token. */
function secrets(): string[] {
  const found = new Set<string>([TOKEN]);
  const walk = (v: unknown): void => {
    if (!v || typeof v !== 'object') return;
    for (const [k, x] of Object.entries(v)) {
      if (k === 'passwordEnv' && typeof x === 'string' && process.env[x]) found.add(process.env[x]!);
      else walk(x);
    }
  };
  walk(config);
  return [...found].filter((s) => s.length >= 6);
}

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (scripts/bootstrap.sh does)`);
  mkdirSync(ARTIFACTS, { recursive: true });
  ({ config, sandbox } = await startTestSandbox('panel', 31100, (doc) => {
    doc.clusters.orders.approval.failover.planned = { mode: 'required', approvers: ['alice', 'bob'], fourEyes: true, timeoutMinutes: 15, remindEveryMinutes: 5 };
  }));
  await migrateControl(config); // as runbook serve does
  stack = await startInProcessWorker(config, taskQueue);
  client = stack.client;
  server = await startApprovalServer({ config, client, log: () => {}, panel: { token: TOKEN, uiUrl: 'http://127.0.0.1:8233', namespace: 'default' } });
  browser = await puppeteer.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
});

afterAll(async () => {
  await browser?.close();
  await server?.close();
  await stack?.stop();
  await sandbox?.destroy();
});

async function loggedIn(javaScript = true): Promise<Page> {
  // A fresh browser context: no session cookie from another page.
  const page = await (await browser.createBrowserContext()).newPage();
  await page.setJavaScriptEnabled(javaScript);
  await page.setViewport({ width: 1400, height: 1000 });
  page.on('response', async (r) => {
    seen.push(JSON.stringify(r.headers()));
    if (r.request().method() !== 'HEAD' && r.status() !== 303) seen.push(await r.text().catch(() => ''));
  });
  await page.goto(`${server.url}/`);
  await page.type('input[name=token]', TOKEN);
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
  return page;
}

const primaryRegion = (page: Page) => page.$eval('section[data-cluster=orders] .primary-instance', (e) => e.getAttribute('data-region'));

describe('status panel', () => {
  it('without the token: 401 and a login form, never the panel', async () => {
    for (const headers of [{}, { authorization: 'Bearer wrong' }, { cookie: 'runbook_panel=forged' }] as Record<string, string>[]) {
      const r = await fetch(`${server.url}/`, { headers });
      const body = await r.text();
      seen.push(body, JSON.stringify([...r.headers]));
      expect(r.status).toBe(401);
      expect(body).toContain('needs its token');
      expect(body).not.toContain('orders-a');
    }
    const wrong = await fetch(`${server.url}/login`, { method: 'POST', body: 'token=nope', headers: { 'content-type': 'application/x-www-form-urlencoded' }, redirect: 'manual' });
    expect(wrong.status).toBe(401);
    const bearer = await fetch(`${server.url}/`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(bearer.status).toBe(200);
    const body = await bearer.text();
    seen.push(body, JSON.stringify([...bearer.headers]));
    expect(body).toContain('cluster orders');
  });

  it('shows a switchover live: the approval appears and goes, the primary moves region; the reason is text', async () => {
    const page = await loggedIn();
    expect(await primaryRegion(page)).toBe('region-a');
    await page.screenshot({ path: join(ARTIFACTS, '1-before.png'), fullPage: true });

    const reason = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"> drill';
    const handle = await startFailover(client, taskQueue, { target: 'orders-b', reason, requester: 'carol' });
    await waitForApprovalRequest(handle);
    // The page refreshes itself (every 2 s): the approval appears without a reload.
    const box = `.approval[data-workflow="${handle.workflowId}"]`;
    await page.waitForSelector(box, { timeout: 30_000 });
    const approvalText = await page.$eval(box, (e) => e.textContent ?? '');
    expect(approvalText).toMatch(/requested by carol/);
    expect(approvalText).toMatch(/bob via/);
    await page.waitForSelector(`.incident[data-workflow="${handle.workflowId}"] .reason`, { timeout: 30_000 });
    const shown = await page.$eval(`.incident[data-workflow="${handle.workflowId}"] .reason`, (e) => e.textContent ?? '');
    expect(shown).toContain('<script>window.__pwned = 1</script>');
    expect(await page.evaluate(() => window.__pwned)).toBeUndefined();
    expect(await page.$$eval(`.incident[data-workflow="${handle.workflowId}"] script, .incident img`, (n) => n.length)).toBe(0);
    await page.screenshot({ path: join(ARTIFACTS, '2-approval-pending.png'), fullPage: true });

    await decide(handle, 'approve', 'bob');
    await page.waitForFunction((sel) => !document.querySelector(sel), { timeout: 30_000 }, box);
    await handle.result();
    await page.waitForFunction(() => document.querySelector('section[data-cluster=orders] .primary-instance')?.getAttribute('data-region') === 'region-b', { timeout: 30_000 });
    expect(await primaryRegion(page)).toBe('region-b');
    // The run's step timeline is drawn, one bar per step.
    await page.waitForFunction((id) => (document.querySelector(`.incident[data-workflow="${id}"] svg.gantt`)?.querySelectorAll('rect').length ?? 0) >= 10, { timeout: 30_000 }, handle.workflowId);
    expect(await page.$eval(`.incident[data-workflow="${handle.workflowId}"] a`, (a) => a.getAttribute('href'))).toBe(`http://127.0.0.1:8233/namespaces/default/workflows/${handle.workflowId}`);
    await page.screenshot({ path: join(ARTIFACTS, '3-after.png'), fullPage: true });
    expect(await page.evaluate(() => window.__pwned)).toBeUndefined();
    await page.close();
  });

  it('works with JavaScript disabled: a static page that refreshes itself', async () => {
    const page = await loggedIn(false);
    expect(await page.$eval('noscript', (e) => e.innerHTML)).toContain('http-equiv="refresh" content="2"');
    expect(await primaryRegion(page)).toBe('region-b');
    await page.screenshot({ path: join(ARTIFACTS, '4-no-javascript.png'), fullPage: true });
    await page.close();
  });

  it('no password or token from the environment in any response', () => {
    expect(seen.length).toBeGreaterThan(5);
    const all = seen.join('\n');
    for (const secret of secrets()) expect(all.includes(secret), `a secret of ${secret.length} characters was sent`).toBe(false);
  });
});
