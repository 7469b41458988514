/**
 * Point-in-time recovery into a recovery instance, never over production: load a backup, then
 * replay the archived binlogs through the server's own replication SQL thread from a throwaway
 * binlog-server instance that holds them (`START SLAVE UNTIL master_gtid_pos=…`), skipping the bad
 * transaction by moving `gtid_slave_pos` past it. Progress lives in the recovery instance's own
 * `gtid_slave_pos`, so a retried or resumed activity continues where replay stopped.
 *
 * This slice runs the two scratch instances locally, as extra instances of the sandbox (loopback
 * configs only; ports control+10 and control+11); a configured recovery host is not built yet.
 */
import { access, copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { heartbeat, sleep } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type mysql from 'mysql2/promise';
import { getCluster } from '../config/load';
import { BINLOG_ARCHIVE_DIR, BINLOG_INDEX_FILE, LOGICAL_DUMP_FILE, MANIFEST_FILE, type BackupManifest, type BinlogArchiveEntry } from '../backup/manifest';
import { runTool, toolPath } from '../backup/tools';
import { compareMariaGtid } from '../mysql/dialect';
import { Sandbox, type SandboxInstance } from '../sandbox/sandbox';
import type { ActivityDeps } from './deps';
import { withInstance } from './instance';

const REPL = { user: 'restore_repl', password: 'restore-repl-local-only' };

export interface RecoveryRef {
  cluster: string;
  restoreId: string;
}

export function createRestoreActivities({ config }: ActivityDeps) {
  const clusterDir = (cluster: string) => join(config.backupDir, cluster);

  const scratch = (ref: RecoveryRef): { sandbox: Sandbox; binlogServer: SandboxInstance; recovery: SandboxInstance } => {
    let sandbox: Sandbox;
    try {
      sandbox = new Sandbox(config);
    } catch (err) {
      throw ApplicationFailure.nonRetryable(`restore needs a recovery host: ${(err as Error).message}`, 'NoRecoveryHost');
    }
    const base = config.control.port;
    const dir = join(clusterDir(ref.cluster), 'restore', ref.restoreId);
    const make = (name: string, port: number): SandboxInstance => ({
      key: `restore/${name}`,
      name,
      host: '127.0.0.1',
      port,
      serverId: 1_000_000 + port,
      initialRole: 'replica',
      dir: join(dir, name),
    });
    return { sandbox, binlogServer: make('binlog-server', base + 10), recovery: make('recovery', base + 11) };
  };

  const query = async (sb: Sandbox, inst: SandboxInstance, sql: string, params: unknown[] = []) =>
    sb.withRoot(inst, async (c: mysql.Connection) => (await c.query(sql, params))[0] as Record<string, unknown>[]);

  return {
    /**
     * Start the binlog server on a copy of the archived binlogs and the recovery instance loaded
     * with the backup, its binlog and GTID state reset to the backup's position. Done once: a
     * marker file makes a retry skip the load.
     */
    async prepareRecovery(input: RecoveryRef & { backupId: string }): Promise<{ backupGtid: string; archivedUpTo: string }> {
      getCluster(config, input.cluster);
      const { sandbox, binlogServer, recovery } = scratch(input);
      const manifest = JSON.parse(await readFile(join(clusterDir(input.cluster), input.backupId, MANIFEST_FILE), 'utf8')) as BackupManifest;
      if (manifest.kind !== 'logical') throw ApplicationFailure.nonRetryable(`restore of ${manifest.kind} backups is not built yet; choose a logical backup`, 'NotBuilt');
      const archive = join(clusterDir(input.cluster), BINLOG_ARCHIVE_DIR);
      const entries = JSON.parse(await readFile(join(archive, BINLOG_INDEX_FILE), 'utf8')) as BinlogArchiveEntry[];

      // The binlog server serves the archive: copies of the files and an index naming them.
      const binlogDir = join(binlogServer.dir, 'binlog');
      await mkdir(binlogDir, { recursive: true });
      if (!(await exists(join(binlogServer.dir, 'data')))) {
        for (const e of entries) await copyFile(join(archive, e.file), join(binlogDir, e.file));
        await writeFile(join(binlogDir, 'mysql-bin.index'), entries.map((e) => join(binlogDir, e.file)).join('\n') + '\n');
      }
      await sandbox.startInstance(binlogServer);
      await sandbox.withRoot(binlogServer, async (c) => {
        await c.query('SET SESSION sql_log_bin = 0');
        await c.query('CREATE USER IF NOT EXISTS ?@? IDENTIFIED BY ?', [REPL.user, '127.0.0.1', REPL.password]);
        await c.query('GRANT REPLICATION SLAVE ON *.* TO ?@?', [REPL.user, '127.0.0.1']);
      });
      const [state] = await query(sandbox, binlogServer, 'SELECT @@gtid_binlog_pos AS pos');

      await sandbox.startInstance(recovery);
      const loaded = join(recovery.dir, 'loaded');
      if (!(await exists(loaded))) {
        heartbeat('loading the dump');
        await runTool(toolPath('mariadb'), [`--socket=${sandbox.socketOf(recovery)}`, '--user=root', '--binary-mode'], {
          stdinFile: join(clusterDir(input.cluster), input.backupId, LOGICAL_DUMP_FILE),
          onProgress: () => heartbeat('loading the dump'),
          timeoutMs: 6 * 3600_000,
        });
        // Loading wrote this server's own binlog; replay must start from the backup's position.
        await sandbox.withRoot(recovery, async (c) => {
          await c.query('RESET MASTER');
          await c.query('SET GLOBAL gtid_slave_pos = ?', [manifest.gtid]);
          await c.query(
            `CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = ${binlogServer.port}, MASTER_USER = ?, MASTER_PASSWORD = ?, MASTER_USE_GTID = slave_pos`,
            [REPL.user, REPL.password],
          );
        });
        await writeFile(loaded, `${manifest.id}\n`);
      }
      return { backupGtid: manifest.gtid, archivedUpTo: String(state!.pos) };
    },

    /**
     * Apply archived transactions up to and including `until` through the SQL thread, then stop.
     * Already there is success (a resumed run).
     */
    async replayTo(input: RecoveryRef & { until: string; timeoutSeconds: number }): Promise<{ appliedTo: string }> {
      const { sandbox, recovery } = scratch(input);
      const pos = async () => String((await query(sandbox, recovery, 'SELECT @@gtid_slave_pos AS p'))[0]!.p);
      const reached = async () => compareMariaGtid(await pos(), input.until).bAhead.length === 0;
      if (await reached()) return { appliedTo: await pos() };
      await query(sandbox, recovery, 'STOP SLAVE');
      await query(sandbox, recovery, `START SLAVE UNTIL master_gtid_pos = ?`, [input.until]);
      const deadline = Date.now() + input.timeoutSeconds * 1000;
      for (;;) {
        heartbeat(await pos());
        if (await reached()) break;
        const [status] = await query(sandbox, recovery, 'SHOW SLAVE STATUS');
        if (status && Number(status.Last_SQL_Errno)) throw ApplicationFailure.nonRetryable(`replay stopped at ${await pos()}: ${status.Last_SQL_Error}`, 'ReplayFailed');
        if (Date.now() > deadline) throw ApplicationFailure.nonRetryable(`replay did not reach ${input.until} within ${input.timeoutSeconds} s (at ${await pos()})`, 'ReplayTimeout');
        await sleep(100);
      }
      await query(sandbox, recovery, 'STOP SLAVE');
      return { appliedTo: await pos() };
    },

    /** Skip one transaction: move the applied position past it without applying it. */
    async skipTransaction(input: RecoveryRef & { gtid: string; previous: string }): Promise<{ skipped: string }> {
      const { sandbox, recovery } = scratch(input);
      const [row] = await query(sandbox, recovery, 'SELECT @@gtid_slave_pos AS p');
      const at = String(row!.p);
      if (compareMariaGtid(at, input.gtid).equal || compareMariaGtid(at, input.gtid).aAhead.length) return { skipped: input.gtid }; // done before
      if (!compareMariaGtid(at, input.previous).equal) {
        throw ApplicationFailure.nonRetryable(`refusing to skip ${input.gtid}: the recovery instance is at ${at}, not at the transaction before it (${input.previous})`, 'NotAtSkipPoint');
      }
      await query(sandbox, recovery, 'STOP SLAVE');
      await query(sandbox, recovery, 'SET GLOBAL gtid_slave_pos = ?', [input.gtid]);
      return { skipped: input.gtid };
    },

    /**
     * Compare the recovery instance with production: exact applied position, and per table the row
     * count and a checksum (CRC32 of every row's columns, combined with BIT_XOR).
     */
    async compareTables(input: RecoveryRef & { primary: string; tables: string[] }): Promise<{ appliedTo: string; tables: { table: string; recovery: TableSum | null; production: TableSum | null }[] }> {
      const { sandbox, recovery } = scratch(input);
      const appliedTo = String((await query(sandbox, recovery, 'SELECT @@gtid_slave_pos AS p'))[0]!.p);
      const sumOn = async (run: (sql: string) => Promise<Record<string, unknown>[]>, table: string): Promise<TableSum | null> => {
        const [db, name] = table.split('.');
        const cols = await run(`SELECT COLUMN_NAME AS c FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = '${db}' AND TABLE_NAME = '${name}' ORDER BY ORDINAL_POSITION`);
        if (!cols.length) return null;
        const concat = `CONCAT_WS('#', ${cols.map((c) => `COALESCE(\`${c.c}\`, 'NULL')`).join(', ')})`;
        const [r] = await run(`SELECT COUNT(*) AS n, COALESCE(BIT_XOR(CRC32(${concat})), 0) AS crc FROM \`${db}\`.\`${name}\``);
        return { rows: Number(r!.n), checksum: String(r!.crc) };
      };
      const tables = [];
      for (const table of input.tables) {
        const rec = await sumOn((sql) => query(sandbox, recovery, sql), table);
        const prod = await withInstance(config, { cluster: input.cluster, instance: input.primary }, async (c) => sumOn(async (sql) => (await c.query(sql))[0] as Record<string, unknown>[], table));
        tables.push({ table, recovery: rec, production: prod });
      }
      return { appliedTo, tables };
    },

    /** Stop the scratch instances (the recovery instance's datadir stays for inspection). */
    async stopRecovery(input: RecoveryRef): Promise<void> {
      const { sandbox, binlogServer, recovery } = scratch(input);
      await sandbox.stopInstance(binlogServer);
      await sandbox.stopInstance(recovery);
    },
  };
}

export interface TableSum {
  rows: number;
  checksum: string;
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

