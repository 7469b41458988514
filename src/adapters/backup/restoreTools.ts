/**
 * The two restore primitives that run MariaDB's own tools, as plain Node functions (no Temporal:
 * src/activities/restore.ts maps these errors to failures and heartbeats the progress):
 *
 * - copyBackPhysical: a prepared mariadb-backup target dir into a fresh datadir (a copy: the
 *   backup stays intact and can be restored again);
 * - pipeReplay: `mariadb-binlog … | mariadb --binary-mode`, the fallback replay path when the
 *   replication SQL thread cannot be used, between two GTIDs, resumable and idempotent.
 *
 * Facts below were verified with the MariaDB 10.11.19 (Debian) tools and server.
 */
import { lchown, mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { isAbsolute, join, relative, resolve } from 'node:path';
import { Transform } from 'node:stream';
import { formatMariaGtidList, parseMariaGtidList, type MariaGtid } from '../../core/gtid';
import { dirSize, runPipe, runTool, statementGate, toolPath, type ProgressOptions } from '../process/tools';

/**
 * A precondition or consistency check of a restore failed: retrying the same call will not help
 * (unlike a ToolError from a tool that crashed or timed out).
 */
export class RestoreRefusedError extends Error {
  override name = 'RestoreRefusedError';
}

// ---------------------------------------------------------------------------------------------
// Physical: copy back.

export interface CopyBackOptions extends ProgressOptions {
  /** A mariadb-backup target dir, already `--prepare`d. Only read. */
  backupDataDir: string;
  /** The new server's datadir: must not exist, or be empty. Created (mode 0700) if missing. */
  datadir: string;
  /**
   * Give every restored file to this owner, for a server that runs as another user than this
   * process (a system mariadbd with `user=mysql` cannot open root-owned files: verified, it aborts
   * with "Can't create/write to file './ddl_recovery.log' (Errcode: 13)"). The sandbox needs none:
   * its mariadbd runs as the user that runs the tools (`user=root` in its my.cnf when that is root).
   */
  owner?: { uid: number; gid: number };
}

/** `backup_type` of a target dir after `--prepare`: `log-applied` since 10.2-ish, `full-prepared` before. */
const PREPARED_TYPES = ['log-applied', 'full-prepared'];

/**
 * Restore a prepared physical backup into an empty datadir with `mariadb-backup --copy-back`
 * (never --move-back, which empties the backup).
 *
 * Verified with 10.11:
 * - `--copy-back` of an UNprepared target dir (`backup_type = full-backuped`) succeeds silently and
 *   leaves a datadir that needs crash recovery from a raw copy: refused here by reading
 *   xtrabackup_checkpoints first.
 * - mariadb-backup itself refuses a non-empty datadir ("Original data directory … is not empty!");
 *   it is checked here first for a clear message, and so that a failed copy can be cleaned up
 *   (everything in the datadir is then ours) and the call retried.
 * - `--no-defaults` keeps the host's my.cnf out: /etc/mysql's [mysqld] group is read by
 *   mariadb-backup, and an innodb_log_group_home_dir / innodb_undo_directory there would send
 *   files outside `datadir`. With it the layout is the server default (all in the datadir), which
 *   is what the sandbox's my.cnf expects.
 * - Nothing else is needed before mariadbd starts on it with the sandbox's my.cnf: the prepared
 *   ib_logfile0 is small (12 KiB) and the server resizes it to innodb_log_file_size at startup
 *   ("Resizing redo log from 12.016KiB to 16.000MiB"); `<dir>/data/mysql` exists, so
 *   Sandbox.startInstance does not run mariadb-install-db over it. The restored server has no
 *   binlog (gtid_binlog_pos empty); its gtid_slave_pos is the source's mysql.gtid_slave_pos table
 *   as backed up; master.info is not part of a backup (nothing replicates on its own).
 */
export async function copyBackPhysical(opts: CopyBackOptions): Promise<{ durationMs: number; sizeBytes: number }> {
  const started = Date.now();
  const backup = resolve(opts.backupDataDir);
  const datadir = resolve(opts.datadir);
  const inside = (a: string, b: string) => !relative(b, a).startsWith('..') && !isAbsolute(relative(b, a));
  if (inside(datadir, backup) || inside(backup, datadir)) throw new RestoreRefusedError(`refusing to copy back: datadir ${datadir} and backup ${backup} overlap`);

  let checkpoints: string;
  try {
    checkpoints = await readFile(join(backup, 'xtrabackup_checkpoints'), 'utf8');
  } catch (err) {
    throw new RestoreRefusedError(`${backup} is not a mariadb-backup target dir (no readable xtrabackup_checkpoints: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  const type = /^backup_type\s*=\s*(\S+)/m.exec(checkpoints)?.[1];
  if (!type || !PREPARED_TYPES.includes(type)) {
    throw new RestoreRefusedError(`backup ${backup} is not prepared (backup_type = ${type ?? 'missing'}): run mariadb-backup --prepare on it first`);
  }

  let created = false;
  try {
    const entries = await readdir(datadir);
    if (entries.length) throw new RestoreRefusedError(`refusing to copy back into ${datadir}: it is not empty (${entries.length} entries); a restore never overwrites a datadir`);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    await mkdir(datadir, { recursive: true, mode: 0o700 });
    created = true;
  }

  try {
    await runTool(toolPath('mariadb-backup'), ['--no-defaults', '--copy-back', `--target-dir=${backup}`, `--datadir=${datadir}`], {
      measure: () => dirSize(datadir),
      onProgress: opts.onProgress,
      signal: opts.signal,
      timeoutMs: opts.timeoutMs,
    });
    if (opts.owner) await chownTree(datadir, opts.owner.uid, opts.owner.gid);
  } catch (err) {
    // The datadir was empty or absent before: whatever is in it now is a partial copy of ours.
    if (created) await rm(datadir, { recursive: true, force: true });
    else for (const e of await readdir(datadir).catch(() => [])) await rm(join(datadir, e), { recursive: true, force: true });
    throw err;
  }
  return { durationMs: Date.now() - started, sizeBytes: await dirSize(datadir) };
}

async function chownTree(dir: string, uid: number, gid: number): Promise<void> {
  await lchown(dir, uid, gid);
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) await chownTree(p, uid, gid);
    else await lchown(p, uid, gid);
  }
}

// ---------------------------------------------------------------------------------------------
// Binlog replay through a pipe.

/** How to reach the recovery server. The password (if any) goes to a private option file. */
export type ReplayTarget = { socket: string; user: string; password?: string } | { host: string; port: number; user: string; password: string };

function connectionArgs(target: ReplayTarget): string[] {
  // An explicit protocol: with host "localhost" and no --protocol the client would take a unix
  // socket, and with no socket given, whichever one a my.cnf names (another server).
  return 'socket' in target ? [`--socket=${target.socket}`, '--protocol=SOCKET'] : [`--host=${target.host}`, `--port=${target.port}`, '--protocol=TCP'];
}

/** An empty password in the option file is accepted by a password-less account (verified, root over the socket). */
const credentialsOf = (target: ReplayTarget) => ({ user: target.user, password: target.password ?? '' });

export interface ReplayedPosition {
  /** `@@gtid_binlog_pos` of the recovery server: what replay has applied (see pipeReplay). */
  gtidBinlogPos: string;
  logBin: boolean;
  serverId: number;
}

/** The recovery server's binlog GTID position, binary log switch and server_id. */
export async function replayedPosition(target: ReplayTarget, opts: Pick<ProgressOptions, 'signal' | 'timeoutMs'> = {}): Promise<ReplayedPosition> {
  const run = await runTool(toolPath('mariadb'), [...connectionArgs(target), '--batch', '--skip-column-names', '--execute=SELECT @@log_bin, @@server_id, @@gtid_binlog_pos'], {
    credentials: credentialsOf(target),
    signal: opts.signal,
    timeoutMs: opts.timeoutMs ?? 30_000,
  });
  const [logBin, serverId, pos] = run.stdout.replace(/\n$/, '').split('\t');
  if (serverId === undefined || !/^\d+$/.test(serverId)) throw new Error(`unexpected answer from the recovery server: ${JSON.stringify(run.stdout.slice(0, 200))}`);
  return { gtidBinlogPos: (pos ?? '').trim(), logBin: logBin === '1', serverId: Number(serverId) };
}

export interface PipeReplayOptions extends ProgressOptions {
  /** Binlog files, absolute paths, in server order (e.g. the archived copies). */
  files: string[];
  /** Apply transactions AFTER this GTID (`0-25801-17`); '' = from the start of stopAt's domain. */
  startAfter: string;
  /** Apply up to and INCLUDING this GTID, of the same domain. */
  stopAt: string;
  target: ReplayTarget;
  /**
   * Accept a jump in sequence numbers (a source with replication filters, a manual gtid_seq_no).
   * Off by default: mariadb-binlog silently skips a missing middle file (see pipeReplay).
   */
  allowGaps?: boolean;
}

export interface PipeReplayResult {
  durationMs: number;
  /** The recovery server's GTID in the replayed domain after the call (`''` if it has none). */
  appliedTo: string;
  /** Where this call started (exclusive): max(startAfter, what the server had already applied). */
  from: string;
  /** Transactions sent by this call; 0 when the server was already at or past stopAt. */
  transactions: number;
}

const one = (pos: string, what: string): MariaGtid => {
  const list = parseMariaGtidList(pos);
  if (list.length !== 1) throw new RestoreRefusedError(`${what} must be one GTID (domain-server-seq), got ${JSON.stringify(pos)}`);
  return list[0]!;
};
const fmt = (g: MariaGtid | undefined) => (g ? formatMariaGtidList([g]) : '');

/**
 * Replay archived binlogs into the recovery server, from after `startAfter` up to and including
 * `stopAt`, in one `mariadb-binlog … | mariadb --binary-mode` session. Skipping a bad transaction is
 * two calls: stopAt = the transaction before it, then startAfter = the bad GTID.
 *
 * mariadb-binlog 10.11 with GTID positions, as verified (strict mode is its default, passed anyway):
 * - `--start-position=D-S-N` is EXCLUSIVE: the first transaction printed is D-?-(N+1). Only the
 *   domain and sequence number count: 0-1-5 and 0-25971-5 start at the same place.
 * - `--stop-position=D-S-N` is INCLUSIVE, also by domain and seq only (0-1-8 stops after 0-25971-8).
 * - Several files in one call work, the positions applying across all of them.
 * - It checks the first file's Gtid_list against the start: a start before the files' data fails
 *   (exit 1, "Binary logs are missing data for domain 0 …") before printing any transaction.
 * - It does NOT notice a missing middle file: files .1 .3 .4 from 0-x-5 print 6, 9, 10 and exit 0.
 *   Hence the check on the stream below: every transaction must be the previous seq + 1.
 * - A stop position beyond the files prints all and exits 0 with only a WARNING ("Did not reach
 *   stop position … before end of input"): checked after the run.
 * - start = stop exits 1 ("Binary logs never reached expected GTID state"); start > stop exits 1
 *   in strict mode: such calls never reach the tool here. A start at the LAST transaction the
 *   files hold also exits 1 that way (with a stop beyond them): the server is already at the end
 *   of the files and stopAt is later; nothing is applied.
 * - The primary's current, still open binlog (copied while in use) reads fine.
 * - With a stop position naming domain 0, transactions of other domains are silently NOT printed
 *   (a 1-x-1 between 0-x-11 and 0-x-12 was dropped); a start domain absent from the logs prints
 *   everything, then exits 1. So one domain per call: this path serves single-domain clusters.
 *
 * Progress lives on the recovery server: each printed transaction sets gtid_domain_id, server_id
 * and gtid_seq_no before it, so the server (binary log on) logs it under its ORIGINAL GTID and
 * @@gtid_binlog_pos ends at e.g. 0-25971-7 (@@gtid_slave_pos and @@gtid_current_pos stay as they
 * were). A call reads that first and starts after max(startAfter, applied); at or past stopAt it
 * runs nothing. A transaction sent twice is refused by a server in gtid_strict_mode (ERROR 1950 "…
 * would create an out-of-order sequence number", nothing applied), as the sandbox's servers are.
 * A killed pipe leaves at most one open transaction, rolled back when its session drops.
 */
export async function pipeReplay(opts: PipeReplayOptions): Promise<PipeReplayResult> {
  const started = Date.now();
  const stopAt = one(opts.stopAt, 'stopAt');
  const startAfter = opts.startAfter.trim() === '' ? { domain: stopAt.domain, server: 0, seq: 0 } : one(opts.startAfter, 'startAfter');
  if (startAfter.domain !== stopAt.domain) {
    throw new RestoreRefusedError(`startAfter ${opts.startAfter} and stopAt ${opts.stopAt} are in different GTID domains: mariadb-binlog replays one domain per call`);
  }
  if (startAfter.seq > stopAt.seq) throw new RestoreRefusedError(`startAfter ${opts.startAfter} is after stopAt ${opts.stopAt}`);

  const before = await replayedPosition(opts.target, { signal: opts.signal });
  if (!before.logBin) {
    throw new RestoreRefusedError('the recovery server has the binary log off: replay records what it applied there (@@gtid_binlog_pos), so it could not resume or stay idempotent');
  }
  const applied = parseMariaGtidList(before.gtidBinlogPos).find((g) => g.domain === stopAt.domain);
  if (applied && applied.server === before.serverId && applied.seq > startAfter.seq) {
    // Its own writes, not replayed ones (e.g. the load of a dump without RESET MASTER after it):
    // starting after them would skip transactions.
    throw new RestoreRefusedError(
      `the recovery server's binlog ends at ${fmt(applied)}, written by itself (server_id ${before.serverId}), past startAfter ${fmt(startAfter)}: RESET MASTER after loading the backup`,
    );
  }
  if (applied && applied.seq === stopAt.seq && applied.server !== stopAt.server) {
    throw new RestoreRefusedError(`the recovery server already holds ${fmt(applied)}, not ${fmt(stopAt)}: it has another history`);
  }
  const from = applied && applied.seq > startAfter.seq ? applied : startAfter;
  if (from.seq >= stopAt.seq) return { durationMs: Date.now() - started, appliedTo: fmt(applied), from: fmt(from), transactions: 0 };

  if (!opts.files.length) throw new RestoreRefusedError(`no binlog files to replay ${fmt(from)}..${fmt(stopAt)} from`);
  for (const f of opts.files) if (!isAbsolute(f)) throw new RestoreRefusedError(`binlog file ${JSON.stringify(f)} is not an absolute path`);

  const guard = new GtidGuard(from, stopAt, opts.allowGaps ?? false);
  await runPipe(
    { cmd: toolPath('mariadb-binlog'), args: ['--gtid-strict-mode', `--start-position=${fmt(from)}`, `--stop-position=${fmt(stopAt)}`, ...opts.files] },
    {
      cmd: toolPath('mariadb'),
      credentials: credentialsOf(opts.target),
      // The client's own limit (16 MiB by default) must not reject a large row event's BINLOG
      // statement; the server's max_allowed_packet still applies.
      args: [...connectionArgs(opts.target), '--binary-mode', '--batch', '--max-allowed-packet=1G'],
      // mariadb-binlog ends every statement with this delimiter: the client sees whole ones only,
      // even if this worker dies mid-stream (a cut DDL would otherwise run as a different DDL).
      ...statementGate('/*!*/;'),
    },
    { through: guard.stream(), env: { TZ: 'UTC' }, onProgress: opts.onProgress, signal: opts.signal, timeoutMs: opts.timeoutMs },
  );

  const after = await replayedPosition(opts.target, { signal: opts.signal });
  const now = parseMariaGtidList(after.gtidBinlogPos).find((g) => g.domain === stopAt.domain);
  if (!guard.last || guard.last.seq !== stopAt.seq) {
    throw new RestoreRefusedError(
      `the binlogs given end at ${fmt(guard.last ?? from)}, before stopAt ${fmt(stopAt)} (last file ${opts.files[opts.files.length - 1]}): ` +
        `the recovery server is at ${fmt(now) || 'nothing'}; replay again with the later files`,
    );
  }
  if (!now || now.seq !== stopAt.seq || now.server !== stopAt.server) {
    throw new RestoreRefusedError(`replay sent ${guard.count} transactions up to ${fmt(stopAt)}, yet the recovery server's binlog is at ${fmt(now) || 'nothing'}`);
  }
  return { durationMs: Date.now() - started, appliedTo: fmt(now), from: fmt(from), transactions: guard.count };
}

/**
 * Watches mariadb-binlog's text on its way to the server. Before each transaction it prints a
 * header line ending in `\tGTID 0-25971-7 trans` (or `ddl`), then the SET gtid_seq_no and the
 * transaction itself; a refused transaction is stopped at its header, so none of it reaches the
 * server. Works on bytes (statement text can be any binary), decoding only candidate header lines.
 * A statement text that imitates a header line can only make it refuse, never let a gap through.
 */
class GtidGuard {
  last: MariaGtid | undefined;
  count = 0;

  constructor(
    private readonly from: MariaGtid,
    private readonly stopAt: MariaGtid,
    private readonly allowGaps: boolean,
  ) {}

  private check(g: MariaGtid): void {
    const prev = this.last ?? this.from;
    const where = `after ${fmt(prev)}`;
    if (g.domain !== this.stopAt.domain) throw new RestoreRefusedError(`${where} the binlogs hold ${fmt(g)}, of another domain than stopAt ${fmt(this.stopAt)}; nothing after ${fmt(prev)} was sent`);
    if (g.seq <= prev.seq) throw new RestoreRefusedError(`${where} the binlogs hold ${fmt(g)}: out of order; nothing after ${fmt(prev)} was sent`);
    if (g.seq > this.stopAt.seq) throw new RestoreRefusedError(`${where} the binlogs hold ${fmt(g)}, past stopAt ${fmt(this.stopAt)}`);
    if (!this.allowGaps && g.seq !== prev.seq + 1) {
      throw new RestoreRefusedError(
        `${where} the next transaction in the binlogs is ${fmt(g)}: ${g.seq - prev.seq - 1} missing (a binlog file left out?); nothing after ${fmt(prev)} was sent`,
      );
    }
    if (g.seq === this.stopAt.seq && g.server !== this.stopAt.server) {
      throw new RestoreRefusedError(`stopAt ${fmt(this.stopAt)} is not in these binlogs: their transaction ${this.stopAt.seq} of domain ${g.domain} is ${fmt(g)}`);
    }
    this.last = g;
    this.count++;
  }

  stream(): Transform {
    let carry: Buffer = Buffer.alloc(0);
    const marker = Buffer.from('\tGTID ');
    const header = /^#\d{6}\s+\d{1,2}:\d{2}:\d{2}\s+server id \d+\s+end_log_pos \d+.*\tGTID (\d+)-(\d+)-(\d+)(?:\s|$)/;
    // Complete lines only are passed on; the incomplete last one waits for the next chunk.
    const scan = (buf: Buffer, push: (b: Buffer) => void): void => {
      let sent = 0;
      for (let i = buf.indexOf(marker); i !== -1; i = buf.indexOf(marker, i + 1)) {
        const start = buf.lastIndexOf(10, i) + 1;
        const endNl = buf.indexOf(10, i);
        const line = buf.subarray(start, endNl === -1 ? buf.length : endNl).toString('latin1');
        const m = header.exec(line);
        if (!m) continue;
        try {
          this.check({ domain: Number(m[1]), server: Number(m[2]), seq: Number(m[3]) });
        } catch (err) {
          if (start > sent) push(buf.subarray(sent, start));
          throw err;
        }
      }
      if (buf.length > sent) push(buf.subarray(sent));
    };
    return new Transform({
      transform(chunk: Buffer, _enc, done) {
        const buf = carry.length ? Buffer.concat([carry, chunk]) : chunk;
        const nl = buf.lastIndexOf(10);
        if (nl === -1) {
          carry = buf;
          return done();
        }
        carry = Buffer.from(buf.subarray(nl + 1));
        try {
          scan(buf.subarray(0, nl + 1), (b) => this.push(b));
          done();
        } catch (err) {
          done(err as Error);
        }
      },
      flush(done) {
        try {
          if (carry.length) scan(carry, (b) => this.push(b));
          done();
        } catch (err) {
          done(err as Error);
        }
      },
    });
  }
}
