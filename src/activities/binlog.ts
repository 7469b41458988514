/**
 * Activities over the archived binlogs of a cluster (`<backupDir>/<cluster>/binlogs/`): find the bad
 * event a human then confirms, and undo a row change by flashback. They read the archive, not the
 * failed server, so they work when that server is gone.
 */
import { rm, mkdtemp, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { activityInfo, heartbeat, log } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { getCluster } from '../config/load';
import { conflictRefusal, findConflicts, matchesBadEvent, oneLine, flashbackRefusal, isFlashbackOf, parseBinlogText, rowImagesRefusal, type BadEventQuery, type BinlogEventGroup, type RowImageGroup } from '../core/binlogEvents';
import { committedAtOrBefore, parsePointInTime, refuseFuturePoint, walkCoverage, type Coverage } from '../core/coverage';
import { parseMariaGtidList } from '../core/gtid';
import { sha256OfFile } from '../adapters/process/tools';
import { filesAfter } from '../core/manifest';
import { forEachDecodedGroup, readTransactionImages } from '../adapters/backup/binlogFile';
import { eventRowKeys } from '../core/eventRows';

import { runTool, toolPath, ToolError } from '../adapters/process/tools';
import { withInstance } from '../adapters/mysql/instance';
import { binlogSources, type BinlogPosition } from '../adapters/backup/binlogSources';
import { binlogPosition, tableShapes } from '../adapters/mysql/tableShapes';

/** What to recover to: just before one event, through one GTID, or through a point in time. */
export type RestoreTarget =
  | { kind: 'before-event'; event: BadEventQuery }
  | { kind: 'gtid'; gtid: string }
  /**
   * RFC 3339 with an offset (`Z` or `+08:00`): the last transaction committed at or before it. A
   * time after the archive's last transaction is refused unless `confirmLate` (the archive stops
   * short of it: recovery would end where the archive ends, not at the time asked for).
   */
  | { kind: 'time'; at: string; confirmLate?: boolean };

export interface ResolvedTarget {
  /** The last transaction replay applies (inclusive). */
  stopAt: string;
  /** For `before-event`: the event itself (replay stops before it; it may be skipped). */
  event?: BinlogEventGroup;
  /** The last transaction of the archive in the target's domain: where "replay the rest" ends. */
  archiveEnd: string;
  /** Whose archived binlogs this was read from (`binlogs/<instance>/`): replay reads the same. */
  archive: string;
  /** One line for people. */
  description: string;
  /** What the approver must know: DDL the replay crosses, a time after the archive's end. */
  warnings: string[];
}
import type { ActivityDeps } from './deps';

/** Whether skipping a located event and replaying the rest is exact (else it was refused). */
export interface SkipCheck {
  exact: true;
  /** Rows the event changed. */
  rows: number;
  /** Archived transactions after it that were checked. */
  laterTransactions: number;
  note: string;
}

/** A position in a server's binary log. */
export type { BinlogPosition };

export interface FlashbackTransactionInput {
  cluster: string;
  /** The current primary: the server that wrote the event, where the flashback is applied. */
  instance: string;
  gtid: string;
  /** The archived binlog file holding the event (the primary's file of that name). */
  file: string;
  /** Whose archive holds that file (a located target says); default the latest. */
  archive?: string;
  /** The event's positions when known (a located event): only they are decoded, not the whole file. */
  startPosition?: number;
  endPosition?: number;
  /** false: prepare and check only (dry run, the plan shown for approval); nothing changes. */
  apply: boolean;
}

/** What flashbackTransaction heartbeats: where a retry looks for a flashback already applied. */
interface FlashbackHeartbeat {
  appliedFrom?: BinlogPosition;
  phase: string;
}

export interface FlashbackOutcome {
  gtid: string;
  primary: string;
  statements: string[];
  tables: string[];
  /** Rows the flashback changes back. */
  rows: number;
  /** Size of the generated flashback (BINLOG statements). */
  bytes: number;
  applied: boolean;
  /** A retried attempt found the earlier attempt's flashback in the binlog and did not apply it again. */
  alreadyApplied?: boolean;
  /** The transaction that undid the event, as the primary logged it. */
  flashbackGtid?: string;
  /** The primary's binlog position taken just before applying: the flashback is after it. */
  appliedFrom?: BinlogPosition;
  /** What the conflict check read: later transactions on the primary, the tables it compared. */
  conflicts: { transactionsRead: number; tables: string[]; through?: BinlogPosition };
}

export interface FlashbackVerification {
  flashbackGtid: string;
  rows: number;
  /** Rows whose current values were compared with the values before the event. */
  compared: number;
  /** Later transactions (after the flashback) that changed the same rows again: not a failure. */
  changedSince: string[];
  problems: string[];
  note: string;
}

/**
 * What of a primary's later binlog can bear on undoing `bad` (findConflicts, isFlashbackOf): DDL,
 * statement-logged DML, and row changes to the event's tables. Nothing else needs holding.
 */
const mayConflictWith = (bad: BinlogEventGroup) => (g: RowImageGroup) => g.kind === 'ddl' || g.queries.length > 0 || g.tables.some((t) => bad.tables.includes(t));

export function createBinlogActivities({ config }: ActivityDeps) {
  const sources = binlogSources(config, (detail) => heartbeat(detail));
  const { archiveOf, archiveDir, archived, detailOf, walkArchive, readServerBinlog, onPrimary, describeArchiveEnd, loginOf, writeFlashback } = sources;

  return {
    /**
     * Resolve a recovery target against the archive into the GTID replay stops at. `before-event`
     * must match exactly one event (the approval shows it); a GTID must be in the archive; a point
     * in time must name its zone.
     */
    async locateTarget(input: { cluster: string; target: RestoreTarget; after?: string }): Promise<ResolvedTarget> {
      getCluster(config, input.cluster);
      const t = input.target;
      const a = archiveOf(input.cluster);
      const archive = a.instance;
      const badTarget = (message: string) => ApplicationFailure.nonRetryable(message, 'BadTarget');
      // Bad input is refused before anything is read.
      let wanted: ReturnType<typeof parseMariaGtidList> = [];
      let atOrBefore: ((g: BinlogEventGroup) => boolean) | undefined;
      let at = 0;
      if (t.kind === 'gtid') {
        try {
          wanted = parseMariaGtidList(t.gtid);
        } catch (err) {
          throw badTarget(`target GTID: ${(err as Error).message}`);
        }
        if (wanted.length !== 1) throw badTarget(`target GTID must be one transaction (domain-server-seq), got "${t.gtid}"`);
      } else if (t.kind === 'time') {
        try {
          at = parsePointInTime(t.at, 'target time');
          refuseFuturePoint(at, Date.now(), 'target time');
        } catch (err) {
          throw badTarget((err as Error).message);
        }
        atOrBefore = committedAtOrBefore(at);
      }

      // One pass over the archive, keeping only what the answer needs: the matches (the first ten
      // for the list), the transaction before each in its domain, the last one per domain, and the
      // DDL on the event's table (the replay crosses it: the plan says so).
      const matches = t.kind === 'before-event' ? matchesBadEvent(t.event) : (g: BinlogEventGroup) => g.gtid === (t as { gtid: string }).gtid;
      const wantTable = t.kind === 'before-event' ? t.event.table?.replace(/`/g, '') : undefined;
      const lastOf = new Map<number, BinlogEventGroup>();
      const found: { g: BinlogEventGroup; before?: string }[] = [];
      const ddl: BinlogEventGroup[] = [];
      let count = 0;
      let latest: BinlogEventGroup | undefined; // for a point in time
      let end: BinlogEventGroup | undefined; // the archive's last transaction
      const { skipped } = await walkArchive(a, input.after, (g) => {
        const domain = parseMariaGtidList(g.gtid)[0]!.domain;
        if (atOrBefore) {
          if (atOrBefore(g)) latest = g;
        } else if (matches(g)) {
          count++;
          if (found.length < 10) found.push({ g, before: lastOf.get(domain)?.gtid });
        }
        if (wantTable && g.kind === 'ddl' && g.tables.some((x) => x === wantTable || x.endsWith(`.${wantTable}`)) && ddl.length < 20) ddl.push(g);
        lastOf.set(domain, g);
        end = g;
      });
      const unsearched = skipped.length ? ` (${skipped.join(', ')}, before the oldest backup at ${input.after}, not searched: nothing before it can be restored)` : '';
      const refuse = (message: string, type: string) => ApplicationFailure.nonRetryable(`${message}${unsearched}`, type);
      const endOf = (gtid: string) => lastOf.get(parseMariaGtidList(gtid)[0]!.domain)?.gtid ?? '';
      /** Where the archive ends against the primary: "the archive ends at …; n s behind the primary". */
      const archiveEnd = async () => describeArchiveEnd(input.cluster, end);
      const warnings = (stop: string) => {
        const s = parseMariaGtidList(stop)[0]!;
        const crossed = ddl.filter((g) => {
          const x = parseMariaGtidList(g.gtid)[0]!;
          return x.domain === s.domain && x.seq <= s.seq;
        });
        return crossed.length
          ? [`the replay crosses DDL on ${wantTable}: ${crossed.slice(0, 3).map((g) => `${g.gtid} ${oneLine(g.statements[0] ?? '', 80)}`).join('; ')}${crossed.length > 3 ? ` and ${crossed.length - 3} more` : ''}`]
          : [];
      };

      if (t.kind === 'before-event') {
        if (count === 0) {
          const behind = await archiveEnd();
          if (behind.behind) {
            throw refuse(`no archived event matches, and ${behind.text}: the event may not be archived yet; archive the newer binlogs (runbook archive start ${input.cluster} --as <your name>, or a backup), then try again`, 'EventNotArchived');
          }
          throw refuse(`no archived event matches (${behind.text}); widen the window, the table or the pattern`, 'AmbiguousEvent');
        }
        if (count > 1) {
          const list = found.map(({ g }) => `${g.gtid} ${oneLine(g.statements[0] ?? '')}`).join('; ');
          throw refuse(`${count} events match; narrow the window, table or pattern, or confirm one by its GTID (--event)${list ? `: ${list}` : ''}`, 'AmbiguousEvent');
        }
        const event = await detailOf(a, found[0]!.g);
        const g = parseMariaGtidList(event.gtid)[0]!;
        const stopAt = found[0]!.before ?? `${g.domain}-${g.server}-${g.seq - 1}`;
        return {
          stopAt, event, archive, archiveEnd: endOf(event.gtid), warnings: warnings(stopAt),
          description: `just before ${event.gtid} (${event.file}:${event.startPosition}): ${oneLine(event.statements[0] ?? event.kind)}`,
        };
      }
      if (t.kind === 'gtid') {
        const hit = found[0]?.g;
        if (!hit) {
          const last = lastOf.get(wanted[0]!.domain);
          const beyond = !last || parseMariaGtidList(last.gtid)[0]!.seq < wanted[0]!.seq;
          throw refuse(beyond ? `${t.gtid} is beyond the archive: ${(await archiveEnd()).text}` : `${t.gtid} is not in the archived binlogs of ${input.cluster}`, 'TargetNotArchived');
        }
        return { stopAt: hit.gtid, archive, archiveEnd: endOf(hit.gtid), warnings: [], description: `through ${hit.gtid} (${hit.file}:${hit.startPosition})` };
      }
      if (!latest) throw refuse(`no archived transaction of ${input.cluster} at or before ${new Date(at).toISOString()}`, 'TargetNotArchived');
      const late: string[] = [];
      if (end && Math.floor(at / 1000) * 1000 > end.timestamp) {
        // After the archive's last commit: unless the primary wrote nothing since, the archive stops short.
        const behind = await archiveEnd();
        if (behind.behind) {
          if (!t.confirmLate) {
            throw refuse(
              `${new Date(at).toISOString()} is after the end of the archive: ${behind.text}. Recovery would stop at the archive's end, not at the time asked for; archive the newer binlogs first (runbook archive start ${input.cluster} --as <your name>, or a backup), or accept the archive's end with --confirm-late`,
              'TargetAfterArchive',
            );
          }
          late.push(`the time asked for is after the end of the archive (${behind.text}): recovery stops at the archive's end, as confirmed (--confirm-late)`);
        }
      }
      return {
        stopAt: latest.gtid,
        archive,
        archiveEnd: endOf(latest.gtid),
        warnings: late,
        description: `through ${latest.gtid}, the last transaction at or before ${new Date(at).toISOString()} (committed ${new Date(latest.timestamp).toISOString()})`,
      };
    },

    /**
     * Refuse, before anything is restored, unless the archive holds every transaction from the
     * backup's position through `to`, in sequence, in files that are all present and intact.
     */
    async checkBinlogCoverage(input: { cluster: string; archive?: string; from: string; to: string }): Promise<Extract<Coverage, { ok: true }>> {
      getCluster(config, input.cluster);
      const a = archiveOf(input.cluster, input.archive);
      const index = await archived(a);
      const damaged: { file: string; why: string }[] = [];
      // Every file replay may read, present and intact; those wholly before the backup are not read.
      for (const e of filesAfter(index, input.from)) {
        heartbeat(`checking ${e.file}`);
        const path = join(archiveDir(a), e.file);
        const present = await stat(path).catch(() => undefined);
        if (!present) damaged.push({ file: e.file, why: `missing from ${archiveDir(a)}` });
        else if (e.complete && (await sha256OfFile(path)).sha256 !== e.sha256) damaged.push({ file: e.file, why: 'its sha256 differs from the archive index' });
      }
      const walk = walkCoverage({ index, damaged, from: input.from, to: input.to });
      if (!walk.done) await walkArchive(a, input.from, walk.see);
      const result = walk.result();
      if (!result.ok) throw ApplicationFailure.nonRetryable(result.problem, 'BinlogGap');
      return result;
    },

    /**
     * Before anything is restored: would skipping `event` and replaying the rest be exact? ROW
     * replay writes each later transaction's full after-image, so a later change to a row the
     * event changed carries the event's values back (an UPDATE without WHERE followed by
     * `points = points + 1 WHERE id = 1` leaves id 1 with the bad value). Every later archived
     * transaction that touches the event's tables is read with its row images; one that changed
     * the same rows (by primary key), altered a table, or wrote to it as a statement makes the
     * skip inexact: refused with the list. DDL is skipped exactly (later statements replay as
     * they would have), and so is an event no later transaction touches.
     */
    async checkSkipIsExact(input: { cluster: string; archive: string; primary: string; event: Pick<BinlogEventGroup, 'gtid' | 'kind' | 'file' | 'startPosition' | 'endPosition' | 'tables'> }): Promise<SkipCheck> {
      getCluster(config, input.cluster);
      const { event } = input;
      if (event.kind === 'ddl') return { exact: true, rows: 0, laterTransactions: 0, note: `${event.gtid} is DDL: skipping it replays every later statement as it ran` };
      const a = archiveOf(input.cluster, input.archive);
      const bad = await readTransactionImages(join(archiveDir(a), event.file), event);
      if (!bad) throw ApplicationFailure.nonRetryable(`${event.gtid} is not in the archive at ${event.file}:${event.startPosition}`, 'EventNotFound');
      if (!bad.changes.length) {
        throw ApplicationFailure.nonRetryable(`${event.gtid} was logged as statements (binlog_format STATEMENT or MIXED): the rows it changed are unknown, so skipping it cannot be shown exact`, 'SkipNotExact');
      }
      const shapes = await tableShapes(config, input.cluster, input.primary, bad.tables);
      const keyed = eventRowKeys(
        bad,
        Object.fromEntries(Object.entries(shapes).map(([t, s]) => [t, s && { columns: s.names.map((name, i) => ({ name, dataType: s.dataTypes[i]! })), primaryKey: s.primaryKey.map((k) => k.name) }])),
      );
      if ('refusal' in keyed) throw ApplicationFailure.nonRetryable(`skipping ${event.gtid} cannot be shown exact: ${keyed.refusal}`, 'SkipNotExact');
      // Which later transactions may touch the event's rows, from the event indexes (no row images there) ...
      const candidates = new Map<string, Set<string>>();
      let past = false;
      let later = 0;
      const e = parseMariaGtidList(event.gtid)[0]!;
      // Files wholly before the event are not read (filesAfter: those whose successor starts at or before it).
      await walkArchive(a, `${e.domain}-${e.server}-${Math.max(0, e.seq - 1)}`, (g) => {
        if (!past) {
          past = g.gtid === event.gtid && g.file === event.file && g.startPosition === event.startPosition;
          return;
        }
        later++;
        const touches = g.kind === 'ddl' || g.tables.some((t) => bad.tables.includes(t)) || (!g.tables.length && g.statements.length > 0);
        if (touches) {
          if (!candidates.has(g.file)) candidates.set(g.file, new Set());
          candidates.get(g.file)!.add(g.gtid);
        }
      });
      // ... then those, decoded with their row images, file by file.
      const laterGroups: RowImageGroup[] = [];
      for (const [file, gtids] of candidates) {
        heartbeat({ phase: 'reading later row images', file });
        const dir = await mkdtemp(join(tmpdir(), 'runbook-skipcheck-'));
        try {
          const out = join(dir, 'binlog.txt');
          const from = file === event.file ? [`--start-position=${event.endPosition}`] : [];
          await runTool(toolPath('mariadb-binlog'), ['--base64-output=DECODE-ROWS', '-vv', ...from, join(archiveDir(a), file)], {
            stdoutFile: out,
            env: { TZ: 'UTC' },
            timeoutMs: 30 * 60_000,
            onProgress: () => heartbeat({ phase: 'reading later row images', file }),
          });
          await forEachDecodedGroup(out, file, (g) => void (gtids.has(g.gtid) && laterGroups.push(g as RowImageGroup)), undefined, { images: true });
        } finally {
          await rm(dir, { recursive: true, force: true });
        }
      }
      const conflicts = findConflicts(bad, laterGroups, shapes);
      const rows = keyed.tables.reduce((n, t) => n + t.keys.length, 0);
      if (conflicts.length) {
        const c = conflicts[0]!;
        const shown = c.gtids.slice(0, 5).join(', ') + (c.gtids.length > 5 ? ` and ${c.gtids.length - 5} more` : '');
        throw ApplicationFailure.nonRetryable(
          `skipping ${event.gtid} cannot be exact: later archived transactions changed rows of ${c.table} that it changed (${shown}; e.g. ${oneLine(c.example, 80)})` +
            `${conflicts.length > 1 ? `, also in ${conflicts.slice(1).map((x) => x.table).join(', ')}` : ''}: their row images carry its values, so replay would bring them back. ` +
            'Nothing was restored. Restore to just before it without --skip to see those rows as they were, and decide them by hand',
          'SkipNotExact',
        );
      }
      return { exact: true, rows, laterTransactions: later, note: `${rows} row(s) of ${bad.tables.join(', ')} changed by ${event.gtid}; none of the ${later} later archived transaction(s) touches them` };
    },

    /**
     * Candidate bad events in the archive: within a time window, touching a table, matching a
     * statement pattern. Oldest first; the approval request shows them and a human confirms one.
     */
    async findBadEvents(input: { cluster: string; query: BadEventQuery; limit?: number }): Promise<BinlogEventGroup[]> {
      getCluster(config, input.cluster);
      const a = archiveOf(input.cluster);
      const limit = input.limit ?? 20;
      const matches = matchesBadEvent(input.query);
      const found: BinlogEventGroup[] = [];
      // The walk reads the event indexes; only the matches are decoded again, with their row counts.
      await walkArchive(a, undefined, (g) => {
        if (matches(g)) found.push(g);
        return found.length < limit;
      });
      const detailed: BinlogEventGroup[] = [];
      for (const g of found) detailed.push(await detailOf(a, g));
      return detailed;
    },

    /**
     * Undo one transaction by `mariadb-binlog --flashback` over exactly its positions, applied to
     * `instance` (the primary) after approval. Refused, before anything changes, for DDL (flashback
     * outputs nothing for a DROP TABLE), for statement-logged or partial row images, when the event
     * is not in the primary's own binlog, and when a later transaction changed the same rows
     * (flashback writes rows back by primary key and would silently undo that later change).
     *
     * Retry-safe: the primary's binlog position is heartbeated before applying; a retried attempt
     * that finds the exact inverse of the event after it returns that instead of applying twice.
     * (Were that heartbeat lost, the retry's conflict check would see the flashback itself as a
     * later write to the same rows and refuse: never applied twice either way.)
     */
    async flashbackTransaction(input: FlashbackTransactionInput): Promise<FlashbackOutcome> {
      getCluster(config, input.cluster);
      // A retry carries on from what the attempt before heartbeated (see below), and passes it on.
      const earlier = (activityInfo().heartbeatDetails as FlashbackHeartbeat | undefined)?.appliedFrom;
      let appliedFrom: BinlogPosition | undefined;
      const beat = (phase: string) => () => heartbeat({ appliedFrom: appliedFrom ?? earlier, phase } satisfies FlashbackHeartbeat);
      const { startPosition, endPosition } = input;
      const a = archiveOf(input.cluster, input.archive);
      const range = startPosition !== undefined && endPosition !== undefined ? [`--start-position=${startPosition}`, `--stop-position=${endPosition}`] : [];
      const decoded = await runTool(toolPath('mariadb-binlog'), ['--base64-output=DECODE-ROWS', '-vv', ...range, join(archiveDir(a), input.file)], {
        env: { TZ: 'UTC' },
        timeoutMs: 10 * 60_000,
        onProgress: beat('reading the archive'),
      }).catch((err: unknown) => {
        throw ApplicationFailure.nonRetryable(`${input.file} is not readable in the archive of ${input.cluster}: ${(err as Error).message.split('\n')[0]}`, 'EventNotFound');
      });
      const group = parseBinlogText(decoded.stdout, input.file).find((g) => g.gtid === input.gtid && (startPosition === undefined || g.startPosition === startPosition));
      if (!group) throw ApplicationFailure.nonRetryable(`${input.gtid} is not in archived ${input.file}${range.length ? ` at ${startPosition}` : ''}`, 'EventNotFound');
      const refusal = flashbackRefusal(group);
      if (refusal) throw ApplicationFailure.nonRetryable(refusal, 'FlashbackRefused');
      const bad = await onPrimary(input.cluster, input.instance, group);
      const base = {
        gtid: bad.gtid,
        primary: input.instance,
        statements: bad.statements,
        tables: bad.tables,
        rows: bad.changes.length,
      };

      // A retried attempt: did the attempt before apply it already?
      if (input.apply && earlier) {
        const done = (await readServerBinlog(input.cluster, input.instance, earlier, 'last', { beat: beat('looking for an earlier attempt\'s flashback'), keep: (g) => isFlashbackOf(g, bad) })).kept[0];
        if (done) {
          log.info('flashback already applied by an earlier attempt', { gtid: bad.gtid, flashbackGtid: done.gtid });
          return { ...base, bytes: 0, applied: true, alreadyApplied: true, flashbackGtid: done.gtid, appliedFrom: earlier, conflicts: { transactionsRead: 0, tables: bad.tables } };
        }
      }

      // Where the primary is now, taken before the check reads to its end: whatever commits after
      // this is read again once the flashback is applied, so no write slips between check and apply.
      if (input.apply) {
        appliedFrom = await binlogPosition(config, input.cluster, input.instance);
        beat('about to apply')();
      }
      const shapes = await tableShapes(config, input.cluster, input.instance, bad.tables);
      const read = await readServerBinlog(input.cluster, input.instance, { file: bad.file, position: bad.endPosition }, 'last', { beat: beat('checking later writes'), keep: mayConflictWith(bad) });
      const later = read.kept;
      const conflicts = findConflicts(bad, later, shapes);
      if (conflicts.length) throw ApplicationFailure.nonRetryable(conflictRefusal(bad.gtid, conflicts)!, 'FlashbackConflict');
      const partial = rowImagesRefusal(bad, shapes);
      if (partial) throw ApplicationFailure.nonRetryable(partial, 'FlashbackRefused');
      const checked = { transactionsRead: read.read, tables: bad.tables, through: read.last ? { file: read.last.file, position: read.last.endPosition } : undefined };

      const dir = await mkdtemp(join(tmpdir(), 'runbook-flashback-'));
      try {
        const sqlFile = join(dir, 'flashback.sql');
        await writeFlashback({ archive: a }, { file: input.file, startPosition: group.startPosition, endPosition: group.endPosition }, sqlFile, beat('generating the flashback'));
        const bytes = (await stat(sqlFile)).size;
        if (!appliedFrom) return { ...base, bytes, applied: false, conflicts: checked };

        const { host, port, admin } = loginOf(input.cluster, input.instance);
        let failed: string | undefined;
        try {
          // One transaction (the tool wraps it): on an error the client exits and it rolls back.
          await runTool(toolPath('mariadb'), ['--binary-mode', `--host=${host}`, `--port=${port}`], { credentials: admin, stdinFile: sqlFile, onProgress: beat('applying'), timeoutMs: 60 * 60_000 });
        } catch (err) {
          failed = err instanceof ToolError ? (err.stderrTail.split('\n').find((l) => l.trim()) ?? err.message) : (err as Error).message;
        }
        // The binlog says what happened, even when the client lost the server's answer to COMMIT.
        const since = (await readServerBinlog(input.cluster, input.instance, appliedFrom, 'last', { beat: beat('finding the flashback in the binlog'), keep: mayConflictWith(bad) })).kept;
        const at = since.findIndex((g) => isFlashbackOf(g, bad));
        if (at < 0 && failed) throw ApplicationFailure.nonRetryable(`applying the flashback of ${bad.gtid} on ${input.instance} failed, nothing changed: ${failed}`, 'FlashbackFailed');
        if (failed) log.warn('the flashback client failed, but the flashback is in the binlog', { gtid: bad.gtid, error: failed });
        if (at < 0) {
          throw ApplicationFailure.nonRetryable(
            `the flashback of ${bad.gtid} was applied on ${input.instance}, but no transaction reversing it is in its binlog after ${appliedFrom.file}:${appliedFrom.position}: check ${bad.tables.join(', ')} by hand`,
            'FlashbackNotFound',
          );
        }
        const flashbackGtid = since[at]!.gtid;
        const raced = findConflicts(bad, since.slice(0, at), shapes);
        if (raced.length) {
          const r = raced[0]!;
          throw ApplicationFailure.nonRetryable(
            `${flashbackGtid} (the flashback of ${bad.gtid}) overwrote writes to ${r.table} committed while it was applied (${r.gtids.slice(0, 5).join(', ')}; e.g. ${r.example}): check those rows by hand`,
            'FlashbackRaced',
          );
        }
        return { ...base, bytes, applied: true, flashbackGtid, appliedFrom, conflicts: checked };
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },

    /**
     * After a flashback: it is in the primary's binlog as the exact inverse of the event (so the
     * server wrote the rows' earlier values back), and the rows hold those values now. A row that a
     * later transaction changed again since is reported, not compared. Values are compared where the
     * binlog's text form is exact (integers, strings, NULL); the binlog check covers every column.
     */
    async verifyFlashback(input: { cluster: string; instance: string; gtid: string; file: string; startPosition: number; endPosition: number; flashbackGtid: string; appliedFrom: BinlogPosition }): Promise<FlashbackVerification> {
      getCluster(config, input.cluster);
      const bad = await onPrimary(input.cluster, input.instance, { gtid: input.gtid, file: input.file, startPosition: input.startPosition, endPosition: input.endPosition });
      const since = (await readServerBinlog(input.cluster, input.instance, input.appliedFrom, 'last', { beat: () => heartbeat('verifying'), keep: mayConflictWith(bad) })).kept;
      const at = since.findIndex((g) => g.gtid === input.flashbackGtid);
      const problems: string[] = [];
      if (at < 0) problems.push(`${input.flashbackGtid} is not in ${input.instance}'s binlog after ${input.appliedFrom.file}:${input.appliedFrom.position}`);
      else if (!isFlashbackOf(since[at]!, bad)) problems.push(`${input.flashbackGtid} is not the exact inverse of ${input.gtid}`);
      const shapes = await tableShapes(config, input.cluster, input.instance, bad.tables);
      const again = at < 0 ? [] : findConflicts(bad, since.slice(at + 1), shapes);
      const changedSince = [...new Set(again.flatMap((c) => c.gtids))];
      let compared = 0;
      await withInstance(config, input, async (conn) => {
        for (const table of bad.tables) {
          const shape = shapes[table];
          if (!shape?.primaryKey.length || again.some((c) => c.table === table)) continue;
          const names = shape.names;
          const [db, t] = table.split('.') as [string, string];
          const where = shape.primaryKey.map((k) => `\`${k.name.replace(/`/g, '``')}\` <=> ?`).join(' AND ');
          const select = `SELECT ${names.map((n) => `\`${n.replace(/`/g, '``')}\``).join(', ')} FROM \`${db.replace(/`/g, '``')}\`.\`${t.replace(/`/g, '``')}\` WHERE ${where}`;
          for (const c of bad.changes.filter((x) => x.table === table)) {
            // What the row must be now: its image before the event, or gone if the event inserted it.
            const expected = c.type === 'INSERT' ? undefined : c.before!;
            const keyImage = (c.before ?? c.after)!;
            const [rows] = await conn.query({ sql: select, values: shape.primaryKey.map((k) => sqlParam(keyImage[k.ordinal] ?? 'NULL')), rowsAsArray: true, timeout: 10_000 });
            const row = (rows as unknown[][])[0];
            const key = shape.primaryKey.map((k) => `${k.name}=${keyImage[k.ordinal]}`).join(',');
            if (!expected) {
              if (row) problems.push(`${table} ${key} is still there (${input.gtid} inserted it)`);
              compared++;
              continue;
            }
            if (!row) {
              problems.push(`${table} ${key} is missing`);
              continue;
            }
            const differs = names.flatMap((n, i) => (sameValue(expected[i + 1] ?? 'NULL', row[i]) === false ? [`${n} is ${String(row[i])}, was ${expected[i + 1]}`] : []));
            if (differs.length) problems.push(`${table} ${key}: ${differs.slice(0, 3).join(', ')}`);
            compared++;
          }
        }
      });
      const note =
        `${input.flashbackGtid} reverses ${input.gtid} (${bad.changes.length} row(s)); ${compared} row(s) compared on ${input.instance}` +
        (changedSince.length ? `; changed again since by ${changedSince.slice(0, 5).join(', ')}` : '');
      return { flashbackGtid: input.flashbackGtid, rows: bad.changes.length, compared, changedSince, problems, note };
    },
  };
}

/** A value as `mariadb-binlog -vv` prints it, as a query parameter (for a primary key lookup). */
function sqlParam(printed: string): string | null {
  if (printed === 'NULL') return null;
  const quoted = /^'(.*)'$/s.exec(printed);
  if (quoted) return quoted[1]!.replace(/\\x([0-9a-f]{2})/gi, (_, h: string) => String.fromCharCode(parseInt(h, 16)));
  const unsigned = /^-?\d+ \((\d+)\)$/.exec(printed);
  return unsigned ? unsigned[1]! : printed;
}

/**
 * Whether a value read back equals the printed one, where the printed form is exact: integers
 * (signed, or `-1 (4294967295)` for unsigned), strings (quoted, control bytes as \xNN) and NULL.
 * undefined: not comparable this way (decimals, dates, floats, blobs, enums print differently).
 */
function sameValue(printed: string, value: unknown): boolean | undefined {
  if (value === null || printed === 'NULL') return value === null && printed === 'NULL';
  const int = /^(-?\d+)(?: \((\d+)\))?$/.exec(printed);
  if (int && (typeof value === 'number' || (typeof value === 'string' && /^-?\d+$/.test(value)))) return String(value) === int[1] || String(value) === int[2];
  if (printed.startsWith("'") && typeof value === 'string' && !printed.includes('\ufffd')) return printed === `'${value.replace(/[\x00-\x1f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`)}'`;
  return undefined;
}
