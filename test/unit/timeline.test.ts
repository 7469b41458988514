import { describe, expect, it } from 'vitest';
import { compactTimeline, runTimelines, type LogRow } from '../../src/core/timeline';

const row = (seq: number, step: string, status: string, at: string, detail: unknown = null, attempt: number | null = null): LogRow => ({
  switch_time: `2026-12-02 ${at}`, workflow_id: 'failover-orders-INC-1', run_id: 'r1', runbook: 'failover', cluster: 'orders', incident_id: 'INC-1',
  step, step_seq: seq, status, attempt, from_region: 'region-a', to_region: 'region-b', operator: 'carol', detail,
});

const rows: LogRow[] = [
  row(0, 'runbook', 'started', '10:00:00.000'),
  row(1, 'fence old primary', 'started', '10:00:00.100'),
  row(1, 'fence old primary', 'succeeded', '10:00:00.350', { durationMs: 250, note: 'read-only at 0-1-42' }, 1),
  row(2, 'wait for catch-up', 'started', '10:00:00.400'),
  row(2, 'wait for catch-up', 'failed', '10:00:03.400', { durationMs: 3000, error: 'x'.repeat(300) + '\n<script>' }, 2),
  row(0, 'runbook', 'failed', '10:00:03.500'),
];

describe('compact timeline', () => {
  it('folds each step into one line, with duration, attempt and note, within the width', () => {
    const lines = compactTimeline(rows, 120);
    expect(lines).toHaveLength(3);
    expect(lines[0]).toMatch(/^── failover orders · incident INC-1 · by carol · failed · 2026-12-02 UTC · failover-orders-INC-1 · region-a → region-b$/);
    expect(lines[1]).toMatch(/^10:00:00\.100 +1 fence old primary +succeeded +250 ms  read-only at 0-1-42$/);
    expect(lines[2]).toMatch(/^10:00:00\.400 +2 wait for catch-up +failed \(try 2\) +3\.0 s  x+…$/);
    for (const l of lines) expect([...l].length).toBeLessThanOrEqual(120);
    expect(lines.join('\n')).not.toContain('\n<script>'); // a note never starts a line of its own
  });

  it('reads newest first for the log, and keeps a running step open', () => {
    const open = rows.slice(0, 4);
    const [run] = runTimelines(open);
    expect(run!.status).toBe('running');
    expect(run!.steps.map((s) => [s.status, s.durationMs])).toEqual([['succeeded', 250], ['started', undefined]]);
    expect(compactTimeline(rows, 120, 'newest-first')[1]).toContain('wait for catch-up');
  });
});
