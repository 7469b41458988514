/**
 * Small process utilities shared by the MariaDB sandbox, the Temporal dev server launcher, the
 * backup tools and the operator's hooks: finding executables, process liveness, and the one
 * definition of what a child process may see of the worker's environment.
 */
import { accessSync, constants, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

/** Find an executable on PATH or in the given extra directories (mariadbd lives in /usr/sbin). */
export function findExecutable(name: string, extraDirs: string[] = []): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), ...extraDirs].filter(Boolean);
  for (const dir of dirs) {
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      /* keep looking */
    }
  }
  return undefined;
}

/** True while the process exists and is not a zombie waiting to be reaped. */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true; // no /proc (macOS): kill(0) is all we have
  }
}

/** The command line of a process, to make sure a pid file still points at our own process. */
export function commandLine(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
  } catch {
    return undefined;
  }
}

export function readPid(pidFile: string): number | undefined {
  try {
    const pid = Number(readFileSync(pidFile, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** Poll until `check` returns a value, the deadline passes, or `abort` says the process died. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined>,
  opts: { timeoutMs: number; intervalMs?: number; abort?: () => string | undefined },
): Promise<T> {
  const deadline = Date.now() + opts.timeoutMs;
  let lastError: unknown;
  for (;;) {
    const reason = opts.abort?.();
    if (reason) throw new Error(`${what}: ${reason}`);
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      const detail = lastError instanceof Error ? `: ${lastError.message}` : '';
      throw new Error(`${what}: not ready after ${opts.timeoutMs} ms${detail}`);
    }
    await sleep(opts.intervalMs ?? 100);
  }
}

/** SIGTERM, wait for a clean exit, then SIGKILL: leaves nothing behind. */
export async function terminate(pid: number, graceMs = 30_000): Promise<void> {
  if (!isAlive(pid)) return;
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (isAlive(pid) && Date.now() < deadline) await sleep(50);
  if (isAlive(pid)) {
    process.kill(pid, 'SIGKILL');
    while (isAlive(pid)) await sleep(20);
  }
}

/** What a child process gets of the worker's environment, whatever it is. */
const ENVIRONMENT_KEPT = ['PATH', 'LANG', 'LC_ALL', 'LC_CTYPE', 'LC_MESSAGES', 'TZ', 'TMPDIR'] as const;

/**
 * A minimal environment for a child process (a backup tool, a hook): never the worker's own,
 * which holds every credential the config names (ORDERS_ADMIN_PASSWORD, ...), the Slack token, the
 * SMTP password and the link-signing key, and would be readable in /proc/<pid>/environ. It has
 * PATH, the locale, TZ and TMPDIR, HOME (`home`, else the worker's), and the variables named in
 * `pass`, which a config lists explicitly.
 */
export function minimalEnvironment(opts: { home?: string; pass?: readonly string[] } = {}, from: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: from.PATH ?? '/usr/bin:/bin' };
  for (const key of [...ENVIRONMENT_KEPT, ...(opts.pass ?? [])]) {
    if (from[key] !== undefined) env[key] = from[key];
  }
  const home = opts.home ?? from.HOME;
  if (home !== undefined) env.HOME = home;
  return env;
}

/** `text` with every occurrence of each secret replaced by `***` (longest first, so none is left in part). */
export function redactSecrets(text: string, secrets: readonly string[]): string {
  return [...secrets].filter(Boolean).sort((a, b) => b.length - a.length).reduce((t, secret) => t.split(secret).join('***'), text);
}

/** Whether nothing listens on host:port (so a server of ours can bind it). */
export function portFree(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((res) => {
    const srv = createServer();
    srv.once('error', () => res(false));
    srv.listen(port, host, () => srv.close(() => res(true)));
  });
}

/**
 * The TCP ports a process listens on, from /proc (its socket inodes matched against the kernel's
 * listening sockets); undefined where that cannot be read (no /proc, or not our process). This is
 * how a launcher tells its own server answering from another one that holds the port.
 */
export function listeningPorts(pid: number): Set<number> | undefined {
  let inodes: Set<string>;
  try {
    inodes = new Set(
      readdirSync(`/proc/${pid}/fd`).flatMap((fd) => {
        try {
          const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
          return m ? [m[1]!] : [];
        } catch {
          return []; // closed meanwhile
        }
      }),
    );
  } catch {
    return undefined;
  }
  const ports = new Set<number>();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || f[3] !== '0A' || !inodes.has(f[9]!)) continue; // 0A: LISTEN
      ports.add(parseInt(f[1]!.split(':')[1]!, 16));
    }
  }
  return ports;
}
