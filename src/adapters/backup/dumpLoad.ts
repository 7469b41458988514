/**
 * Loading a logical backup (one `mariadb-dump --all-databases` file) with several sessions.
 *
 * `mariadb < dump.sql` is one session: the server inserts with one thread, and for a big table that
 * is most of a restore. A dump is a sequence of schema statements with, per table, a run of
 * extended `INSERT INTO` lines in primary-key order. The runs big enough to matter are cut at line
 * boundaries into contiguous slices loaded by parallel sessions; everything else (schema, small
 * tables, triggers, views, routines, events) runs in order in one session between them. Each
 * session first runs the dump's own header (`SET NAMES`, `TIME_ZONE`, `UNIQUE_CHECKS=0`,
 * `FOREIGN_KEY_CHECKS=0`, `SQL_MODE`…) and the `USE` in force, so it sees what the single session
 * would have. The `LOCK TABLES … WRITE` around a run ends with the session that took it.
 *
 * Each slice is read from the file by `dd` into the client in its own pipeline, never through this
 * process: a worker that dies mid-load cannot hand a client a cut statement (see statementGate).
 */
import { open, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runTool, toolPath, type ProgressOptions, type ToolCredentials } from '../process/tools';

export interface DumpSegment {
  /** `serial`: in order, one session; `data`: one table's INSERT lines, cut into parallel slices. */
  kind: 'serial' | 'data';
  start: number;
  end: number;
  /** The database a `USE` made current before this segment. */
  db?: string;
  /** `data`: where its INSERT statements start, the only places slices may be cut. */
  lineStarts?: number[];
}

export interface DumpPlan {
  /** The dump's leading `/*!… SET …*\/;` lines: each session runs them first. */
  header: Buffer;
  segments: DumpSegment[];
  size: number;
}

const INSERT = Buffer.from('INSERT INTO ');

/** The line ends a statement: its last character before the line break is `;`. */
function endsStatement(line: Buffer): boolean {
  let i = line.length - 1;
  while (i >= 0 && (line[i] === 10 || line[i] === 13)) i--;
  return i >= 0 && line[i] === 59;
}

/**
 * Read the dump once and find the INSERT runs of at least `minBlockBytes` (smaller ones stay in
 * the serial segments: a session costs a client start and a header).
 */
export async function planDumpLoad(file: string, opts: { minBlockBytes: number }): Promise<DumpPlan> {
  const fh = await open(file, 'r');
  const headerLines: Buffer[] = [];
  let inHeader = true;
  let db: string | undefined;
  const blocks: { start: number; end: number; db?: string; table: string; lineStarts: number[] }[] = [];
  let block: (typeof blocks)[number] | undefined;
  let statement: { start: number; table: string } | undefined;
  let size = 0;
  try {
    const buf = Buffer.alloc(4 * 1024 * 1024);
    let carry: Buffer = Buffer.alloc(0);
    let carryAt = 0; // file offset of carry[0]
    let offset = 0;
    const onLine = (line: Buffer, at: number) => {
      if (inHeader) {
        const head = line.subarray(0, 4).toString('latin1');
        if (head.startsWith('/*!') || head.startsWith('/*M!')) {
          headerLines.push(Buffer.from(line));
          return;
        }
        if (line.length === 0 || head.startsWith('--') || head === '\n' || line.every((b) => b === 10 || b === 13 || b === 32)) return;
        inHeader = false;
      }
      // An INSERT runs from its `INSERT INTO \`t\` VALUES` line to the line ending in `;` (10.11
      // prints a row per line; a value never holds a raw newline: the dump escapes it).
      if (statement || line.subarray(0, INSERT.length).equals(INSERT)) {
        if (!statement) {
          const m = /^INSERT INTO `((?:[^`]|``)+)`/.exec(line.subarray(0, 200).toString('utf8'));
          statement = { start: at, table: m?.[1] ?? '' };
        }
        if (!endsStatement(line)) return;
        const { start, table } = statement;
        statement = undefined;
        if (block && block.table === table && block.end === start) {
          block.lineStarts.push(start);
          block.end = at + line.length;
        } else {
          block = { start, end: at + line.length, db, table, lineStarts: [start] };
          blocks.push(block);
        }
        return;
      }
      block = undefined;
      if (line.length < 300) {
        const use = /^USE `((?:[^`]|``)+)`;/.exec(line.toString('utf8'));
        if (use) db = use[1]!.replace(/``/g, '`');
      }
    };
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, offset);
      if (bytesRead === 0) break;
      const chunk = carry.length ? Buffer.concat([carry, buf.subarray(0, bytesRead)]) : Buffer.from(buf.subarray(0, bytesRead));
      const chunkAt = carry.length ? carryAt : offset;
      let from = 0;
      for (let nl = chunk.indexOf(10, from); nl !== -1; nl = chunk.indexOf(10, from)) {
        onLine(chunk.subarray(from, nl + 1), chunkAt + from);
        from = nl + 1;
      }
      carry = chunk.subarray(from);
      carryAt = chunkAt + from;
      offset += bytesRead;
    }
    if (carry.length) onLine(carry, carryAt);
    size = offset;
  } finally {
    await fh.close();
  }

  const segments: DumpSegment[] = [];
  let pos = 0;
  let dbAtPos: string | undefined;
  for (const b of blocks) {
    if (b.end - b.start < opts.minBlockBytes) continue;
    if (b.start > pos) segments.push({ kind: 'serial', start: pos, end: b.start, db: dbAtPos });
    segments.push({ kind: 'data', start: b.start, end: b.end, db: b.db, lineStarts: b.lineStarts });
    pos = b.end;
    dbAtPos = b.db;
  }
  if (pos < size) segments.push({ kind: 'serial', start: pos, end: size, db: dbAtPos });
  return { header: Buffer.concat(headerLines), segments, size };
}

/** Cut a data segment into up to `n` contiguous slices of about equal size, at statement starts. */
export function sliceSegment(seg: DumpSegment, n: number): { start: number; end: number }[] {
  const starts = seg.lineStarts ?? [seg.start];
  const slices: { start: number; end: number }[] = [];
  const target = (seg.end - seg.start) / n;
  let sliceStart = seg.start;
  for (const s of starts) {
    if (s > sliceStart && s - sliceStart >= target && slices.length < n - 1) {
      slices.push({ start: sliceStart, end: s });
      sliceStart = s;
    }
  }
  slices.push({ start: sliceStart, end: seg.end });
  return slices;
}

export interface LoadDumpOptions extends ProgressOptions {
  file: string;
  /** Parallel sessions for the big INSERT runs. */
  sessions: number;
  /** INSERT runs smaller than this stay in the serial stream (default 16 MiB). */
  minBlockBytes?: number;
  /** Connection options for the `mariadb` client (socket or host/port), and its credentials. */
  client: { args: string[]; credentials?: ToolCredentials };
  /** Run first in every session, e.g. `SET SESSION sql_log_bin = 0`. */
  initCommand?: string;
}

export interface LoadDumpResult {
  durationMs: number;
  /** Client sessions run, and how many INSERT runs were loaded in parallel. */
  sessions: number;
  parallelRuns: number;
}

const quoteDb = (db: string) => `\`${db.replace(/`/g, '``')}\``;

export async function loadDump(opts: LoadDumpOptions): Promise<LoadDumpResult> {
  const started = Date.now();
  const plan = await planDumpLoad(opts.file, { minBlockBytes: opts.minBlockBytes ?? 16 * 1024 * 1024 });
  const dir = await mkdtemp(join(tmpdir(), 'runbook-load-'));
  let done = 0;
  const ticker = opts.onProgress ? setInterval(() => opts.onProgress?.(done), 1000) : undefined;
  let sessions = 0;
  try {
    const cnf = join(dir, 'client.cnf');
    const defaults: string[] = [];
    if (opts.client.credentials) {
      const { user, password } = opts.client.credentials;
      const q = (v: string) => `"${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`;
      await writeFile(cnf, `[client]\nuser=${q(user)}\npassword=${q(password)}\n`, { mode: 0o600, flag: 'wx' });
      defaults.push(`--defaults-extra-file=${cnf}`);
    }
    const client = [toolPath('mariadb'), ...defaults, ...opts.client.args, '--binary-mode', ...(opts.initCommand ? [`--init-command=${opts.initCommand}`] : [])];
    const dd = toolPath('dd');
    let prefixes = 0;
    const run = async (range: { start: number; end: number }, db: string | undefined, first: boolean) => {
      const prefix = join(dir, `prefix-${prefixes++}.sql`);
      await writeFile(prefix, first ? '' : Buffer.concat([plan.header, Buffer.from(db ? `USE ${quoteDb(db)};\n` : '')]));
      sessions++;
      // GNU dd reads exactly the slice (skip/count in bytes); the client reads the prefix, then it.
      await runTool(
        toolPath('bash'),
        [
          '-c',
          'set -o pipefail; p=$1 f=$2 s=$3 n=$4 dd=$5; shift 5; { cat -- "$p" && "$dd" if="$f" iflag=skip_bytes,count_bytes skip="$s" count="$n" bs=4M status=none; } | "$@"',
          'load',
          prefix,
          opts.file,
          String(range.start),
          String(range.end - range.start),
          dd,
          ...client,
        ],
        { signal: opts.signal, timeoutMs: opts.timeoutMs },
      );
      done += range.end - range.start;
    };
    let parallelRuns = 0;
    for (const [i, seg] of plan.segments.entries()) {
      if (seg.kind === 'serial') {
        await run(seg, seg.db, i === 0);
        continue;
      }
      parallelRuns++;
      const results = await Promise.allSettled(sliceSegment(seg, opts.sessions).map((slice) => run(slice, seg.db, false)));
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
    }
    // The dump wrote the grant tables (mysql.global_priv…) directly: until they are reloaded the
    // server knows none of those accounts, and every view or trigger they define fails.
    await runTool(client[0]!, [...client.slice(1), '--execute=FLUSH PRIVILEGES'], { signal: opts.signal, timeoutMs: 60_000 });
    return { durationMs: Date.now() - started, sessions, parallelRuns };
  } finally {
    if (ticker) clearInterval(ticker);
    await rm(dir, { recursive: true, force: true });
  }
}
