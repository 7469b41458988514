/**
 * Runs the MariaDB backup tools (mariadb-dump, mariadb-backup, mariadb-binlog) safely:
 *
 * - the password goes to the tool in a private `--defaults-extra-file` (mode 0600 in a 0700 temp
 *   dir, deleted as soon as the tool exits), never on its argv, in its environment or in a log;
 *   the child gets a minimal environment (not the worker's, which holds the config's password
 *   variables) whose HOME is that private dir, so an operator's ~/.my.cnf cannot override it;
 * - every run is bounded by a timeout and an abort signal (SIGTERM, then SIGKILL 5 s later);
 * - a failure says which tool, its exit status and the last lines of its stderr;
 * - long runs report progress (bytes so far) every second, for the activity's heartbeat.
 *
 * No Temporal here: the activities in src/activities/backup.ts map these errors to failures.
 */
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { closeSync, createReadStream, createWriteStream, openSync } from 'node:fs';
import { mkdtemp, open, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative, sep } from 'node:path';
import { Transform, type Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { findExecutable, minimalEnvironment } from './processes';

const TOOL_DIRS = ['/usr/bin', '/usr/local/bin', '/usr/local/opt/mariadb/bin', '/opt/homebrew/opt/mariadb/bin'];
const DEFAULT_TIMEOUT_MS = 25 * 60_000;
const KILL_GRACE_MS = 5_000;
const STDERR_KEEP = 16 * 1024;

export interface ToolCredentials {
  user: string;
  password: string;
}

export interface ServerLogin extends ToolCredentials {
  host: string;
  port: number;
}

export interface ProgressOptions {
  /** Called about once a second while the tool runs, with the bytes written so far. */
  onProgress?: (bytes: number) => void;
  signal?: AbortSignal;
  timeoutMs?: number;
}

export class ToolNotFoundError extends Error {
  override name = 'ToolNotFoundError';
}

export class ToolError extends Error {
  override name = 'ToolError';
  constructor(
    message: string,
    readonly tool: string,
    readonly exitCode: number | null,
    readonly exitSignal: string | null,
    readonly stderrTail: string,
    readonly reason: 'exit' | 'timeout' | 'aborted' | 'output',
  ) {
    super(message);
  }
}

export function toolPath(name: string): string {
  const path = findExecutable(name, TOOL_DIRS);
  if (!path) throw new ToolNotFoundError(`${name} not found: install MariaDB's client and backup tools (apt-get install mariadb-client mariadb-backup)`);
  return path;
}

/** A value for a MariaDB option file: double-quoted, with the escapes the option-file parser knows. */
function optionValue(v: string): string {
  if (v.includes('\0')) throw new Error('a MySQL credential cannot contain a NUL byte');
  return `"${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n').replace(/\r/g, '\\r').replace(/\t/g, '\\t')}"`;
}

function redact(text: string, secret: string | undefined): string {
  return secret ? text.split(secret).join('***') : text;
}

export interface RunToolOptions extends ProgressOptions {
  /** Written to a private --defaults-extra-file, given to the tool as its first argument. */
  credentials?: ToolCredentials;
  /** Stream stdout into this file (created, mode 0600; must not exist); else stdout is collected. */
  stdoutFile?: string;
  /** How to measure progress (default: stdout bytes). */
  measure?: () => Promise<number>;
  /** Feed this file to the tool's standard input (`mariadb --binary-mode < flashback.sql`). */
  stdinFile?: string;
  /** Extra environment, e.g. TZ=UTC so mariadb-binlog prints event times in UTC. */
  env?: Record<string, string>;
}

export interface ToolRun {
  stdout: string;
  stderr: string;
  stdoutBytes: number;
  durationMs: number;
}

/**
 * Run one tool to completion. argv never carries a secret: with `credentials`, the only extra
 * argument is `--defaults-extra-file=<private file>`.
 */
export async function runTool(cmd: string, args: string[], opts: RunToolOptions = {}): Promise<ToolRun> {
  const tool = cmd.split('/').pop()!;
  const started = Date.now();
  opts.signal?.throwIfAborted();
  let privateDir: string | undefined;
  try {
    privateDir = await mkdtemp(join(tmpdir(), 'runbook-tool-'));
    // HOME is the private dir, so no ~/.my.cnf applies; MYSQL_PWD and friends are not passed on.
    const env = { ...minimalEnvironment({ home: privateDir }), ...opts.env };
    const argv = [...args];
    if (opts.credentials) {
      const file = join(privateDir, 'client.cnf');
      const text = `[client]\nuser=${optionValue(opts.credentials.user)}\npassword=${optionValue(opts.credentials.password)}\n`;
      await writeFile(file, text, { mode: 0o600, flag: 'wx' });
      argv.unshift(`--defaults-extra-file=${file}`);
    }
    return await spawnAndWait(tool, cmd, argv, env, opts, started);
  } finally {
    if (privateDir) await rm(privateDir, { recursive: true, force: true });
  }
}

function spawnAndWait(tool: string, cmd: string, argv: string[], env: NodeJS.ProcessEnv, opts: RunToolOptions, started: number): Promise<ToolRun> {
  return new Promise<ToolRun>((resolve, reject) => {
    // A file is the tool's own stdin, not streamed through us: were this process killed, a streamed
    // `mariadb < file` would see EOF mid-statement and run the cut-off statement (see statementGate).
    let stdinFd: number | undefined;
    try {
      stdinFd = opts.stdinFile ? openSync(opts.stdinFile, 'r') : undefined;
    } catch (err) {
      return reject(err);
    }
    const child = spawn(cmd, argv, { env, stdio: [stdinFd ?? 'pipe', 'pipe', 'pipe'] }) as ChildProcessByStdio<Writable | null, Readable, Readable>;
    if (stdinFd !== undefined) closeSync(stdinFd);
    else {
      child.stdin!.on('error', () => {}); // a tool that exits early closes its stdin: its exit status tells
      child.stdin!.end();
    }
    let stderr = '';
    let stdout = '';
    let stdoutBytes = 0;
    let stopped: 'timeout' | 'aborted' | undefined;
    let killTimer: NodeJS.Timeout | undefined;
    const secret = opts.credentials?.password;

    const stop = (why: 'timeout' | 'aborted') => {
      if (stopped || child.exitCode !== null || child.signalCode !== null) return;
      stopped = why;
      child.kill('SIGTERM');
      killTimer = setTimeout(() => child.kill('SIGKILL'), KILL_GRACE_MS);
      killTimer.unref();
    };
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const timer = setTimeout(() => stop('timeout'), timeoutMs);
    const onAbort = () => stop('aborted');
    opts.signal?.addEventListener('abort', onAbort, { once: true });

    // Reading a file, progress is how far into it the tool is (Linux: its fd 0's offset).
    const stdinOffset = async () => Number(/^pos:\s*(\d+)/m.exec(await readFile(`/proc/${child.pid}/fdinfo/0`, 'utf8'))?.[1] ?? stdoutBytes);
    const measure = opts.measure ?? (opts.stdinFile ? () => stdinOffset().catch(() => stdoutBytes) : async () => stdoutBytes);
    const ticker = opts.onProgress
      ? setInterval(() => {
          measure()
            .then((b) => opts.onProgress?.(b))
            .catch(() => {}); // progress is best effort; it must never fail the run
        }, 1000)
      : undefined;

    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => {
      stderr = (stderr + d).slice(-STDERR_KEEP);
    });
    const counter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        stdoutBytes += chunk.length;
        done(null, chunk);
      },
    });
    const output: Promise<void> = opts.stdoutFile
      ? pipeline(child.stdout, counter, createWriteStream(opts.stdoutFile, { flags: 'wx', mode: 0o600 }))
      : new Promise<void>((res, rej) => {
          child.stdout.setEncoding('utf8');
          child.stdout.on('data', (d: string) => {
            stdoutBytes += Buffer.byteLength(d);
            stdout += d;
          });
          child.stdout.on('end', res);
          child.stdout.on('error', rej);
        });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res, rej) => {
      child.on('error', rej);
      child.on('close', (code, signal) => res({ code, signal }));
    });

    const tail = () => {
      const lines = redact(stderr, secret).trimEnd().split('\n').filter((l) => l.trim());
      return lines.slice(-12).join('\n');
    };
    Promise.all([exited, output.then(() => undefined, (err: Error) => err)])
      .then(([{ code, signal }, outputError]) => {
        const durationMs = Date.now() - started;
        if (stopped) {
          const what = stopped === 'timeout' ? `timed out after ${timeoutMs < 10_000 ? `${timeoutMs} ms` : `${Math.round(timeoutMs / 1000)} s`}` : 'was cancelled';
          throw new ToolError(`${tool} ${what}${tail() ? `; stderr:\n${tail()}` : ''}`, tool, code, signal, tail(), stopped);
        }
        if (code !== 0) {
          throw new ToolError(`${tool} failed (${signal ?? `exit ${code}`})${tail() ? `; stderr:\n${tail()}` : ''}`, tool, code, signal, tail(), 'exit');
        }
        if (outputError) throw new ToolError(`${tool}: writing its output failed: ${outputError.message}`, tool, code, signal, tail(), 'output');
        resolve({ stdout, stderr: redact(stderr, secret), stdoutBytes, durationMs });
      })
      .catch((err: unknown) => {
        if (err instanceof ToolError) reject(err);
        else reject(new ToolError(`${tool} could not run: ${redact((err as Error).message, secret)}`, tool, null, null, tail(), 'exit'));
      })
      .finally(() => {
        clearTimeout(timer);
        if (killTimer) clearTimeout(killTimer);
        if (ticker) clearInterval(ticker);
        opts.signal?.removeEventListener('abort', onAbort);
      });
  });
}

// ---------------------------------------------------------------------------------------------
// Two tools joined by a pipe (`mariadb-binlog … | mariadb --binary-mode`).

export interface PipeSide {
  cmd: string;
  args: string[];
  /**
   * Written to a private option file given as `--defaults-file=<file>` (first argument), so the
   * tool reads that file ONLY: no /etc/mysql/my.cnf, no ~/.my.cnf. Without credentials the side
   * gets `--no-defaults`. Either way a host option file cannot slip in `force`, `database=`,
   * `init-command` or a binlog filter. Connection options (socket, host, port, TLS) go in `args`.
   */
  credentials?: ToolCredentials;
  /**
   * Run the tool under this program (argv prefix; the tool's own argv follows): see
   * `statementGate`. runPipe then writes `endWith` as the very last bytes of a complete stream.
   */
  launcher?: string[];
  endWith?: string;
  /**
   * An operator's command (a reseed template): argv exactly as given (no `--no-defaults`, no
   * option file), run in its own process group so that stopping it stops whatever it started
   * (ssh, a script's children).
   */
  group?: boolean;
}

const END_OF_STREAM = '\n-- runbook: end of stream\n';

/**
 * Run a SQL client so that it only ever receives complete statements, whatever happens to us.
 *
 * The hazard: the `mariadb` client in batch mode executes an unterminated last statement at EOF.
 * If the worker forwarding a replay stream dies (SIGKILL, OOM), the client's stdin ends mid-way and
 * `DROP TABLE shop.orders_old` cut after `shop.orders` would drop the wrong table. So the client
 * runs under a small Perl gate (Perl is part of every Debian and macOS base system) that forwards
 * whole `delimiter`-terminated statements only, and at EOF drops an incomplete tail unless it
 * ends with our end-of-stream marker, which runPipe writes only after all of the producer's
 * output. Told to stop (SIGTERM), the gate SIGKILLs the client: the server then rolls back what
 * was in flight, and never runs a half-received statement.
 */
export function statementGate(delimiter: string): Pick<PipeSide, 'launcher' | 'endWith'> {
  const script = `
    use strict; use warnings;
    binmode STDIN;
    my $pid = open(my $db, '|-') // die "gate: cannot fork: $!\n";
    if (!$pid) { exec { $ARGV[0] } @ARGV; die "gate: cannot run $ARGV[0]: $!\n"; }
    binmode $db;
    $SIG{PIPE} = 'IGNORE';
    $SIG{TERM} = sub { kill 'KILL', $pid; exit 143 };
    my ($delim, $end) = (${JSON.stringify(delimiter + '\n')}, ${JSON.stringify(END_OF_STREAM)});
    local $/ = $delim;
    while (my $r = <STDIN>) {
      if (substr($r, -length $delim) eq $delim) { print {$db} $r or last; next; }
      print {$db} substr($r, 0, -length $end) if length($r) >= length($end) && substr($r, -length $end) eq $end;
    }
    close $db;
    exit($? & 127 ? 128 + ($? & 127) : $? >> 8);
  `;
  return { launcher: [toolPath('perl'), '-e', script, '--'], endWith: END_OF_STREAM };
}

export interface RunPipeOptions extends ProgressOptions {
  /** Extra environment for both sides, e.g. TZ=UTC. */
  env?: Record<string, string>;
  /**
   * Sits between the two: sees every byte the producer writes before the consumer does. If it
   * fails (callback error), nothing more is forwarded, both sides are killed (the consumer never
   * sees EOF) and runPipe rejects with that very error.
   */
  through?: Transform;
  /** How to measure progress (default: bytes forwarded to the consumer). */
  measure?: () => Promise<number>;
  /** Each whole line the consumer writes on stdout, as it comes. */
  onConsumerLine?: (line: string) => void;
}

export interface PipeRun {
  /** Bytes forwarded from the producer to the consumer. */
  bytes: number;
  durationMs: number;
  producerStderr: string;
  consumerStdout: string;
  consumerStderr: string;
}

/**
 * Run `producer | consumer` with runTool's safety: private option files, minimal environment
 * (HOME = the private dir), a timeout and an abort signal that kill both, progress every second,
 * and a failure that names the side that failed with the tail of its stderr.
 *
 * The consumer's stdin is closed (EOF) only after the producer exited 0 and all its output was
 * forwarded. When the producer fails or is stopped, the consumer is killed instead: the mariadb
 * client executes an unterminated statement it holds at EOF (verified with 10.11: `printf 'INSERT …'
 * | mariadb` inserts the row; killed with SIGTERM it does not), and a producer that dies mid-line
 * could otherwise make it run a truncated `DELETE FROM t WHERE …` as `DELETE FROM t`.
 */
export async function runPipe(producer: PipeSide, consumer: PipeSide, opts: RunPipeOptions = {}): Promise<PipeRun> {
  const started = Date.now();
  opts.signal?.throwIfAborted();
  let privateDir: string | undefined;
  try {
    privateDir = await mkdtemp(join(tmpdir(), 'runbook-pipe-'));
    const env = { ...minimalEnvironment({ home: privateDir }), ...opts.env };
    const argvOf = async (side: PipeSide, name: string): Promise<string[]> => {
      if (side.group) return side.args;
      if (!side.credentials) return ['--no-defaults', ...side.args];
      const file = join(privateDir!, `${name}.cnf`);
      const text = `[client]\nuser=${optionValue(side.credentials.user)}\npassword=${optionValue(side.credentials.password)}\n`;
      await writeFile(file, text, { mode: 0o600, flag: 'wx' });
      return [`--defaults-file=${file}`, ...side.args];
    };
    const argv = { producer: await argvOf(producer, 'producer'), consumer: await argvOf(consumer, 'consumer') };
    return await spawnPipe(producer, consumer, argv, env, opts, started);
  } finally {
    if (privateDir) await rm(privateDir, { recursive: true, force: true });
  }
}

type Exit = { code: number | null; signal: NodeJS.Signals | null };

function spawnPipe(producer: PipeSide, consumer: PipeSide, argv: { producer: string[]; consumer: string[] }, env: NodeJS.ProcessEnv, opts: RunPipeOptions, started: number): Promise<PipeRun> {
  const pName = producer.cmd.split('/').pop()!;
  const cName = consumer.cmd.split('/').pop()!;
  const name = `${pName} | ${cName}`;
  const secrets = [producer.credentials?.password, consumer.credentials?.password];
  const clean = (text: string): string => secrets.reduce<string>((t, s) => redact(t, s), text);
  const tailOf = (text: string) =>
    clean(text)
      .trimEnd()
      .split('\n')
      .filter((l) => l.trim())
      .slice(-12)
      .join('\n');

  return new Promise<PipeRun>((resolve, reject) => {
    const p = spawn(producer.cmd, argv.producer, { env, stdio: ['ignore', 'pipe', 'pipe'], detached: !!producer.group });
    const c = consumer.launcher
      ? spawn(consumer.launcher[0]!, [...consumer.launcher.slice(1), consumer.cmd, ...argv.consumer], { env, stdio: ['pipe', 'pipe', 'pipe'], detached: !!consumer.group })
      : spawn(consumer.cmd, argv.consumer, { env, stdio: ['pipe', 'pipe', 'pipe'], detached: !!consumer.group });
    let pErr = '';
    let cErr = '';
    let cOut = '';
    let bytes = 0;
    let stopped: 'timeout' | 'aborted' | undefined;
    let refused: Error | undefined;
    let spawnError: Error | undefined;
    const killed = { producer: false, consumer: false };
    const killTimers: NodeJS.Timeout[] = [];
    let pExit: Exit | undefined;
    let cExit: Exit | undefined;

    const kill = (side: 'producer' | 'consumer') => {
      const child = side === 'producer' ? p : c;
      if (child.exitCode !== null || child.signalCode !== null || killed[side]) return;
      killed[side] = true;
      const group = (side === 'producer' ? producer : consumer).group && child.pid;
      const signal = (sig: NodeJS.Signals) => {
        try {
          if (group) process.kill(-group, sig);
          else child.kill(sig);
        } catch {
          /* already gone */
        }
      };
      signal('SIGTERM');
      const t = setTimeout(() => signal('SIGKILL'), KILL_GRACE_MS);
      t.unref();
      killTimers.push(t);
    };
    const stop = (why: 'timeout' | 'aborted') => {
      if (stopped || (pExit && cExit)) return;
      stopped = why;
      kill('producer');
      kill('consumer');
    };
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const timer = setTimeout(() => stop('timeout'), timeoutMs);
    const onAbort = () => stop('aborted');
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    const measure = opts.measure ?? (async () => bytes);
    const ticker = opts.onProgress
      ? setInterval(() => {
          measure()
            .then((b) => opts.onProgress?.(b))
            .catch(() => {}); // best effort, never fails the run
        }, 1000)
      : undefined;

    p.stderr.setEncoding('utf8');
    p.stderr.on('data', (d: string) => (pErr = (pErr + d).slice(-STDERR_KEEP)));
    c.stderr.setEncoding('utf8');
    c.stderr.on('data', (d: string) => (cErr = (cErr + d).slice(-STDERR_KEEP)));
    c.stdout.setEncoding('utf8');
    let cLine = '';
    c.stdout.on('data', (d: string) => {
      cOut = (cOut + d).slice(-STDERR_KEEP);
      if (!opts.onConsumerLine) return;
      const lines = (cLine + d).split('\n');
      cLine = lines.pop()!.slice(-STDERR_KEEP);
      for (const l of lines) opts.onConsumerLine(l);
    });
    c.stdin.on('error', () => {}); // EPIPE when the consumer exits early: its exit status tells

    // Forward by hand, never ending the consumer's stdin on the way (see runPipe).
    const source: Readable = opts.through ? p.stdout.pipe(opts.through) : p.stdout;
    opts.through?.on('error', (err: Error) => {
      refused ??= err;
      p.stdout.unpipe(opts.through!);
      kill('producer');
      kill('consumer');
    });
    source.on('data', (chunk: Buffer) => {
      if (refused || stopped) return;
      bytes += chunk.length;
      if (!c.stdin.write(chunk)) {
        source.pause();
        c.stdin.once('drain', () => source.resume());
      }
    });
    const forwarded = new Promise<void>((res) => {
      source.on('end', res);
      source.on('close', res);
    });

    let settled = false;
    const settle = () => {
      if (!pExit || !cExit || settled) return;
      settled = true;
      clearTimeout(timer);
      for (const t of killTimers) clearTimeout(t);
      if (ticker) clearInterval(ticker);
      opts.signal?.removeEventListener('abort', onAbort);
      const durationMs = Date.now() - started;
      const fail = (message: string, tool: string, exit: Exit, stderr: string, reason: ToolError['reason']) =>
        reject(new ToolError(message, tool, exit.code, exit.signal, tailOf(stderr), reason));
      const status = (e: Exit) => e.signal ?? `exit ${e.code}`;
      const withTail = (label: string, text: string) => (tailOf(text) ? `; ${label} stderr:\n${tailOf(text)}` : '');
      if (spawnError) return fail(`${name} could not run: ${clean(spawnError.message)}`, name, cExit, cErr, 'exit');
      if (stopped) {
        const what = stopped === 'timeout' ? `timed out after ${timeoutMs < 10_000 ? `${timeoutMs} ms` : `${Math.round(timeoutMs / 1000)} s`}` : 'was cancelled';
        return fail(`${name} ${what}${withTail(pName, pErr)}${withTail(cName, cErr)}`, name, cExit, `${pErr}\n${cErr}`, stopped);
      }
      if (refused) return reject(refused);
      // The consumer's own failure comes first: the producer then usually dies of a broken pipe.
      if (cExit.code !== 0 && !killed.consumer) return fail(`${cName} failed (${status(cExit)}) reading from ${pName}${withTail(cName, cErr)}`, cName, cExit, cErr, 'exit');
      if (pExit.code !== 0 && !killed.producer) return fail(`${pName} failed (${status(pExit)}) writing to ${cName}${withTail(pName, pErr)}`, pName, pExit, pErr, 'exit');
      if (killed.producer) return fail(`${cName} exited (${status(cExit)}) before reading all of ${pName}'s output${withTail(cName, cErr)}`, cName, cExit, cErr, 'exit');
      resolve({ bytes, durationMs, producerStderr: clean(pErr), consumerStdout: cOut, consumerStderr: clean(cErr) });
    };

    const onSpawnError = (err: Error) => {
      spawnError ??= err;
      kill('producer');
      kill('consumer');
    };
    p.on('error', (err) => {
      onSpawnError(err);
      pExit ??= { code: null, signal: null };
      settle();
    });
    c.on('error', (err) => {
      onSpawnError(err);
      cExit ??= { code: null, signal: null };
      settle();
    });
    p.on('close', (code, signal) => {
      pExit = { code, signal };
      if (code === 0 && !stopped && !refused) {
        // All of its output forwarded (and passed by `through`): only now may the consumer see EOF.
        void forwarded.then(() => {
          if (!refused && !stopped && !killed.consumer) c.stdin.end(consumer.endWith);
        });
      } else {
        kill('consumer');
      }
      settle();
    });
    c.on('close', (code, signal) => {
      cExit = { code, signal };
      kill('producer'); // nobody reads its output any more
      settle();
    });
  });
}

/** First line of `<tool> --version`, e.g. `mariadb-dump  Ver 10.19 Distrib 10.11.19-MariaDB, …`. */
const versions = new Map<string, Promise<string>>();
export function toolVersion(name: string): Promise<string> {
  let v = versions.get(name);
  if (!v) {
    v = runTool(toolPath(name), ['--version'], { timeoutMs: 15_000 }).then((run) => {
      const line = `${run.stdout}\n${run.stderr}`.split('\n').find((l) => l.includes(name)) ?? name;
      return line.trim().replace(/^\S*\//, '').replace(/\s+/g, ' ');
    });
    v.catch(() => versions.delete(name));
    versions.set(name, v);
  }
  return v;
}

// ---------------------------------------------------------------------------------------------
// Parsing what the tools leave behind (pure).

/** `-- CHANGE MASTER TO MASTER_LOG_FILE='mysql-bin.000001', MASTER_LOG_POS=856;` near the top of a dump. */
export function parseDumpBinlogPosition(head: string): { file: string; position: number } | undefined {
  const m = /^-- CHANGE MASTER TO MASTER_LOG_FILE='([^']+)', MASTER_LOG_POS=(\d+);/m.exec(head);
  return m ? { file: m[1]!, position: Number(m[2]) } : undefined;
}

/** `-- SET GLOBAL gtid_slave_pos='0-1-3';`, written by mariadb-dump --gtid at the END of a dump. */
export function parseDumpGtid(tail: string): string | undefined {
  const all = [...tail.matchAll(/^-- SET GLOBAL gtid_slave_pos='([^']*)';/gm)];
  return all.length ? all[all.length - 1]![1] : undefined;
}

/** `xtrabackup_binlog_info` of a mariadb-backup target dir: `file<TAB>pos[<TAB>gtid]`. */
export function parseXtrabackupBinlogInfo(text: string): { file: string; position: number; gtid: string } | undefined {
  const line = text.split('\n').find((l) => l.trim());
  if (!line) return undefined;
  const [file, pos, gtid] = line.trim().split('\t');
  if (!file || !pos || !/^\d+$/.test(pos)) return undefined;
  return { file, position: Number(pos), gtid: (gtid ?? '').trim() };
}

async function readSlice(file: string, from: 'start' | 'end', bytes: number): Promise<string> {
  const fh = await open(file, 'r');
  try {
    const { size } = await fh.stat();
    const length = Math.min(size, bytes);
    const buf = Buffer.alloc(length);
    await fh.read(buf, 0, length, from === 'start' ? 0 : size - length);
    return buf.toString('utf8');
  } finally {
    await fh.close();
  }
}

// ---------------------------------------------------------------------------------------------
// The three tools.

export interface LogicalBackupResult {
  binlog: { file: string; position: number };
  gtid: string;
  sizeBytes: number;
  tool: string;
  durationMs: number;
}

/**
 * A consistent logical dump of the whole server, streamed into `outFile` (created, mode 0600).
 * The binlog coordinates come from the comment near the top, the GTID from the one at the end; a
 * dump without both (or without mariadb-dump's completion line) is refused.
 */
export async function logicalBackup(opts: ServerLogin & ProgressOptions & { outFile: string }): Promise<LogicalBackupResult> {
  const args = [
    `--host=${opts.host}`,
    `--port=${opts.port}`,
    '--single-transaction',
    '--master-data=2',
    '--gtid',
    '--routines',
    '--events',
    '--triggers',
    '--all-databases',
    '--hex-blob',
  ];
  const run = await runTool(toolPath('mariadb-dump'), args, {
    credentials: { user: opts.user, password: opts.password },
    stdoutFile: opts.outFile,
    onProgress: opts.onProgress,
    signal: opts.signal,
    timeoutMs: opts.timeoutMs,
  });
  const head = await readSlice(opts.outFile, 'start', 64 * 1024);
  const tail = await readSlice(opts.outFile, 'end', 64 * 1024);
  const binlog = parseDumpBinlogPosition(head);
  const gtid = parseDumpGtid(tail);
  const problem = !/^-- Dump completed/m.test(tail)
    ? 'has no "-- Dump completed" line (truncated)'
    : !binlog
      ? 'has no binlog position (is the binary log enabled on the source?)'
      : gtid === undefined
        ? 'has no gtid_slave_pos comment at its end'
        : undefined;
  if (problem) throw new ToolError(`mariadb-dump output ${opts.outFile} ${problem}`, 'mariadb-dump', 0, null, '', 'output');
  return { binlog: binlog!, gtid: gtid!, sizeBytes: (await stat(opts.outFile)).size, tool: await toolVersion('mariadb-dump'), durationMs: run.durationMs };
}

export interface PhysicalBackupResult {
  binlog: { file: string; position: number };
  gtid: string;
  sizeBytes: number;
  tool: string;
  durationMs: number;
}

/**
 * `mariadb-backup --backup` then `--prepare` into `targetDir` (must not exist or be empty).
 * mariadb-backup copies the server's datadir from the local filesystem: it only works on the
 * database host itself. `datadir` is the server's `@@datadir`, passed explicitly so a [mysqld]
 * datadir in the host's my.cnf cannot point it elsewhere. The position comes from
 * `xtrabackup_binlog_info` in the target dir (not the stale xtrabackup_binlog_pos_innodb).
 */
export async function physicalBackup(opts: ServerLogin & ProgressOptions & { targetDir: string; datadir: string }): Promise<PhysicalBackupResult> {
  const started = Date.now();
  const cmd = toolPath('mariadb-backup');
  const measure = () => dirSize(opts.targetDir);
  const deadline = started + (opts.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  await runTool(cmd, ['--backup', `--target-dir=${opts.targetDir}`, `--datadir=${opts.datadir}`, `--host=${opts.host}`, `--port=${opts.port}`], {
    credentials: { user: opts.user, password: opts.password },
    onProgress: opts.onProgress,
    measure,
    signal: opts.signal,
    timeoutMs: opts.timeoutMs,
  });
  // --prepare works on the copy only: no server connection, no credentials.
  await runTool(cmd, ['--prepare', `--target-dir=${opts.targetDir}`], {
    onProgress: opts.onProgress,
    measure,
    signal: opts.signal,
    timeoutMs: Math.max(1000, deadline - Date.now()),
  });
  const infoFile = join(opts.targetDir, 'xtrabackup_binlog_info');
  let info: ReturnType<typeof parseXtrabackupBinlogInfo>;
  try {
    info = parseXtrabackupBinlogInfo(await readFile(infoFile, 'utf8'));
  } catch (err) {
    throw new ToolError(`mariadb-backup left no readable ${infoFile}: ${(err as Error).message} (is the binary log enabled on the source?)`, 'mariadb-backup', 0, null, '', 'output');
  }
  if (!info) throw new ToolError(`${infoFile} holds no binlog position`, 'mariadb-backup', 0, null, '', 'output');
  return {
    binlog: { file: info.file, position: info.position },
    gtid: info.gtid,
    sizeBytes: await dirSize(opts.targetDir),
    tool: await toolVersion('mariadb-backup'),
    durationMs: Date.now() - started,
  };
}

/**
 * Copy binlog files from a server over the replication protocol (`--read-from-remote-server
 * --raw`): works for a remote primary, and never moves, purges or changes anything on it. Each file
 * lands as `<outDir>/<file>`, as it stood when it was read.
 */
export async function fetchBinlogs(opts: ServerLogin & ProgressOptions & { files: string[]; outDir: string }): Promise<{ durationMs: number }> {
  if (!opts.files.length) return { durationMs: 0 };
  for (const f of opts.files) if (!/^[A-Za-z0-9._-]+$/.test(f) || f.startsWith('-')) throw new Error(`refusing odd binlog file name ${JSON.stringify(f)}`);
  const outDir = opts.outDir.endsWith(sep) ? opts.outDir : opts.outDir + sep;
  const run = await runTool(
    toolPath('mariadb-binlog'),
    ['--read-from-remote-server', '--raw', `--host=${opts.host}`, `--port=${opts.port}`, `--result-file=${outDir}`, ...opts.files],
    {
      credentials: { user: opts.user, password: opts.password },
      onProgress: opts.onProgress,
      measure: () => dirSize(opts.outDir),
      signal: opts.signal,
      timeoutMs: opts.timeoutMs,
    },
  );
  return { durationMs: run.durationMs };
}

/**
 * Follow a server's binlogs as it writes them (`--raw --stop-never`), from `file` on, into
 * `<outDir>/<file>…`; it ends only when `signal` aborts it or the connection breaks. `serverId`
 * identifies this reader to the server as a replica would (it must be unique among them).
 */
export function streamBinlogs(opts: ServerLogin & { file: string; outDir: string; serverId: number; signal: AbortSignal }): Promise<ToolRun> {
  if (!/^[A-Za-z0-9._-]+$/.test(opts.file) || opts.file.startsWith('-')) throw new Error(`refusing odd binlog file name ${JSON.stringify(opts.file)}`);
  const outDir = opts.outDir.endsWith(sep) ? opts.outDir : opts.outDir + sep;
  return runTool(
    toolPath('mariadb-binlog'),
    [
      '--read-from-remote-server', '--raw', '--stop-never', `--stop-never-slave-server-id=${opts.serverId}`,
      `--host=${opts.host}`, `--port=${opts.port}`, `--result-file=${outDir}`, opts.file,
    ],
    { credentials: { user: opts.user, password: opts.password }, signal: opts.signal, timeoutMs: 20 * 24 * 3600_000 } // timers hold at most 24.8 days; the archiver restarts it,
  );
}

// ---------------------------------------------------------------------------------------------
// Files.

/** Every regular file under `dir`, relative to it, `/`-separated, sorted. */
export async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string) => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile()) out.push(relative(dir, p).split(sep).join('/'));
    }
  };
  await walk(dir);
  return out.sort();
}

export async function dirSize(dir: string): Promise<number> {
  let total = 0;
  const walk = async (d: string) => {
    let entries;
    try {
      entries = await readdir(d, { withFileTypes: true });
    } catch {
      return; // not created yet, or removed meanwhile
    }
    for (const e of entries) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile()) total += await stat(p).then((s) => s.size, () => 0);
    }
  };
  await walk(dir);
  return total;
}

/** Write JSON to `file` through a temporary file and a rename: a reader sees the old or the new, never half. */
export async function writeJsonAtomically(file: string, value: unknown): Promise<void> {
  const tmp = `${file}.${randomUUID()}.tmp`;
  await writeFile(tmp, JSON.stringify(value, null, 2) + '\n', { mode: 0o600 });
  await rename(tmp, file);
}

export async function sha256OfFile(file: string, onBytes?: (n: number) => void): Promise<{ sha256: string; sizeBytes: number }> {
  const hash = createHash('sha256');
  let sizeBytes = 0;
  for await (const chunk of createReadStream(file, { highWaterMark: 1024 * 1024 })) {
    hash.update(chunk as Buffer);
    sizeBytes += (chunk as Buffer).length;
    onBytes?.(sizeBytes);
  }
  return { sha256: hash.digest('hex'), sizeBytes };
}

export interface FilesDigest {
  /** sha256 of the sha256sum-style listing (`<hex>  <path>\n`, paths sorted); see BackupManifest.sha256. */
  sha256: string;
  sizeBytes: number;
  perFile: { file: string; sha256: string; sizeBytes: number }[];
}

/** The digest of a set of files under `dir` (paths relative to it). A missing file throws (ENOENT). */
export async function sha256OfFiles(dir: string, files: string[], onProgress?: (bytes: number) => void): Promise<FilesDigest> {
  const perFile: FilesDigest['perFile'] = [];
  let done = 0;
  for (const file of [...files].sort()) {
    const r = await sha256OfFile(join(dir, file), (n) => onProgress?.(done + n));
    done += r.sizeBytes;
    perFile.push({ file, ...r });
  }
  const listing = perFile.map((f) => `${f.sha256}  ${f.file}\n`).join('');
  return { sha256: createHash('sha256').update(listing).digest('hex'), sizeBytes: done, perFile };
}
