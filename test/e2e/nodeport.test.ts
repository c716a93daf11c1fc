// NodePort cold starts through the whole testbed. The testbed writes each
// node's InternalIP addresses into its Node object, the agent reads them
// at start and holds the first SYN to nodeIP:nodePort while the workload
// is at zero. The external client reaches node-0's addresses on-link over
// the fabric.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import type { HeldFlowSummary } from '../../src/agent/local-api.js';
import { waitFor } from '../lib/netns.js';
import { describeResult } from '../testbed/client-run.js';
import { curlArgs, parseCurl } from '../testbed/client-commands.js';
import { nodeHttpWorkload, type SampleWorkload } from '../testbed/servers.js';
import { Testbed } from '../testbed/testbed.js';
import { formatTimeline } from '../testbed/timeline.js';

const NODE = 'node-0';

describe('NodePort cold start', () => {
  let testbed: Testbed;

  before(async () => {
    testbed = await Testbed.start({ nodes: 1, externalClients: 1 });
  });

  after(async () => {
    await testbed?.close();
  });

  function timelineSince(unixMs: number): string {
    return `timeline:\n${formatTimeline(testbed.events.since(unixMs - 50), unixMs)}`;
  }

  // The Node.js sample behind a dual-stack NodePort Service. The startup
  // delay keeps the SYN held long enough for the test to see it.
  function nodePortSample(name: string, nodePort: number): SampleWorkload {
    const sample = nodeHttpWorkload({ workDir: testbed.workloadDir, name, startupDelayMs: 1500 });
    const service = structuredClone(sample.service);
    service.spec!.type = 'NodePort';
    service.spec!.ports![0]!.nodePort = nodePort;
    return { ...sample, service };
  }

  it('Node object lists both InternalIPs', async () => {
    const node = await testbed.core.readNode({ name: NODE });
    const expected = testbed.network.nodeAddresses(NODE);

    const internal = (node.status?.addresses ?? []).filter((address) => address.type === 'InternalIP').map((address) => address.address);
    assert.deepEqual(internal, [expected.ipv4, expected.ipv6]);
  });

  const cases = [
    { family: 'IPv4', name: 'np4', nodePort: 30080 },
    { family: 'IPv6', name: 'np6', nodePort: 30081 },
  ] as const;

  for (const { family, name, nodePort } of cases) {
    it(`${family} nodePort held, woken, served`, async () => {
      const workload = await testbed.deploy(nodePortSample(name, nodePort), { scaleToZero: { idleTimeout: '1h' } });
      await testbed.waitForPhase(workload.key!, 'Cold', { gateClosed: true });
      const addresses = testbed.network.nodeAddresses(NODE);
      const address = family === 'IPv4' ? addresses.ipv4 : addresses.ipv6;
      const syns = await testbed.synCounter(NODE, { address, port: nodePort });

      const running = testbed.run(testbed.externalClient(), 'curl', curlArgs(address, nodePort));
      const heldFlow = await waitFor<HeldFlowSummary>(
        `a held flow of ${workload.key} on ${NODE}`,
        async () => (await testbed.agent(NODE).heldFlows()).find((flow) => flow.workload === workload.key),
        10_000,
        20,
      );
      const result = await running;
      const { body, timing } = parseCurl(result.stdout);

      assert.equal(heldFlow.destination, address);
      assert.equal(heldFlow.destinationPort, nodePort);
      assert.ok(result.ok, `${describeResult(result)}\n${timelineSince(result.startedUnixMs)}`);
      assert.equal(timing?.httpCode, 200);
      assert.match(body, new RegExp(`^hello from ${name}-`));
      assert.equal(await testbed.replicas(workload), 1, 'replicas after the wake');
      assert.equal(await syns.read(), 1, `SYNs to ${address}:${nodePort} entering ${NODE}, want 1 (no retransmission)\n${timelineSince(result.startedUnixMs)}`);
    });
  }
});
