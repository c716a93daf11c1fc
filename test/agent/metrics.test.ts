import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { AgentMetrics } from '../../src/agent/metrics.js';

const held = new Map<string, { flows: number; bytes: number }>();
let metrics: AgentMetrics;
let url: string;

before(async () => {
  metrics = new AgentMetrics(() => held);
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

test('other paths are not found', async () => {
  const response = await fetch(`${url}/`);
  assert.equal(response.status, 404);
  assert.match(await response.text(), /metrics are at \/metrics/);
});
