/**
 * Moving traffic to a new writer: the built-in switch (`writer_endpoint` in the control database)
 * and the operator's own traffic and fencing hooks (shell commands from the cluster's config).
 */
import { spawn } from 'node:child_process';
import { ApplicationFailure } from '@temporalio/common';
import { getCluster, getInstance } from '../config/load';
import type { TrafficHook } from '../config/schema';
import { migrateControl, withControl } from '../control/store';
import { query, type Conn } from '../mysql/connect';
import type { ActivityDeps } from './deps';

/** What hooks are told about the switch, as RUNBOOK_* environment variables. */
export interface HookEnv {
  cluster: string;
  /** `restore`: a restore's `promote` cut-over made a recovery host the primary. */
  mode: 'planned' | 'emergency' | 'restore';
  /** host:port */
  oldPrimary: string;
  /** host:port */
  newPrimary: string;
  oldRegion: string;
  newRegion: string;
  oldInstance: string;
  newInstance: string;
  incidentId?: string;
  workflowId: string;
}

export type HookKind = 'traffic' | 'fencing';

export interface HookResult {
  name: string;
  ok: boolean;
  /** null when the hook was killed (timeout or signal) or could not be started. */
  exitCode: number | null;
  timedOut: boolean;
  durationMs: number;
  stdoutTail: string;
  stderrTail: string;
  onFailure: 'abort' | 'continue';
}

export interface RunHookOptions {
  /** The environment the RUNBOOK_* variables are added to; process.env by default. */
  baseEnv?: NodeJS.ProcessEnv;
  /** How much of the end of stdout and of stderr to keep, in bytes (4 KiB). */
  tailBytes?: number;
}

const TAIL_BYTES = 4096;

/** The RUNBOOK_* variables, and nothing else: no credential of the config is ever handed to a hook. */
export function hookVariables(env: HookEnv, hookName: string): Record<string, string> {
  return {
    RUNBOOK_CLUSTER: env.cluster,
    RUNBOOK_MODE: env.mode,
    RUNBOOK_OLD_PRIMARY: env.oldPrimary,
    RUNBOOK_NEW_PRIMARY: env.newPrimary,
    RUNBOOK_OLD_REGION: env.oldRegion,
    RUNBOOK_NEW_REGION: env.newRegion,
    RUNBOOK_OLD_INSTANCE: env.oldInstance,
    RUNBOOK_NEW_INSTANCE: env.newInstance,
    RUNBOOK_INCIDENT_ID: env.incidentId ?? '',
    RUNBOOK_WORKFLOW_ID: env.workflowId,
    RUNBOOK_HOOK_NAME: hookName,
  };
}

/** Keeps the last `max` bytes written to it. */
class Tail {
  private buf = Buffer.alloc(0);
  constructor(private readonly max: number) {}
  push(chunk: Buffer): void {
    const joined = Buffer.concat([this.buf, chunk]);
    this.buf = joined.length > this.max ? Buffer.from(joined.subarray(joined.length - this.max)) : joined;
  }
  text(): string {
    return this.buf.toString('utf8');
  }
}

/**
 * One hook: `/bin/sh -c <command>` in its own process group, so that on timeout the shell and
 * everything it started are killed together (SIGKILL to the group), not just the shell.
 */
async function runOne(hook: TrafficHook, env: NodeJS.ProcessEnv, tailBytes: number): Promise<HookResult> {
  const started = performance.now();
  const timeoutMs = hook.timeoutSeconds * 1000;
  const stdout = new Tail(tailBytes);
  const stderr = new Tail(tailBytes);
  const child = spawn('/bin/sh', ['-c', hook.command], { detached: true, stdio: ['ignore', 'pipe', 'pipe'], env });
  child.stdout.on('data', (b: Buffer) => stdout.push(b));
  child.stderr.on('data', (b: Buffer) => stderr.push(b));

  const killGroup = () => {
    if (child.pid === undefined) return;
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      /* ESRCH: the group is already gone */
    }
  };

  let spawnError: Error | undefined;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
    child.on('error', (err) => {
      spawnError = err;
      resolve({ code: null, signal: null });
    });
  });
  const closed = new Promise<'closed'>((resolve) => child.once('close', () => resolve('closed')));
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<'deadline'>((resolve) => (timer = setTimeout(() => resolve('deadline'), timeoutMs)));
  const grace = (ms: number) => new Promise<'grace'>((resolve) => setTimeout(resolve, ms, 'grace').unref());

  let timedOut = false;
  try {
    const first = await Promise.race([exited.then(() => 'exit' as const), deadline]);
    if (first === 'deadline') {
      timedOut = true;
      killGroup();
      await exited;
    }
    if (!spawnError) {
      // The shell is gone; its output is complete once every holder of the pipes is. A leftover
      // background process holding them may run to the deadline, then its group is killed too.
      const drained = await Promise.race([closed, timedOut ? grace(1000) : deadline]);
      if (drained !== 'closed') killGroup();
    }
  } finally {
    clearTimeout(timer);
    child.stdout.destroy();
    child.stderr.destroy();
  }

  const { code, signal } = await exited;
  let stderrTail = stderr.text();
  if (spawnError) stderrTail += `${stderrTail && !stderrTail.endsWith('\n') ? '\n' : ''}could not start /bin/sh: ${spawnError.message}\n`;
  return {
    name: hook.name,
    ok: !timedOut && !spawnError && code === 0,
    exitCode: timedOut ? null : code,
    timedOut,
    durationMs: Math.round(performance.now() - started),
    stdoutTail: stdout.text(),
    stderrTail: signal && !timedOut ? `${stderrTail}killed by ${signal}\n` : stderrTail,
    onFailure: hook.onFailure,
  };
}

function lastLine(text: string): string {
  const lines = text.trimEnd().split('\n');
  return lines[lines.length - 1]?.trim() || '(no output on stderr)';
}

function failureMessage(kind: HookKind, r: HookResult, hook: TrafficHook): string {
  const why = r.timedOut ? `timed out after ${hook.timeoutSeconds} s` : `exit ${r.exitCode ?? 'unknown'}`;
  return `${kind} hook "${r.name}" failed (${why}): ${lastLine(r.stderrTail)}`;
}

/**
 * Run hooks in order. A failing hook with onFailure 'abort' stops the run with a non-retryable
 * failure: hooks are not assumed idempotent, so whether to run them again is a human's decision.
 * With 'continue' the failure is recorded in the results and the next hook runs.
 */
export async function runHookCommands(hooks: TrafficHook[], kind: HookKind, env: HookEnv, opts: RunHookOptions = {}): Promise<HookResult[]> {
  const base = opts.baseEnv ?? process.env;
  const results: HookResult[] = [];
  for (const hook of hooks) {
    const result = await runOne(hook, { ...base, ...hookVariables(env, hook.name) }, opts.tailBytes ?? TAIL_BYTES);
    results.push(result);
    if (!result.ok && hook.onFailure === 'abort') {
      throw ApplicationFailure.nonRetryable(failureMessage(kind, result, hook), 'HookFailed', { results });
    }
  }
  return results;
}

export interface WriterEndpoint {
  cluster: string;
  instance: string;
  region: string;
  host: string;
  port: number;
  generation: number;
  workflowId: string | null;
  incidentId: string | null;
  /** UTC, 'YYYY-MM-DD HH:MM:SS.mmm' */
  updatedAt: string;
}

interface WriterEndpointRow {
  cluster: string;
  instance: string;
  region: string;
  host: string;
  port: number | string;
  generation: number | string;
  workflow_id: string | null;
  incident_id: string | null;
  updated_at: string;
}

async function selectWriterEndpoint(conn: Conn, cluster: string, forUpdate: boolean): Promise<WriterEndpoint | null> {
  const rows = await query<WriterEndpointRow[]>(
    conn,
    `SELECT cluster, instance, region, host, port, generation, workflow_id, incident_id, updated_at
     FROM writer_endpoint WHERE cluster = ?${forUpdate ? ' FOR UPDATE' : ''}`,
    [cluster],
  );
  const r = rows[0];
  if (!r) return null;
  return {
    cluster: r.cluster,
    instance: r.instance,
    region: r.region,
    host: r.host,
    port: Number(r.port),
    generation: Number(r.generation),
    workflowId: r.workflow_id,
    incidentId: r.incident_id,
    updatedAt: r.updated_at,
  };
}

/** The cluster's current writer per the built-in switch, or null if it was never set. */
export async function readWriterEndpoint(conn: Conn, cluster: string): Promise<WriterEndpoint | null> {
  return selectWriterEndpoint(conn, cluster, false);
}

export function createTrafficActivities({ config }: ActivityDeps) {
  let migrated: Promise<unknown> | undefined;
  const ensureSchema = () => (migrated ??= migrateControl(config).catch((err) => ((migrated = undefined), Promise.reject(err))));

  return {
    /**
     * Point the cluster's writer endpoint at `instance`. Idempotent: if the row already names it,
     * nothing changes (generation included), so a retried attempt is harmless.
     */
    async setWriterEndpoint(input: {
      cluster: string;
      instance: string;
      workflowId: string;
      incidentId?: string;
    }): Promise<{ changed: boolean; generation: number; previous: string | null }> {
      const inst = getInstance(config, input.cluster, input.instance);
      await ensureSchema();
      return withControl(config, async (conn) => {
        await conn.query('START TRANSACTION');
        try {
          // The row lock serialises two runs switching the same cluster at once.
          const current = await selectWriterEndpoint(conn, input.cluster, true);
          if (current?.instance === input.instance) {
            await conn.query('COMMIT');
            return { changed: false, generation: current.generation, previous: current.instance };
          }
          await query(
            conn,
            `INSERT INTO writer_endpoint (cluster, instance, region, host, port, generation, workflow_id, incident_id)
             VALUES (?, ?, ?, ?, ?, 1, ?, ?)
             ON DUPLICATE KEY UPDATE instance = VALUES(instance), region = VALUES(region), host = VALUES(host),
               port = VALUES(port), generation = generation + 1, workflow_id = VALUES(workflow_id),
               incident_id = VALUES(incident_id)`,
            [input.cluster, inst.name, inst.region, inst.host, inst.port, input.workflowId, input.incidentId ?? null],
          );
          const after = await selectWriterEndpoint(conn, input.cluster, true);
          await conn.query('COMMIT');
          return { changed: true, generation: after!.generation, previous: current?.instance ?? null };
        } catch (err) {
          await conn.query('ROLLBACK').catch(() => undefined);
          throw err;
        }
      });
    },

    /** The cluster's configured hooks of one kind, in order (see runHookCommands). */
    async runHooks(input: { cluster: string; kind: HookKind; env: HookEnv }): Promise<HookResult[]> {
      const hooks = getCluster(config, input.cluster)[input.kind].hooks;
      return runHookCommands(hooks, input.kind, input.env);
    },
  };
}
