/**
 * Reads and writes of the control database: the step audit in `failover_log`, the per-region
 * `sync_status`, and the history queries behind `runbook log` and `runbook sync-status`.
 */
import type { RunbookConfig } from '../../config/load';
import { connect, controlEndpoint, query, type Conn } from '../mysql/connect';
import { migrate } from './migrations';
import { characters, clip, FAILOVER_LOG_COLUMNS, LOG_PAGES } from '../../core/inputs';
import { isRunEnd, type AuditRow, type AuditWriteReport, type SyncStatusRow } from '../../core/types';
import { sqlTime } from '../../core/format';

export type { AuditWriteReport };

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


/**
 * Errors that say nothing about the row: the control database is down, busy, read-only or not
 * migrated. The write is retried (the activity fails); every other error the server reports for
 * one row is that row's, and retrying it would block every row queued after it forever.
 */
const TRANSIENT_ERRNOS = new Set([
  1021, 1030, 1036, 1037, 1038, 1040, 1041, 1044, 1045, 1053, 1114, 1142, 1143, 1146, 1152, 1156, 1158, 1159, 1160, 1161, 1180,
  1181, 1203, 1205, 1213, 1290, 1317, 1836, 1927, 1969, 2006, 2013, 3024,
]);

function isRowError(err: unknown): boolean {
  const e = err as { sqlState?: string; errno?: number; fatal?: boolean };
  return typeof e?.sqlState === 'string' && !e.fatal && !TRANSIENT_ERRNOS.has(Number(e.errno));
}

/** A detail bigger than this is kept as a cut string: one row must never outgrow a packet. */
const MAX_DETAIL_CHARS = 256 * 1024;
/** Rows go in statements of at most this many characters of values, well under max_allowed_packet. */
const MAX_STATEMENT_CHARS = 4 * 1024 * 1024;

type AuditValues = (string | number | null)[];

/**
 * A row as column values, every text cut to its column with a marker (the full value goes into
 * `detail.truncated`): strict mode would refuse the whole row, and with it every row after it.
 */
function auditValues(r: AuditRow): { values: AuditValues; truncated: string[] } {
  const truncated: Record<string, { length: number; value: string }> = {};
  const fit = (column: keyof typeof FAILOVER_LOG_COLUMNS, value: string | undefined | null): string | null => {
    if (value === undefined || value === null) return null;
    const text = String(value);
    const max = FAILOVER_LOG_COLUMNS[column];
    if (characters(text) <= max) return text;
    truncated[column] = { length: characters(text), value: clip(text, 4096) };
    return clip(text, max);
  };
  const row = [
    fit('from_region', r.fromRegion),
    fit('to_region', r.toRegion),
    sqlTime(r.at),
    fit('operator', r.operator),
    fit('reason', r.reason),
    fit('status', r.status),
    fit('cluster', r.cluster),
    fit('incident_id', r.incidentId),
    fit('workflow_id', r.workflowId),
    fit('run_id', r.runId),
    fit('runbook', r.runbook),
    fit('step', r.step),
    r.stepSeq,
    r.subStep ?? 0,
    r.attempt ?? null,
  ];
  const detail: Record<string, unknown> | undefined = Object.keys(truncated).length ? { ...r.detail, truncated } : r.detail;
  let json = detail === undefined ? null : JSON.stringify(detail);
  if (json !== null && json.length > MAX_DETAIL_CHARS) json = JSON.stringify({ detailTooLarge: { length: json.length, start: json.slice(0, 64 * 1024) } });
  return { values: [...row, json], truncated: Object.keys(truncated) };
}

const AUDIT_INSERT = `INSERT INTO failover_log
       (from_region, to_region, switch_time, operator, reason, status, cluster, incident_id,
        workflow_id, run_id, runbook, step, step_seq, sub_step, attempt, detail)
     VALUES `;
const AUDIT_PLACEHOLDERS = '(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)';

async function insertValues(conn: Conn, rows: AuditValues[]): Promise<void> {
  await query(conn, `${AUDIT_INSERT}${rows.map(() => AUDIT_PLACEHOLDERS).join(', ')} ON DUPLICATE KEY UPDATE id = id`, rows.flat());
}

/**
 * Where a row the database refuses goes instead: the same key (workflow, run, step sequence,
 * status), so the trail shows which step state is missing and a retry stays idempotent, and none
 * of the row's own text in a column; what it held is kept in `detail.unwritable`.
 */
function placeholderValues(r: AuditRow, error: string): AuditValues {
  const time = Number.isFinite(r.at) ? r.at : Date.now();
  const seq = Number.isInteger(r.stepSeq) && Math.abs(r.stepSeq) < 2 ** 31 ? r.stepSeq : null;
  let original: string;
  try {
    original = clip(JSON.stringify(r), 16 * 1024);
  } catch {
    original = '(not serialisable)';
  }
  return [
    null, null, sqlTime(time), null, null, clip(String(r.status), FAILOVER_LOG_COLUMNS.status), clip(String(r.cluster ?? ''), FAILOVER_LOG_COLUMNS.cluster),
    null, clip(String(r.workflowId ?? ''), FAILOVER_LOG_COLUMNS.workflow_id), clip(String(r.runId ?? ''), FAILOVER_LOG_COLUMNS.run_id),
    clip(String(r.runbook ?? ''), FAILOVER_LOG_COLUMNS.runbook), 'audit row not stored as written', seq, Number.isInteger(r.subStep) && r.subStep! >= 0 && r.subStep! < 256 ? r.subStep! : 0, null,
    JSON.stringify({ unwritable: { error: clip(error, 1000), row: original } }),
  ];
}

/**
 * Insert audit rows exactly once. The unique key (workflow_id, run_id, step_seq, status) turns a
 * retried or replayed write into a no-op, so an activity that runs twice never duplicates a row.
 * One row can never block the others: over-long text is cut to its column, and a row the server
 * still refuses (a data error, a constraint) is replaced by a placeholder that says why, and
 * reported. Only errors that are not the row's (the database is down, read-only, not migrated)
 * are thrown, so the activity retries them.
 */
export async function insertAuditRows(conn: Conn, rows: AuditRow[]): Promise<AuditWriteReport> {
  const report: AuditWriteReport = { written: 0, truncated: [], rejected: [] };
  const prepared: { row: AuditRow; values?: AuditValues; error?: string }[] = rows.map((row) => {
    try {
      const { values, truncated } = auditValues(row);
      if (truncated.length) report.truncated.push({ stepSeq: row.stepSeq, step: clip(String(row.step), 200), status: row.status, fields: truncated });
      return { row, values };
    } catch (err) {
      return { row, error: `cannot encode the row: ${(err as Error).message}` }; // e.g. an invalid time
    }
  });
  const reject = async (row: AuditRow, error: string, cause?: unknown) => {
    try {
      await insertValues(conn, [placeholderValues(row, error)]);
    } catch (err) {
      // Not even a placeholder goes in: the trouble is not this row's. Retry the write.
      throw cause ?? err;
    }
    report.rejected.push({ stepSeq: row.stepSeq, step: clip(String(row.step), 200), status: String(row.status), error: clip(error, 500) });
  };
  let chunk: AuditValues[] = [];
  let chunkRows: AuditRow[] = [];
  let size = 0;
  const flush = async () => {
    if (!chunk.length) return;
    try {
      await insertValues(conn, chunk);
    } catch (err) {
      if (!isRowError(err)) throw err;
      // Some row of the statement is refused: find which, one at a time.
      for (let i = 0; i < chunk.length; i++) {
        try {
          await insertValues(conn, [chunk[i]!]);
        } catch (e) {
          if (!isRowError(e)) throw e;
          await reject(chunkRows[i]!, (e as Error).message, e);
        }
      }
    }
    chunk = [];
    chunkRows = [];
    size = 0;
  };
  for (const p of prepared) {
    if (p.values && isRunEnd(p.row)) {
      // A run's end goes in alone and plainly: stored now, or a duplicate key (stored before, so
      // counted before). Only the write that stores it first counts the run (runbook_runs_total).
      await flush();
      try {
        await query(conn, `${AUDIT_INSERT}${AUDIT_PLACEHOLDERS}`, p.values);
        (report.runsEnded ??= []).push({ runbook: String(p.row.runbook), cluster: String(p.row.cluster), outcome: String(p.row.status) });
        continue;
      } catch (err) {
        if ((err as { errno?: number }).errno === 1062) continue;
        if (!isRowError(err)) throw err;
        // Refused for its content: the usual way, which stores a placeholder and reports it.
      }
    }
    if (!p.values) {
      await flush(); // keep the order: rows before it go first
      await reject(p.row, p.error!);
      continue;
    }
    const rowSize = p.values.reduce<number>((n, v) => n + (typeof v === 'string' ? v.length : 8), 0);
    if (chunk.length && size + rowSize > MAX_STATEMENT_CHARS) await flush();
    chunk.push(p.values);
    chunkRows.push(p.row);
    size += rowSize;
  }
  await flush();
  report.written = rows.length - report.rejected.length;
  return report;
}

/** A row of failover_log that is no step of a run: an endpoint refusal, a lock taken over or released. */
export interface LogEvent {
  status: string;
  runbook: string;
  step: string;
  cluster?: string;
  workflowId?: string;
  operator?: string;
  /** Epoch ms; default the time of the write. */
  at?: number;
  detail?: Record<string, unknown>;
}

/** Write one such row, every text cut to its column (as the audit writer does); returns its id. */
export async function insertLogEvent(conn: Conn, e: LogEvent): Promise<number> {
  const fit = (column: keyof typeof FAILOVER_LOG_COLUMNS, v: string | undefined) => (v === undefined ? null : clip(v, FAILOVER_LOG_COLUMNS[column]));
  const r = await query<{ insertId: number }>(
    conn,
    `INSERT INTO failover_log (status, runbook, cluster, step, workflow_id, operator, detail, switch_time)
     VALUES (?, ?, ?, ?, ?, ?, ?, ${e.at === undefined ? 'UTC_TIMESTAMP(3)' : '?'})`,
    [
      fit('status', e.status), fit('runbook', e.runbook), fit('cluster', e.cluster), fit('step', e.step), fit('workflow_id', e.workflowId), fit('operator', e.operator),
      e.detail === undefined ? null : JSON.stringify(e.detail),
      ...(e.at === undefined ? [] : [sqlTime(e.at)]),
    ],
  );
  return Number(r.insertId);
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
  /** 0: the step itself; 1, 2, …: a sub-step reported by the step's activity (migration 9). */
  sub_step?: number;
  status: string;
  attempt: number | null;
  from_region: string | null;
  to_region: string | null;
  operator: string | null;
  reason: string | null;
  detail: unknown;
  logged_at: string;
}

/** Pages of the history: the offset stays an exact integer that LIMIT accepts. */

export async function failoverHistory(conn: Conn, f: HistoryFilter = {}): Promise<HistoryRow[]> {
  const page = f.page ?? 1;
  const pageSize = f.pageSize ?? 20;
  if (!Number.isSafeInteger(page) || page < 1 || page > LOG_PAGES.page) throw new Error(`--page must be a whole number from 1 to ${LOG_PAGES.page}, got ${f.page}`);
  if (!Number.isSafeInteger(pageSize) || pageSize < 1 || pageSize > LOG_PAGES.pageSize) throw new Error(`--page-size must be a whole number from 1 to ${LOG_PAGES.pageSize}, got ${f.pageSize}`);
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

/**
 * The monitor's own rows that its memory is rebuilt from (src/core/monitor.ts recallMonitorMemory):
 * automatic failovers started and ended, acknowledgements, downtimes; every run of its workflow,
 * oldest first. The unique key's leading column (workflow_id) serves the lookup.
 */
export async function monitorMemoryEvents(conn: Conn, workflowId: string): Promise<{ status: string; at: number; detail: Record<string, unknown> }[]> {
  const rows = await query<{ status: string; switch_time: string; detail: unknown }[]>(
    conn,
    `SELECT status, switch_time, detail FROM failover_log
      WHERE workflow_id = ? AND (status IN ('acknowledged', 'downtime') OR (status = 'state_change' AND JSON_EXISTS(detail, '$.incidentId')))
      ORDER BY id`,
    [workflowId],
  );
  return rows.map((r) => ({
    status: r.status,
    at: Date.parse(`${r.switch_time.replace(' ', 'T')}Z`),
    detail: (typeof r.detail === 'string' ? JSON.parse(r.detail) : r.detail) ?? {},
  }));
}

/**
 * Runs waiting for an approval now, per cluster: an approval `requested` row with no decision after
 * it in the same run (approved, rejected, timed out), no end of that run, and not past its own
 * timeout (a run killed while it waited stops counting when its approval would have timed out).
 */
export async function pendingApprovals(conn: Conn): Promise<{ cluster: string; runs: number }[]> {
  const rows = await query<{ cluster: string; runs: string }[]>(
    conn,
    `SELECT r.cluster, COUNT(*) AS runs FROM failover_log r
      WHERE r.status = 'requested' AND r.step = 'approval' AND r.sub_step = 0
        AND r.switch_time + INTERVAL COALESCE(JSON_VALUE(r.detail, '$.timeoutMinutes'), 0) * 60 SECOND > UTC_TIMESTAMP(3)
        AND NOT EXISTS (SELECT 1 FROM failover_log d WHERE d.workflow_id = r.workflow_id AND d.run_id = r.run_id
                          AND d.step_seq > r.step_seq AND d.status IN ('approved', 'rejected', 'timed_out'))
        AND NOT EXISTS (SELECT 1 FROM failover_log e WHERE e.workflow_id = r.workflow_id AND e.run_id = r.run_id
                          AND e.step_seq = 0 AND e.status <> 'started')
      GROUP BY r.cluster`,
  );
  return rows.map((r) => ({ cluster: String(r.cluster ?? ''), runs: Number(r.runs) }));
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
    `SELECT cluster, region, instance, role, status, lag_seconds, last_sync_time, gtid_position, remark, updated_at, last_verified_at, verify_remark
     FROM sync_status ${cluster ? 'WHERE cluster = ?' : ''} ORDER BY cluster, region`,
    cluster ? [cluster] : [],
  );
}

/**
 * Remember a signed Slack request (its signature): false when it was seen before, a replay. The
 * signature's timestamp is kept for pruning; the endpoint refuses stale timestamps anyway.
 */
export async function recordSlackRequest(conn: Conn, signature: string, requestTs: number): Promise<boolean> {
  const r = await query<{ affectedRows: number }>(conn, 'INSERT IGNORE INTO slack_request_seen (signature, request_ts) VALUES (?, ?)', [signature, requestTs]);
  return r.affectedRows === 1;
}

/** Whether an email approval link (its nonce) has been used. */
export async function approvalLinkUsed(conn: Conn, nonce: string): Promise<boolean> {
  return (await query<unknown[]>(conn, 'SELECT 1 FROM approval_link_used WHERE nonce = ?', [nonce])).length > 0;
}

/** Use an email approval link once: false when it was used before (a second click, a replay). */
export async function useApprovalLink(conn: Conn, link: { nonce: string; workflowId: string; approver: string }): Promise<boolean> {
  const r = await query<{ affectedRows: number }>(conn, 'INSERT IGNORE INTO approval_link_used (nonce, workflow_id, approver) VALUES (?, ?, ?)', [link.nonce, link.workflowId, link.approver]);
  return r.affectedRows === 1;
}

/** The run holding a cluster's runbook lock (the `runbook_lock` row), if any. */
export interface LockHolder {
  workflow_id: string;
  runbook: string;
  operator: string;
  acquired_at: string;
}

export async function lockHolder(conn: Conn, cluster: string): Promise<LockHolder | undefined> {
  return (await query<LockHolder[]>(conn, 'SELECT workflow_id, runbook, operator, acquired_at FROM runbook_lock WHERE cluster = ?', [cluster]))[0];
}

/** Take the lock if nobody holds it (a no-op when someone does); returns who holds it now. */
export async function takeLock(conn: Conn, l: { cluster: string; workflowId: string; runbook: string; operator: string }): Promise<LockHolder | undefined> {
  await query(conn, 'INSERT IGNORE INTO runbook_lock (cluster, workflow_id, runbook, operator) VALUES (?, ?, ?, ?)', [l.cluster, l.workflowId, l.runbook, l.operator]);
  return lockHolder(conn, l.cluster);
}

/** Release the lock if `workflowId` holds it (a third run that took it meanwhile keeps it). */
export async function dropLock(conn: Conn, cluster: string, workflowId: string): Promise<void> {
  await query(conn, 'DELETE FROM runbook_lock WHERE cluster = ? AND workflow_id = ?', [cluster, workflowId]);
}

/** Replace the detail of a row insertLogEvent wrote (a refusal count that grew). */
export async function updateLogEventDetail(conn: Conn, id: number, detail: Record<string, unknown>): Promise<void> {
  await query(conn, 'UPDATE failover_log SET detail = ? WHERE id = ?', [JSON.stringify(detail), id]);
}

/** The built-in traffic switch: which instance takes a cluster's writes, for applications and proxies to read. */
export interface WriterEndpoint {
  cluster: string;
  instance: string;
  region: string;
  host: string;
  port: number;
  /** Bumped on every change. */
  generation: number;
  workflowId: string | null;
  incidentId: string | null;
  updatedAt: string;
}

interface WriterEndpointRow {
  cluster: string;
  instance: string;
  region: string;
  host: string;
  port: number | string;
  generation: number | string;
  workflow_id: string | null;
  incident_id: string | null;
  updated_at: string;
}

async function selectWriterEndpoint(conn: Conn, cluster: string, forUpdate: boolean): Promise<WriterEndpoint | null> {
  const rows = await query<WriterEndpointRow[]>(
    conn,
    `SELECT cluster, instance, region, host, port, generation, workflow_id, incident_id, updated_at
     FROM writer_endpoint WHERE cluster = ?${forUpdate ? ' FOR UPDATE' : ''}`,
    [cluster],
  );
  const r = rows[0];
  if (!r) return null;
  return {
    cluster: r.cluster,
    instance: r.instance,
    region: r.region,
    host: r.host,
    port: Number(r.port),
    generation: Number(r.generation),
    workflowId: r.workflow_id,
    incidentId: r.incident_id,
    updatedAt: r.updated_at,
  };
}

/** The cluster's current writer per the built-in switch, or null if it was never set. */
export async function readWriterEndpoint(conn: Conn, cluster: string): Promise<WriterEndpoint | null> {
  return selectWriterEndpoint(conn, cluster, false);
}

/**
 * Point the cluster's writer endpoint at an instance. Idempotent: a row already naming it changes
 * nothing (generation included). The row lock serialises two runs switching one cluster at once.
 */
export async function writeWriterEndpoint(
  conn: Conn,
  e: { cluster: string; instance: string; region: string; host: string; port: number; workflowId: string; incidentId?: string },
): Promise<{ changed: boolean; generation: number; previous: string | null }> {
  await query(conn, 'START TRANSACTION');
  try {
    const current = await selectWriterEndpoint(conn, e.cluster, true);
    if (current?.instance === e.instance) {
      await query(conn, 'COMMIT');
      return { changed: false, generation: current.generation, previous: current.instance };
    }
    await query(
      conn,
      `INSERT INTO writer_endpoint (cluster, instance, region, host, port, generation, workflow_id, incident_id)
       VALUES (?, ?, ?, ?, ?, 1, ?, ?)
       ON DUPLICATE KEY UPDATE instance = VALUES(instance), region = VALUES(region), host = VALUES(host),
         port = VALUES(port), generation = generation + 1, workflow_id = VALUES(workflow_id),
         incident_id = VALUES(incident_id)`,
      [e.cluster, e.instance, e.region, e.host, e.port, e.workflowId, e.incidentId ?? null],
    );
    const after = await selectWriterEndpoint(conn, e.cluster, true);
    await query(conn, 'COMMIT');
    return { changed: true, generation: after!.generation, previous: current?.instance ?? null };
  } catch (err) {
    await query(conn, 'ROLLBACK').catch(() => undefined);
    throw err;
  }
}


// ---------------------------------------------------------------------------------------------
// The consistency runbook: chunk results, differences and their plan, the manual queue, the
// repaired rows' audit, replicas held at a position, and each region's last verified time.
// ---------------------------------------------------------------------------------------------

/** Which run rows belong to: the run's first execution run id (stable across continue-as-new) and its workflow id. */
export interface CheckRef {
  checkId: string;
  workflowId: string;
}

export interface StoredChunk {
  table: string;
  index: number;
  lower: unknown[] | null;
  upper: unknown[] | null;
  sourceInstance: string;
  sourceRows: number;
  sourceDigest: string;
  targets: { instance: string; rows: number; digest: string; equal: boolean }[];
  /** Replication: the one GTID position every copy was read at. */
  position?: string;
  /** Across regions: each side's own. */
  positions?: Record<string, string>;
  sizer: unknown;
  chunkMs: number;
  pausedMs?: number;
  differing: boolean;
}

const json = (v: unknown) => (v === undefined || v === null ? null : JSON.stringify(v));
const parsed = <T>(v: unknown): T => (typeof v === 'string' ? (JSON.parse(v) as T) : (v as T));

/** Store one compared chunk (again, on a retry: the newer result wins). */
export async function saveChunk(conn: Conn, run: CheckRef, c: StoredChunk): Promise<void> {
  await query(
    conn,
    `INSERT INTO consistency_chunk (check_id, workflow_id, table_name, chunk_index, lower_key, upper_key, source_instance, source_rows, source_digest, targets, position, positions, sizer, chunk_ms, paused_ms, differing)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
     ON DUPLICATE KEY UPDATE lower_key = VALUES(lower_key), upper_key = VALUES(upper_key), source_rows = VALUES(source_rows), source_digest = VALUES(source_digest),
       targets = VALUES(targets), position = VALUES(position), positions = VALUES(positions), sizer = VALUES(sizer), chunk_ms = VALUES(chunk_ms), paused_ms = VALUES(paused_ms),
       differing = VALUES(differing), checked_at = CURRENT_TIMESTAMP(3)`,
    [
      run.checkId, run.workflowId, c.table, c.index, json(c.lower), json(c.upper), c.sourceInstance, c.sourceRows, c.sourceDigest, json(c.targets),
      c.position ?? null, json(c.positions), json(c.sizer), Math.round(c.chunkMs), c.pausedMs === undefined ? null : Math.round(c.pausedMs), c.differing ? 1 : 0,
    ],
  );
}

/** The chunks of a table stored from `fromIndex` on, in order. */
export async function chunksFrom(conn: Conn, checkId: string, table: string, fromIndex = 0): Promise<StoredChunk[]> {
  const rows = await query<Record<string, unknown>[]>(
    conn,
    'SELECT * FROM consistency_chunk WHERE check_id = ? AND table_name = ? AND chunk_index >= ? ORDER BY chunk_index',
    [checkId, table, fromIndex],
  );
  return rows.map((r) => ({
    table: String(r.table_name),
    index: Number(r.chunk_index),
    lower: parsed(r.lower_key),
    upper: parsed(r.upper_key),
    sourceInstance: String(r.source_instance),
    sourceRows: Number(r.source_rows),
    sourceDigest: String(r.source_digest),
    targets: parsed(r.targets),
    ...(r.position === null ? {} : { position: String(r.position) }),
    ...(r.positions === null ? {} : { positions: parsed(r.positions) }),
    sizer: parsed(r.sizer),
    chunkMs: Number(r.chunk_ms),
    ...(r.paused_ms === null ? {} : { pausedMs: Number(r.paused_ms) }),
    differing: Number(r.differing) === 1,
  }));
}

/** Every chunk of a run (the benchmark's chunk times and holds). */
export async function chunkTimings(conn: Conn, checkId: string): Promise<{ table: string; index: number; rows: number; chunkMs: number; pausedMs: number | null }[]> {
  const rows = await query<Record<string, unknown>[]>(conn, 'SELECT table_name, chunk_index, source_rows, chunk_ms, paused_ms FROM consistency_chunk WHERE check_id = ? ORDER BY table_name, chunk_index', [checkId]);
  return rows.map((r) => ({ table: String(r.table_name), index: Number(r.chunk_index), rows: Number(r.source_rows), chunkMs: Number(r.chunk_ms), pausedMs: r.paused_ms === null ? null : Number(r.paused_ms) }));
}

export interface StoredDifference {
  table: string;
  instance: string;
  keyHash: string;
  key: unknown[];
  kind: 'missing' | 'extra' | 'changed';
  columns: string[];
  chunkIndex: number;
  lower: unknown[] | null;
  upper: unknown[] | null;
  position?: string;
  sourceInstance: string;
  sourceDigest: string | null;
  targetDigest: string | null;
  sourceImage: Record<string, unknown> | null;
  targetImage: Record<string, unknown> | null;
  /** Filled by the repair plan. */
  policy?: string;
  decision?: 'repair' | 'queue';
  winner?: string;
  writes?: { instance: string; op: 'write' | 'delete'; logged: boolean }[];
  reason?: string;
}

/** Store confirmed differences (a retried chunk replaces them with what it saw). */
export async function saveDifferences(conn: Conn, run: CheckRef, rows: StoredDifference[]): Promise<void> {
  for (const d of rows) {
    await query(
      conn,
      `INSERT INTO consistency_diff (check_id, workflow_id, table_name, instance, key_hash, key_value, kind, differing_columns, chunk_index, lower_key, upper_key, position,
         source_instance, source_digest, target_digest, source_image, target_image)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON DUPLICATE KEY UPDATE kind = VALUES(kind), differing_columns = VALUES(differing_columns), chunk_index = VALUES(chunk_index), lower_key = VALUES(lower_key),
         upper_key = VALUES(upper_key), position = VALUES(position), source_digest = VALUES(source_digest), target_digest = VALUES(target_digest),
         source_image = VALUES(source_image), target_image = VALUES(target_image), found_at = CURRENT_TIMESTAMP(3)`,
      [
        run.checkId, run.workflowId, d.table, d.instance, d.keyHash, json(d.key), d.kind, json(d.columns), d.chunkIndex, json(d.lower), json(d.upper), d.position ?? null,
        d.sourceInstance, d.sourceDigest, d.targetDigest, json(d.sourceImage), json(d.targetImage),
      ],
    );
  }
}

/** A run's differences, in table, key and copy order (a page of them: `limit` rows after `after`). */
export async function differencesOf(conn: Conn, checkId: string, o: { table?: string; limit?: number; offset?: number } = {}): Promise<StoredDifference[]> {
  const rows = await query<Record<string, unknown>[]>(
    conn,
    `SELECT * FROM consistency_diff WHERE check_id = ?${o.table ? ' AND table_name = ?' : ''} ORDER BY table_name, chunk_index, key_hash, instance LIMIT ? OFFSET ?`,
    [checkId, ...(o.table ? [o.table] : []), o.limit ?? 1_000_000, o.offset ?? 0],
  );
  return rows.map((r) => ({
    table: String(r.table_name),
    instance: String(r.instance),
    keyHash: String(r.key_hash),
    key: parsed(r.key_value),
    kind: String(r.kind) as StoredDifference['kind'],
    columns: parsed(r.differing_columns) ?? [],
    chunkIndex: Number(r.chunk_index),
    lower: parsed(r.lower_key),
    upper: parsed(r.upper_key),
    ...(r.position === null ? {} : { position: String(r.position) }),
    sourceInstance: String(r.source_instance),
    sourceDigest: r.source_digest === null ? null : String(r.source_digest),
    targetDigest: r.target_digest === null ? null : String(r.target_digest),
    sourceImage: parsed(r.source_image),
    targetImage: parsed(r.target_image),
    ...(r.decision === null ? {} : { policy: String(r.policy), decision: String(r.decision) as 'repair' | 'queue', winner: r.winner === null ? undefined : String(r.winner), writes: parsed(r.writes), reason: String(r.reason) }),
  }));
}

/** The repair plan's decision for each difference. */
export async function saveDecisions(conn: Conn, checkId: string, rows: Pick<StoredDifference, 'table' | 'instance' | 'keyHash' | 'policy' | 'decision' | 'winner' | 'writes' | 'reason'>[]): Promise<void> {
  for (const d of rows) {
    await query(conn, 'UPDATE consistency_diff SET policy = ?, decision = ?, winner = ?, writes = ?, reason = ? WHERE check_id = ? AND table_name = ? AND instance = ? AND key_hash = ?', [
      d.policy ?? null, d.decision ?? null, d.winner ?? null, json(d.writes), d.reason === undefined ? null : clip(d.reason, 255), checkId, d.table, d.instance, d.keyHash,
    ]);
  }
}

/** Put differences a person must decide in the queue (once each). */
export async function queueConflicts(conn: Conn, run: CheckRef & { cluster: string }, rows: StoredDifference[]): Promise<number> {
  let added = 0;
  for (const d of rows) {
    const r = await query<{ affectedRows: number }>(
      conn,
      `INSERT IGNORE INTO consistency_conflict (cluster, workflow_id, check_id, table_name, instance, key_hash, key_value, kind, differing_columns, source_instance, source_image, target_image, policy, reason)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      [run.cluster, run.workflowId, run.checkId, d.table, d.instance, d.keyHash, json(d.key), d.kind, json(d.columns), d.sourceInstance, json(d.sourceImage), json(d.targetImage), d.policy ?? 'manual', clip(d.reason ?? 'a person decides', 255)],
    );
    added += Number(r.affectedRows);
  }
  return added;
}

export async function conflictsOf(conn: Conn, checkId: string): Promise<Record<string, unknown>[]> {
  return query(conn, 'SELECT * FROM consistency_conflict WHERE check_id = ? ORDER BY table_name, key_hash, instance', [checkId]);
}

export interface RepairAuditRow {
  table: string;
  writtenOn: string;
  logged: boolean;
  keyHash: string;
  key: unknown[];
  op: 'write' | 'delete';
  policy: string;
  winner: string;
  beforeImage: Record<string, unknown> | null;
  afterImage: Record<string, unknown> | null;
  position?: string;
}

/** The audit of rows about to be written, before the write commits (kept as first written on a retry). */
export async function recordRepairsPending(conn: Conn, run: CheckRef & { cluster: string; operator: string }, rows: RepairAuditRow[]): Promise<void> {
  for (const r of rows) {
    await query(
      conn,
      `INSERT IGNORE INTO consistency_repair (cluster, workflow_id, check_id, table_name, written_on, logged, key_hash, key_value, op, policy, winner, before_image, after_image, position, operator, status)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending')`,
      [run.cluster, run.workflowId, run.checkId, r.table, r.writtenOn, r.logged ? 1 : 0, r.keyHash, json(r.key), r.op, r.policy, r.winner, json(r.beforeImage), json(r.afterImage), r.position ?? null, clip(run.operator, 64)],
    );
  }
}

export async function markRepairsApplied(conn: Conn, checkId: string, table: string, writtenOn: string, keyHashes: string[]): Promise<void> {
  for (let i = 0; i < keyHashes.length; i += 500) {
    const part = keyHashes.slice(i, i + 500);
    await query(
      conn,
      `UPDATE consistency_repair SET status = 'applied', applied_at = COALESCE(applied_at, UTC_TIMESTAMP(3)) WHERE check_id = ? AND table_name = ? AND written_on = ? AND key_hash IN (${part.map(() => '?').join(', ')})`,
      [checkId, table, writtenOn, ...part],
    );
  }
}

export async function repairsOf(conn: Conn, checkId: string): Promise<Record<string, unknown>[]> {
  return query(conn, 'SELECT * FROM consistency_repair WHERE check_id = ? ORDER BY table_name, written_on, key_hash', [checkId]);
}

export interface Hold {
  cluster: string;
  instance: string;
  checkId: string;
  workflowId: string;
  heldAt?: string;
}

/** Record that this run is about to hold a replica; who holds it, when another run already does. */
export async function recordHold(conn: Conn, h: Hold): Promise<Hold | undefined> {
  await query(conn, 'INSERT IGNORE INTO consistency_hold (cluster, instance, check_id, workflow_id) VALUES (?, ?, ?, ?)', [h.cluster, h.instance, h.checkId, h.workflowId]);
  const [holder] = await holdsOf(conn, h.cluster, h.instance);
  return holder && holder.checkId !== h.checkId ? holder : undefined;
}

export async function releaseHold(conn: Conn, h: Pick<Hold, 'cluster' | 'instance' | 'checkId'>): Promise<void> {
  await query(conn, 'DELETE FROM consistency_hold WHERE cluster = ? AND instance = ? AND check_id = ?', [h.cluster, h.instance, h.checkId]);
}

export async function holdsOf(conn: Conn, cluster: string, instance?: string): Promise<Hold[]> {
  const rows = await query<Record<string, unknown>[]>(
    conn,
    `SELECT cluster, instance, check_id, workflow_id, held_at FROM consistency_hold WHERE cluster = ?${instance ? ' AND instance = ?' : ''} ORDER BY instance`,
    [cluster, ...(instance ? [instance] : [])],
  );
  return rows.map((r) => ({ cluster: String(r.cluster), instance: String(r.instance), checkId: String(r.check_id), workflowId: String(r.workflow_id), heldAt: String(r.held_at) }));
}

/**
 * A region's consistency result beside its replication state: `verifiedAt` (when it was shown
 * equal to its source) only moves on a clean result; the remark always says the latest. A region
 * sync_status has not seen yet gets a row with status `unknown` (recordSyncStatus fills it).
 */
export async function recordVerified(conn: Conn, v: { cluster: string; region: string; instance: string; verifiedAt?: number; remark: string }): Promise<void> {
  await query(
    conn,
    `INSERT INTO sync_status (cluster, region, status, instance, last_verified_at, verify_remark) VALUES (?, ?, 'unknown', ?, ?, ?)
     ON DUPLICATE KEY UPDATE last_verified_at = COALESCE(VALUES(last_verified_at), last_verified_at), verify_remark = VALUES(verify_remark)`,
    [v.cluster, v.region, v.instance, v.verifiedAt === undefined ? null : sqlTime(v.verifiedAt), clip(v.remark, 255)],
  );
}

/** The check ids a workflow id ran under, newest first (a run id chain each). */
export async function checkIdsOf(conn: Conn, workflowId: string): Promise<string[]> {
  const rows = await query<{ check_id: string }[]>(conn, 'SELECT check_id FROM consistency_chunk WHERE workflow_id = ? GROUP BY check_id ORDER BY MAX(checked_at) DESC', [workflowId]);
  return rows.map((r) => String(r.check_id));
}
