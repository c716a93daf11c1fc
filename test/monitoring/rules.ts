// The alert rules of deploy/monitoring/prometheusrule.yaml as a Prometheus
// rule file, and the promtool runs that the monitoring tests share.

import { execFile } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import { parse, stringify } from 'yaml';

import { repoRoot } from '../../src/paths.js';

export const PROMETHEUS_RULE = path.join(repoRoot, 'deploy/monitoring/prometheusrule.yaml');

// scripts/install-deps.sh unpacks Debian's prometheus package here. Without
// it, the binaries are looked up on PATH.
const PROMETHEUS_BIN_DIR = path.join(repoRoot, '.cache/prometheus/usr/bin');
export const MISSING_PROMETHEUS = "run scripts/install-deps.sh, which unpacks Debian's prometheus package into .cache/prometheus";

export function prometheusBinary(name: 'prometheus' | 'promtool'): string {
  const unpacked = path.join(PROMETHEUS_BIN_DIR, name);
  return existsSync(unpacked) ? unpacked : name;
}

export interface AlertRule {
  alert: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

interface RuleGroup {
  name: string;
  rules: AlertRule[];
}

export function ruleGroups(): RuleGroup[] {
  const resource = parse(readFileSync(PROMETHEUS_RULE, 'utf8')) as { spec: { groups: RuleGroup[] } };
  return resource.spec.groups;
}

// Returns the rules of every group.
export function alertRules(): AlertRule[] {
  return ruleGroups().flatMap((group) => group.rules);
}

// Writes the groups as a rule file, the form that Prometheus reads without
// the Operator, and returns its path.
export function writeRuleFile(dir: string, groups: RuleGroup[] = ruleGroups()): string {
  const file = path.join(dir, 'zerohold-rules.yaml');
  writeFileSync(file, stringify({ groups }));
  return file;
}

export interface ToolResult {
  code: number;
  output: string;
}

// Runs promtool with args and stdin, and resolves with its exit code and
// output, also when it fails.
export function promtool(args: string[], stdin = ''): Promise<ToolResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(prometheusBinary('promtool'), args, { timeout: 60_000 }, (err, stdout, stderr) => {
      if (err !== null && err.code === 'ENOENT') {
        reject(new Error(`promtool not found: ${MISSING_PROMETHEUS}`));
        return;
      }

      // A run killed by the timeout has no exit code.
      let code = 0;
      if (err !== null) code = typeof err.code === 'number' ? err.code : -1;
      resolve({ code, output: `${stdout}${stderr}` });
    });
    child.stdin?.end(stdin);
  });
}

// Returns the metric names in a PromQL expression: the identifiers
// followed by a selector, a range or a closing parenthesis. Functions,
// aggregations and label names are followed by something else.
export function metricNames(expr: string): string[] {
  return [...expr.matchAll(/\b(zerohold_[a-z0-9_]+|up)\b(?=\s*[{[)])/g)].map((match) => match[1]!);
}

export const DASHBOARD = path.join(repoRoot, 'deploy/monitoring/grafana-dashboard.json');

export interface DashboardPanel {
  id: number;
  type: string;
  title: string;
  gridPos: { x: number; y: number; w: number; h: number };
  datasource?: { type: string; uid: string };
  targets?: { refId: string; expr: string; datasource?: { uid: string } }[];
}

export function dashboard(): { uid: string; panels: DashboardPanel[]; templating: { list: { name: string; definition?: string }[] } } {
  return JSON.parse(readFileSync(DASHBOARD, 'utf8'));
}

// Replaces the dashboard's variables in expr as Grafana would with every
// workload selected and a 1m rate interval.
export function expandVariables(expr: string): string {
  return expr.replaceAll('$__rate_interval', '1m').replaceAll('$workload', '.*');
}
