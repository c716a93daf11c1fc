// The hold budget on the real agent. While the agent stalls, a flood of
// flow openers at one cold Service stops at that Service's budget once
// the held ring is half full. So another cold Service's client is still
// held, and it connects with its first SYN.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { flowOpenerCount } from '../testbed/agent-metrics.js';
import { describeResult } from '../testbed/client-run.js';
import { curlArgs, parseCurl } from '../testbed/client-commands.js';
import { nodeHttpWorkload } from '../testbed/servers.js';
import { Testbed } from '../testbed/testbed.js';
import { synFloodArgs } from '../testbed/trafgen.js';
import { formatTimeline } from '../testbed/timeline.js';

// 16 pages: about 370 SYN records, so a few hundred SYNs fill it.
const HELD_RING_BYTES = 64 << 10;
const FLOOD_SYNS = 2000;
const FLOODED_BUDGET = 16;
const FLOOD_SOURCES = '198.18.128.0';

describe('hold budget', () => {
  let testbed: Testbed;

  before(async () => {
    // The deadline must not pass while the agent is paused, or the
    // datapath would let the openers pass instead of holding them.
    testbed = await Testbed.start({ nodes: 1, externalClients: 2, clientPodsPerNode: 0, heldRingBytes: HELD_RING_BYTES, failOpenAfter: '60s' });
  });

  after(async () => {
    await testbed?.close();
  });

  it('flood leaves room for others', async () => {
    const flooded = await testbed.deploy(nodeHttpWorkload({ workDir: testbed.workloadDir, name: 'flooded' }), {
      scaleToZero: { idleTimeout: '1h', heldFlowLimits: { perService: FLOODED_BUDGET } },
    });
    const quiet = await testbed.deploy(nodeHttpWorkload({ workDir: testbed.workloadDir, name: 'quiet' }), { scaleToZero: { idleTimeout: '1h' } });
    await testbed.waitForPhase(flooded.key!, 'Cold', { gateClosed: true });
    await testbed.waitForPhase(quiet.key!, 'Cold', { gateClosed: true });

    const flooder = testbed.externalClient(0);
    const floodArgs = await synFloodArgs(testbed, { flooder, node: 'node-0', address: flooded.clusterIPv4, port: 80, sources: FLOOD_SOURCES, ratePps: 20_000, count: FLOOD_SYNS });
    const syns = await testbed.synCounter('node-0', { address: quiet.clusterIPv4, port: 80 });
    const agent = testbed.agent('node-0');
    const origin = Date.now();

    agent.pause();
    let client;
    try {
      const flood = await testbed.run(flooder, 'trafgen', floodArgs, { timeoutMs: 30_000 });
      assert.ok(flood.ok, describeResult(flood));

      // The client's SYN meets a ring that the flood has half filled.
      client = testbed.run(testbed.externalClient(1), 'curl', curlArgs(quiet.clusterIPv4, 80, { maxTimeSeconds: 20 }));
      await new Promise((resolve) => setTimeout(resolve, 300));
    } finally {
      agent.resume();
    }

    const result = await client;
    const timeline = `timeline:\n${formatTimeline(testbed.events.since(origin - 50), origin)}`;
    assert.ok(result.ok, `${describeResult(result)}\n${timeline}`);
    assert.match(parseCurl(result.stdout).body, /^hello from quiet-/);

    // The counter counts only SYNs that pass the hold program, so a first
    // SYN lost to a full ring would not count, but its retransmission
    // would. The datapath's own counters tell the two apart.
    const metrics = await agent.metrics();
    assert.equal(flowOpenerCount(metrics, quiet.key!, 'held'), 1, `the quiet client's SYN was not held\n${timeline}`);
    assert.equal(flowOpenerCount(metrics, quiet.key!, 'ring-full'), 0);
    assert.equal(await syns.read(), 1, `SYNs to the quiet Service past the hold program, want 1 (the re-injected SYN, no retransmission)\n${timeline}`);

    const overBudget = flowOpenerCount(metrics, flooded.key!, 'over-budget');
    assert.ok(overBudget > FLOOD_SYNS / 2, `${overBudget} flood SYNs over budget, want most of ${FLOOD_SYNS}`);
    assert.equal(flowOpenerCount(metrics, flooded.key!, 'ring-full'), 0, 'no flood SYN found the ring full');
  });
});
