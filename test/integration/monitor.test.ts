/**
 * The monitor on the real sandbox, with a real worker process: a primary frozen for less than the
 * failure threshold is left alone; a SIGKILLed primary under write load is replaced automatically
 * by the most advanced replica, with every acknowledged write, as one incident and one failover,
 * even though the worker is SIGKILLed inside that failover's confirmation; a second failure inside the
 * anti-flapping block pages a human instead, and after `ack` it is handled automatically.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { holdExclusive } from '../support/exclusive';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { RunbookConfig } from '../../src/config/load';
import type { Sandbox } from '../../src/adapters/mariadbd/sandbox';
import { ackUpdate, monitorWorkflowId, stopMonitorUpdate } from '../../src/core/monitorDefinitions';
import { startMonitor } from '../../src/cli/actions/monitor';
import { activityRuns, decide, shape, startFailover, stateOf, stepLog, waitForApprovalRequest } from '../support/failover';
import type { FailoverResult } from '../../src/workflows/failover';
import { automaticFailovers, brokenChains, monitorRows, snapshotOf, stonithHook, waitForRow, writePidFiles } from '../support/monitor';
import { eventually, startTestSandbox } from '../support/sandbox';
import { killWorkerProcesses, startWorkerProcess, type WorkerChild } from '../support/workerProcess';
import { prepareLoadSchema, WriteLoad } from '../support/writeLoad';
import { sql } from '../support/stack';

const taskQueue = `monitor-${process.pid}`;
const pidDir = mkdtempSync(join(tmpdir(), 'runbook-monitor-pids-'));
let config: RunbookConfig;
let sandbox: Sandbox;
let client: Client;
let worker: WorkerChild;

const pidOf = (instance: string) => sandbox.state(sandbox.instance(instance)).pid!;

let releaseMonitorLock: (() => void) | undefined;
beforeAll(async () => {
  releaseMonitorLock = await holdExclusive('monitor-orders');
  ({ config, sandbox } = await startTestSandbox('monitor', 30000, (doc) => {
    const orders = doc.clusters.orders;
    orders.monitor = { intervalSeconds: 1, failureThreshold: 3, autoFailover: 'auto' };
    orders.thresholds = { ...orders.thresholds, probeTimeoutSeconds: 2, confirmProbes: 2, confirmIntervalMs: 500 };
    orders.approval.failover.emergency = { mode: 'auto' };
    orders.approval.failover.planned = { mode: 'required', approvers: ['alice', 'bob'], fourEyes: true, timeoutMinutes: 15 };
    orders.fencing = { hooks: [stonithHook(pidDir)] };
  }));
  writePidFiles(sandbox, pidDir, ['orders-a', 'orders-b', 'orders-c']);
  await prepareLoadSchema(config, 'orders', 'orders-a');
  client = new Client({ connection: await Connection.connect({ address: inject('temporalAddress') }) });
  // The worker dies inside the automatic failover's confirmation, after it confirmed and before
  // its completion is reported (the SIGKILL case below): a point of progress, not of time.
  worker = await startWorkerProcess(config, taskQueue, { CRASH_INSIDE_ACTIVITY: 'confirmPrimaryDown' });
}, 900_000); // may first wait for another file's monitor to finish

afterAll(async () => {
  await client?.workflow.getHandle(monitorWorkflowId('orders')).terminate('test over').catch(() => undefined);
  killWorkerProcesses();
  await client?.connection.close();
  await sandbox?.destroy();
  releaseMonitorLock?.();
});

describe('the monitor', () => {
  it('starts once per cluster and records the state it found, not every round', async () => {
    expect(await startMonitor(client, config, 'orders', 'carol', taskQueue)).toEqual({ workflowId: 'monitor-orders', started: true });
    expect(await startMonitor(client, config, 'orders', 'dave', taskQueue)).toEqual({ workflowId: 'monitor-orders', started: false });
    await waitForRow(config, (r) => r.step === 'orders: unknown → healthy');
    await eventually('three rounds', async () => (await snapshotOf(client)).rounds >= 3, 30_000);
    const rows = await monitorRows(config);
    expect(rows.filter((r) => r.status === 'state_change').map((r) => r.step)).toEqual(['monitor started', 'orders: unknown → healthy']);
    expect((await snapshotOf(client)).state).toMatchObject({ primary: 'orders-a', verdict: 'healthy' });
  });

  it("serves the engine's metrics beside the SDK's; a replica's lag rises while its SQL thread is stopped", async () => {
    const scrape = async () => (await fetch(`http://${worker.metricsAddress}/metrics`)).text();
    const value = (text: string, name: string, instance: string) => {
      const m = text.match(new RegExp(`^${name}\\{[^}]*instance="${instance}"[^}]*\\} ([0-9.e+-]+)$`, 'm'));
      return m ? Number(m[1]) : undefined;
    };
    const first = await eventually('engine metrics', async () => {
      const t = await scrape();
      return value(t, 'runbook_instance_up', 'orders-c') === 1 ? t : undefined;
    });
    expect(first).toMatch(/^temporal_activity_execution_latency/m); // the SDK's, same endpoint
    expect(value(first, 'runbook_cluster_primary', 'orders-a')).toBe(1);
    expect(value(first, 'runbook_instance_read_only', 'orders-c')).toBe(1);
    expect(value(first, 'runbook_replication_sql_running', 'orders-c')).toBe(1);
    expect(first).toMatch(/^runbook_gtid_sequence\{cluster="orders",instance="orders-a",domain="0"\} [1-9]/m);

    await sql(config, 'orders-c', 'STOP SLAVE SQL_THREAD');
    let id = 2_000_000;
    const write = () => sql(config, 'orders-a', `INSERT INTO loadtest.acks VALUES (${++id}, 'lag-test', NOW(6))`);
    try {
      const early = await eventually('orders-c lagging', async () => {
        await write();
        const t = await scrape();
        return value(t, 'runbook_replication_sql_running', 'orders-c') === 0 && (value(t, 'runbook_replication_lag_seconds', 'orders-c') ?? 0) >= 1 ? value(t, 'runbook_replication_lag_seconds', 'orders-c') : undefined;
      }, 30_000);
      const later = await eventually('orders-c lag rising', async () => {
        await write();
        const lag = value(await scrape(), 'runbook_replication_lag_seconds', 'orders-c') ?? 0;
        return lag >= early! + 2 ? lag : undefined;
      }, 30_000);
      expect(later).toBeGreaterThan(early!);
    } finally {
      await sql(config, 'orders-c', 'START SLAVE SQL_THREAD');
    }
    await eventually('orders-c caught up', async () => value(await scrape(), 'runbook_replication_lag_seconds', 'orders-c') === 0, 30_000);
    await waitForRow(config, (r) => r.step === 'orders-c: broken → replicating');
  });

  it('the metrics endpoint counts every runbook: a pending approval while one waits, its run once it ends', async () => {
    const scrape = async () => (await fetch(`http://${worker.metricsAddress}/metrics`)).text();
    const sample = (text: string, series: string) => {
      const m = text.match(new RegExp(`^${series.replace(/[{}]/g, '\\$&')} ([0-9.e+-]+)$`, 'm'));
      return m ? Number(m[1]) : undefined;
    };
    expect(sample(await scrape(), 'runbook_pending_approvals{cluster="orders"}')).toBe(0);
    const handle = await startFailover(client, taskQueue, { mode: 'planned', reason: 'metrics test', requester: 'carol' });
    await waitForApprovalRequest(handle, 60_000);
    await eventually('a pending approval on the metrics endpoint', async () => sample(await scrape(), 'runbook_pending_approvals{cluster="orders"}') === 1);
    expect(await decide(handle, 'reject', 'alice')).toEqual({ accepted: true, status: 'rejected' });
    expect(((await handle.result()) as FailoverResult).status).toBe('rejected');
    const after = await eventually('the run counted', async () => {
      const t = await scrape();
      return sample(t, 'runbook_runs_total{runbook="failover",cluster="orders",outcome="rejected"}') === 1 ? t : undefined;
    });
    expect(sample(after, 'runbook_pending_approvals{cluster="orders"}')).toBe(0);
    expect(sample(after, 'runbook_pending_approvals_read_ok')).toBe(1);
  });

  it('a primary frozen for less than the failure threshold: noticed, no failover', async () => {
    const before = (await monitorRows(config)).length;
    const pid = pidOf('orders-a');
    process.kill(pid, 'SIGSTOP');
    try {
      // Thawed as soon as the monitor has missed it once: fewer misses than the threshold.
      await waitForRow(config, (r) => r.step === 'orders: healthy → primary_unreachable', before);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    await waitForRow(config, (r) => r.step === 'orders: primary_unreachable → healthy', before);
    expect((await monitorRows(config)).slice(before).map((r) => r.detail.to)).not.toContain('primary_dead');
    expect(await automaticFailovers(config)).toEqual([]);
  });

  it('SIGKILLed primary: automatic failover to the most advanced replica, every acknowledged write kept; the worker dies meanwhile', async () => {
    const load = new WriteLoad(config, 'orders', 'orders-a');
    load.start();
    await eventually('writes acknowledged', async () => load.acks.length >= 50);
    const before = (await monitorRows(config)).length;
    const killedAt = Date.now();
    process.kill(pidOf('orders-a'), 'SIGKILL');

    const started = await waitForRow(config, (r) => r.step.startsWith('automatic failover') && r.step.endsWith('started'), before, 60_000);
    // The worker dies inside the confirmation the failover it just started runs; another takes over.
    await worker.exited;
    expect(worker.proc.signalCode).toBe('SIGKILL');
    worker = await startWorkerProcess(config, taskQueue);

    // Its end, whatever it is: a failed run is then reported with its own trail, not as a timeout.
    const endPrefix = `automatic failover ${started.detail.incidentId} `;
    const ended = await waitForRow(config, (r) => r.step.startsWith(endPrefix) && !r.step.endsWith(' started'), before, 150_000);
    if (ended.detail.outcome !== 'succeeded') {
      const trail = (await stepLog(config, String(started.detail.workflowId)).catch(() => [])).map((r) => `${r.seq ?? ''}${r.sub ? `.${r.sub}` : ''} ${r.step} ${r.status}`);
      throw new Error(`automatic failover ended ${ended.detail.outcome}: ${ended.detail.error ?? ''}\ntrail: ${trail.join(' | ')}\nworker output: ${worker.output().slice(-3000)}`);
    }
    expect(ended.detail.rtoMs).toBeGreaterThan(Number(started.detail.detectionMs));
    expect(ended.detail.lostTransactions).toBe(0); // the new primary had all any replica received
    // The run trusted the monitor's fresh confirmation: one probe of its own, and it says why.
    const confirm = (await stateOf(client.workflow.getHandle(String(started.detail.workflowId)))).steps.find((x) => x.name === 'confirm failure')!;
    expect(confirm.note).toMatch(/^probe 1: .*\(the monitor confirmed orders-a dead \d+\.\d s before this run started: one probe to see it is still down\)$/);
    expect(confirm.note).not.toContain('probe 2');
    // A confirmation lost with its worker is run again elsewhere (read-only, it starts over).
    expect((await activityRuns(client.workflow.getHandle(String(started.detail.workflowId)), 'confirmPrimaryDown')).map((r) => r.attempt)).toEqual([2]);
    // The worker that saw it end serves the measures.
    await eventually('RTO on the metrics endpoint', async () => /^runbook_last_failover_rto_seconds\{cluster="orders"\} [0-9.]+$/m.test(await (await fetch(`http://${worker.metricsAddress}/metrics`)).text()));
    const newPrimary = (await shape(config)).primary!;
    expect(['orders-b', 'orders-c']).toContain(newPrimary);
    await eventually('writes on the new primary', async () => load.acks.some((a) => a.instance === newPrimary)).catch((err: Error) => {
      throw new Error(`${err.message}; the writer's last refusal: ${load.lastError}`);
    });
    await load.stop();
    const firstOnNew = load.acks.find((a) => a.instance === newPrimary)!;
    console.log(`primary SIGKILL → first acknowledged write on ${newPrimary}: ${((firstOnNew.at - killedAt) / 1000).toFixed(1)} s; detected in ${(Number(started.detail.detectionMs) / 1000).toFixed(1)} s`);
    expect(await load.missingOn(newPrimary)).toEqual([]);
    expect(await automaticFailovers(config)).toEqual([started.detail.workflowId]);

    const rows = (await monitorRows(config)).slice(before);
    expect(rows.filter((r) => r.step.startsWith('automatic failover') && r.step.endsWith('started'))).toHaveLength(1);
    expect(rows.map((r) => r.step)).toContain('orders: primary_unreachable → primary_dead');
    expect(brokenChains(await monitorRows(config))).toEqual([]);
    await eventually('the monitor follows the new primary', async () => (await snapshotOf(client)).state.primary === newPrimary && (await snapshotOf(client)).state.verdict === 'healthy');
    expect((await snapshotOf(client)).block).toMatchObject({ incidentId: started.detail.incidentId, running: false, outcome: 'succeeded' });
  }, 240_000); // the failover must end within waitForRow's 150 s: this leaves time to report how it ended

  it('a second failure inside the block pages a human, even after the monitor was stopped and started again; after ack it is handled automatically', async () => {
    let handle = client.workflow.getHandle(monitorWorkflowId('orders'));
    const primary = (await snapshotOf(client)).state.primary!;
    const block = (await snapshotOf(client)).block!;
    // Stopped and started again with the incident unacknowledged: the new run remembers the block.
    expect(await handle.executeUpdate(stopMonitorUpdate, { args: [{ operator: 'alice', reason: 'restart' }] })).toEqual({ accepted: true });
    await handle.result();
    expect(await startMonitor(client, config, 'orders', 'carol', taskQueue)).toEqual({ workflowId: 'monitor-orders', started: true });
    handle = client.workflow.getHandle(monitorWorkflowId('orders'));
    const restarted = await waitForRow(config, (r) => r.step === 'monitor started' && Boolean(r.detail.remembered));
    expect(restarted.detail.remembered).toMatchObject({ block: { incidentId: block.incidentId, running: false, outcome: 'succeeded' } });
    await eventually('the restarted monitor sees the cluster', async () => (await snapshotOf(client)).state.verdict === 'healthy');
    expect((await snapshotOf(client)).block).toMatchObject({ incidentId: block.incidentId, running: false });
    const survivor = primary === 'orders-b' ? 'orders-c' : 'orders-b';
    writePidFiles(sandbox, pidDir, [primary]);
    const before = (await monitorRows(config)).length;
    process.kill(pidOf(primary), 'SIGKILL');

    const page = await waitForRow(config, (r) => r.status === 'paged', before, 60_000);
    expect(page.detail.because).toBe('blocked');
    // Paged, and waits: no second automatic failover however long it waits.
    const roundsAtPage = (await snapshotOf(client)).rounds;
    await eventually('three more rounds', async () => (await snapshotOf(client)).rounds >= roundsAtPage + 3, 30_000);
    expect(await automaticFailovers(config)).toHaveLength(1);
    expect((await shape(config)).writable).toEqual([]);

    // An ack with no comment is refused at the edge, and changes nothing.
    await expect(handle.executeUpdate(ackUpdate, { args: [{ operator: 'alice', comment: '' }] })).rejects.toMatchObject({ cause: { message: expect.stringMatching(/--comment is required/) } });
    expect(await handle.executeUpdate(ackUpdate, { args: [{ operator: 'alice', comment: 'first incident reviewed' }] })).toEqual({ accepted: true });
    await waitForRow(config, (r) => r.status === 'acknowledged', before);
    const second = await waitForRow(config, (r) => r.step.startsWith('automatic failover') && r.step.endsWith('succeeded'), before, 120_000);
    expect(second.detail.outcome).toBe('succeeded');
    expect(await automaticFailovers(config)).toHaveLength(2);
    expect(await shape(config)).toMatchObject({ primary: survivor, writable: [survivor] });
    expect(brokenChains(await monitorRows(config))).toEqual([]);

    // Stopped by a human: logged, and the workflow ends.
    expect(await handle.executeUpdate(stopMonitorUpdate, { args: [{ operator: 'alice', reason: 'test over' }] })).toEqual({ accepted: true });
    await handle.result();
    expect((await monitorRows(config)).at(-1)).toMatchObject({ step: 'runbook', status: 'succeeded' });
  });
});
