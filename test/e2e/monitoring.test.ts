// The alert rules of deploy/monitoring on a real Prometheus that scrapes
// the real agent of a one-node testbed. A wake that times out fires
// ZeroholdHeldFlowsDropped. Every rule evaluates without error, and every
// metric that the rules name is one that the agent exports.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { waitFor } from '../lib/netns.js';
import { alertRules, dashboard, expandVariables, metricNames, writeRuleFile } from '../monitoring/rules.js';
import { PrometheusServer } from '../monitoring/prometheus-server.js';
import { describeResult } from '../testbed/client-run.js';
import { curlArgs } from '../testbed/client-commands.js';
import { nodeHttpWorkload } from '../testbed/servers.js';
import { Testbed } from '../testbed/testbed.js';

// The job label that the PodMonitor in deploy/monitoring gives the agents.
const JOB = 'zerohold-system/zerohold-agent';

describe('alerts on Prometheus', () => {
  let testbed: Testbed;
  let prometheus: PrometheusServer | undefined;
  let dir: string;

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'zh-prometheus-'));
    testbed = await Testbed.start({ nodes: 1, externalClients: 1, clientPodsPerNode: 0 });
  });

  after(async () => {
    await prometheus?.stop();
    await testbed?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('wake timeout fires held flows dropped', async () => {
    // The server binds its port after an hour, so the wake times out.
    const workload = await testbed.deploy(nodeHttpWorkload({ workDir: testbed.workloadDir, name: 'stuck', startupDelayMs: 3_600_000 }), {
      scaleToZero: { idleTimeout: '1h', wakeTimeout: '2s' },
    });
    await testbed.waitForPhase(workload.key!, 'Cold', { gateClosed: true });

    prometheus = await PrometheusServer.start({ dir, ruleFile: writeRuleFile(dir), job: JOB, targets: [testbed.agent('node-0').metricsAddress()], labels: { node: 'node-0' } });
    const server = prometheus;
    // increase() needs a sample from before the drop, which the agent's
    // zero-initialized counter provides.
    const series = `zerohold_held_flows_dropped_total{workload="${workload.key}",reason="wake-timeout"}`;
    await waitFor('the zero sample scraped', async () => ((await server.query(series)).length === 1 ? true : undefined), 15_000, 200);

    const result = await testbed.run(testbed.externalClient(), 'curl', curlArgs(workload.clusterIPv4, 80, { maxTimeSeconds: 5 }));
    assert.equal(result.ok, false, describeResult(result));

    const alert = await waitFor(
      'ZeroholdHeldFlowsDropped firing',
      async () => (await server.alerts()).find((candidate) => candidate.labels.alertname === 'ZeroholdHeldFlowsDropped' && candidate.state === 'firing'),
      20_000,
      250,
    ).catch(async (err: Error) => {
      throw new Error(`${err.message}\nalerts: ${JSON.stringify(await server.alerts())}\nseries: ${JSON.stringify(await server.query(series))}`);
    });
    assert.equal(alert.labels.workload, workload.key);
    assert.equal(alert.labels.reason, 'wake-timeout');
    assert.equal(alert.labels.severity, 'warning');
    assert.equal(alert.annotations.summary, `zerohold dropped held flows of ${workload.key} (wake-timeout).`);
    assert.match(alert.annotations.description!, new RegExp(`^About [0-9.]+ flows of ${workload.key} were dropped`));
  });

  it('every rule evaluates cleanly', async () => {
    const server = prometheus!;
    const rules = await server.rules();

    assert.deepEqual(rules.map((rule) => rule.name).sort(), alertRules().map((rule) => rule.alert).sort());
    for (const rule of rules) assert.equal(rule.health, 'ok', `${rule.name}: ${rule.lastError ?? 'no error given'}`);
  });

  it('rules name exported metrics only', async () => {
    // The exposition has a TYPE line for every metric, also for one with no
    // sample yet. A histogram's series add _bucket, _sum and _count.
    const exposition = await testbed.agent('node-0').metrics();
    const exported = new Set(['up']);
    for (const [, name, type] of exposition.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
      exported.add(name!);
      if (type === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) exported.add(name! + suffix);
    }

    for (const rule of alertRules()) {
      const names = metricNames(rule.expr);
      assert.ok(names.length > 0, `${rule.alert}: no metric found in ${rule.expr}`);
      for (const name of names) assert.ok(exported.has(name), `${rule.alert} names ${name}, which the agent does not export`);
    }

    const queries = dashboard().panels.flatMap((panel) => (panel.targets ?? []).map((target) => ({ panel: panel.title, expr: target.expr })));
    const variables = dashboard().templating.list.flatMap((variable) => (variable.definition === undefined ? [] : [{ panel: `variable ${variable.name}`, expr: variable.definition }]));
    for (const { panel, expr } of [...queries, ...variables]) {
      for (const name of metricNames(expr)) assert.ok(exported.has(name), `dashboard panel "${panel}" names ${name}, which the agent does not export`);
    }
  });

  it('dashboard queries evaluate', async () => {
    const server = prometheus!;
    const queries = dashboard().panels.flatMap((panel) => (panel.targets ?? []).map((target) => ({ panel: panel.title, expr: expandVariables(target.expr) })));
    assert.ok(queries.length > 0);

    // Each query must parse and run. The wake counter of the stuck workload
    // has a sample, so the first panel's query also returns a series.
    for (const { panel, expr } of queries) await server.query(expr).catch((err: Error) => assert.fail(`panel "${panel}": ${err.message}\n${expr}`));
    const wakes = await server.query(queries[0]!.expr);
    assert.ok(wakes.length > 0, `no series for ${queries[0]!.expr}`);
  });
});
