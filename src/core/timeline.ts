/**
 * A run's step timeline from its failover_log rows: one entry per step (its `started` row and the
 * row that ended it folded together), for the CLI's compact view and the status panel's bar chart.
 * Pure: no I/O, no clock.
 */

/** The columns of a failover_log row this needs (HistoryRow has them). */
export interface LogRow {
  switch_time: string;
  workflow_id: string | null;
  run_id: string | null;
  runbook: string | null;
  cluster: string | null;
  incident_id: string | null;
  step: string | null;
  step_seq: number | null;
  status: string;
  attempt: number | null;
  from_region: string | null;
  to_region: string | null;
  operator: string | null;
  reason?: string | null;
  detail: unknown;
}

export interface TimelineStep {
  seq: number | null;
  step: string;
  status: string;
  /** When it started (`YYYY-MM-DD HH:MM:SS.mmm` UTC, as failover_log stores it). */
  at: string;
  /** How long it took; undefined while it runs or for a one-row event. */
  durationMs?: number;
  attempt?: number;
  note: string;
  /** A one-row event (an approval decision, a reminder), not a step that runs. */
  event?: boolean;
}

export interface RunTimeline {
  workflowId: string | null;
  runId: string | null;
  runbook: string;
  cluster: string;
  incidentId: string | null;
  operator: string | null;
  reason: string | null;
  fromRegion: string | null;
  toRegion: string | null;
  /** The run's closing status, or `running` while failover_log has none. */
  status: string;
  startedAt: string;
  endedAt?: string;
  steps: TimelineStep[];
}

/** failover_log's `YYYY-MM-DD HH:MM:SS.mmm` (UTC) as epoch ms. */
export function logTimeMs(t: string): number {
  return Date.parse(`${t.replace(' ', 'T')}Z`);
}

function detailOf(row: LogRow): Record<string, unknown> {
  const d = row.detail;
  if (d === null || d === undefined) return {};
  if (typeof d === 'string') {
    try {
      const parsed = JSON.parse(d);
      return parsed && typeof parsed === 'object' ? (parsed as Record<string, unknown>) : { note: d };
    } catch {
      return { note: d };
    }
  }
  return typeof d === 'object' ? (d as Record<string, unknown>) : {};
}

/** One line of text: no control characters (a note must not move the cursor or start a new line). */
export function oneLine(s: unknown): string {
  // eslint-disable-next-line no-control-regex
  return String(s ?? '').replace(/[\u0000-\u001f\u007f-\u009f]+/g, ' ').trim();
}

function noteOf(row: LogRow): string {
  const d = detailOf(row);
  return oneLine(d.error ?? d.note ?? d.reason ?? '');
}

/** Group rows (any order) into runs, oldest first, each with its steps in order. */
export function runTimelines(rows: LogRow[]): RunTimeline[] {
  const ordered = [...rows].sort((a, b) => (a.switch_time < b.switch_time ? -1 : a.switch_time > b.switch_time ? 1 : 0));
  const runs = new Map<string, { run: RunTimeline; bySeq: Map<number, TimelineStep> }>();
  for (const r of ordered) {
    const key = `${r.workflow_id ?? ''}|${r.run_id ?? ''}`;
    let entry = runs.get(key);
    if (!entry) {
      entry = {
        run: {
          workflowId: r.workflow_id,
          runId: r.run_id,
          runbook: r.runbook ?? '',
          cluster: r.cluster ?? '',
          incidentId: r.incident_id,
          operator: r.operator,
          reason: r.reason ?? null,
          fromRegion: r.from_region,
          toRegion: r.to_region,
          status: 'running',
          startedAt: r.switch_time,
          steps: [],
        },
        bySeq: new Map(),
      };
      runs.set(key, entry);
    }
    const { run, bySeq } = entry;
    if (r.from_region) run.fromRegion = r.from_region;
    if (r.to_region) run.toRegion = r.to_region;
    if (r.step_seq === 0) {
      if (r.status === 'started') run.startedAt = r.switch_time;
      else {
        run.status = r.status;
        run.endedAt = r.switch_time;
      }
      continue;
    }
    const d = detailOf(r);
    const existing = r.step_seq === null ? undefined : bySeq.get(r.step_seq);
    if (existing) {
      existing.status = r.status;
      existing.durationMs = typeof d.durationMs === 'number' ? d.durationMs : logTimeMs(r.switch_time) - logTimeMs(existing.at);
      if (r.attempt !== null) existing.attempt = r.attempt;
      existing.note = noteOf(r) || existing.note;
      continue;
    }
    const step: TimelineStep = { seq: r.step_seq, step: oneLine(r.step ?? ''), status: r.status, at: r.switch_time, attempt: r.attempt ?? undefined, note: noteOf(r) };
    if (r.status !== 'started') step.event = true;
    if (typeof d.durationMs === 'number') step.durationMs = d.durationMs;
    run.steps.push(step);
    if (r.step_seq !== null) bySeq.set(r.step_seq, step);
  }
  return [...runs.values()].map((e) => e.run);
}

/** `s` cut to `width` characters, `…` marking the cut. */
export function clipText(s: string, width: number): string {
  const chars = [...s];
  if (chars.length <= width) return s;
  return width <= 0 ? '' : `${chars.slice(0, width - 1).join('')}…`;
}

const pad = (s: string, width: number) => clipText(s, width).padEnd(width);

function duration(ms: number | undefined): string {
  if (ms === undefined) return '';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const s = Math.round(ms / 1000);
  return s < 3600 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/**
 * The compact view: per run a heading line, then one line per step (time, #, step, status,
 * duration, note), every line at most `width` characters.
 */
export function compactTimeline(rows: LogRow[], width = 120, order: 'oldest-first' | 'newest-first' = 'oldest-first'): string[] {
  const lines: string[] = [];
  const runs = runTimelines(rows);
  if (order === 'newest-first') {
    runs.reverse();
    for (const run of runs) run.steps.reverse();
  }
  for (const run of runs) {
    const regions = run.fromRegion || run.toRegion ? ` · ${run.fromRegion ?? '?'} → ${run.toRegion ?? '?'}` : '';
    const head = [
      `${run.runbook || 'event'} ${run.cluster}`.trim(),
      run.incidentId ? `incident ${run.incidentId}` : '',
      run.operator ? `by ${run.operator}` : '',
      run.status,
      `${run.startedAt.slice(0, 10)} UTC`,
      run.workflowId ?? '',
    ].filter(Boolean).join(' · ');
    lines.push(clipText(`── ${oneLine(head)}${regions}`, width));
    for (const s of run.steps) {
      const status = s.attempt && s.attempt > 1 ? `${s.status} (try ${s.attempt})` : s.status;
      const fixed = `${s.at.slice(11, 23)} ${String(s.seq ?? '-').padStart(3)} ${pad(s.step, 30)} ${pad(status, 16)} ${duration(s.durationMs).padStart(7)}`;
      lines.push(clipText(s.note ? `${fixed}  ${s.note}` : fixed, width));
    }
  }
  return lines;
}
