/**
 * Where binlog events come from: a cluster's archive (`<backupDir>/<cluster>/binlogs/<source>/`,
 * walked in order through its event indexes) and a live server's own binary log (read over the
 * replication protocol, with row images). Shared by the activities that locate, check and undo
 * events (activities/binlog.ts) and by any runbook that must read a server's history.
 */
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { getCluster, getInstance, resolveCredential, type RunbookConfig } from '../../config/load';
import { parseBinlogText, type BinlogEventGroup, type RowImageGroup } from '../../core/binlogEvents';
import { parseMariaGtidList } from '../../core/gtid';
import type { BinlogPosition } from '../../core/types';
import { BINLOG_ARCHIVE_DIR, BINLOG_INDEX_FILE, filesAfter, type BinlogArchiveEntry } from '../../core/manifest';
import { probeTopology } from '../mysql/probe';
import { runTool, toolPath, ToolError } from '../process/tools';
import { archiveDirOf, latestArchive } from './archive';
import { forEachDecodedGroup } from './binlogFile';
import { forEachEvent, indexEvents } from './eventIndex';

/** One source's archived binlogs. */
export interface Archive {
  cluster: string;
  instance: string;
}

export type { BinlogPosition };

/**
 * The readers, for one config. `beat` is called while a long read makes progress (an activity
 * passes its heartbeat: a dead worker is then noticed within seconds).
 */
export function binlogSources(config: RunbookConfig, beat: (detail?: string) => void = () => {}) {
  /** One source's archive: the one named, else the one written last (see backup/archive.ts). */
  const archiveOf = (cluster: string, instance?: string): Archive => {
    const name = instance ?? latestArchive(config.backupDir, cluster);
    if (!name) throw ApplicationFailure.nonRetryable(`no archived binlogs for ${cluster} in ${join(config.backupDir, cluster, BINLOG_ARCHIVE_DIR)}: run a backup (it archives them) first`, 'NoBinlogArchive');
    return { cluster, instance: name };
  };
  const archiveDir = (a: Archive) => archiveDirOf(config.backupDir, a.cluster, a.instance);

  const archived = async (a: Archive): Promise<BinlogArchiveEntry[]> => {
    try {
      return JSON.parse(await readFile(join(archiveDir(a), BINLOG_INDEX_FILE), 'utf8')) as BinlogArchiveEntry[];
    } catch {
      throw ApplicationFailure.nonRetryable(`no archived binlogs for ${a.cluster} in ${archiveDir(a)}: run a backup (it archives them) first`, 'NoBinlogArchive');
    }
  };

  /** One transaction in full (row images counted), decoded from its own positions only. */
  const detailOf = async (a: Archive, g: BinlogEventGroup): Promise<BinlogEventGroup> => {
    const run = await runTool(
      toolPath('mariadb-binlog'),
      ['--base64-output=DECODE-ROWS', '-vv', `--start-position=${g.startPosition}`, `--stop-position=${g.endPosition}`, join(archiveDir(a), g.file)],
      { env: { TZ: 'UTC' }, timeoutMs: 10 * 60_000 },
    );
    return parseBinlogText(run.stdout, g.file).find((x) => x.gtid === g.gtid) ?? g;
  };
  /**
   * Every archived transaction the restore can use, in archive order, one at a time: an archive
   * may hold far more than fits in memory. With `after` (a GTID position, e.g. the oldest backup's),
   * a file whose every transaction is at or before it is not read: nothing there can be replayed,
   * and the archive only grows. Files without an index yet (see eventIndex.ts) are decoded a few
   * at a time first: decoding is the slow part. `onGroup` returning false stops the walk.
   */
  const walkArchive = async (a: Archive, after: string | undefined, onGroup: (g: BinlogEventGroup) => boolean | void) => {
    const index = await archived(a);
    const needed = filesAfter(index, after);
    const skipped = index.filter((e) => !needed.includes(e)).map((e) => e.file);
    const present: BinlogArchiveEntry[] = [];
    for (const e of needed) if (await stat(join(archiveDir(a), e.file)).catch(() => undefined)) present.push(e);
    let next = 0;
    const indexer = async () => {
      for (let i = next++; i < present.length; i = next++) {
        const e = present[i]!;
        beat(e.file);
        // A failure here is met again, and reported, when the file is read below.
        await indexEvents(archiveDir(a), e, () => beat(e.file)).catch(() => undefined);
      }
    };
    await Promise.all(Array.from({ length: Math.min(present.length, Math.max(2, availableParallelism())) }, indexer));
    let stopped = false;
    for (const e of present) {
      if (stopped) break;
      beat(e.file);
      await forEachEvent(archiveDir(a), e, (g) => {
        if (!stopped && onGroup(g) === false) stopped = true;
      });
    }
    return { index, skipped };
  };

  const loginOf = (cluster: string, instance: string) => {
    const inst = getInstance(config, cluster, instance);
    return { host: inst.host, port: inst.port, admin: resolveCredential(getCluster(config, cluster).credentials.admin) };
  };

  /**
   * A server's own binary log with row images, read over the replication protocol (the archive may
   * be behind): from `from` through `until` in that file, or to the end of its last log. Read as a
   * stream: an hour of a busy primary is millions of transactions, so only those `keep` accepts
   * are held; `read` counts them all and `last` is the last one read.
   */
  const readServerBinlog = async (
    cluster: string,
    instance: string,
    from: BinlogPosition,
    until: number | 'last',
    o: { beat?: () => void; keep?: (g: RowImageGroup) => boolean } = {},
  ): Promise<{ kept: RowImageGroup[]; read: number; last?: RowImageGroup }> => {
    const { host, port, admin } = loginOf(cluster, instance);
    const dir = await mkdtemp(join(tmpdir(), 'runbook-binlog-'));
    try {
      const out = join(dir, 'binlog.txt');
      await runTool(
        toolPath('mariadb-binlog'),
        [
          '--read-from-remote-server', `--host=${host}`, `--port=${port}`, '--base64-output=DECODE-ROWS', '-vv', `--start-position=${from.position}`,
          ...(until === 'last' ? [from.file, '--to-last-log'] : [`--stop-position=${until}`, from.file]),
        ],
        { credentials: admin, stdoutFile: out, env: { TZ: 'UTC' }, timeoutMs: 30 * 60_000, onProgress: o.beat },
      );
      const kept: RowImageGroup[] = [];
      let read = 0;
      let last: RowImageGroup | undefined;
      await forEachDecodedGroup(out, from.file, (g) => {
        read++;
        last = g as RowImageGroup;
        if (!o.keep || o.keep(last)) kept.push(last);
      }, undefined, { images: true });
      return { kept, read, last };
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  };

  /**
   * The one inverse-event generator: `mariadb-binlog --flashback` over exactly one transaction,
   * written to `outFile` (BINLOG statements that write its rows back, one transaction). From an
   * archived file (`archive`) or from a server's own binary log (`server`, over the replication
   * protocol). The flashback runbook and the failback's undo of errant transactions both use it.
   */
  const writeFlashback = async (
    from: { archive: Archive } | { server: { cluster: string; instance: string } },
    t: { file: string; startPosition: number; endPosition: number },
    outFile: string,
    onProgress?: () => void,
  ): Promise<void> => {
    const range = [`--start-position=${t.startPosition}`, `--stop-position=${t.endPosition}`];
    if ('archive' in from) {
      await runTool(toolPath('mariadb-binlog'), ['--flashback', ...range, join(archiveDir(from.archive), t.file)], { stdoutFile: outFile, env: { TZ: 'UTC' }, onProgress });
      return;
    }
    const { host, port, admin } = loginOf(from.server.cluster, from.server.instance);
    await runTool(toolPath('mariadb-binlog'), ['--read-from-remote-server', `--host=${host}`, `--port=${port}`, '--flashback', ...range, t.file], {
      credentials: admin, stdoutFile: outFile, env: { TZ: 'UTC' }, onProgress, timeoutMs: 30 * 60_000,
    });
  };

  /**
   * The event as the primary itself logged it, with its row images: it must be in the primary's
   * binlog at the archived position. Not there (purged, or another server since a failover): refused.
   */
  const onPrimary = async (cluster: string, instance: string, g: Pick<BinlogEventGroup, 'gtid' | 'file' | 'startPosition' | 'endPosition'>): Promise<RowImageGroup> => {
    let why: string;
    try {
      const { kept: groups } = await readServerBinlog(cluster, instance, { file: g.file, position: g.startPosition }, g.endPosition);
      const hit = groups.find((x) => x.gtid === g.gtid && x.startPosition === g.startPosition && x.endPosition === g.endPosition);
      if (hit) return hit;
      why = groups.length ? `${g.file}:${g.startPosition} holds ${groups[0]!.gtid}` : `no transaction at ${g.file}:${g.startPosition}`;
    } catch (err) {
      const tail = err instanceof ToolError ? err.stderrTail : (err as Error).message;
      why = /Could not find first log file name/i.test(tail) ? `${g.file} is purged or was never there` : (tail.split('\n').find((l) => l.trim()) ?? 'unreadable').replace(/^ERROR: /, '');
    }
    throw ApplicationFailure.nonRetryable(`${g.gtid} is not in ${instance}'s binlogs (${why}): flashback needs the primary that wrote it; use restore and replay`, 'FlashbackRefused');
  };

  /**
   * The archive's end against the primary now: `the archive ends at <time> (<GTID>); <n> s behind
   * the primary (at <GTID>)`, `behind` when the primary has transactions the archive lacks.
   */
  const describeArchiveEnd = async (cluster: string, last: BinlogEventGroup | undefined): Promise<{ behind: boolean; text: string }> => {
    const ends = last ? `the archive ends at ${new Date(last.timestamp).toISOString()} (${last.gtid})` : 'the archive holds no transaction';
    const topology = await probeTopology(config, cluster).catch(() => undefined);
    const primary = topology?.primary ? topology.instances.find((i) => i.instance === topology.primary) : undefined;
    const at = primary?.gtid?.binlogPos;
    if (!primary || at === undefined) return { behind: true, text: `${ends}; the primary could not be asked how far it is` };
    const l = last && parseMariaGtidList(last.gtid)[0]!;
    const ahead = l ? (parseMariaGtidList(at).find((g) => g.domain === l.domain)?.seq ?? 0) - l.seq : parseMariaGtidList(at).reduce((n, g) => n + g.seq, 0);
    if (ahead <= 0) return { behind: false, text: `${ends}, where the primary ${primary.instance} is` };
    const seconds = last ? Math.max(0, Math.round((Date.now() - last.timestamp) / 1000)) : undefined;
    return { behind: true, text: `${ends}; ${seconds !== undefined ? `${seconds} s ` : ''}behind the primary ${primary.instance}, which is ${ahead} transaction(s) further (at ${at})` };
  };

  return { archiveOf, archiveDir, archived, detailOf, walkArchive, readServerBinlog, onPrimary, describeArchiveEnd, loginOf, writeFlashback };
}
