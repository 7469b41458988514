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
import { BINLOG_ARCHIVE_DIR, BINLOG_INDEX_FILE, type BinlogArchiveEntry } from '../backup/manifest';
import { runTool, toolPath } from '../backup/tools';
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

  return {
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
