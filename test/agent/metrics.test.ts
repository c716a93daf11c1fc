import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { AgentMetrics } from '../../src/agent/metrics.js';
import { SERVICE_STAT_FIELDS } from '../../src/datapath/layout.js';
import type { ServiceCounters } from '../../src/datapath/services.js';

const held = new Map<string, { flows: number; bytes: number }>();
const datapath = new Map<string, ServiceCounters>();
let datapathGlobal: bigint[] = [0n, 0n, 0n, 0n];
let metrics: AgentMetrics;
let url: string;

before(async () => {
  metrics = new AgentMetrics({ held: () => held, datapath: () => datapath, datapathGlobal: () => datapathGlobal });
  url = `http://127.0.0.1:${await metrics.listen('127.0.0.1', 0)}`;
});

after(() => metrics.close());

async function scrape(): Promise<string> {
  const response = await fetch(`${url}/metrics`);
  assert.equal(response.status, 200);
  assert.match(response.headers.get('content-type') ?? '', /text\/plain/);
  return response.text();
}

test('metrics expose counters and histograms', async () => {
  metrics.wakes.inc({ workload: 'shop/web' });
  metrics.wakes.inc({ workload: 'shop/web' });
  metrics.coldStart.observe({ workload: 'shop/web' }, 1.5);
  metrics.releaseOverhead.observe({ workload: 'shop/web' }, 0.0008);
  metrics.heldDropped.inc({ workload: 'shop/web', reason: 'wake-timeout' }, 3);

  const body = await scrape();

  assert.match(body, /^zerohold_wakes_total\{workload="shop\/web"\} 2$/m);
  assert.match(body, /^zerohold_cold_start_seconds_bucket\{le="2",workload="shop\/web"\} 1$/m);
  assert.match(body, /^zerohold_cold_start_seconds_bucket\{le="1",workload="shop\/web"\} 0$/m);
  assert.match(body, /^zerohold_release_overhead_seconds_bucket\{le="0.001",workload="shop\/web"\} 1$/m);
  assert.match(body, /^zerohold_held_flows_dropped_total\{workload="shop\/web",reason="wake-timeout"\} 3$/m);
  assert.match(body, /^zerohold_agent_process_resident_memory_bytes \d+/m);
});

test('held gauges are read at scrape', async () => {
  held.set('shop/web', { flows: 7, bytes: 518 });
  const body = await scrape();
  assert.match(body, /^zerohold_held_flows\{workload="shop\/web"\} 7$/m);
  assert.match(body, /^zerohold_held_bytes\{workload="shop\/web"\} 518$/m);

  held.clear();
  const empty = await scrape();
  assert.doesNotMatch(empty, /^zerohold_held_flows\{/m);
  assert.doesNotMatch(empty, /^zerohold_held_bytes\{/m);
});

test('datapath counters are read at scrape', async () => {
  const counters = Object.fromEntries(SERVICE_STAT_FIELDS.map((field) => [field, 0n])) as ServiceCounters;
  datapath.set('shop/web', { ...counters, held_frames: 12n, ringbuf_full: 3n, too_large: 1n, fragments: 2n, wake_events: 4n, wake_lost: 5n, warm_packets: 9_000_000_000n, passed_cold: 6n, dropped_cold: 7n, held_limited: 8n });

  const body = await scrape();

  assert.match(body, /^zerohold_datapath_flow_openers_total\{workload="shop\/web",outcome="held"\} 12$/m);
  assert.match(body, /^zerohold_datapath_flow_openers_total\{workload="shop\/web",outcome="ring-full"\} 3$/m);
  assert.match(body, /^zerohold_datapath_flow_openers_total\{workload="shop\/web",outcome="over-budget"\} 8$/m);
  assert.match(body, /^zerohold_datapath_flow_openers_total\{workload="shop\/web",outcome="too-large"\} 1$/m);
  assert.match(body, /^zerohold_datapath_flow_openers_total\{workload="shop\/web",outcome="fragment"\} 2$/m);
  assert.match(body, /^zerohold_datapath_flow_openers_total\{workload="shop\/web",outcome="drop-mode"\} 0$/m);
  assert.match(body, /^zerohold_datapath_flow_openers_total\{workload="shop\/web",outcome="no-agent"\} 0$/m);
  assert.match(body, /^zerohold_datapath_wake_signals_total\{workload="shop\/web",result="sent"\} 4$/m);
  assert.match(body, /^zerohold_datapath_wake_signals_total\{workload="shop\/web",result="lost"\} 5$/m);
  assert.match(body, /^zerohold_datapath_warm_packets_total\{workload="shop\/web"\} 9000000000$/m);
  assert.match(body, /^zerohold_datapath_non_openers_total\{workload="shop\/web",outcome="passed"\} 6$/m);
  assert.match(body, /^zerohold_datapath_non_openers_total\{workload="shop\/web",outcome="dropped"\} 7$/m);

  // A workload that is gone leaves no series behind.
  datapath.clear();
  assert.doesNotMatch(await scrape(), /^zerohold_datapath_\w+\{workload=/m);
});

test('node-wide datapath counters', async () => {
  datapathGlobal = [1n, 2n, 3n, 40n];
  const body = await scrape();
  assert.match(body, /^zerohold_datapath_errors_total\{reason="bad-service"\} 1$/m);
  assert.match(body, /^zerohold_datapath_errors_total\{reason="chain-bad-meta"\} 2$/m);
  assert.match(body, /^zerohold_datapath_errors_total\{reason="chain-unmanaged"\} 3$/m);
  assert.match(body, /^zerohold_datapath_reinjected_frames_total 40$/m);

  // Counters read anew replace the values of the last scrape.
  datapathGlobal = [1n, 2n, 5n, 41n];
  const next = await scrape();
  assert.match(next, /^zerohold_datapath_errors_total\{reason="chain-unmanaged"\} 5$/m);
  assert.match(next, /^zerohold_datapath_reinjected_frames_total 41$/m);
});

test('signal mode has no datapath counters', async () => {
  const signal = new AgentMetrics({ held: () => new Map() });
  const port = await signal.listen('127.0.0.1', 0);
  try {
    const body = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    assert.doesNotMatch(body, /zerohold_datapath_/);
    assert.match(body, /^# TYPE zerohold_held_flows gauge$/m);
  } finally {
    await signal.close();
  }
});

test('other paths are not found', async () => {
  const response = await fetch(`${url}/`);
  assert.equal(response.status, 404);
  assert.match(await response.text(), /metrics are at \/metrics/);
});

test('tracked workloads start at zero', async () => {
  metrics.trackWorkload('shop/new');

  const body = await scrape();
  assert.match(body, /^zerohold_wakes_total\{workload="shop\/new"\} 0$/m);
  assert.match(body, /^zerohold_scale_downs_total\{workload="shop\/new"\} 0$/m);
  for (const reason of ['wake-timeout', 'service-limit', 'source-limit', 'total-limit', 'workload-removed', 'reinject-failed', 'drop-mode']) {
    assert.match(body, new RegExp(`^zerohold_held_flows_dropped_total\\{workload="shop/new",reason="${reason}"\\} 0$`, 'm'));
  }
  assert.match(body, /^zerohold_held_flows_dropped_total\{workload="\(unknown\)",reason="record-error"\} 0$/m);
  assert.match(body, /^zerohold_cold_start_seconds_count\{workload="shop\/new"\} 0$/m);
  assert.match(body, /^zerohold_release_overhead_seconds_count\{workload="shop\/new"\} 0$/m);
});

test('untracked workloads leave later', async () => {
  const local = new AgentMetrics({ held: () => new Map() }, 20);
  local.trackWorkload('shop/gone');
  local.wakes.inc({ workload: 'shop/gone' });
  local.heldDropped.inc({ workload: 'shop/gone', reason: 'workload-removed' }, 2);
  local.untrackWorkload('shop/gone');

  assert.match(await local.registry.metrics(), /workload="shop\/gone",reason="workload-removed"\} 2$/m, 'the last values stay for a while');
  await new Promise((resolve) => setTimeout(resolve, 60));
  assert.doesNotMatch(await local.registry.metrics(), /shop\/gone/);

  // Tracked again before the delay, a workload keeps its series.
  local.trackWorkload('shop/back');
  local.untrackWorkload('shop/back');
  local.trackWorkload('shop/back');
  await new Promise((resolve) => setTimeout(resolve, 60));
  assert.match(await local.registry.metrics(), /workload="shop\/back"/);
  await local.close();
});
