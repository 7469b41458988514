/** Traffic and fencing hooks run as real /bin/sh commands: environment, redaction, failure policy, timeouts. */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { afterAll, describe, expect, it } from 'vitest';
import { runHookCommands, type HookEnv } from '../../src/activities/traffic';
import type { TrafficHook } from '../../src/core/configSchema';

const env: HookEnv = {
  cluster: 'orders',
  mode: 'planned',
  oldPrimary: '10.0.0.1:3306',
  newPrimary: '10.0.0.2:3307',
  oldRegion: 'region-a',
  newRegion: 'region-b',
  oldInstance: 'orders-a',
  newInstance: 'orders-b',
  incidentId: 'INC-7',
  workflowId: 'wf-hooks',
};

const hook = (name: string, command: string, over: Partial<TrafficHook> = {}): TrafficHook => ({
  name, command, timeoutSeconds: 10, onFailure: 'abort', env: [], ...over,
});

const dir = mkdtempSync(join(tmpdir(), 'runbook-hooks-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const alive = (pid: number) => existsSync(`/proc/${pid}`) && !/^State:\s+Z/m.test(safeRead(`/proc/${pid}/status`));
const safeRead = (f: string) => {
  try {
    return readFileSync(f, 'utf8');
  } catch {
    return '';
  }
};

describe('runHookCommands', () => {
  it('hands the RUNBOOK_* variables to the hook and captures its output', async () => {
    const [r] = await runHookCommands(
      [hook('dns', 'echo "$RUNBOOK_NEW_PRIMARY $RUNBOOK_CLUSTER"; echo "$RUNBOOK_MODE $RUNBOOK_OLD_PRIMARY $RUNBOOK_OLD_REGION>$RUNBOOK_NEW_REGION $RUNBOOK_OLD_INSTANCE>$RUNBOOK_NEW_INSTANCE $RUNBOOK_INCIDENT_ID $RUNBOOK_WORKFLOW_ID $RUNBOOK_HOOK_NAME"; echo warn >&2')],
      'traffic',
      env,
    );
    expect(r).toMatchObject({ name: 'dns', ok: true, exitCode: 0, timedOut: false, onFailure: 'abort', stderrTail: 'warn\n' });
    expect(r!.stdoutTail).toBe('10.0.0.2:3307 orders\nplanned 10.0.0.1:3306 region-a>region-b orders-a>orders-b INC-7 wf-hooks dns\n');
  });

  it("gets a minimal environment: none of the worker's secrets, only the variables its config lists", async () => {
    const worker = { ORDERS_ADMIN_PASSWORD: 'admin-pw-1', SLACK_BOT_TOKEN: 'xoxb-secret-2', SMTP_PASSWORD: 'smtp-pw-3', RUNBOOK_LINK_SIGNING_KEY: 'link-key-4', PROXY_ADMIN_PASSWORD: 'proxy-pw-5', OPERATOR_VAR: 'listed' };
    Object.assign(process.env, worker);
    try {
      for (const kind of ['traffic', 'fencing'] as const) {
        const [r] = await runHookCommands([hook('env', 'env', { env: ['OPERATOR_VAR'] })], kind, env);
        const names = r!.stdoutTail.trim().split('\n').map((l) => l.split('=')[0]!).filter((n) => n !== 'PWD' && n !== 'SHLVL' && n !== '_'); // set by the shell itself
        const allowed = ['PATH', 'HOME', 'LANG', 'LC_ALL', 'LC_CTYPE', 'LC_MESSAGES', 'TZ', 'TMPDIR', 'OPERATOR_VAR'];
        expect(names.filter((n) => !n.startsWith('RUNBOOK_') && !allowed.includes(n))).toEqual([]);
        expect(r!.stdoutTail).toContain('OPERATOR_VAR=listed\n');
        for (const secret of Object.values(worker).slice(0, 5)) expect(r!.stdoutTail).not.toContain(secret);
      }
    } finally {
      for (const k of Object.keys(worker)) delete process.env[k];
    }
  });

  it('keeps no secret in its output: listed ones it prints are redacted, even across the start of the kept tail', async () => {
    const secret = 'p4ssw0rd-that-is-long-enough';
    process.env.PROXY_ADMIN_PASSWORD = secret;
    try {
      const [r] = await runHookCommands(
        [hook('leaky', 'echo "login $PROXY_ADMIN_PASSWORD ok"; echo "$PROXY_ADMIN_PASSWORD" >&2', { env: ['PROXY_ADMIN_PASSWORD'], onFailure: 'continue' })],
        'traffic',
        env,
        { secrets: [secret] },
      );
      expect(r!.stdoutTail).toBe('login *** ok\n');
      expect(r!.stderrTail).toBe('***\n');
      // The secret ends 10 bytes into the last 64: the kept tail starts with *** rather than its end.
      const [cut] = await runHookCommands([hook('cut', `printf 'xxxx%s%054d' "$PROXY_ADMIN_PASSWORD" 0`, { env: ['PROXY_ADMIN_PASSWORD'] })], 'traffic', env, { secrets: [secret], tailBytes: 64 });
      expect(cut!.stdoutTail).toBe(`***${'0'.repeat(54)}`);
      const err = await runHookCommands([hook('fails', 'echo "cannot log in with $PROXY_ADMIN_PASSWORD" >&2; exit 2', { env: ['PROXY_ADMIN_PASSWORD'] })], 'traffic', env, { secrets: [secret] }).then(
        () => undefined,
        (e: unknown) => e as ApplicationFailure,
      );
      expect(err!.message).toBe('traffic hook "fails" failed (exit 2): cannot log in with ***');
      expect(JSON.stringify(err!.details)).not.toContain(secret);
    } finally {
      delete process.env.PROXY_ADMIN_PASSWORD;
    }
  });

  it('keeps only the last 4 KiB of output', async () => {
    const [r] = await runHookCommands([hook('loud', 'i=0; while [ $i -lt 2000 ]; do echo "line $i"; i=$((i+1)); done')], 'traffic', env);
    expect(Buffer.byteLength(r!.stdoutTail)).toBe(4096);
    expect(r!.stdoutTail.endsWith('line 1999\n')).toBe(true);
  });

  it('a failing hook with onFailure abort stops the run with a non-retryable HookFailed', async () => {
    const marker = join(dir, 'after-abort');
    const err = await runHookCommands(
      [hook('drain', 'echo first >&2; echo "proxy refused" >&2; exit 3'), hook('next', `touch ${marker}`)],
      'fencing',
      env,
    ).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ApplicationFailure);
    const failure = err as ApplicationFailure;
    expect(failure.message).toBe('fencing hook "drain" failed (exit 3): proxy refused');
    expect(failure.type).toBe('HookFailed');
    expect(failure.nonRetryable).toBe(true);
    expect(existsSync(marker)).toBe(false);
  });

  it('a failing hook with onFailure continue is recorded and the next hook still runs', async () => {
    const results = await runHookCommands(
      [hook('optional', 'echo nope >&2; exit 3', { onFailure: 'continue' }), hook('next', 'echo ran')],
      'traffic',
      env,
    );
    expect(results.map((r) => [r.name, r.ok, r.exitCode, r.onFailure])).toEqual([
      ['optional', false, 3, 'continue'],
      ['next', true, 0, 'abort'],
    ]);
    expect(results[0]!.stderrTail).toBe('nope\n');
    expect(results[1]!.stdoutTail).toBe('ran\n');
  });

  it('a hook over its timeout is killed with its whole process group, without waiting for it', async () => {
    const pidFile = join(dir, 'pids');
    const err = await runHookCommands(
      // The shell records its own pid and that of a child sleep, then waits on it: were the group
      // not killed at the timeout, this case would wait out the sleep and hit vitest's timeout.
      [hook('slow', `sleep 600 & echo "$$ $!" > ${pidFile}; echo waiting >&2; wait`, { timeoutSeconds: 0.5 })],
      'traffic',
      env,
    ).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((err as ApplicationFailure).message).toBe('traffic hook "slow" failed (timed out after 0.5 s): waiting');
    expect((err as ApplicationFailure).nonRetryable).toBe(true);
    const pids = readFileSync(pidFile, 'utf8').trim().split(' ').map(Number);
    expect(pids).toHaveLength(2);
    for (const pid of pids) expect(alive(pid), `pid ${pid} still alive`).toBe(false);
  });

  it('a timed-out hook with onFailure continue reports timedOut and no exit code', async () => {
    const [r] = await runHookCommands([hook('slow', 'sleep 600', { timeoutSeconds: 0.3, onFailure: 'continue' })], 'traffic', env);
    expect(r).toMatchObject({ ok: false, timedOut: true, exitCode: null });
  });

  it('skips hooks that already succeeded in an earlier attempt', async () => {
    const results = await runHookCommands([hook('first', 'echo one'), hook('second', 'echo two')], 'traffic', env, { skip: ['first'] });
    expect(results.map((r) => [r.name, r.stdoutTail])).toEqual([['second', 'two\n']]);
  });
});
