/**
 * The Temporal UI timeline shows the runbook, not its bookkeeping: from the real history of a
 * planned switchover (the drill's failover), count the activities scheduled per runbook step.
 * Audit rows and notifications travel in at most one bookkeeping activity per step boundary, so
 * the history holds at most 2 ActivityTaskScheduled events per step, and failover_log still holds
 * every row exactly once.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { RunbookConfig } from '../../src/config/load';
import type { Sandbox } from '../../src/adapters/mariadbd/sandbox';
import { STEP_HEADER } from '../../src/core/stepEnvelope';
import { runFailover, stepLog } from '../support/failover';
import { startTestSandbox } from '../support/sandbox';
import { startInProcessWorker, type InProcessWorker } from '../support/stack';

const taskQueue = `timeline-${process.pid}`;
let config: RunbookConfig;
let sandbox: Sandbox;
let client: Client;
let stack: InProcessWorker;

beforeAll(async () => {
  ({ config, sandbox } = await startTestSandbox('timeline', 31000));
  stack = await startInProcessWorker(config, taskQueue);
  client = stack.client;
});

afterAll(async () => {
  await stack?.stop();
  await sandbox?.destroy();
});

const exec = promisify(execFile);
/** The CLI as an operator types it, against this sandbox and the test dev server. */
async function runbook(...args: string[]): Promise<string> {
  const { stdout } = await exec('bin/runbook', ['--config', config.files[0]!, ...args], {
    env: { ...process.env, NO_COLOR: '1', TEMPORAL_ADDRESS: inject('temporalAddress') },
    maxBuffer: 16 * 1024 * 1024,
  });
  return stdout;
}

let switchover: string | undefined;

const BOOKKEEPING = new Set(['recordAndNotify', 'recordAudit', 'notify']);

describe('the Temporal UI timeline of a planned switchover', () => {
  it('holds at most 2 scheduled activities per runbook step, one bookkeeping activity per step boundary at most, none beside the hand-over, and every audit row once', async () => {
    const started = Date.now();
    const { result, workflowId } = await runFailover(client, taskQueue, { target: 'orders-b' });
    const tookMs = Date.now() - started;
    expect(result.status).toBe('succeeded');
    switchover = workflowId;

    const history = await client.workflow.getHandle(workflowId).fetchHistory();
    const events = history.events!;
    // Each scheduled activity, attributed to its step: a step's own activities carry the step
    // header; a bookkeeping activity counts for the newest step whose rows it carries (steps whose
    // work is local activities schedule nothing of their own), else for the step whose activity
    // was scheduled last before it.
    const perStep = new Map<number, { own: string[]; bookkeeping: string[] }>();
    let current = 0;
    const bucket = (seq: number) => perStep.get(seq) ?? perStep.set(seq, { own: [], bookkeeping: [] }).get(seq)!;
    for (const e of events) {
      const a = e.activityTaskScheduledEventAttributes;
      if (!a) continue;
      const type = a.activityType!.name!;
      const header = a.header?.fields?.[STEP_HEADER];
      if (header?.data) current = JSON.parse(Buffer.from(header.data).toString('utf8')) as number;
      // The batch carrying the run's closing row belongs to the run (failover_log's step 0), not to its last step.
      const input = a.input?.payloads?.[0]?.data ? JSON.parse(Buffer.from(a.input.payloads[0].data).toString('utf8')) : undefined;
      const closes = type === 'recordAndNotify' && (input?.rows as { stepSeq: number; status: string }[] | undefined)?.some((r) => r.stepSeq === 0 && r.status !== 'started');
      const carried = ((input?.rows ?? []) as { stepSeq: number }[]).map((r) => r.stepSeq);
      if (BOOKKEEPING.has(type)) bucket(closes ? 0 : carried.length ? Math.max(...carried) : current).bookkeeping.push(type);
      else bucket(current).own.push(type);
    }

    const log = await stepLog(config, workflowId);
    // The runbook's steps, and the run itself (failover_log's step 0: its started and closing rows).
    const steps = log.filter((r) => (r.seq ?? 0) > 0 && !r.sub && r.status === 'started').length + 1;
    const scheduled = events.filter((e) => e.activityTaskScheduledEventAttributes).length;
    const bytes = Buffer.byteLength(JSON.stringify(history));
    console.log(
      `planned switchover: ${steps - 1} steps + the run, ${scheduled} activities scheduled (${(scheduled / steps).toFixed(2)} per step), ` +
        `${events.length} history events, ${(bytes / 1024).toFixed(1)} KiB of history (JSON), ${tookMs} ms start to result`,
    );
    console.log([...perStep].map(([seq, b]) => `step ${seq}: ${b.own.length} own + ${b.bookkeeping.length} bookkeeping`).join('; '));

    expect(scheduled).toBeLessThanOrEqual(2 * steps);
    // One bookkeeping activity per step boundary: at most one per step and one for the run's end in
    // all. A step's end and the next step's start usually share one (the same activation); when
    // they fall in two activations (seen on a loaded machine after verify, whose end is followed by
    // an await before record starts), the step's rows go in two, so a step may carry two.
    const bookkeeping = [...perStep.values()].reduce((n, b) => n + b.bookkeeping.length, 0);
    expect(bookkeeping, 'bookkeeping activities in all').toBeLessThanOrEqual(steps);
    for (const [seq, b] of perStep) expect(b.bookkeeping.length, `bookkeeping activities attributed to step ${seq}`).toBeLessThanOrEqual(2);

    // The write-blocking hand-over ran alone: no bookkeeping activity was open while it was (its
    // own started row went after it, with its own time).
    const open = new Map<string, { type: string; from: number; to: number }>();
    for (const e of events) {
      const id = Number(e.eventId);
      const a = e.activityTaskScheduledEventAttributes;
      if (a) open.set(String(id), { type: a.activityType!.name!, from: id, to: Infinity });
      const closed =
        e.activityTaskCompletedEventAttributes ?? e.activityTaskFailedEventAttributes ?? e.activityTaskTimedOutEventAttributes ?? e.activityTaskCanceledEventAttributes;
      if (closed) open.get(String(Number(closed.scheduledEventId)))!.to = id;
    }
    const handOver = [...open.values()].find((x) => x.type === 'handOverWrites')!;
    expect(handOver, 'the hand-over activity').toBeDefined();
    const beside = [...open.values()].filter((x) => BOOKKEEPING.has(x.type) && x.from < handOver.to && x.to > handOver.from);
    expect(beside.map((x) => `${x.type} events ${x.from}–${x.to}`), `open while handOverWrites was (events ${handOver.from}–${handOver.to})`).toEqual([]);

    // The audit is as complete as before: every step's states (and the hand-over's sub-steps'), each once, in failover_log.
    const keys = log.map((r) => `${r.seq}.${r.sub ?? 0}:${r.status}`);
    expect(new Set(keys).size).toBe(keys.length);
    expect(log.filter((r) => !r.sub && r.status === 'succeeded').length).toBe(steps);
    expect(log.at(-1)).toMatchObject({ step: 'runbook', status: 'succeeded' });
  });

  it("the CLI's compact view of the switchover fits 120 columns, one line per step; --wide keeps every row", async () => {
    expect(switchover, 'the switchover of the test above').toBeDefined();
    const log = await stepLog(config, switchover!);
    const steps = new Set(log.filter((r) => (r.seq ?? 0) > 0).map((r) => r.seq)).size;
    const columns = (text: string) => Math.max(...text.split('\n').map((l) => [...l].length));

    const status = await runbook('status', switchover!);
    const trail = await runbook('log', '--workflow', switchover!, '--page-size', '200');
    for (const [what, out] of [['status', status], ['log', trail]] as const) {
      const stepLines = out.split('\n').filter((l) => /^\d\d:\d\d:\d\d\.\d{3} +\d+ /.test(l));
      expect(stepLines.length, `${what}: one line per step`).toBe(steps);
      expect(columns(out), `${what}: widest line`).toBeLessThanOrEqual(120);
      for (const name of ['hand over writes', 'switch traffic', 'verify']) expect(out, what).toMatch(new RegExp(`^[\\d:.]+ +\\d+ ${name} +succeeded`, 'm'));
    }
    // Oldest first for one run; the log reads newest first.
    expect(status.indexOf('load policy')).toBeLessThan(status.indexOf('unlock cluster'));
    expect(trail.indexOf('unlock cluster')).toBeLessThan(trail.indexOf('load policy'));

    const wide = await runbook('status', switchover!, '--wide');
    expect(columns(wide)).toBeGreaterThan(120);
    expect(wide.split('\n').filter((l) => l.includes('fence old primary')).length).toBe(2); // started and succeeded rows
    console.log(`compact status: ${status.split('\n').length} lines, widest ${columns(status)} columns; --wide: ${wide.split('\n').length} lines, widest ${columns(wide)} columns`);
  });
});
