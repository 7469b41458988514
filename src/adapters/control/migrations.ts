/**
 * The control database's schema, as ordered migrations. Applied by `runbook sandbox up`, the worker
 * at start and the CLI on first use; each is recorded in `schema_migrations` and every statement is
 * safe to run again, because MySQL DDL is not transactional and a crash can land between the two.
 */
import type { Conn } from '../mysql/connect';
import { FAILOVER_LOG_COLUMNS } from '../../core/inputs';

const C = FAILOVER_LOG_COLUMNS;

interface Migration {
  version: number;
  name: string;
  statements: string[];
}

export const MIGRATIONS: Migration[] = [
  {
    version: 1,
    name: 'failover_log and sync_status, seed columns plus step-level audit',
    statements: [
      // Every column of the seed is kept, with the seed's meaning, so its queries still run
      // (`INSERT INTO failover_log (from_region, to_region, operator, reason, status) ...`,
      // `SELECT * FROM failover_log ORDER BY switch_time DESC LIMIT ?, ?`). Step rows add the rest.
      `CREATE TABLE IF NOT EXISTS failover_log (
        id BIGINT PRIMARY KEY AUTO_INCREMENT COMMENT 'log id',
        from_region VARCHAR(${C.from_region}) NULL COMMENT 'region of the old primary (seed column)',
        to_region VARCHAR(${C.to_region}) NULL COMMENT 'region of the new primary (seed column)',
        switch_time DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) COMMENT 'when it happened, UTC, ms (seed column)',
        operator VARCHAR(${C.operator}) NULL COMMENT 'who ran it (seed column)',
        reason VARCHAR(${C.reason}) NULL COMMENT 'why (seed column)',
        status VARCHAR(${C.status}) NOT NULL COMMENT 'started|succeeded|failed|skipped|timed_out|... (seed column)',
        cluster VARCHAR(${C.cluster}) NULL,
        incident_id VARCHAR(${C.incident_id}) NULL,
        workflow_id VARCHAR(${C.workflow_id}) NULL,
        run_id VARCHAR(${C.run_id}) CHARACTER SET ascii NULL,
        runbook VARCHAR(${C.runbook}) NULL,
        step VARCHAR(${C.step}) NULL,
        step_seq INT NULL COMMENT 'order of the step within its run; with workflow id and run id the idempotency key',
        attempt INT NULL COMMENT 'activity attempt that produced this outcome',
        detail JSON NULL,
        logged_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) COMMENT 'when the row reached this table (later than switch_time if the control db was down)',
        UNIQUE KEY uq_step_event (workflow_id, run_id, step_seq, status),
        KEY idx_time (switch_time, id),
        KEY idx_cluster_time (cluster, switch_time, id),
        KEY idx_incident (incident_id, switch_time),
        CONSTRAINT detail_is_json CHECK (detail IS NULL OR JSON_VALID(detail))
      ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COMMENT='failover and runbook step log'`,
      // The seed's upsert had no unique key to hit, so it inserted forever; (cluster, region) is it.
      // Seed-style writes that name no cluster land under cluster '' and still upsert by region.
      `CREATE TABLE IF NOT EXISTS sync_status (
        id BIGINT PRIMARY KEY AUTO_INCREMENT,
        cluster VARCHAR(64) NOT NULL DEFAULT '',
        region VARCHAR(32) NOT NULL,
        last_sync_time DATETIME(3) NULL,
        status VARCHAR(16) NOT NULL,
        remark VARCHAR(255) NULL,
        updated_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
        instance VARCHAR(64) NULL,
        role VARCHAR(16) NULL,
        lag_seconds INT NULL,
        gtid_position VARCHAR(1024) NULL,
        UNIQUE KEY uq_cluster_region (cluster, region),
        KEY idx_region (region)
      ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COMMENT='replication state per cluster and region'`,
    ],
  },
  {
    version: 2,
    name: 'writer_endpoint, the built-in traffic switch',
    statements: [
      // The built-in traffic switch: one row per cluster naming where writes go. Applications and
      // proxies read it (or are pointed at it by a hook), so moving the writer is one row change that
      // survives the loss of any cluster instance, because it lives in the control database.
      // `generation` goes up on every change, so a reader can tell a new writer from a stale cache
      // and a fencing step can refuse writes stamped with an older generation. workflow_id and
      // incident_id say which runbook run moved it; a retried activity that finds the row already
      // naming its instance changes nothing, generation included.
      `CREATE TABLE IF NOT EXISTS writer_endpoint (
        cluster VARCHAR(64) PRIMARY KEY,
        instance VARCHAR(64) NOT NULL COMMENT 'config name of the instance that takes writes',
        region VARCHAR(32) NOT NULL,
        host VARCHAR(255) NOT NULL,
        port INT NOT NULL,
        generation BIGINT NOT NULL COMMENT 'incremented on every change of writer',
        workflow_id VARCHAR(255) NULL COMMENT 'the runbook run that last changed it',
        incident_id VARCHAR(64) NULL,
        updated_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3)
      ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COMMENT='where each cluster takes writes (built-in traffic switch)'`,
    ],
  },
  {
    version: 3,
    name: 'approval endpoint: replayed Slack requests and used email links',
    statements: [
      // A signed Slack request is accepted once: a replay within the 5-minute window is refused.
      `CREATE TABLE IF NOT EXISTS slack_request_seen (
        signature CHAR(64) CHARACTER SET ascii PRIMARY KEY,
        request_ts BIGINT NOT NULL,
        seen_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
        KEY idx_seen (seen_at)
      ) ENGINE=InnoDB`,
      // An emailed approve/reject link works once, whatever happens after.
      `CREATE TABLE IF NOT EXISTS approval_link_used (
        nonce VARCHAR(64) CHARACTER SET ascii PRIMARY KEY,
        workflow_id VARCHAR(255) NOT NULL,
        approver VARCHAR(255) NOT NULL,
        used_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
      ) ENGINE=InnoDB`,
    ],
  },
  {
    version: 4,
    name: 'runbook_lock: one changing runbook per cluster at a time',
    statements: [
      // Two failovers of one cluster at once could leave two writable primaries: the second is refused.
      `CREATE TABLE IF NOT EXISTS runbook_lock (
        cluster VARCHAR(64) PRIMARY KEY,
        workflow_id VARCHAR(255) NOT NULL,
        runbook VARCHAR(32) NOT NULL,
        operator VARCHAR(64) NULL,
        acquired_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
      ) ENGINE=InnoDB`,
    ],
  },
  {
    version: 5,
    name: 'consistency runbook: chunk results, differences, the manual queue, repaired rows, held replicas, last verified time',
    statements: [
      // Every chunk as it is compared, so a worker killed mid-table resumes after the last one
      // stored (and a 10M-row table's progress lives here, not in workflow history). check_id is
      // the run's first execution run id: the same across continue-as-new, new for a new run.
      `CREATE TABLE IF NOT EXISTS consistency_chunk (
        check_id CHAR(36) CHARACTER SET ascii NOT NULL,
        workflow_id VARCHAR(${C.workflow_id}) NOT NULL,
        table_name VARCHAR(129) NOT NULL,
        chunk_index INT NOT NULL,
        lower_key JSON NULL COMMENT 'exclusive lower bound (key tuple), NULL for the first chunk',
        upper_key JSON NULL COMMENT 'inclusive upper bound, NULL for the last chunk',
        source_instance VARCHAR(64) NOT NULL,
        source_rows BIGINT NOT NULL,
        source_digest CHAR(32) CHARACTER SET ascii NOT NULL,
        targets JSON NOT NULL COMMENT '[{instance, rows, digest, equal}] at the same position',
        position VARCHAR(1024) NULL COMMENT 'the GTID position every copy was read at (replication); across regions each side has its own (positions)',
        positions JSON NULL,
        sizer JSON NOT NULL COMMENT 'the chunk sizer after this chunk, so a resumed walk sizes as an uninterrupted one',
        chunk_ms INT NOT NULL,
        paused_ms INT NULL COMMENT 'longest time a replica SQL thread was held for this chunk',
        differing TINYINT NOT NULL,
        checked_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
        PRIMARY KEY (check_id, table_name, chunk_index)
      ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COMMENT='consistency: every chunk compared'`,
      // Every confirmed difference, one row per copy and key, with both images; the repair plan
      // (decision, winner, where it is written) is filled in here once a policy is applied.
      `CREATE TABLE IF NOT EXISTS consistency_diff (
        check_id CHAR(36) CHARACTER SET ascii NOT NULL,
        workflow_id VARCHAR(${C.workflow_id}) NOT NULL,
        table_name VARCHAR(129) NOT NULL,
        instance VARCHAR(64) NOT NULL COMMENT 'the copy that differs from the source',
        key_hash CHAR(64) CHARACTER SET ascii NOT NULL COMMENT 'sha256 of the key''s canonical text',
        key_value JSON NOT NULL,
        kind VARCHAR(8) NOT NULL COMMENT 'missing | extra | changed (against the source)',
        differing_columns JSON NULL COMMENT 'changed: the columns whose values differ',
        chunk_index INT NOT NULL,
        lower_key JSON NULL,
        upper_key JSON NULL,
        position VARCHAR(1024) NULL,
        source_instance VARCHAR(64) NOT NULL,
        source_digest CHAR(64) CHARACTER SET ascii NULL,
        target_digest CHAR(64) CHARACTER SET ascii NULL,
        source_image JSON NULL,
        target_image JSON NULL,
        policy VARCHAR(80) NULL,
        decision VARCHAR(8) NULL COMMENT 'repair | queue',
        winner VARCHAR(64) NULL,
        writes JSON NULL COMMENT '[{instance, op, logged}]',
        reason VARCHAR(255) NULL,
        found_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
        PRIMARY KEY (check_id, table_name, instance, key_hash)
      ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COMMENT='consistency: confirmed row differences and their repair plan'`,
      // The manual policy's queue (seed 003's sync_conflicts): what a person must decide.
      `CREATE TABLE IF NOT EXISTS consistency_conflict (
        id BIGINT PRIMARY KEY AUTO_INCREMENT,
        cluster VARCHAR(64) NOT NULL,
        workflow_id VARCHAR(${C.workflow_id}) NOT NULL,
        check_id CHAR(36) CHARACTER SET ascii NOT NULL,
        table_name VARCHAR(129) NOT NULL,
        instance VARCHAR(64) NOT NULL,
        key_hash CHAR(64) CHARACTER SET ascii NOT NULL,
        key_value JSON NOT NULL,
        kind VARCHAR(8) NOT NULL,
        differing_columns JSON NULL,
        source_instance VARCHAR(64) NOT NULL,
        source_image JSON NULL,
        target_image JSON NULL,
        policy VARCHAR(80) NOT NULL,
        reason VARCHAR(255) NOT NULL,
        status VARCHAR(16) NOT NULL DEFAULT 'open' COMMENT 'open | resolved',
        created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
        resolved_at DATETIME(3) NULL,
        resolved_by VARCHAR(${C.operator}) NULL,
        UNIQUE KEY uq_conflict (check_id, table_name, instance, key_hash),
        KEY idx_open (cluster, status, created_at)
      ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COMMENT='consistency: conflicts left for a person (manual policy, or a policy that could not decide)'`,
      // Every repaired row: the policy, what it was and what it became. Written 'pending' before
      // the write commits and 'applied' after, so a worker killed between the two still leaves the
      // before image of a row it changed.
      `CREATE TABLE IF NOT EXISTS consistency_repair (
        id BIGINT PRIMARY KEY AUTO_INCREMENT,
        cluster VARCHAR(64) NOT NULL,
        workflow_id VARCHAR(${C.workflow_id}) NOT NULL,
        check_id CHAR(36) CHARACTER SET ascii NOT NULL,
        table_name VARCHAR(129) NOT NULL,
        written_on VARCHAR(64) NOT NULL,
        logged TINYINT NOT NULL COMMENT '1: written with sql_log_bin=1 (it replicates); 0: on a held replica only',
        key_hash CHAR(64) CHARACTER SET ascii NOT NULL,
        key_value JSON NOT NULL,
        op VARCHAR(8) NOT NULL COMMENT 'write | delete',
        policy VARCHAR(80) NOT NULL,
        winner VARCHAR(64) NOT NULL,
        before_image JSON NULL,
        after_image JSON NULL,
        position VARCHAR(1024) NULL,
        operator VARCHAR(${C.operator}) NULL,
        status VARCHAR(16) NOT NULL COMMENT 'pending | applied',
        created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
        applied_at DATETIME(3) NULL,
        UNIQUE KEY uq_repair (check_id, table_name, written_on, key_hash)
      ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COMMENT='consistency: every repaired row, audited'`,
      // A replica whose replication a check holds at a position: written before STOP SLAVE,
      // removed after START SLAVE, so a run that dies in between is found and undone.
      `CREATE TABLE IF NOT EXISTS consistency_hold (
        cluster VARCHAR(64) NOT NULL,
        instance VARCHAR(64) NOT NULL,
        check_id CHAR(36) CHARACTER SET ascii NOT NULL,
        workflow_id VARCHAR(${C.workflow_id}) NOT NULL,
        held_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
        PRIMARY KEY (cluster, instance)
      ) ENGINE=InnoDB COMMENT='consistency: replicas held at a position right now'`,
      // When each region was last shown equal to its source, beside its replication state.
      'ALTER TABLE sync_status ADD COLUMN IF NOT EXISTS last_verified_at DATETIME(3) NULL, ADD COLUMN IF NOT EXISTS verify_remark VARCHAR(255) NULL',
    ],
  },
  {
    version: 9,
    name: 'failover_log sub-steps: the parts of one step an activity performs and reports each with its own time',
    statements: [
      // A planned switchover's critical section is one step run by one activity (fence, catch-up,
      // promote, writer endpoint); each part gets its own rows under the step's sequence number.
      // 0: the step itself. The unique key keeps every row written once, however often it is sent.
      `ALTER TABLE failover_log ADD COLUMN IF NOT EXISTS sub_step TINYINT UNSIGNED NOT NULL DEFAULT 0 COMMENT 'part of the step (0: the step itself; 1, 2, …: its sub-steps in order)' AFTER step_seq`,
      'ALTER TABLE failover_log DROP INDEX IF EXISTS uq_step_event, ADD UNIQUE KEY uq_step_event (workflow_id, run_id, step_seq, sub_step, status)',
    ],
  },
  {
    version: 10,
    name: 'failover_log by status and time: the pending approvals the metrics endpoint counts at every scrape',
    statements: ['ALTER TABLE failover_log ADD INDEX IF NOT EXISTS idx_status_time (status, switch_time)'],
  },
];

export async function migrate(conn: Conn): Promise<number[]> {
  await conn.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version INT PRIMARY KEY,
    name VARCHAR(255) NOT NULL,
    applied_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
  ) ENGINE=InnoDB`);
  const [rows] = await conn.query('SELECT version FROM schema_migrations');
  const done = new Set((rows as { version: number }[]).map((r) => Number(r.version)));
  const applied: number[] = [];
  for (const m of MIGRATIONS) {
    if (done.has(m.version)) continue;
    for (const sql of m.statements) await conn.query(sql);
    await conn.query('INSERT IGNORE INTO schema_migrations (version, name) VALUES (?, ?)', [m.version, m.name]);
    applied.push(m.version);
  }
  return applied;
}
