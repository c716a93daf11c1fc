// The agent's command line, run as the DaemonSet runs it: node and the
// built main.js, with nothing loaded before the arguments are read.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';

import { repoRoot } from '../../src/paths.js';

const MAIN = path.join(repoRoot, 'dist/src/agent/main.js');

function agent(...args: string[]) {
  return spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', env: { ...process.env, NODE_NAME: '' } });
}

test('agent help lists options', () => {
  const result = agent('--help');

  assert.equal(result.status, 0);
  assert.match(result.stdout, /^usage: zerohold-agent \[--config FILE\]/);
  assert.match(result.stdout, /docs\/configuration\.md/);
});

test('agent names an unknown option', () => {
  const result = agent('--confg', 'agent.yaml');

  assert.equal(result.status, 1);
  assert.match(result.stderr, /Unknown option '--confg'/);
  assert.match(result.stderr, /--help lists the options/);
});

test('agent names a bad field and file', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'zh-agent-'));
  try {
    const file = path.join(dir, 'agent.yaml');
    writeFileSync(file, 'mode: signal\nlimits: { wakeInterval: 1 }\n');

    const result = agent('--config', file);

    assert.equal(result.status, 1);
    assert.match(result.stderr, new RegExp(`invalid agent configuration in ${file}`));
    assert.match(result.stderr, /limits\.wakeInterval: .*Go duration.*\(got 1\)/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
