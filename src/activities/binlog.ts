/**
 * Activities over the archived binlogs of a cluster (`<backupDir>/<cluster>/binlogs/`): find the bad
 * event a human then confirms, and undo a row change by flashback. They read the archive, not the
 * failed server, so they work when that server is gone.
 */
import { readFile, rm, mkdtemp, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { heartbeat } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { getCluster, getInstance, resolveCredential } from '../config/load';
import { findCandidates, flashbackRefusal, parseBinlogText, type BadEventQuery, type BinlogEventGroup } from '../backup/binlogEvents';
import { checkCoverage, lastTransactionAtOrBefore, parsePointInTime, type Coverage } from '../backup/coverage';
import { parseMariaGtidList } from '../mysql/dialect';
import { sha256OfFile } from '../backup/tools';
import { BINLOG_ARCHIVE_DIR, BINLOG_INDEX_FILE, type BinlogArchiveEntry } from '../backup/manifest';
import { runTool, toolPath } from '../backup/tools';

/** What to recover to: just before one event, through one GTID, or through a point in time. */
export type RestoreTarget =
  | { kind: 'before-event'; event: BadEventQuery }
  | { kind: 'gtid'; gtid: string }
  /** ISO 8601 with a zone (`Z` or `+08:00`): the last transaction committed at or before it. */
  | { kind: 'time'; at: string };

export interface ResolvedTarget {
  /** The last transaction replay applies (inclusive). */
  stopAt: string;
  /** For `before-event`: the event itself (replay stops before it; it may be skipped). */
  event?: BinlogEventGroup;
  /** The last transaction of the archive in the target's domain: where "replay the rest" ends. */
  archiveEnd: string;
  /** One line for people. */
  description: string;
}
import type { ActivityDeps } from './deps';

export function createBinlogActivities({ config }: ActivityDeps) {
  const archiveDir = (cluster: string) => join(config.backupDir, cluster, BINLOG_ARCHIVE_DIR);

  const archived = async (cluster: string): Promise<BinlogArchiveEntry[]> => {
    try {
      return JSON.parse(await readFile(join(archiveDir(cluster), BINLOG_INDEX_FILE), 'utf8')) as BinlogArchiveEntry[];
    } catch {
      throw ApplicationFailure.nonRetryable(`no archived binlogs for ${cluster} in ${archiveDir(cluster)}: run a backup (it archives them) first`, 'NoBinlogArchive');
    }
  };

  /** Every transaction of one archived file, times in UTC whatever the worker's TZ. */
  const readFileGroups = async (cluster: string, file: string): Promise<BinlogEventGroup[]> => {
    const run = await runTool(toolPath('mariadb-binlog'), ['--base64-output=DECODE-ROWS', '-vv', join(archiveDir(cluster), file)], { env: { TZ: 'UTC' }, timeoutMs: 10 * 60_000 });
    return parseBinlogText(run.stdout, file);
  };

  // One decode per file version, without row images (-v): GTIDs, positions, times, statements and
  // tables are all there, at a fraction of the cost. Cached: locating and coverage read the same files.
  const scans = new Map<string, BinlogEventGroup[]>();
  const scanFile = async (cluster: string, file: string): Promise<BinlogEventGroup[]> => {
    const path = join(archiveDir(cluster), file);
    const st = await stat(path);
    const key = `${path}:${st.size}:${st.mtimeMs}`;
    const cached = scans.get(key);
    if (cached) return cached;
    const dir = await mkdtemp(join(tmpdir(), 'runbook-scan-'));
    try {
      const out = join(dir, 'binlog.txt');
      await runTool(toolPath('mariadb-binlog'), ['--base64-output=DECODE-ROWS', path], { stdoutFile: out, env: { TZ: 'UTC' }, timeoutMs: 30 * 60_000, onProgress: () => heartbeat(file) });
      const groups = parseBinlogText(await readFile(out, 'utf8'), file);
      scans.set(key, groups);
      return groups;
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  };
  /** One transaction in full (row images counted), decoded from its own positions only. */
  const detailOf = async (cluster: string, g: BinlogEventGroup): Promise<BinlogEventGroup> => {
    const run = await runTool(
      toolPath('mariadb-binlog'),
      ['--base64-output=DECODE-ROWS', '-vv', `--start-position=${g.startPosition}`, `--stop-position=${g.endPosition}`, join(archiveDir(cluster), g.file)],
      { env: { TZ: 'UTC' }, timeoutMs: 10 * 60_000 },
    );
    return parseBinlogText(run.stdout, g.file).find((x) => x.gtid === g.gtid) ?? g;
  };
  const scanArchive = async (cluster: string) => {
    const index = await archived(cluster);
    const transactions: BinlogEventGroup[] = [];
    for (const e of index) {
      heartbeat(e.file);
      const present = await stat(join(archiveDir(cluster), e.file)).catch(() => undefined);
      if (present) transactions.push(...(await scanFile(cluster, e.file)));
    }
    return { index, transactions };
  };

  return {
    /**
     * Resolve a recovery target against the archive into the GTID replay stops at. `before-event`
     * must match exactly one event (the approval shows it); a GTID must be in the archive; a point
     * in time must name its zone.
     */
    async locateTarget(input: { cluster: string; target: RestoreTarget }): Promise<ResolvedTarget> {
      getCluster(config, input.cluster);
      const refuse = (message: string, type: string) => ApplicationFailure.nonRetryable(message, type);
      const t = input.target;
      const { transactions } = await scanArchive(input.cluster);
      const endOf = (domain: number) => transactions.filter((x) => parseMariaGtidList(x.gtid)[0]!.domain === domain).at(-1)?.gtid ?? '';
      if (t.kind === 'before-event') {
        const found = findCandidates(transactions, t.event);
        if (found.length !== 1) {
          const list = found.slice(0, 10).map((g) => `${g.gtid} ${g.statements[0] ?? ''}`).join('; ');
          throw refuse(`${found.length} events match; narrow the window, table or pattern${list ? `: ${list}` : ''}`, 'AmbiguousEvent');
        }
        const event = await detailOf(input.cluster, found[0]!);
        const g = parseMariaGtidList(event.gtid)[0]!;
        const i = transactions.findIndex((x) => x.gtid === event.gtid);
        const before = transactions.slice(0, Math.max(0, i)).filter((x) => parseMariaGtidList(x.gtid)[0]!.domain === g.domain).at(-1);
        const stopAt = before?.gtid ?? `${g.domain}-${g.server}-${g.seq - 1}`;
        return { stopAt, event, archiveEnd: endOf(g.domain), description: `just before ${event.gtid} (${event.file}:${event.startPosition}): ${event.statements[0] ?? event.kind}` };
      }
      if (t.kind === 'gtid') {
        let g: ReturnType<typeof parseMariaGtidList>;
        try {
          g = parseMariaGtidList(t.gtid);
        } catch (err) {
          throw refuse(`target GTID: ${(err as Error).message}`, 'BadTarget');
        }
        if (g.length !== 1) throw refuse(`target GTID must be one transaction (domain-server-seq), got "${t.gtid}"`, 'BadTarget');
        const hit = transactions.find((x) => x.gtid === t.gtid);
        if (!hit) throw refuse(`${t.gtid} is not in the archived binlogs of ${input.cluster}`, 'TargetNotArchived');
        return { stopAt: hit.gtid, archiveEnd: endOf(g[0]!.domain), description: `through ${hit.gtid} (${hit.file}:${hit.startPosition})` };
      }
      let at: number;
      try {
        at = parsePointInTime(t.at);
      } catch (err) {
        throw refuse((err as Error).message, 'BadTarget');
      }
      const hit = lastTransactionAtOrBefore(transactions, at);
      if (!hit) throw refuse(`no archived transaction of ${input.cluster} at or before ${new Date(at).toISOString()}`, 'TargetNotArchived');
      return {
        stopAt: hit.gtid,
        archiveEnd: endOf(parseMariaGtidList(hit.gtid)[0]!.domain),
        description: `through ${hit.gtid}, the last transaction at or before ${new Date(at).toISOString()} (committed ${new Date(hit.timestamp).toISOString()})`,
      };
    },

    /**
     * Refuse, before anything is restored, unless the archive holds every transaction from the
     * backup's position through `to`, in sequence, in files that are all present and intact.
     */
    async checkBinlogCoverage(input: { cluster: string; from: string; to: string }): Promise<Extract<Coverage, { ok: true }>> {
      getCluster(config, input.cluster);
      const index = await archived(input.cluster);
      const damaged: { file: string; why: string }[] = [];
      for (const e of index) {
        heartbeat(`checking ${e.file}`);
        const path = join(archiveDir(input.cluster), e.file);
        const present = await stat(path).catch(() => undefined);
        if (!present) damaged.push({ file: e.file, why: `missing from ${archiveDir(input.cluster)}` });
        else if (e.complete && (await sha256OfFile(path)).sha256 !== e.sha256) damaged.push({ file: e.file, why: 'its sha256 differs from the archive index' });
      }
      const { transactions } = await scanArchive(input.cluster);
      const result = checkCoverage({ index, damaged, transactions, from: input.from, to: input.to });
      if (!result.ok) throw ApplicationFailure.nonRetryable(result.problem, 'BinlogGap');
      return result;
    },

    /**
     * Candidate bad events in the archive: within a time window, touching a table, matching a
     * statement pattern. Oldest first; the approval request shows them and a human confirms one.
     */
    async findBadEvents(input: { cluster: string; query: BadEventQuery; limit?: number }): Promise<BinlogEventGroup[]> {
      getCluster(config, input.cluster);
      const found: BinlogEventGroup[] = [];
      for (const entry of await archived(input.cluster)) {
        heartbeat(entry.file);
        found.push(...findCandidates(await readFileGroups(input.cluster, entry.file), input.query));
      }
      return found.slice(0, input.limit ?? 20);
    },

    /**
     * Undo one transaction by `mariadb-binlog --flashback` over exactly its positions, applied to
     * `instance` (the primary) after approval. Refused for DDL (flashback outputs nothing for a DROP
     * TABLE) and for anything without row events. `apply: false` only prepares and measures it.
     */
    async flashbackTransaction(input: { cluster: string; instance: string; gtid: string; file: string; apply: boolean }): Promise<{ gtid: string; statements: string[]; bytes: number; applied: boolean }> {
      const group = (await readFileGroups(input.cluster, input.file)).find((g) => g.gtid === input.gtid);
      if (!group) throw ApplicationFailure.nonRetryable(`${input.gtid} is not in archived ${input.file}`, 'EventNotFound');
      const refusal = flashbackRefusal(group);
      if (refusal) throw ApplicationFailure.nonRetryable(refusal, 'FlashbackRefused');
      const dir = await mkdtemp(join(tmpdir(), 'runbook-flashback-'));
      try {
        const sqlFile = join(dir, 'flashback.sql');
        await runTool(
          toolPath('mariadb-binlog'),
          ['--flashback', `--start-position=${group.startPosition}`, `--stop-position=${group.endPosition}`, join(archiveDir(input.cluster), input.file)],
          { stdoutFile: sqlFile, env: { TZ: 'UTC' } },
        );
        const bytes = (await stat(sqlFile)).size;
        if (input.apply) {
          const inst = getInstance(config, input.cluster, input.instance);
          const admin = resolveCredential(getCluster(config, input.cluster).credentials.admin);
          await runTool(toolPath('mariadb'), ['--binary-mode', `--host=${inst.host}`, `--port=${inst.port}`], { credentials: admin, stdinFile: sqlFile });
        }
        return { gtid: group.gtid, statements: group.statements, bytes, applied: input.apply };
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  };
}
