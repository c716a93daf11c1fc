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
