// The monitoring manifests checked with promtool from Debian's prometheus
// package: the rules load, each alert fires on the series of its cases and
// stays silent on the others, the agent's metrics pass promtool's lint, and
// the PodMonitor selects the DaemonSet's pods and the job the rules name.

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { parse, stringify } from 'yaml';

import { AgentMetrics } from '../../src/agent/metrics.js';
import { SERVICE_STAT_FIELDS } from '../../src/datapath/layout.js';
import type { ServiceCounters } from '../../src/datapath/services.js';
import { repoRoot } from '../../src/paths.js';
import { alertRules, DASHBOARD, dashboard, metricNames, promtool, ruleGroups, writeRuleFile } from './rules.js';

const CASES = path.join(repoRoot, 'test/monitoring/alerts.cases.yaml');
const DAEMONSET = path.join(repoRoot, 'deploy/kubernetes/daemonset.yaml');
const POD_MONITOR = path.join(repoRoot, 'deploy/monitoring/podmonitor.yaml');

// prom-client's default Node.js metrics that promtool's lint rejects for a
// _total suffix on a gauge. They are prom-client's names, not zerohold's.
const PROM_CLIENT_LINT = ['zerohold_agent_nodejs_active_handles_total', 'zerohold_agent_nodejs_active_requests_total', 'zerohold_agent_nodejs_active_resources_total'];

let dir: string;

before(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'zh-monitoring-'));
});

after(() => {
  rmSync(dir, { recursive: true, force: true });
});

test('rules pass promtool check', async () => {
  const result = await promtool(['check', 'rules', writeRuleFile(dir)]);

  assert.equal(result.code, 0, result.output);
  assert.match(result.output, new RegExp(`SUCCESS: ${alertRules().length} rules found`));
});

test('alert cases pass promtool test', async () => {
  // promtool compares every annotation, so the cases expect only the
  // summary, and the descriptions are left out of this copy of the rules.
  const groups = ruleGroups().map((group) => ({
    ...group,
    rules: group.rules.map((rule) => ({ ...rule, annotations: { summary: rule.annotations?.summary ?? '' } })),
  }));
  const rules = writeRuleFile(dir, groups);
  const cases = parse(readFileSync(CASES, 'utf8')) as Record<string, unknown>;
  const testFile = path.join(dir, 'alerts.test.yaml');
  writeFileSync(testFile, stringify({ rule_files: [rules], ...cases }));

  const result = await promtool(['test', 'rules', testFile]);

  assert.equal(result.code, 0, result.output);
});

test('every alert has a case', () => {
  const cases = parse(readFileSync(CASES, 'utf8')) as { tests: { alert_rule_test: { alertname: string; exp_alerts: unknown[] }[] }[] };
  const firing = new Set(cases.tests.flatMap((entry) => entry.alert_rule_test.filter((check) => check.exp_alerts.length > 0).map((check) => check.alertname)));

  for (const rule of alertRules()) {
    assert.ok(firing.has(rule.alert), `no case in ${CASES} expects ${rule.alert} to fire`);
  }
});

test('agent metrics pass promtool lint', async () => {
  const counters = Object.fromEntries(SERVICE_STAT_FIELDS.map((field) => [field, 1n])) as ServiceCounters;
  const metrics = new AgentMetrics({ held: () => new Map([['shop/web', { flows: 1, bytes: 74 }]]), datapath: () => new Map([['shop/web', counters]]), datapathGlobal: () => [1n, 1n, 1n, 1n] });
  metrics.trackWorkload('shop/web');
  metrics.apiErrors.inc({ operation: 'scale' });
  const port = await metrics.listen('127.0.0.1', 0);
  let body: string;
  try {
    body = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  } finally {
    await metrics.close();
  }

  const result = await promtool(['check', 'metrics'], body);

  const problems = result.output
    .split('\n')
    .filter((line) => line.trim() !== '')
    .filter((line) => !PROM_CLIENT_LINT.some((name) => line.startsWith(`${name} `)));
  assert.deepEqual(problems, [], result.output);
});

test('PodMonitor matches the DaemonSet', () => {
  const daemonset = parse(readFileSync(DAEMONSET, 'utf8')) as {
    spec: { template: { metadata: { labels: Record<string, string> }; spec: { containers: { ports?: { name: string }[] }[] } } };
  };
  const monitor = parse(readFileSync(POD_MONITOR, 'utf8')) as {
    metadata: { name: string; namespace: string };
    spec: { selector: { matchLabels: Record<string, string> }; podMetricsEndpoints: { port: string }[] };
  };

  const podLabels = daemonset.spec.template.metadata.labels;
  for (const [label, value] of Object.entries(monitor.spec.selector.matchLabels)) assert.equal(podLabels[label], value, `pod label ${label}`);
  const ports = daemonset.spec.template.spec.containers.flatMap((container) => container.ports ?? []).map((port) => port.name);
  for (const endpoint of monitor.spec.podMetricsEndpoints) assert.ok(ports.includes(endpoint.port), `no container port named ${endpoint.port}`);

  // The Operator sets the job label of a PodMonitor's targets to
  // "namespace/name".
  const down = alertRules().find((rule) => rule.alert === 'ZeroholdAgentDown')!;
  assert.ok(down.expr.includes(`job="${monitor.metadata.namespace}/${monitor.metadata.name}"`), down.expr);
});

test('dashboard panels are well formed', () => {
  const { uid, panels } = dashboard();
  assert.equal(uid, 'zerohold');

  const ids = panels.map((panel) => panel.id);
  assert.equal(new Set(ids).size, ids.length, `panel ids repeat: ${ids.join(', ')}`);
  for (const panel of panels) {
    const { x, w, h } = panel.gridPos;
    const where = `panel "${panel.title}" at ${JSON.stringify(panel.gridPos)}`;
    assert.ok(x >= 0, where);
    assert.ok(w > 0, where);
    assert.ok(h > 0, where);
    assert.ok(x + w <= 24, `${where} lies outside Grafana's 24 columns`);
    if (panel.type === 'row') continue;

    assert.equal(panel.datasource?.uid, '${datasource}', `panel "${panel.title}" data source`);
    assert.ok((panel.targets ?? []).length > 0, `panel "${panel.title}" has no query`);
    for (const target of panel.targets!) assert.ok(metricNames(target.expr).length > 0, `panel "${panel.title}" query names no metric: ${target.expr}`);
  }
});

test('kustomization ships the dashboard', () => {
  const kustomization = parse(readFileSync(path.join(repoRoot, 'deploy/monitoring/kustomization.yaml'), 'utf8')) as {
    resources: string[];
    configMapGenerator: { files: string[]; options: { labels: Record<string, string> } }[];
  };

  assert.deepEqual(kustomization.resources.sort(), ['podmonitor.yaml', 'prometheusrule.yaml']);
  const [generator] = kustomization.configMapGenerator;
  assert.deepEqual(generator!.files, [`zerohold.json=${path.basename(DASHBOARD)}`]);
  assert.equal(generator!.options.labels.grafana_dashboard, '1');
});
