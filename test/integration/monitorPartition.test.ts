/**
 * The monitor reaches the primary through a small TCP proxy that the replicas do not use. Cutting
 * the proxy is a partition on the monitor's side: an alert that says so, never a failover. A
 * downtime on the primary silences actions and alerts while it is frozen past the threshold; when
 * the downtime ends by itself the monitor acts, and the frozen primary is fenced by the STONITH
 * hook and replaced.
 */
import { mkdtempSync } from 'node:fs';
import { createServer, connect as tcpConnect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { holdExclusive } from '../support/exclusive';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunbookConfig } from '../../src/config/load';
import type { Sandbox } from '../../src/adapters/mariadbd/sandbox';
import type { Notifier } from '../../src/activities/notify';
import type { RunbookNotification } from '../../src/core/notifications';
import { downtimeUpdate, monitorWorkflowId, stopMonitorUpdate } from '../../src/core/monitorDefinitions';
import { startMonitor } from '../../src/cli/actions/monitor';
import { shape } from '../support/failover';
import { automaticFailovers, brokenChains, monitorRows, snapshotOf, stonithHook, waitForRow, writePidFiles } from '../support/monitor';
import { eventually, startTestSandbox, testSandboxConfig } from '../support/sandbox';
import { sql, startInProcessWorker, type InProcessWorker } from '../support/stack';

const taskQueue = `monitor-partition-${process.pid}`;
// A monitor worker in another region, on its own task queue, that reaches the primary directly.
const observerQueue = `monitor-observer-${process.pid}`;
const pidDir = mkdtempSync(join(tmpdir(), 'runbook-monitor-partition-'));
const proxyPort = 30110 + Number(process.env.RUNBOOK_TEST_PORT_OFFSET ?? 0);
let sandboxConfig: RunbookConfig;
let config: RunbookConfig; // the monitor's: orders-a through the proxy
let sandbox: Sandbox;
let stack: InProcessWorker;
let observer: InProcessWorker;
let proxy: TcpProxy;
const alerts: RunbookNotification[] = [];
const recorder: Notifier = { name: 'recorder', send: async (n) => void alerts.push(n) };

/** A TCP forwarder that can be cut (listener closed, every connection dropped) and restored. */
class TcpProxy {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  constructor(private readonly port: number, private readonly target: number) {}
  async start(): Promise<void> {
    this.server = createServer((client) => {
      const upstream = tcpConnect(this.target, '127.0.0.1');
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('error', () => undefined);
        s.on('close', () => this.sockets.delete(s));
      }
      client.pipe(upstream).pipe(client);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    await new Promise<void>((resolve) => this.server!.listen(this.port, '127.0.0.1', resolve));
  }
  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    this.server = undefined;
  }
}

function settings(doc: any): void {
  const orders = doc.clusters.orders;
  orders.monitor = { intervalSeconds: 1, failureThreshold: 3, autoFailover: 'auto', observers: [{ region: 'region-b', taskQueue: observerQueue }], observerTimeoutSeconds: 10 };
  orders.thresholds = { ...orders.thresholds, probeTimeoutSeconds: 2, confirmProbes: 2, confirmIntervalMs: 500 };
  orders.approval.failover.emergency = { mode: 'auto' };
  orders.fencing = { hooks: [stonithHook(pidDir)] };
}

let releaseMonitorLock: (() => void) | undefined;
beforeAll(async () => {
  releaseMonitorLock = await holdExclusive('monitor-orders');
  ({ config: sandboxConfig, sandbox } = await startTestSandbox('monitor-partition', 30100, settings));
  const primary = sandboxConfig.clusters.orders!.instances.find((i) => i.name === 'orders-a')!;
  config = testSandboxConfig('monitor-partition-proxied', 30100, (doc) => {
    settings(doc);
    const a = doc.clusters.orders.instances.find((i: { name: string }) => i.name === 'orders-a');
    a.replicationAddress = { host: a.host, port: a.port };
    a.port = proxyPort;
  });
  proxy = new TcpProxy(proxyPort, primary.port);
  await proxy.start();
  writePidFiles(sandbox, pidDir, ['orders-a', 'orders-b', 'orders-c']);
  stack = await startInProcessWorker(config, taskQueue, { notifiers: [recorder] });
  observer = await startInProcessWorker(sandboxConfig, observerQueue);
}, 900_000); // may first wait for another file's monitor to finish

afterAll(async () => {
  await stack?.client.workflow.getHandle(monitorWorkflowId('orders')).terminate('test over').catch(() => undefined);
  await stack?.stop();
  await observer?.stop();
  await proxy?.stop();
  await sandbox?.destroy();
  releaseMonitorLock?.();
});

describe('monitor-side partition and downtime', () => {
  it('the monitor cut from the primary while its replicas still stream from it: an alert, no failover', async () => {
    await startMonitor(stack.client, config, 'orders', 'carol', taskQueue);
    await waitForRow(config, (r) => r.step === 'orders: unknown → healthy');
    expect((await snapshotOf(stack.client)).state.primary).toBe('orders-a');
    const before = (await monitorRows(config)).length;
    await proxy.stop();
    try {
      const row = await waitForRow(config, (r) => r.detail.to === 'monitor_partition', before, 60_000);
      expect(row.detail.summary).toMatch(/monitor-side partition/);
      await eventually('the alert', async () => alerts.find((a) => a.kind === 'alert' && /monitor-side partition/.test(a.status)));
      const rounds = (await snapshotOf(stack.client)).rounds;
      await eventually('three more rounds', async () => (await snapshotOf(stack.client)).rounds >= rounds + 3, 30_000);
    } finally {
      await proxy.start();
    }
    await waitForRow(config, (r) => r.step === 'orders: monitor_partition → healthy', before);
    expect(await automaticFailovers(config)).toEqual([]);
    expect((await shape(sandboxConfig)).primary).toBe('orders-a');
  });

  it('the monitor and the replicas lose the primary, an observer in another region still reaches it: its vote is logged, no failover, a page', async () => {
    const before = (await monitorRows(config)).length;
    const alertsBefore = alerts.length;
    await proxy.stop();
    await sql(sandboxConfig, 'orders-b', 'STOP SLAVE IO_THREAD');
    await sql(sandboxConfig, 'orders-c', 'STOP SLAVE IO_THREAD');
    try {
      await waitForRow(config, (r) => r.detail.to === 'primary_dead', before, 60_000);
      const vote = await waitForRow(config, (r) => r.status === 'vote', before, 60_000);
      expect(vote.detail).toMatchObject({ region: 'region-b', taskQueue: observerQueue, vote: 'disagree', primary: 'orders-a' });
      expect(vote.detail.summary).toMatch(/region-b reaches orders-a/);
      const page = await waitForRow(config, (r) => r.status === 'paged', before, 30_000);
      expect(page.detail.because).toBe('observers');
      await eventually('the page', async () => alerts.slice(alertsBefore).find((a) => a.severity === 'L1' && /not to every observer/.test(a.title)));
      const s = await snapshotOf(stack.client);
      expect(s.lastFailure).toMatchObject({ primary: 'orders-a', handled: 'paged', pagedBecause: 'observers', votes: [{ region: 'region-b', vote: 'disagree' }] });
      const rounds = s.rounds;
      await eventually('three more rounds', async () => (await snapshotOf(stack.client)).rounds >= rounds + 3, 30_000);
      expect((await monitorRows(config)).slice(before).filter((r) => r.status === 'vote')).toHaveLength(1); // one vote per failure
    } finally {
      await sql(sandboxConfig, 'orders-b', 'START SLAVE IO_THREAD');
      await sql(sandboxConfig, 'orders-c', 'START SLAVE IO_THREAD');
      await proxy.start();
    }
    await waitForRow(config, (r) => r.step === 'orders: primary_dead → healthy', before, 60_000);
    expect(await automaticFailovers(config)).toEqual([]);
    expect((await shape(sandboxConfig)).primary).toBe('orders-a');
  });

  it('a downtime outlives a restart of the monitor, silences a primary frozen past the threshold; when it ends by itself, the monitor fails over', async () => {
    const handle = stack.client.workflow.getHandle(monitorWorkflowId('orders'));
    const before = (await monitorRows(config)).length;
    // Bad input is refused at the edge and changes nothing.
    expect(await handle.executeUpdate(downtimeUpdate, { args: [{ target: 'orders-z', seconds: 30, reason: 'x', operator: 'alice' }] })).toEqual({
      accepted: false,
      reason: 'orders-z is neither orders nor one of its instances',
    });
    await expect(handle.executeUpdate(downtimeUpdate, { args: [{ target: 'orders-a', seconds: 30, reason: 'x\ny', operator: 'alice' }] })).rejects.toMatchObject({
      cause: { message: expect.stringMatching(/--reason holds a control character/) },
    });
    expect(await handle.executeUpdate(downtimeUpdate, { args: [{ target: 'orders-a', seconds: 45, reason: 'kernel upgrade', operator: 'alice' }] })).toEqual({ accepted: true });
    // The downtime outlives a stop and a start of the monitor.
    expect(await handle.executeUpdate(stopMonitorUpdate, { args: [{ operator: 'alice', reason: 'restart' }] })).toEqual({ accepted: true });
    await handle.result();
    await startMonitor(stack.client, config, 'orders', 'carol', taskQueue);
    const restarted = await waitForRow(config, (r) => r.step === 'monitor started' && Boolean(r.detail.remembered), before);
    expect(restarted.detail.remembered).toMatchObject({ downtimes: [{ target: 'orders-a', reason: 'kernel upgrade', by: 'alice' }] });
    await eventually('the restarted monitor sees the cluster', async () => (await snapshotOf(stack.client)).state.verdict === 'healthy');
    const alertsBefore = alerts.length;
    const pid = sandbox.state(sandbox.instance('orders-a')).pid!;
    process.kill(pid, 'SIGSTOP');
    try {
      const suppressed = await waitForRow(config, (r) => r.status === 'suppressed', before, 60_000);
      expect(suppressed.detail).toMatchObject({ downtime: { target: 'orders-a', reason: 'kernel upgrade' } });
      expect(alerts.slice(alertsBefore).filter((a) => a.kind === 'alert')).toEqual([]);
      expect(await automaticFailovers(config)).toEqual([]);

      await waitForRow(config, (r) => r.step === 'downtime orders-a ended', before, 90_000);
      // The observer cannot reach the frozen primary either: it agrees, and the monitor acts.
      const vote = await waitForRow(config, (r) => r.status === 'vote', before, 60_000);
      expect(vote.detail).toMatchObject({ region: 'region-b', vote: 'agree' });
      const started = await waitForRow(config, (r) => r.step.startsWith('automatic failover') && r.step.endsWith('started'), before, 60_000);
      expect(started.detail.votes).toMatchObject([{ region: 'region-b', vote: 'agree' }]);
      const done = await waitForRow(config, (r) => r.step.startsWith('automatic failover') && r.step.endsWith('succeeded'), before, 120_000);
      expect(done.detail.outcome).toBe('succeeded');
    } finally {
      try {
        process.kill(pid, 'SIGCONT');
      } catch {
        // fenced: the STONITH hook killed it
      }
    }
    const after = await shape(sandboxConfig);
    expect(['orders-b', 'orders-c']).toContain(after.primary);
    expect(after.writable).toEqual([after.primary]);
    expect(await automaticFailovers(config)).toHaveLength(1);
    expect(alerts.some((a) => a.severity === 'L1' && /automatic failover/.test(a.title))).toBe(true);
    expect(brokenChains(await monitorRows(config))).toEqual([]);
  });
});
