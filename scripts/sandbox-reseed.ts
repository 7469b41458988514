/**
 * The sandbox's local `reseed.physical` template (runbooks/sandbox.yaml): both sides run on this
 * host, where every sandbox datadir is. Production puts the same two steps behind ssh or an agent
 * on the source's and the target's hosts.
 *
 *   source <datadir>   `mariadb-backup --backup --stream=mbstream` of the server on that datadir
 *                      (root over its unix socket: a sandbox server's root has no password), the
 *                      stream on stdout.
 *   target <datadir>   stop the server on that datadir (the sandbox's mariadbd adapter), clear the
 *                      datadir and print `cleared`, `mbstream -x` stdin into it, check the stream
 *                      was whole, `mariadb-backup --prepare`, drop the source's replication
 *                      settings, start it (read-only, as every sandbox server starts), and print
 *                      `xtrabackup_binlog_info` as the last line. Run under `flock` (see the
 *                      template): an earlier attempt's orphan finishes before this one clears.
 *
 * Everything but the last line goes to stderr or is a single status word on stdout.
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { pathsOf, startServer, stopServer, type MariadbdInstance } from '../src/adapters/mariadbd/server';

/** The sandbox server on `datadir`, as its own my.cnf (written by the adapter) describes it. */
function instanceOn(datadir: string): MariadbdInstance {
  const dir = dirname(datadir);
  const cnf = readFileSync(join(dir, 'my.cnf'), 'utf8');
  const value = (key: string) => new RegExp(`^${key}=(.*)$`, 'm').exec(cnf)?.[1]?.trim();
  const port = Number(value('port'));
  const serverId = Number(value('server_id'));
  if (!port || !serverId || value('datadir')?.replace(/\/$/, '') !== datadir.replace(/\/$/, '')) throw new Error(`${join(dir, 'my.cnf')} does not describe a sandbox server on ${datadir}`);
  return { key: basename(dir), host: value('bind-address') ?? '127.0.0.1', port, serverId, initialRole: 'replica', dir };
}

function run(cmd: string, args: string[], stdin: 'inherit' | 'ignore'): Promise<void> {
  return new Promise((resolve, reject) => {
    // stdout to our stderr: our stdout carries only the status word and the binlog info.
    const child = spawn(cmd, args, { stdio: [stdin, 2, 2] });
    child.on('error', reject);
    child.on('exit', (code, signal) => (code === 0 ? resolve() : reject(new Error(`${cmd} ${args[0]} failed (${signal ?? code})`))));
  });
}

async function source(datadir: string): Promise<void> {
  const inst = instanceOn(datadir);
  const child = spawn('mariadb-backup', ['--no-defaults', '--backup', '--stream=mbstream', `--datadir=${datadir}`, '--user=root', `--socket=${pathsOf(inst).socket}`, `--target-dir=${pathsOf(inst).tmp}`], { stdio: ['ignore', 1, 2] });
  await new Promise<void>((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code, signal) => (code === 0 ? resolve() : reject(new Error(`mariadb-backup --backup failed (${signal ?? code})`))));
  });
}

async function target(datadir: string): Promise<void> {
  const inst = instanceOn(datadir);
  await stopServer(inst, (l) => process.stderr.write(`${l}\n`));
  for (const f of readdirSync(datadir)) rmSync(join(datadir, f), { recursive: true, force: true });
  process.stdout.write('cleared\n');
  await run('mbstream', ['-x', '-C', datadir], 'inherit');
  // mbstream stops quietly at a truncated stream: the files mariadb-backup writes last must be there.
  for (const f of ['xtrabackup_checkpoints', 'xtrabackup_binlog_info']) if (!existsSync(join(datadir, f))) throw new Error(`the stream ended before ${f}: incomplete copy`);
  await run('mariadb-backup', ['--no-defaults', '--prepare', `--target-dir=${datadir}`], 'ignore');
  // The source's replication settings would make the copy replicate on its own at start.
  for (const f of readdirSync(datadir)) if (/^(master.*|relay-log.*|multi-master)\.info$/.test(f)) rmSync(join(datadir, f));
  await startServer(inst, (l) => process.stderr.write(`${l}\n`));
  const info = readFileSync(join(datadir, 'xtrabackup_binlog_info'), 'utf8').trim().split('\n')[0];
  process.stdout.write(`${info}\n`);
}

const [side, datadir] = process.argv.slice(2);
if (!datadir || !['source', 'target'].includes(side ?? '')) {
  process.stderr.write('usage: sandbox-reseed source|target <datadir>\n');
  process.exit(2);
}
(side === 'source' ? source(datadir) : target(datadir)).catch((err: unknown) => {
  process.stderr.write(`sandbox-reseed ${side}: ${(err as Error).message}\n`);
  process.exit(1);
});
