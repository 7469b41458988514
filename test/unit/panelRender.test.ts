import { describe, expect, it } from 'vitest';
import type { PanelView } from '../../src/server/panel/data';
import { ganttBars, lagPath, renderPanel } from '../../src/server/panel/render';
import { runTimelines, type LogRow } from '../../src/core/timeline';

const evil = '<script>alert(1)</script>"\'><img src=x onerror=alert(2)>';
const row = (seq: number, step: string, status: string, at: string, detail: unknown = null): LogRow => ({
  switch_time: `2026-12-02 ${at}`, workflow_id: `wf-${evil}`, run_id: 'r1', runbook: 'failover', cluster: 'orders', incident_id: 'INC-1',
  step, step_seq: seq, status, attempt: null, from_region: 'region-a', to_region: 'region-b', operator: evil, reason: evil, detail,
});
const run = runTimelines([row(0, 'runbook', 'started', '10:00:00.000'), row(1, evil, 'started', '10:00:00.100'), row(1, evil, 'failed', '10:00:01.100', { durationMs: 1000, error: evil })])[0]!;

const view: PanelView = {
  generatedAt: Date.UTC(2026, 11, 2, 10, 0, 2),
  problems: [evil],
  clusters: [{
    name: 'orders', primary: evil, primaryRegion: 'region-a', regions: ['region-a'],
    instances: [{ instance: evil, region: 'region-a', role: 'primary', reachable: true, readOnly: false, source: evil, lagSeconds: 1, gtid: evil, error: '' }],
    problems: [evil], sync: [{ region: 'region-a', instance: evil, role: 'primary', status: 'in_sync', lagSeconds: '0', lastInSync: '', remark: evil }],
    writer: { instance: evil, region: 'region-a', address: evil, generation: 1 }, lastFailover: { workflowId: evil, status: 'succeeded', at: '', route: evil, rtoMs: 1200, rpo: evil },
    monitor: { verdict: 'healthy', autoFailover: 'auto', intervalSeconds: 5, block: { incidentId: evil, since: '2026-12-02T09:00:00.000Z', running: false }, downtimes: [{ target: 'orders-c', until: '2026-12-02T11:00:00.000Z', reason: evil, by: evil }] },
  }],
  incidents: [{ workflowId: `wf-${evil}`, runId: evil, runbook: 'failover', cluster: 'orders', incidentId: evil, operator: evil, status: 'running', temporalStatus: 'RUNNING', startedAt: '', reason: evil, uiLink: `http://ui/"${evil}`, timeline: run, currentStep: evil }],
  approvals: [{ workflowId: evil, cluster: 'orders', runbook: 'failover', requester: evil, approvers: [evil], fourEyes: true, channels: [{ name: evil, via: ['cli'] }], deadline: null }],
  lag: [{ cluster: 'orders', instance: evil, samples: [{ at: Date.UTC(2026, 11, 2, 9, 59), lag: 3 }, { at: Date.UTC(2026, 11, 2, 10, 0), lag: null }] }],
};

describe('status panel page', () => {
  it('escapes every value it shows: no markup from a server, the database or an operator', () => {
    const html = renderPanel(view, 'NONCE');
    expect(html).not.toContain('<script>alert');
    expect(html).not.toContain('<img src=x');
    expect(html).not.toContain('"\'>');
    expect(html).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    // The one script is the page's own, under the nonce.
    expect(html.match(/<script/g)).toHaveLength(1);
    expect(html).toContain('<script nonce="NONCE">');
  });

  it("shows the monitor's verdict, its anti-flapping block waiting for ack, and downtimes", () => {
    const html = renderPanel(view, 'NONCE');
    expect(html).toContain('monitor: <b>healthy</b> (every 5 s, automatic failover auto)');
    expect(html).toMatch(/<b>blocked<\/b> after automatic failover <code>&lt;script&gt;.*: waits for runbook ack/);
    expect(html).toContain('downtime of orders-c until 2026-12-02T11:00:00.000Z');
    const none = renderPanel({ ...view, clusters: [{ ...view.clusters[0]!, monitor: null }] }, 'NONCE');
    expect(none).toContain('monitor: <span class="muted">not running</span>');
  });

  it("draws the monitor's lag per replica; without a monitor it says so instead of a chart", () => {
    const html = renderPanel(view, 'NONCE');
    expect(html).toMatch(/class="region lag-chart" data-instance="&lt;script&gt;[^"]*" data-samples="2" data-first-at="1796205540000" data-last-lag=""/);
    expect(html).not.toContain('no monitor runs');
    const none = renderPanel({ ...view, clusters: [{ ...view.clusters[0]!, monitor: null }], lag: [] }, 'NONCE');
    expect(none).toContain('cluster orders: no monitor runs, so no lag history');
    expect(none).not.toContain('lag-chart');
  });

  it('a lag chart spans the last hour, or since the first sample when younger; unknown is a gap', () => {
    const now = view.generatedAt;
    const young = lagPath({ cluster: 'orders', instance: 'c', samples: [{ at: now - 120_000, lag: 0 }, { at: now - 60_000, lag: 4 }, { at: now - 30_000, lag: null }, { at: now, lag: 8 }] }, now, 300, 60);
    expect(young.span).toBe('last 2 min');
    expect(young.max).toBe(8);
    expect(young.points).toEqual(['0,58 150,30', '300,2 302,2']);
    expect(young.lastLag).toBe(8);
    const old = lagPath({ cluster: 'orders', instance: 'c', samples: [{ at: now - 7200_000, lag: 1 }, { at: now, lag: 1 }] }, now, 300, 60);
    expect(old.span).toBe('last hour');
  });

  it('draws one bar per step, placed by start and length', () => {
    const { bars } = ganttBars(run, view.generatedAt, 500);
    expect(bars).toHaveLength(1);
    expect(bars[0]!.x).toBe(45.5); // started 100 ms into a 1.1 s run
    expect(bars[0]!.width).toBe(454.5); // lasted 1 s of it
    expect(bars[0]!.color).toBe('#c62828');
  });
});
