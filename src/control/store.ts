/**
 * Reads and writes of the control database: the step audit in `failover_log`, the per-region
 * `sync_status`, and the history queries behind `runbook log` and `runbook sync-status`.
 */
import type { RunbookConfig } from '../config/load';
import { connect, controlEndpoint, query, type Conn } from '../mysql/connect';
import { migrate } from './migrations';
import type { AuditRow, SyncStatusRow } from '../shared/types';

/** A control-db connection in UTC, so DATETIME columns mean the same thing to every reader. */
export async function connectControl(config: RunbookConfig, timeoutMs = 5000): Promise<Conn> {
  const conn = await connect(controlEndpoint(config), { timeoutMs });
  await conn.query("SET time_zone = '+00:00'");
  return conn;
}

export async function withControl<T>(config: RunbookConfig, fn: (conn: Conn) => Promise<T>, timeoutMs?: number): Promise<T> {
  const conn = await connectControl(config, timeoutMs);
  try {
    return await fn(conn);
  } finally {
    conn.destroy();
  }
}

export async function migrateControl(config: RunbookConfig): Promise<number[]> {
  return withControl(config, migrate);
}

/** Epoch ms to a UTC DATETIME(3) literal. */
export function sqlTime(ms: number): string {
  return new Date(ms).toISOString().replace('T', ' ').replace('Z', '');
}

/**
 * Insert audit rows exactly once. The unique key (workflow_id, run_id, step_seq, status) turns a
 * retried or replayed write into a no-op, so an activity that runs twice never duplicates a row.
 */
export async function insertAuditRows(conn: Conn, rows: AuditRow[]): Promise<void> {
  if (!rows.length) return;
  const values = rows.map((r) => [
    r.fromRegion ?? null,
    r.toRegion ?? null,
    sqlTime(r.at),
    r.operator ?? null,
    r.reason ?? null,
    r.status,
    r.cluster,
    r.incidentId ?? null,
    r.workflowId,
    r.runId,
    r.runbook,
    r.step,
    r.stepSeq,
    r.attempt ?? null,
    r.detail === undefined ? null : JSON.stringify(r.detail),
  ]);
  await query(
    conn,
    `INSERT INTO failover_log
       (from_region, to_region, switch_time, operator, reason, status, cluster, incident_id,
        workflow_id, run_id, runbook, step, step_seq, attempt, detail)
     VALUES ${values.map(() => '(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)').join(', ')}
     ON DUPLICATE KEY UPDATE id = id`,
    values.flat(),
  );
}

export interface HistoryFilter {
  cluster?: string;
  incidentId?: string;
  workflowId?: string;
  /** 1-based page, newest first (seed §3.4). */
  page?: number;
  pageSize?: number;
}

export interface HistoryRow {
  id: number;
  switch_time: string;
  cluster: string | null;
  incident_id: string | null;
  workflow_id: string | null;
  run_id: string | null;
  runbook: string | null;
  step: string | null;
  step_seq: number | null;
  status: string;
  attempt: number | null;
  from_region: string | null;
  to_region: string | null;
  operator: string | null;
  reason: string | null;
  detail: unknown;
  logged_at: string;
}

export async function failoverHistory(conn: Conn, f: HistoryFilter = {}): Promise<HistoryRow[]> {
  const page = f.page ?? 1;
  const pageSize = f.pageSize ?? 20;
  if (!Number.isInteger(page) || page < 1) throw new Error(`--page must be a whole number from 1, got ${f.page}`);
  if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > 1000) throw new Error(`--page-size must be a whole number from 1 to 1000, got ${f.pageSize}`);
  const where: string[] = [];
  const params: unknown[] = [];
  if (f.cluster) (where.push('cluster = ?'), params.push(f.cluster));
  if (f.incidentId) (where.push('incident_id = ?'), params.push(f.incidentId));
  if (f.workflowId) (where.push('workflow_id = ?'), params.push(f.workflowId));
  const rows = await query<HistoryRow[]>(
    conn,
    `SELECT * FROM failover_log ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
     ORDER BY switch_time DESC, id DESC LIMIT ?, ?`,
    [...params, (page - 1) * pageSize, pageSize],
  );
  return rows.map((r) => ({ ...r, id: Number(r.id), step_seq: r.step_seq === null ? null : Number(r.step_seq) }));
}

/** The upsert of seed §3.1, keyed on (cluster, region) so it updates the region's row in place. */
export async function upsertSyncStatus(conn: Conn, s: SyncStatusRow): Promise<void> {
  await query(
    conn,
    `INSERT INTO sync_status (cluster, region, last_sync_time, status, remark, instance, role, lag_seconds, gtid_position)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
     -- A region that is not in sync keeps the time it last was.
     ON DUPLICATE KEY UPDATE last_sync_time = COALESCE(VALUES(last_sync_time), last_sync_time), status = VALUES(status), remark = VALUES(remark),
       instance = VALUES(instance), role = VALUES(role), lag_seconds = VALUES(lag_seconds),
       gtid_position = VALUES(gtid_position), updated_at = CURRENT_TIMESTAMP(3)`,
    [
      s.cluster,
      s.region,
      s.lastSyncTime === undefined ? null : sqlTime(s.lastSyncTime),
      s.status,
      s.remark ?? null,
      s.instance ?? null,
      s.role ?? null,
      s.lagSeconds ?? null,
      s.gtidPosition ?? null,
    ],
  );
}

export async function listSyncStatus(conn: Conn, cluster?: string): Promise<Record<string, unknown>[]> {
  return query(
    conn,
    `SELECT cluster, region, instance, role, status, lag_seconds, last_sync_time, gtid_position, remark, updated_at
     FROM sync_status ${cluster ? 'WHERE cluster = ?' : ''} ORDER BY cluster, region`,
    cluster ? [cluster] : [],
  );
}
