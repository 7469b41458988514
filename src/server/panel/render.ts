/**
 * The status panel's HTML: Eta templates (https://eta.js.org) with auto-escaping on, so every value
 * from a server, the control database or an operator (`<%= %>`) is text, never markup; charts are
 * plain SVG drawn here, server-side (a few rectangles and a polyline need no charting library, and
 * the page then works without JavaScript). One small inline script, allowed by a per-page nonce in
 * the Content-Security-Policy, refreshes the page's content every 2 s; without JavaScript a
 * `<noscript>` meta refresh does the same.
 */
import { Eta } from 'eta';
import { logTimeMs, type RunTimeline } from '../../core/timeline';
import type { LagSeries, PanelView } from './data';

const eta = new Eta({ autoEscape: true, autoTrim: false, useWith: false, cache: true });

const STATUS_COLOR: Record<string, string> = {
  succeeded: '#2e7d32',
  failed: '#c62828',
  started: '#1565c0',
  skipped: '#9e9e9e',
  requested: '#ef6c00',
  approved: '#2e7d32',
  auto_approved: '#2e7d32',
  rejected: '#c62828',
  refused: '#6d4c41',
  timed_out: '#c62828',
  retrying: '#ef6c00',
  needs_attention: '#ad1457',
};

export interface GanttBar {
  y: number;
  x: number;
  width: number;
  color: string;
  label: string;
  title: string;
}

const ms = (n: number | undefined) => (n === undefined ? 'running' : n < 1000 ? `${Math.round(n)} ms` : `${(n / 1000).toFixed(1)} s`);

/** One bar per step, placed by its start and length within the run (a Gantt chart). */
export function ganttBars(run: RunTimeline, now: number, width = 560): { bars: GanttBar[]; height: number; span: string } {
  const t0 = logTimeMs(run.startedAt);
  const ends = run.steps.map((s) => logTimeMs(s.at) + (s.durationMs ?? (s.status === 'started' ? now - logTimeMs(s.at) : 0)));
  const t1 = Math.max(t0 + 1, ...ends, run.endedAt ? logTimeMs(run.endedAt) : t0 + 1);
  const scale = width / (t1 - t0);
  const bars = run.steps.map((s, i) => {
    const start = logTimeMs(s.at) - t0;
    const length = (ends[i] ?? 0) - logTimeMs(s.at);
    return {
      y: i * 18,
      x: Math.round(start * scale * 10) / 10,
      width: Math.max(2, Math.round(length * scale * 10) / 10),
      color: STATUS_COLOR[s.status] ?? '#607d8b',
      label: `${s.step} · ${s.status}${s.attempt && s.attempt > 1 ? ` (attempt ${s.attempt})` : ''}${s.event ? '' : ` · ${ms(s.durationMs)}`}`,
      title: `#${s.seq ?? '-'} ${s.step}: ${s.status}${s.event ? '' : `, ${ms(s.durationMs)}`}${s.attempt ? `, attempt ${s.attempt}` : ''}${s.note ? ` — ${s.note}` : ''}`,
    };
  });
  return { bars, height: bars.length * 18 + 4, span: ms(t1 - t0) };
}

/**
 * A replica's lag as polylines (0 at the bottom; a gap where it was unknown), over the last hour,
 * or since its first sample when the monitor has measured for less (at least a minute shown).
 */
export function lagPath(s: LagSeries, now: number, width = 300, height = 60): { points: string[]; max: number; last: string; lastLag: number | null; span: string } {
  const first = s.samples[0]?.at ?? now;
  const from = Math.min(now - 60_000, Math.max(now - 3600_000, first));
  const known = s.samples.filter((p) => p.lag !== null) as { at: number; lag: number }[];
  const max = Math.max(1, ...known.map((p) => Math.ceil(p.lag)));
  const segments: string[] = [];
  let current: string[] = [];
  // A lone point is drawn as a short dash (a polyline of one point shows nothing).
  const end = () => current.length && segments.push((current.length === 1 ? [current[0]!, current[0]!.replace(/^[^,]+/, (x) => String(Number(x) + 2))] : current).join(' '));
  for (const p of s.samples) {
    if (p.lag === null || p.at < from) {
      end();
      current = [];
      continue;
    }
    const x = Math.round(((p.at - from) / (now - from)) * width * 10) / 10;
    const y = Math.round((height - 2 - (p.lag / max) * (height - 4)) * 10) / 10;
    current.push(`${x},${y}`);
  }
  end();
  const lastSample = s.samples.at(-1);
  const minutes = Math.round((now - from) / 60_000);
  return {
    points: segments,
    max,
    last: lastSample ? (lastSample.lag === null ? 'unknown' : `${lastSample.lag} s`) : 'no samples',
    lastLag: lastSample?.lag ?? null,
    span: minutes >= 60 ? 'last hour' : `last ${minutes} min`,
  };
}

const TEMPLATE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>runbook status panel</title>
<noscript><meta http-equiv="refresh" content="2"></noscript>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1em 2em;color:#222}
h1{font-size:20px;margin:0 0 .3em}h2{font-size:17px;border-bottom:1px solid #ccc;margin-top:1.4em}h3{font-size:15px;margin:.8em 0 .3em}
table{border-collapse:collapse;margin:.3em 0}td,th{border:1px solid #ddd;padding:2px 6px;text-align:left;vertical-align:top}
.muted{color:#777}.bad{color:#c62828;font-weight:600}.ok{color:#2e7d32}.region{display:inline-block;vertical-align:top;border:1px solid #bbb;border-radius:6px;padding:4px 8px;margin:4px;min-width:180px}
.primary{background:#e8f5e9}.box{border:1px solid #ddd;border-radius:6px;padding:6px 10px;margin:6px 0}.approval{border-color:#ef6c00;background:#fff3e0}
code{font-size:12px}
</style></head>
<body>
<h1>runbook status panel</h1>
<p class="muted">as of <span id="generated"><%= it.generated %></span> UTC · read-only: approve in Slack, email or with <code>bin/runbook approve</code></p>
<div id="content">
<% it.view.problems.forEach(function(p){ %><p class="bad"><%= p %></p><% }) %>

<h2>Clusters</h2>
<% it.view.clusters.forEach(function(c){ %>
<section class="cluster" data-cluster="<%= c.name %>">
<h3>cluster <%= c.name %> · primary <span class="primary-instance" data-region="<%= c.primaryRegion || '' %>"><%= c.primary || 'NONE' %></span><% if (c.primaryRegion) { %> in <span class="primary-region"><%= c.primaryRegion %></span><% } %></h3>
<% if (c.error) { %><p class="bad"><%= c.error %></p><% } %>
<div>
<% c.regions.forEach(function(r){ %>
<div class="region<%= r === c.primaryRegion ? ' primary' : '' %>"><b><%= r %></b><br>
<% c.instances.filter(function(i){ return i.region === r }).forEach(function(i){ %>
<div><b><%= i.instance %></b> <%= i.role %><% if (!i.reachable) { %> <span class="bad">unreachable: <%= i.error %></span><% } else { %> · read_only <%= i.readOnly ? 'ON' : 'OFF' %><% } %>
<% if (i.source) { %><br>⇠ replicates from <%= i.source %>, lag <%= i.lagSeconds === null ? 'NULL' : i.lagSeconds + ' s' %><% } %>
<br><code>GTID <%= i.gtid || '—' %></code></div>
<% }) %>
</div>
<% }) %>
</div>
<% if (c.problems.length) { %><ul><% c.problems.forEach(function(p){ %><li class="bad"><%= p %></li><% }) %></ul><% } else { %><p class="ok">no problems found</p><% } %>
<p>writer endpoint: <% if (c.writer) { %><b><%= c.writer.instance %></b> (<%= c.writer.region %>, <%= c.writer.address %>, generation <%= c.writer.generation %>)<% } else { %><span class="muted">not set</span><% } %></p>
<p class="monitor">monitor: <% if (c.monitor) { %><b><%= c.monitor.verdict %></b> (every <%= c.monitor.intervalSeconds %> s, automatic failover <%= c.monitor.autoFailover %>)<% if (c.monitor.block) { %> · <b>blocked</b> after automatic failover <code><%= c.monitor.block.incidentId %></code> since <%= c.monitor.block.since %><%= c.monitor.block.running ? ' (still running)' : ': waits for runbook ack' %><% } %><% for (const d of c.monitor.downtimes) { %> · downtime of <%= d.target %> until <%= d.until %> by <%= d.by %>: <%= d.reason %><% } %><% } else { %><span class="muted">not running</span><% } %></p>
<% if (c.lastFailover) { %><p>last failover: <%= c.lastFailover.route %>, <%= c.lastFailover.status %> at <%= c.lastFailover.at %> UTC · RTO <%= c.lastFailover.rtoMs === null ? 'n/a' : (c.lastFailover.rtoMs / 1000).toFixed(1) + ' s (fence → traffic switched)' %> · RPO <%= c.lastFailover.rpo %> · <code><%= c.lastFailover.workflowId %></code></p><% } %>
<% if (c.sync.length) { %>
<table><tr><th>region</th><th>instance</th><th>role</th><th>sync_status</th><th>lag s</th><th>last in sync (UTC)</th><th>remark</th></tr>
<% c.sync.forEach(function(s){ %><tr><td><%= s.region %></td><td><%= s.instance %></td><td><%= s.role %></td><td><%= s.status %></td><td><%= s.lagSeconds %></td><td><%= s.lastInSync %></td><td><%= s.remark %></td></tr><% }) %>
</table>
<% } %>
</section>
<% }) %>

<h2>Pending approvals</h2>
<div id="approvals">
<% if (!it.view.approvals.length) { %><p class="muted">none</p><% } %>
<% it.view.approvals.forEach(function(a){ %>
<div class="box approval" data-workflow="<%= a.workflowId %>"><b><%= a.runbook %> <%= a.cluster %></b> waits for approval · <code><%= a.workflowId %></code><br>
requested by <%= a.requester %><% if (a.fourEyes) { %> (four eyes: not by <%= a.requester %>)<% } %><% if (a.forcedBecause) { %> · required because <%= a.forcedBecause %><% } %><% if (a.deadline) { %> · deadline <%= a.deadline %><% } %><br>
may approve: <% a.channels.forEach(function(p, n){ %><%= n ? '; ' : '' %><b><%= p.name %></b> via <%= p.via.join(', ') || 'no allowed channel' %><% }) %>
</div>
<% }) %>
</div>

<h2>Incidents and runbooks</h2>
<% if (!it.view.incidents.length) { %><p class="muted">no runbook in the last 24 hours</p><% } %>
<% it.incidents.forEach(function(x){ var r = x.run; %>
<div class="box incident" data-workflow="<%= r.workflowId %>" data-run="<%= r.runId %>">
<b><%= r.runbook %> <%= r.cluster %></b><% if (r.incidentId) { %> · incident <%= r.incidentId %><% } %> · <%= r.status %><% if (r.currentStep) { %>, now: <%= r.currentStep %><% } %> · by <%= r.operator %> · started <%= r.startedAt %>
<% if (r.uiLink) { %> · <a href="<%= r.uiLink %>" rel="noreferrer">Temporal UI</a><% } %><br>
<% if (r.reason) { %><span class="reason">reason: <%= r.reason %></span><br><% } %>
<% if (x.gantt) { %>
<svg class="gantt" width="<%= x.gantt.width + 330 %>" height="<%= x.gantt.height %>" role="img" aria-label="step timeline of <%= r.workflowId %>">
<% x.gantt.bars.forEach(function(b){ %><g><title><%= b.title %></title><rect x="<%= b.x %>" y="<%= b.y %>" width="<%= b.width %>" height="14" fill="<%= b.color %>"></rect><text x="<%= x.gantt.width + 8 %>" y="<%= b.y + 12 %>" font-size="12"><%= b.label %></text></g><% }) %>
</svg><br><span class="muted">whole run: <%= x.gantt.span %></span>
<% } else { %><span class="muted">no failover_log rows yet</span><% } %>
</div>
<% }) %>

<h2>Replication lag, last hour</h2>
<p class="muted">as each cluster's monitor measured it, round by round (seconds the replica is at least behind, dated by the primary's GTID positions; kept by the monitor for an hour, at most 120 points a replica)</p>
<% it.view.clusters.forEach(function(c){ var series = it.lag.filter(function(l){ return l.cluster === c.name }); %>
<div class="lag" data-cluster="<%= c.name %>">
<% if (!c.monitor) { %><p class="muted no-monitor">cluster <%= c.name %>: no monitor runs, so no lag history (start one with <code>bin/runbook monitor start <%= c.name %></code>); the current lag is in the topology above</p>
<% } else if (!series.length) { %><p class="muted">cluster <%= c.name %>: the monitor has no replica's lag yet</p><% } %>
<% series.forEach(function(l){ %>
<div class="region lag-chart" data-instance="<%= l.instance %>" data-samples="<%= l.samples.length %>" data-first-at="<%= l.samples.length ? l.samples[0].at : '' %>" data-last-lag="<%= l.path.lastLag === null ? '' : l.path.lastLag %>"><b><%= l.cluster %>/<%= l.instance %></b> · now <%= l.path.last %> · <%= l.path.span %> · scale 0–<%= l.path.max %> s<br>
<svg width="300" height="60" role="img" aria-label="lag of <%= l.instance %>"><rect x="0" y="0" width="300" height="60" fill="#fafafa" stroke="#ddd"></rect>
<% l.path.points.forEach(function(p){ %><polyline fill="none" stroke="#1565c0" stroke-width="1.5" points="<%= p %>"></polyline><% }) %></svg></div>
<% }) %>
</div>
<% }) %>
</div>
<script nonce="<%= it.nonce %>">
(function(){
  function refresh(){
    fetch(location.pathname, {credentials: 'same-origin', headers: {'x-panel-refresh': '1'}}).then(function(r){ return r.ok ? r.text() : null; }).then(function(html){
      if (!html) return;
      var doc = new DOMParser().parseFromString(html, 'text/html');
      ['content', 'generated'].forEach(function(id){ var n = doc.getElementById(id); if (n) document.getElementById(id).replaceWith(document.importNode(n, true)); });
    }).catch(function(){}).finally(function(){ setTimeout(refresh, 2000); });
  }
  setTimeout(refresh, 2000);
})();
</script>
</body></html>`;

export function renderPanel(view: PanelView, nonce: string): string {
  const gantt = (run: RunTimeline | null) => (run && run.steps.length ? { ...ganttBars(run, view.generatedAt), width: 560 } : null);
  return eta.renderString(TEMPLATE, {
    view,
    nonce,
    generated: new Date(view.generatedAt).toISOString().replace('T', ' ').slice(0, 19),
    incidents: view.incidents.map((run) => ({ run, gantt: gantt(run.timeline) })),
    lag: view.lag.map((l) => ({ ...l, path: lagPath(l, view.generatedAt) })),
  });
}

/** The page a request without the token gets (401): a form that sends the token once, nothing else. */
export function renderLogin(message: string): string {
  return eta.renderString(
    `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>runbook status panel: log in</title></head>
<body style="font-family:system-ui,sans-serif;margin:2em"><h1>runbook status panel</h1><p><%= it.message %></p>
<form method="post" action="/login"><label>panel token <input type="password" name="token" autocomplete="current-password"></label> <button type="submit">log in</button></form></body></html>`,
    { message },
  );
}
