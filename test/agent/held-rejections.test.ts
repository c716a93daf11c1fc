import assert from 'node:assert/strict';
import { test } from 'node:test';

import { HeldRejections } from '../../src/agent/held-rejections.js';
import { AgentMetrics } from '../../src/agent/metrics.js';
import { captureLog } from '../hubble/log-capture.js';
import { TCP_SYN } from '../lib/packets.js';
import { heldRecord } from '../lib/records.js';

function syn(source: string, srcPort: number, serviceId = 1) {
  return heldRecord({ src: source, dst: '198.19.0.10', tcp: { srcPort, dstPort: 80, flags: TCP_SYN, seq: 1 } }, serviceId, 1000n);
}

test('rejections are counted and summarized', async () => {
  const metrics = new AgentMetrics({ held: () => new Map() });
  const { logger: log, records: lines } = captureLog('warn');
  const rejections = new HeldRejections({ log, metrics, workloadOf: (id) => (id === 1 ? 'shop/web' : undefined), intervalMs: 100 });

  for (let port = 1; port <= 1000; port++) rejections.record(1, 'source-limit', () => syn('198.18.0.9', port).flow.source);
  rejections.record(7, 'total-limit', () => '198.18.0.9');
  await new Promise((resolve) => setTimeout(resolve, 10));

  const text = await metrics.registry.metrics();
  assert.match(text, /^zerohold_held_flows_dropped_total\{workload="shop\/web",reason="source-limit"\} 1000$/m);
  assert.match(text, /^zerohold_held_flows_dropped_total\{workload="\(unknown\)",reason="total-limit"\} 1$/m);
  assert.equal(lines.length, 2, 'the first rejection of each workload and bound at once');
  assert.equal(lines[0]!.dropped, 1);
  assert.equal(lines[0]!.lastClient, '198.18.0.9');

  await new Promise((resolve) => setTimeout(resolve, 150));
  assert.equal(lines.length, 3, 'one summary at the end of the interval');
  assert.equal(lines[2]!.workload, 'shop/web');
  assert.equal(lines[2]!.dropped, 999);
  assert.match(String(lines[2]!.msg), /heldFlowLimits/);

  rejections.close();
  assert.equal(lines.length, 3, 'nothing left to log');
});

test('close logs pending rejections', async () => {
  const metrics = new AgentMetrics({ held: () => new Map() });
  const { logger: log, records: lines } = captureLog('warn');
  const rejections = new HeldRejections({ log, metrics, workloadOf: () => 'shop/web', intervalMs: 60_000 });

  rejections.record(1, 'service-limit', () => '198.18.0.9');
  rejections.record(1, 'service-limit', () => { throw new Error('garbled record'); });
  rejections.close();

  assert.deepEqual(lines.map((line) => line.dropped), [1, 1]);
  assert.equal(lines[1]!.lastClient, 'unknown (garbled record)');
});

test('id moved to another workload', async () => {
  const metrics = new AgentMetrics({ held: () => new Map() });
  const { logger: log } = captureLog('warn');
  let owner = 'shop/web';
  const rejections = new HeldRejections({ log, metrics, workloadOf: () => owner, intervalMs: 60_000 });

  rejections.record(1, 'service-limit', () => '198.18.0.9');
  rejections.record(1, 'service-limit', () => '198.18.0.9');
  owner = 'shop/cart';
  rejections.record(1, 'service-limit', () => '198.18.0.9');
  rejections.close();

  const text = await metrics.registry.metrics();
  assert.match(text, /^zerohold_held_flows_dropped_total\{workload="shop\/web",reason="service-limit"\} 2$/m);
  assert.match(text, /^zerohold_held_flows_dropped_total\{workload="shop\/cart",reason="service-limit"\} 1$/m);
});
