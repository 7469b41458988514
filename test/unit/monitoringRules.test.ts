/** runbooks/monitoring: the Prometheus rules parse, and the rules and the dashboard use only metrics the worker serves. */
import { readFileSync } from 'node:fs';
import YAML from 'yaml';
import { describe, expect, it } from 'vitest';
import { MonitorMetrics } from '../../src/adapters/metrics/registry';

const served = async () => {
  const names = (await new MonitorMetrics().registry.getMetricsAsJSON()).flatMap((m) => (String(m.type) === 'histogram' ? [`${m.name}_bucket`, `${m.name}_sum`, `${m.name}_count`] : [m.name]));
  return new Set(names);
};
const metricsIn = (expr: string) => [...new Set(expr.match(/\brunbook_[a-z_]+/g) ?? [])];

describe('runbooks/monitoring', () => {
  it('alerts.yml: well-formed rule groups over metrics the worker serves', async () => {
    const doc = YAML.parse(readFileSync('runbooks/monitoring/alerts.yml', 'utf8'));
    const known = await served();
    expect(doc.groups.length).toBeGreaterThan(0);
    const names = new Set<string>();
    for (const group of doc.groups) {
      expect(typeof group.name).toBe('string');
      for (const rule of group.rules) {
        expect(rule.alert).toMatch(/^[A-Za-z][A-Za-z0-9]*$/);
        expect(names.has(rule.alert)).toBe(false);
        names.add(rule.alert);
        expect(['critical', 'warning', 'info']).toContain(rule.labels.severity);
        expect(rule.annotations.summary).toBeTruthy();
        if (rule.for !== undefined) expect(rule.for).toMatch(/^[0-9]+[smh]$/);
        expect(metricsIn(rule.expr).length).toBeGreaterThan(0);
        for (const metric of metricsIn(rule.expr)) expect(known, `${rule.alert}: ${metric}`).toContain(metric);
        // Balanced parentheses and braces: the cheap part of what promtool would check.
        for (const [open, close] of [['(', ')'], ['{', '}'], ['[', ']']]) expect(rule.expr.split(open).length, rule.alert).toBe(rule.expr.split(close).length);
      }
    }
  });

  it('the Grafana dashboard parses and charts only metrics the worker serves', async () => {
    const dash = JSON.parse(readFileSync('runbooks/monitoring/grafana-dashboard.json', 'utf8'));
    const known = await served();
    expect(dash.panels.length).toBeGreaterThan(5);
    for (const panel of dash.panels) for (const t of panel.targets) for (const metric of metricsIn(t.expr)) expect(known, `${panel.title}: ${metric}`).toContain(metric);
  });
});
