/**
 * The status panel in a real browser (Debian's chromium, driven by puppeteer-core; no browser
 * download) against the sandbox, a real worker and the test dev server: during a planned
 * switchover the primary shown moves from region-a to region-b, the pending approval appears and
 * disappears; a `<script>` in the reason is shown as text; no token, no panel (401); no password
 * or token from the environment in any response. Screenshots go to test-artifacts/panel/.
 *
 * Then, holding the `monitor-orders` lock, with a real monitor for the sandbox cluster: the lag
 * charts are the monitor's samples (the same points its state query returns, kept when it
 * continues as new); in the browser, its verdict and policy, a `runbook downtime`, and a replica's
 * lag rising while its SQL thread is stopped.
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
import { downtimeCommand } from '../../src/cli/actions/monitor';
import { configFingerprint } from '../../src/config/fingerprint';
import { monitorWorkflowId } from '../../src/core/monitorDefinitions';
import type { monitor, MonitorInput } from '../../src/workflows/monitor';
import { holdExclusive } from '../support/exclusive';
import { decide, startFailover, waitForApprovalRequest } from '../support/failover';
import { snapshotOf } from '../support/monitor';
import { eventually, startTestSandbox } from '../support/sandbox';
import { sql, startInProcessWorker, type InProcessWorker } from '../support/stack';

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
    // For the monitor view: a round a second, and a human decides (the test fails nothing over).
    doc.clusters.orders.monitor = { intervalSeconds: 1, failureThreshold: 3, autoFailover: 'notify' };
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

  describe("with the cluster's monitor running", () => {
    let releaseMonitorLock: (() => void) | undefined;
    let firstRunId = '';
    const page = async () => {
      const r = await fetch(`${server.url}/`, { headers: { authorization: `Bearer ${TOKEN}` } });
      const body = await r.text();
      seen.push(body);
      return body;
    };
    /** A lag chart's data attributes, from the page's HTML. */
    const chartOf = (html: string, instance: string) => {
      const m = html.match(new RegExp(`class="region lag-chart" data-instance="${instance}" data-samples="(\\d+)" data-first-at="(\\d*)" data-last-lag="([0-9.]*)"`));
      return m ? { samples: Number(m[1]), firstAt: Number(m[2]), lastLag: m[3] === '' ? null : Number(m[3]) } : undefined;
    };

    beforeAll(async () => {
      releaseMonitorLock = await holdExclusive('monitor-orders');
      // Before any monitor runs: the panel says so rather than draw charts of its own.
      expect(await page()).toContain('cluster orders: no monitor runs, so no lag history');
      // Handed over to a fresh run (continue-as-new) every dozen rounds or so, as a long-running
      // monitor does every 4000 events.
      const handle = await client.workflow.start<typeof monitor>('monitor', {
        taskQueue,
        workflowId: monitorWorkflowId('orders'),
        args: [{ cluster: 'orders', operator: 'carol', configFingerprint: configFingerprint(config), historyLimit: 150 } satisfies MonitorInput],
      });
      firstRunId = handle.firstExecutionRunId;
    }, 900_000); // may first wait for another file's monitor to finish

    afterAll(async () => {
      await client?.workflow.getHandle(monitorWorkflowId('orders')).terminate('test over').catch(() => undefined);
      releaseMonitorLock?.();
    });

    it("draws the monitor's lag samples, kept when the monitor continues as new", async () => {
      const handle = client.workflow.getHandle(monitorWorkflowId('orders'));
      const first = await eventually('the monitor measured a few rounds', async () => {
        const points = (await snapshotOf(client)).lagHistory?.['orders-a'];
        return points && points.length >= 3 ? points[0]! : undefined;
      }, 60_000);
      // The panel draws exactly what the monitor measured (the primary is orders-b since the switchover).
      const drawn = await eventually('the chart of orders-a', async () => chartOf(await page(), 'orders-a'), 30_000);
      expect(drawn.firstAt).toBe(first[0]);
      expect(drawn.samples).toBeGreaterThanOrEqual(3);
      expect(chartOf(await page(), 'orders-c')).toBeDefined();
      expect(chartOf(await page(), 'orders-b')).toBeUndefined();
      // The monitor hands over to a fresh run: the history goes with it.
      await eventually('continue-as-new', async () => (await handle.describe()).runId !== firstRunId, 120_000);
      const after = await eventually('the next run answers', async () => (await snapshotOf(client)).lagHistory?.['orders-a'], 30_000);
      expect(after[0]).toEqual(first);
      expect(after.length).toBeGreaterThan(drawn.samples);
      const redrawn = await eventually('the chart after the hand-over', async () => {
        const c = chartOf(await page(), 'orders-a');
        return c && c.samples > drawn.samples ? c : undefined;
      }, 30_000);
      expect(redrawn.firstAt).toBe(first[0]);
      // The run that continued as new is not listed, its successor once (earlier monitors of this
      // cluster, from other test files on the same server, are runs of their own and may be listed).
      const current = (await handle.describe()).runId;
      const boxesOf = (html: string, runId: string) => html.match(new RegExp(`class="box incident" data-workflow="monitor-orders" data-run="${runId}"`, 'g'))?.length ?? 0;
      const listed = await eventually('the successor listed', async () => {
        const html = await page();
        return boxesOf(html, current) ? html : undefined;
      }, 30_000);
      expect(boxesOf(listed, current)).toBe(1);
      expect(boxesOf(listed, firstRunId)).toBe(0);
    });

    it('in a real browser: verdict and policy, a downtime, and a stopped replica whose lag rises', async () => {
      const browserPage = await loggedIn();
      const monitorText = () => browserPage.$eval('section[data-cluster=orders] .monitor', (e) => e.textContent ?? '');
      await browserPage.waitForFunction(() => /monitor: healthy/.test(document.querySelector('section[data-cluster=orders] .monitor')?.textContent ?? ''), { timeout: 30_000 });
      expect(await monitorText()).toContain('(every 1 s, automatic failover notify)');
      expect(await monitorText()).not.toContain('blocked');

      expect(await downtimeCommand(config, 'orders-c', { for: '30m', reason: 'disk swap <b>in</b> region-c', as: 'alice' }, client)).toBe(0);
      await browserPage.waitForFunction(() => /downtime of orders-c until .* by alice: disk swap <b>in<\/b> region-c/.test(document.querySelector('section[data-cluster=orders] .monitor')?.textContent ?? ''), { timeout: 30_000 });

      const lastLag = () => browserPage.$eval('.lag[data-cluster=orders] .lag-chart[data-instance=orders-c]', (e) => e.getAttribute('data-last-lag'));
      expect(await lastLag()).toBe('0');
      await sql(config, 'orders-b', 'CREATE DATABASE IF NOT EXISTS panellag', 'CREATE TABLE IF NOT EXISTS panellag.t (id INT AUTO_INCREMENT PRIMARY KEY, at DATETIME(6))');
      await sql(config, 'orders-c', 'STOP SLAVE SQL_THREAD');
      const write = () => sql(config, 'orders-b', 'INSERT INTO panellag.t (at) VALUES (NOW(6))');
      try {
        // The page refreshes itself every 2 s: the chart's last point climbs without a reload.
        const early = await eventually('orders-c behind on the page', async () => {
          await write();
          const lag = Number(await lastLag());
          return lag >= 2 ? lag : undefined;
        }, 60_000);
        const later = await eventually('orders-c further behind on the page', async () => {
          await write();
          const lag = Number(await lastLag());
          return lag >= early + 3 ? lag : undefined;
        }, 60_000);
        expect(later).toBeGreaterThan(early);
        // The rise is drawn: the chart's line ends higher (smaller y) than it started.
        const ys = await browserPage.$eval('.lag-chart[data-instance=orders-c] polyline:last-of-type', (e) => (e.getAttribute('points') ?? '').split(' ').map((p: string) => Number(p.split(',')[1])));
        expect(ys.at(-1)).toBeLessThan(ys[0]!);
        await browserPage.screenshot({ path: join(ARTIFACTS, '5-monitor-lag-rising.png'), fullPage: true });
      } finally {
        await sql(config, 'orders-c', 'START SLAVE SQL_THREAD');
      }
      await browserPage.waitForFunction(() => document.querySelector('.lag-chart[data-instance=orders-c]')?.getAttribute('data-last-lag') === '0', { timeout: 60_000 });
      await browserPage.screenshot({ path: join(ARTIFACTS, '6-monitor-caught-up.png'), fullPage: true });
      await browserPage.close();
    });
  });

  it('no password or token from the environment in any response', () => {
    expect(seen.length).toBeGreaterThan(5);
    const all = seen.join('\n');
    for (const secret of secrets()) expect(all.includes(secret), `a secret of ${secret.length} characters was sent`).toBe(false);
  });
});
