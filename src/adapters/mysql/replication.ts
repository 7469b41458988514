/**
 * Replication control of one server, in its own flavour's statements (the dialect): what a restore
 * does with a recovery server (reset it to a backup's position, replicate from a binlog server or
 * the live primary, up to a GTID position, stop) without writing `SLAVE` statements of its own.
 */
import type { ChangePrimaryOptions } from './dialect';
import { query, type Conn } from './connect';
import { dialectOf } from './probe';
import type { ReplicaStatus } from '../../core/types';

export interface Replication {
  /** SHOW REPLICA STATUS, parsed; null when the server replicates from nobody. */
  status(): Promise<ReplicaStatus | null>;
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Start, and stop both threads once `position` is applied. */
  startUntil(position: string): Promise<void>;
  /** Stop and forget the source. */
  forgetSource(): Promise<void>;
  /** Drop this server's own binlogs (what a load wrote, a physical copy carried). */
  resetBinlogs(): Promise<void>;
  /**
   * The same, but the fresh binlog is numbered past every file name the server had (RESET … TO):
   * an archive of this server's binlogs then never meets a reused name. Returns the new file.
   */
  resetBinlogsPastCurrent(): Promise<string>;
  /** The position replication continues after (MariaDB's gtid_slave_pos). */
  setAppliedPosition(position: string): Promise<void>;
  /** Replicate from `source` with GTID positioning (stopped: call start or startUntil). */
  setSource(source: ChangePrimaryOptions): Promise<void>;
}

export async function replicationOn(conn: Conn): Promise<Replication> {
  const { dialect } = await dialectOf(conn);
  const exec = async (sql: string, params: unknown[] = []) => void (await query(conn, sql, params, 60_000));
  return {
    status: async () => dialect.parseReplicaStatus(await query<Record<string, unknown>[]>(conn, dialect.replicaStatusQuery())),
    stop: () => exec(dialect.stopReplica()),
    start: () => exec(dialect.startReplica()),
    async startUntil(position) {
      const s = dialect.startReplicaUntil(position);
      await exec(s.sql, s.params);
    },
    async forgetSource() {
      await exec(dialect.stopReplica());
      await exec(dialect.resetReplicaAll());
    },
    resetBinlogs: () => exec(dialect.resetBinlogs()),
    async resetBinlogsPastCurrent() {
      const files = (await query<{ Log_name: string }[]>(conn, 'SHOW BINARY LOGS')).map((r) => r.Log_name);
      const next = Math.max(0, ...files.map((f) => Number(/\.(\d+)$/.exec(f)?.[1] ?? 0))) + 1;
      await exec(dialect.resetBinlogsTo(next));
      return (await query<{ Log_name: string }[]>(conn, 'SHOW BINARY LOGS')).map((r) => r.Log_name)[0] ?? '';
    },
    async setAppliedPosition(position) {
      const s = dialect.setGtidSlavePos(position);
      await exec(s.sql, s.params);
    },
    async setSource(source) {
      const c = dialect.changePrimary(source);
      await exec(c.sql, c.params);
    },
  };
}
