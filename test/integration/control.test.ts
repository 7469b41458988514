/** The control schema against a real MariaDB: seed queries still run, upserts update, history pages. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { failoverHistory, insertAuditRows, listSyncStatus, migrateControl, upsertSyncStatus, withControl } from '../../src/adapters/control/store';
import type { Conn } from '../../src/adapters/mysql/connect';
import { MIGRATIONS } from '../../src/adapters/control/migrations';
import { INPUT_LIMITS } from '../../src/core/inputs';
import { connectControl } from '../../src/adapters/control/store';
import type { AuditRow } from '../../src/core/types';
import { Sandbox } from '../../src/adapters/mariadbd/sandbox';
import { testSandboxConfig } from '../support/sandbox';

describe('control schema', () => {
  const config = testSandboxConfig('control', 24200);
  const sandbox = new Sandbox(config);
  let conn: Conn;

  beforeAll(async () => {
    await sandbox.up();
    expect(await migrateControl(config)).toEqual(MIGRATIONS.map((m) => m.version));
    conn = await connectControl(config);
  });
  afterAll(async () => {
    conn?.destroy();
    await sandbox.destroy();
  });

  it('migrations are recorded and a second run applies nothing', async () => {
    expect(await migrateControl(config)).toEqual([]);
    const [rows] = await conn.query('SELECT version FROM schema_migrations');
    expect(rows).toEqual(MIGRATIONS.map((m) => ({ version: m.version })));
  });

  it('the edge limits on operator input are the real sizes of the columns it is written to', async () => {
    const [rows] = await conn.query(
      "SELECT COLUMN_NAME AS name, CHARACTER_MAXIMUM_LENGTH AS size FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'failover_log' AND CHARACTER_MAXIMUM_LENGTH IS NOT NULL AND DATA_TYPE = 'varchar'",
    );
    const size = Object.fromEntries((rows as { name: string; size: number }[]).map((r) => [r.name, Number(r.size)]));
    expect({ reason: size.reason, identity: size.operator, incidentId: size.incident_id, workflowId: size.workflow_id }).toEqual({
      reason: INPUT_LIMITS.reason, identity: INPUT_LIMITS.identity, incidentId: INPUT_LIMITS.incidentId, workflowId: INPUT_LIMITS.workflowId,
    });
  });

  it("runs the seed's own statements unchanged (000 §3.1-3.4)", async () => {
    await conn.query('INSERT INTO failover_log (from_region, to_region, operator, reason, status) VALUES (?, ?, ?, ?, ?)', [
      'region-a', 'region-b', 'alice', 'seed-style switch', 'success',
    ]);
    const [history] = await conn.query('SELECT * FROM failover_log ORDER BY switch_time DESC LIMIT ?, ?', [0, 10]);
    expect(history).toMatchObject([{ from_region: 'region-a', to_region: 'region-b', operator: 'alice', status: 'success' }]);

    const seedUpsert = `INSERT INTO sync_status (region, last_sync_time, status, remark)
      VALUES (?, ?, ?, ?)
      ON DUPLICATE KEY UPDATE last_sync_time = VALUES(last_sync_time), status = VALUES(status), remark = VALUES(remark), updated_at = NOW()`;
    await conn.query(seedUpsert, ['region-x', '2026-01-01 00:00:00', 'ok', 'first']);
    await conn.query(seedUpsert, ['region-x', '2026-01-01 00:05:00', 'delayed', 'second']);
    const [sync] = await conn.query("SELECT region, status, remark, last_sync_time FROM sync_status WHERE region = 'region-x'");
    // The seed's table had no unique key, so this was two rows; with (cluster, region) it is one.
    expect(sync).toEqual([{ region: 'region-x', status: 'delayed', remark: 'second', last_sync_time: '2026-01-01 00:05:00.000' }]);
    await conn.query("SELECT * FROM sync_status ORDER BY region");
  });

  it('upsertSyncStatus updates the existing (cluster, region) row and keeps the last in-sync time', async () => {
    await upsertSyncStatus(conn, { cluster: 'orders', region: 'region-b', status: 'in_sync', lastSyncTime: Date.UTC(2026, 0, 1), instance: 'orders-b', lagSeconds: 0 });
    await upsertSyncStatus(conn, { cluster: 'orders', region: 'region-b', status: 'lagging', instance: 'orders-b', lagSeconds: 42, remark: 'SQL thread slow' });
    const rows = await listSyncStatus(conn, 'orders');
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ region: 'region-b', status: 'lagging', lag_seconds: 42, remark: 'SQL thread slow', last_sync_time: '2026-01-01 00:00:00.000' });
  });

  it('writes audit rows exactly once, however often the write is retried', async () => {
    const row = (seq: number, status: AuditRow['status'], at: number): AuditRow => ({
      workflowId: 'wf-1', runId: 'run-1', runbook: 'failover', cluster: 'orders', incidentId: 'INC-1', operator: 'bob',
      step: `step ${seq}`, stepSeq: seq, status, at, attempt: 1, detail: { n: seq },
    });
    const batch = [row(1, 'started', 1000), row(1, 'succeeded', 2000), row(2, 'started', 3000)];
    await insertAuditRows(conn, batch);
    await insertAuditRows(conn, batch); // a retried activity attempt
    await insertAuditRows(conn, [row(2, 'started', 3000), row(2, 'failed', 4000)]);
    const rows = await failoverHistory(conn, { workflowId: 'wf-1', pageSize: 100 });
    expect(rows.map((r) => [r.step_seq, r.status])).toEqual([[2, 'failed'], [2, 'started'], [1, 'succeeded'], [1, 'started']]);
    expect(rows[0]).toMatchObject({ cluster: 'orders', incident_id: 'INC-1', run_id: 'run-1', runbook: 'failover', switch_time: '1970-01-01 00:00:04.000' });
    expect(rows[0]!.detail).toEqual({ n: 2 });
  });

  it("a run's end is reported by the write that stores it first, and by no retry of it (runbook_runs_total counts it once)", async () => {
    const row = (seq: number, step: string, status: AuditRow['status'], at: number): AuditRow => ({
      workflowId: 'wf-end', runId: 'run-1', runbook: 'failover', cluster: 'orders', operator: 'bob', step, stepSeq: seq, status, at,
    });
    const batch = [row(0, 'runbook', 'started', 1000), row(1, 'approval', 'rejected', 2000), row(0, 'runbook', 'rejected', 3000), row(0, 'runbook', 'continued', 3000)];
    expect((await insertAuditRows(conn, batch)).runsEnded).toEqual([{ runbook: 'failover', cluster: 'orders', outcome: 'rejected' }]);
    const again = await insertAuditRows(conn, batch); // a retried activity attempt
    expect(again.runsEnded).toBeUndefined();
    expect(again.written).toBe(4);
    const rows = await failoverHistory(conn, { workflowId: 'wf-end', pageSize: 100 });
    expect(rows.map((r) => [r.step_seq, r.status]).sort()).toEqual([[0, 'continued'], [0, 'rejected'], [0, 'started'], [1, 'rejected']]);
  });

  it('one row the database cannot store never blocks the rows queued with it: cut to fit, or a placeholder that says why', async () => {
    // A schema the engine did not write (a DBA's trigger, a constraint) may refuse a row outright.
    await conn.query(
      "CREATE TRIGGER refuse_poison BEFORE INSERT ON failover_log FOR EACH ROW IF NEW.step = 'poison' THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'refused by a trigger'; END IF",
    );
    try {
      const row = (seq: number, over: Partial<AuditRow> = {}): AuditRow => ({
        workflowId: 'wf-long', runId: 'r', runbook: 'failover', cluster: 'orders', step: `step ${seq}`, stepSeq: seq, status: 'succeeded', at: Date.UTC(2026, 0, 1, 0, 0, seq), ...over,
      });
      const longReason = 'r'.repeat(300);
      const batch = [
        row(1),
        row(2, { reason: longReason, operator: 'o'.repeat(200), incidentId: 'i'.repeat(100), step: `approve by ${'a'.repeat(200)} via cli` }),
        row(3, { step: 'poison', detail: { keep: 'me' } }),
        row(4, { at: Number.NaN }),
        row(5),
      ];
      const report = await insertAuditRows(conn, batch);
      expect(report.written).toBe(3);
      expect(report.truncated).toEqual([{ stepSeq: 2, step: expect.stringContaining('approve by'), status: 'succeeded', fields: ['operator', 'reason', 'incident_id', 'step'] }]);
      expect(report.rejected.map((r) => [r.stepSeq, r.error])).toEqual([
        [3, 'refused by a trigger'],
        [4, expect.stringContaining('cannot encode the row')],
      ]);
      // A retried write (the activity's next attempt) adds nothing and refuses nothing new.
      expect((await insertAuditRows(conn, batch)).rejected).toHaveLength(2);

      const rows = (await failoverHistory(conn, { workflowId: 'wf-long', pageSize: 100 })).sort((a, b) => a.step_seq! - b.step_seq!);
      expect(rows.map((r) => [r.step_seq, r.status])).toEqual([[1, 'succeeded'], [2, 'succeeded'], [3, 'succeeded'], [4, 'succeeded'], [5, 'succeeded']]);
      const cut = rows[1]!;
      expect(cut.reason).toHaveLength(255);
      expect(cut.reason!.endsWith('…[truncated]')).toBe(true);
      expect(cut.operator!.endsWith('…[truncated]')).toBe(true);
      expect((cut.detail as { truncated: Record<string, { length: number; value: string }> }).truncated.reason).toEqual({ length: 300, value: longReason });
      expect(rows[2]).toMatchObject({ step: 'audit row not stored as written', detail: { unwritable: { error: 'refused by a trigger', row: expect.stringContaining('"keep":"me"') } } });
      expect(rows[3]).toMatchObject({ step: 'audit row not stored as written' });
    } finally {
      await conn.query('DROP TRIGGER IF EXISTS refuse_poison');
    }
  });

  it('pages the history newest first, filtered by cluster and incident', async () => {
    const rows: AuditRow[] = Array.from({ length: 7 }, (_, i) => ({
      workflowId: 'wf-page', runId: 'r', runbook: 'failover', cluster: 'pages', incidentId: i < 5 ? 'INC-P' : 'INC-Q',
      step: `s${i}`, stepSeq: i + 1, status: 'succeeded', at: Date.UTC(2026, 5, 1, 12, 0, i),
    }));
    await insertAuditRows(conn, rows);
    const page1 = await failoverHistory(conn, { cluster: 'pages', page: 1, pageSize: 3 });
    const page2 = await failoverHistory(conn, { cluster: 'pages', page: 2, pageSize: 3 });
    const page3 = await failoverHistory(conn, { cluster: 'pages', page: 3, pageSize: 3 });
    expect([page1, page2, page3].map((p) => p.map((r) => r.step))).toEqual([['s6', 's5', 's4'], ['s3', 's2', 's1'], ['s0']]);
    const incident = await failoverHistory(conn, { incidentId: 'INC-Q' });
    expect(incident.map((r) => r.step)).toEqual(['s6', 's5']);
    await expect(failoverHistory(conn, { page: 0 })).rejects.toThrow('--page must be a whole number from 1 to 1000000000, got 0');
  });

  it('the history queries have an index to use (cluster or incident, then time)', async () => {
    // possible_keys, not key: on a table this small the optimizer rightly prefers a scan.
    const plan = async (where: string) => {
      const [rows] = await conn.query(`EXPLAIN SELECT * FROM failover_log WHERE ${where} = 'x' ORDER BY switch_time DESC, id DESC LIMIT 0, 20`);
      return String((rows as { possible_keys: string }[])[0]!.possible_keys).split(',');
    };
    expect(await plan('cluster')).toContain('idx_cluster_time');
    expect(await plan('incident_id')).toContain('idx_incident');
    expect(await plan('workflow_id')).toContain('uq_step_event');
  });

  it('withControl reports an unreachable control database as an error', async () => {
    await sandbox.stopInstance('control');
    await expect(withControl(config, async () => 1, 1000)).rejects.toThrow(/ECONNREFUSED|connect/);
  });
});
