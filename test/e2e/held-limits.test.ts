// A ScaleToZero's heldFlowLimits on the real agent: flow openers over the
// per-client bound are dropped and counted, their clients retransmit, and
// every client is served once the workload is up.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { describeResult } from '../testbed/client-run.js';
import { curlArgs, parseCurl } from '../testbed/client-commands.js';
import { nodeHttpWorkload } from '../testbed/servers.js';
import { Testbed } from '../testbed/testbed.js';

const PER_CLIENT = 2;
const CLIENTS = 4;

describe('held flow limits', () => {
  let testbed: Testbed;

  before(async () => {
    testbed = await Testbed.start({ nodes: 1, externalClients: 1, clientPodsPerNode: 0 });
  });

  after(async () => {
    await testbed?.close();
  });

  it('per-client bound drops and counts', async () => {
    // The server starts late, so that every client's first SYN meets the
    // cold Service.
    const workload = await testbed.deploy(nodeHttpWorkload({ workDir: testbed.workloadDir, name: 'limited', startupDelayMs: 1500 }), {
      scaleToZero: { idleTimeout: '1h', heldFlowLimits: { perClient: PER_CLIENT } },
    });
    await testbed.waitForPhase(workload.key!, 'Cold', { gateClosed: true });
    const agent = testbed.agent('node-0');

    const clients = Array.from({ length: CLIENTS }, () => testbed.run(testbed.externalClient(), 'curl', curlArgs(workload.clusterIPv4, 80, { maxTimeSeconds: 20 })));
    let maxHeld = 0;
    let done = false;
    const sampling = (async () => {
      while (!done) {
        const summary = (await agent.workloads()).find((w) => w.workload === workload.key);
        maxHeld = Math.max(maxHeld, summary?.heldFlows ?? 0);
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
    })();
    const results = await Promise.all(clients);
    done = true;
    await sampling;

    for (const result of results) assert.ok(result.ok, describeResult(result));
    for (const result of results) assert.match(parseCurl(result.stdout).body, /^hello from limited-/);
    assert.equal(maxHeld, PER_CLIENT, 'flows held at once for the one client');

    const metrics = await agent.metrics();
    const dropped = /^zerohold_held_flows_dropped_total\{workload="demo\/limited",reason="source-limit"\} (\d+)$/m.exec(metrics);
    assert.ok(dropped, `no source-limit drops in the metrics:\n${metrics.split('\n').filter((line) => line.includes('dropped')).join('\n')}`);
    assert.ok(Number(dropped[1]) >= CLIENTS - PER_CLIENT, `got ${dropped[1]} drops, want at least ${CLIENTS - PER_CLIENT}`);

    const warning = testbed.events.find((e) => e.source === 'agent' && e.fields.workload === workload.key && e.fields.reason === 'source-limit');
    assert.ok(warning, 'a warning about the dropped flow openers');
    assert.equal(warning.fields.lastClient, '198.18.0.200');
  });
});
