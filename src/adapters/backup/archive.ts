/**
 * Where a cluster's archived binlogs are: one folder per source instance,
 * `<backupDir>/<cluster>/binlogs/<instance>/` with its `index.json`.
 *
 * Per source, because binlog file names are per server: after a failover the new primary writes
 * its own `mysql-bin.000001…`, which must never be mixed with the old primary's files of the same
 * names. The archive to read is the one written last: the current primary's, whose binlog (with
 * log_slave_updates) holds the transactions it replicated before it was promoted too, as far back
 * as its files go. The coverage check refuses a restore whose range it does not hold.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { BINLOG_ARCHIVE_DIR, BINLOG_INDEX_FILE } from '../../core/manifest';

export function archiveDirOf(backupDir: string, cluster: string, instance: string): string {
  return join(backupDir, cluster, BINLOG_ARCHIVE_DIR, instance);
}

/** The instance whose archive was written last, or undefined when nothing is archived. */
export function latestArchive(backupDir: string, cluster: string): string | undefined {
  const root = join(backupDir, cluster, BINLOG_ARCHIVE_DIR);
  if (!existsSync(root)) return undefined;
  let best: { instance: string; mtimeMs: number } | undefined;
  for (const e of readdirSync(root, { withFileTypes: true })) {
    if (!e.isDirectory() || e.name.startsWith('.')) continue;
    const index = join(root, e.name, BINLOG_INDEX_FILE);
    if (!existsSync(index)) continue;
    const mtimeMs = statSync(index).mtimeMs;
    if (!best || mtimeMs > best.mtimeMs) best = { instance: e.name, mtimeMs };
  }
  return best?.instance;
}

