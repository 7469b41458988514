/**
 * Moving traffic to a new writer: the built-in switch (`writer_endpoint` in the control database)
 * and the operator's own traffic and fencing hooks (shell commands from the cluster's config).
 *
 * A hook sees none of the worker's secrets: it runs with a minimal environment (PATH, HOME, the
 * locale, TZ, TMPDIR), the RUNBOOK_* variables, and only the variables its config lists in `env`.
 * What it prints goes into workflow history and failover_log, so its output is kept only after
 * every value of the worker's secret variables is replaced by `***`.
 */
import { spawn } from 'node:child_process';
import { ApplicationFailure } from '@temporalio/common';
import { getCluster, getInstance, type RunbookConfig } from '../config/load';
import type { TrafficHook } from '../core/configSchema';
import { migrateControl, withControl, writeWriterEndpoint } from '../adapters/control/store';
import { minimalEnvironment } from '../adapters/process/processes';
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
  /** Values never to be kept in a hook's output (the worker's secrets, see workerSecrets). */
  secrets?: readonly string[];
  /** How much of the end of stdout and of stderr to keep, in bytes (4 KiB). */
  tailBytes?: number;
  /** Names of hooks that already succeeded in an earlier attempt of this step: not run again. */
  skip?: readonly string[];
}

const TAIL_BYTES = 4096;

/** The RUNBOOK_* variables a hook is told about the switch (its whole environment: hookEnvironment). */
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

/**
 * Everything a hook's process gets: the minimal environment every child of the worker gets, the
 * variables its config lists by name, and the RUNBOOK_* variables. No credential of the config,
 * Slack token, SMTP password or signing key reaches a hook unless its config lists it.
 */
export function hookEnvironment(hook: TrafficHook, env: HookEnv, from: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  return { ...minimalEnvironment({ pass: hook.env }, from), ...hookVariables(env, hook.name) };
}

/** Variables that hold secrets whatever the config says: Slack, SMTP, approval links, Temporal Cloud. */
const SECRET_VARIABLES = ['SLACK_BOT_TOKEN', 'SLACK_SIGNING_SECRET', 'SMTP_PASSWORD', 'RUNBOOK_LINK_SIGNING_KEY', 'TEMPORAL_API_KEY', 'TEMPORAL_TLS_CLIENT_KEY_DATA'];
/** And any variable named like one. */
const SECRET_NAME = /PASSWORD|PASSWD|SECRET|TOKEN|API_KEY|PRIVATE_KEY|SIGNING_KEY|CREDENTIAL/i;

/** The values of the worker's secret variables: the config's password variables, the known ones, and any named like a secret. */
export function workerSecrets(config: RunbookConfig, env: NodeJS.ProcessEnv = process.env): string[] {
  const names = new Set([
    ...SECRET_VARIABLES,
    config.control.credentials.passwordEnv,
    ...Object.values(config.clusters).flatMap((c) => [c.credentials.admin.passwordEnv, c.credentials.replication.passwordEnv]),
    ...Object.keys(env).filter((name) => SECRET_NAME.test(name)),
  ]);
  return [...new Set([...names].map((name) => env[name]).filter((v): v is string => Boolean(v)))];
}

/**
 * Keeps the last `max` bytes written to it, with every secret replaced by `***`. It holds a little
 * more than `max` (the longest secret's length), so that a secret which straddles where the kept
 * part begins is still found whole and redacted whole, never kept in part.
 */
class Tail {
  private buf = Buffer.alloc(0);
  private readonly hold: number;
  constructor(
    private readonly max: number,
    private readonly secrets: readonly string[] = [],
  ) {
    this.hold = max + Math.max(0, ...secrets.map((x) => Buffer.byteLength(x)));
  }
  push(chunk: Buffer): void {
    const joined = Buffer.concat([this.buf, chunk]);
    this.buf = joined.length > this.hold ? Buffer.from(joined.subarray(joined.length - this.hold)) : joined;
  }
  text(): string {
    const all = this.buf.toString('utf8');
    // Where the last `max` bytes begin, in characters of `all`.
    let from = this.buf.length > this.max ? this.buf.subarray(0, this.buf.length - this.max).toString('utf8').length : 0;
    const found: [number, number][] = [];
    for (const secret of this.secrets) {
      if (!secret) continue;
      for (let i = all.indexOf(secret); i !== -1; i = all.indexOf(secret, i + 1)) found.push([i, i + secret.length]);
    }
    found.sort((a, b) => a[0] - b[0]);
    for (const [start, end] of found) if (start < from && end > from) from = start; // take a straddling secret whole
    let out = '';
    let at = from;
    for (const [start, end] of found) {
      if (end <= at) continue;
      if (start >= at) out += `${all.slice(at, start)}***`;
      at = Math.max(at, end);
    }
    return out + all.slice(at);
  }
}

/**
 * One hook: `/bin/sh -c <command>` in its own process group, so that on timeout the shell and
 * everything it started are killed together (SIGKILL to the group), not just the shell.
 */
async function runOne(hook: TrafficHook, env: NodeJS.ProcessEnv, tailBytes: number, secrets: readonly string[]): Promise<HookResult> {
  const started = performance.now();
  const timeoutMs = hook.timeoutSeconds * 1000;
  const stdout = new Tail(tailBytes, secrets);
  const stderr = new Tail(tailBytes, secrets);
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
  const results: HookResult[] = [];
  for (const hook of hooks.filter((h) => !opts.skip?.includes(h.name))) {
    const result = await runOne(hook, hookEnvironment(hook, env), opts.tailBytes ?? TAIL_BYTES, opts.secrets ?? []);
    results.push(result);
    if (!result.ok && hook.onFailure === 'abort') {
      throw ApplicationFailure.nonRetryable(failureMessage(kind, result, hook), 'HookFailed', { results });
    }
  }
  return results;
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
      return withControl(config, (conn) =>
        writeWriterEndpoint(conn, { cluster: input.cluster, instance: inst.name, region: inst.region, host: inst.host, port: inst.port, workflowId: input.workflowId, incidentId: input.incidentId }),
      );
    },

    /**
     * The cluster's configured hooks of one kind, in order (see runHookCommands), but those named
     * in `skip` (they succeeded in an earlier attempt). Their output is redacted of the worker's
     * secrets before it reaches history.
     */
    async runHooks(input: { cluster: string; kind: HookKind; env: HookEnv; skip?: string[] }): Promise<HookResult[]> {
      const hooks = getCluster(config, input.cluster)[input.kind].hooks;
      return runHookCommands(hooks, input.kind, input.env, { secrets: workerSecrets(config), skip: input.skip });
    },
  };
}
