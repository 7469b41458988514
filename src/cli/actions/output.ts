/** Human output of the CLI: tables for people, `--json` for scripts. */
import Table from 'cli-table3';
import type { HistoryRow } from '../../adapters/control/store';
import type { Sandbox } from '../../adapters/mariadbd/sandbox';
import type { Topology } from '../../core/types';
import { clipText, compactTimeline } from '../../core/timeline';

/** The compact timeline fits this many columns (an 80×24 terminal split in two still reads it with --wide off). */
export const COMPACT_WIDTH = 120;

export function printJson(value: unknown): void {
  console.log(JSON.stringify(value, null, 2));
}

function table(head: string[], rows: (string | number | null | undefined)[][]): string {
  const t = new Table({ head, style: { head: [], border: [] } });
  for (const r of rows) t.push(r.map((v) => (v === null || v === undefined ? '' : String(v))));
  return t.toString();
}

/**
 * The same rows without borders: columns as wide as their widest cell, two spaces apart, each line
 * cut at `width` (the last column, usually free text, is what gets cut).
 */
function compactTable(head: string[], rows: (string | number | null | undefined)[][], width = COMPACT_WIDTH): string {
  const cells = [head, ...rows.map((r) => r.map((v) => (v === null || v === undefined ? '' : String(v))))];
  const widths = head.map((_, c) => Math.max(...cells.map((r) => [...(r[c] ?? '')].length)));
  return cells.map((r) => clipText(r.map((v, c) => (c === r.length - 1 ? v : v.padEnd(widths[c]!))).join('  ').trimEnd(), width)).join('\n');
}

export function printSandboxStatus(sb: Sandbox): void {
  const rows = sb.instances.map((i) => {
    const s = sb.state(i);
    return [i.key, i.region ?? '', `${i.host}:${i.port}`, s.running ? `running (pid ${s.pid})` : 'stopped', i.dir];
  });
  console.log(table(['instance', 'region', 'address', 'state', 'datadir'], rows));
}

/** The live topology: a bordered table with the server version (`wide`), or one line per instance in 120 columns. */
export function printTopology(t: Topology, wide = true): void {
  console.log(`cluster ${t.cluster}: primary ${t.primary ?? 'NONE'}`);
  const rows = t.instances.map((i) => {
    const r = i.replication;
    return [
      i.instance,
      i.region,
      i.address,
      i.role,
      i.reachable ? (i.readOnly ? 'ON' : 'OFF') : '',
      r ? `${r.sourceInstance ?? `${r.sourceHost}:${r.sourcePort}`} io=${r.ioRunning} sql=${r.sqlRunning}` : '',
      r ? (r.lagSeconds ?? 'NULL') : '',
      i.gtid?.currentPos ?? i.gtid?.executed ?? '',
      i.reachable ? `${i.flavor} ${i.version}` : i.error,
    ];
  });
  const head = ['instance', 'region', 'address', 'role', 'read_only', 'replicates from', 'lag s', 'gtid', 'server'];
  if (wide) console.log(table(head, rows));
  // Compact: the server column only says why an instance is unreachable.
  else console.log(compactTable(head.slice(0, 8).concat('note'), rows.map((r, n) => [...r.slice(0, 8), t.instances[n]!.reachable ? '' : r[8]])));
  if (t.problems.length) console.log(`problems:\n${t.problems.map((p) => `  - ${p}`).join('\n')}`);
  else console.log('no problems found');
}

/**
 * failover_log rows for people: by default the compact timeline (per run, one line per step: time,
 * step, status, duration, note; at most 120 columns); `wide` prints every row with every column.
 */
export function printHistory(rows: HistoryRow[], page: number, wide = false, order: 'oldest-first' | 'newest-first' = 'oldest-first'): void {
  if (!rows.length) {
    console.log(page > 1 ? `no rows on page ${page}` : 'failover_log is empty');
    return;
  }
  if (!wide) {
    console.log(compactTimeline(rows, COMPACT_WIDTH, order).join('\n'));
    return;
  }
  console.log(
    table(
      ['time (UTC)', 'cluster', 'runbook', 'incident', '#', 'step', 'status', 'attempt', 'from → to', 'operator', 'detail'],
      rows.map((r) => [
        r.switch_time,
        r.cluster,
        r.runbook,
        r.incident_id,
        r.step_seq,
        r.step,
        r.status,
        r.attempt,
        r.from_region || r.to_region ? `${r.from_region ?? ''} → ${r.to_region ?? ''}` : '',
        r.operator,
        summarizeDetail(r.detail),
      ]),
    ),
  );
}

function summarizeDetail(detail: unknown): string {
  if (detail === null || detail === undefined) return '';
  const d = (typeof detail === 'string' ? JSON.parse(detail) : detail) as Record<string, unknown>;
  const text = (d.error ?? d.note ?? d.reason ?? '') as string;
  const took = typeof d.durationMs === 'number' ? `${d.durationMs} ms` : '';
  return [took, text].filter(Boolean).join(' · ').slice(0, 80);
}

/** sync_status: a bordered table (`wide`), or one line per instance in 120 columns (times of day, UTC). */
export function printSyncStatus(rows: Record<string, unknown>[], wide = true): void {
  if (!rows.length) {
    console.log('sync_status is empty (run a health check or the drill)');
    return;
  }
  if (!wide) {
    const timeOfDay = (v: unknown) => (v ? String(v).slice(11, 19) : '');
    console.log(
      compactTable(
        ['cluster', 'region', 'instance', 'role', 'status', 'lag s', 'in sync', 'updated', 'remark (times UTC)'],
        rows.map((r) => [r.cluster, r.region, r.instance, r.role, r.status, r.lag_seconds, timeOfDay(r.last_sync_time), timeOfDay(r.updated_at), String(r.remark ?? '')]) as never,
      ),
    );
    return;
  }
  console.log(
    table(
      ['cluster', 'region', 'instance', 'role', 'status', 'lag s', 'last in sync (UTC)', 'last verified (UTC)', 'updated (UTC)', 'remark'],
      rows.map((r) => [r.cluster, r.region, r.instance, r.role, r.status, r.lag_seconds, r.last_sync_time, r.last_verified_at ?? '', r.updated_at, String(r.remark ?? '').slice(0, 60)]) as never,
    ),
  );
}
