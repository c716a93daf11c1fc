// Idle scale-down through the whole testbed, on one node with one agent
// that reports its activity every second. A workload with a short
// idleTimeout goes back to zero after its traffic stops and wakes again
// for the next client. A connection that keeps sending keeps its workload
// warm, because the agent counts activity from the packets that pass its
// warm frontends.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { describeResult } from '../testbed/client-run.js';
import { curlArgs, parseCurl, redisCliArgs } from '../testbed/client-commands.js';
import { nodeHttpWorkload, redisWorkload } from '../testbed/servers.js';
import { type DeployedWorkload, Testbed } from '../testbed/testbed.js';
import { waitFor } from '../lib/netns.js';

const IDLE_TIMEOUT_MS = 3000;

describe('scale-down', () => {
  let testbed: Testbed;

  before(async () => {
    testbed = await Testbed.start({ nodes: 1, externalClients: 1, clientPodsPerNode: 0, reportInterval: '1s' });
  });

  after(async () => {
    await testbed?.close();
  });

  async function waitForScaledToZero(workload: DeployedWorkload, timeoutMs = 30_000): Promise<void> {
    await waitFor(`${workload.name} at zero replicas`, async () => ((await testbed.replicas(workload)) === 0 ? true : undefined), timeoutMs, 100);
    await testbed.waitForPhase(workload.key!, 'Cold', { gateClosed: true });
  }

  async function eventReasons(workload: DeployedWorkload): Promise<string[]> {
    const events = await testbed.core.listNamespacedEvent({ namespace: workload.namespace });
    return events.items.filter((event) => event.involvedObject.name === workload.name).map((event) => event.reason ?? '');
  }

  it('idle workload scales down and wakes again', async () => {
    const workload = await testbed.deploy(nodeHttpWorkload({ workDir: testbed.workloadDir, name: 'idle' }), { scaleToZero: { idleTimeout: `${IDLE_TIMEOUT_MS}ms` } });
    await testbed.waitForPhase(workload.key!, 'Cold', { gateClosed: true });
    const client = testbed.externalClient();

    const first = await testbed.run(client, 'curl', curlArgs(workload.clusterIPv4, 80));
    assert.ok(first.ok, describeResult(first));
    assert.equal(await testbed.replicas(workload), 1);

    await waitForScaledToZero(workload);
    const idleMs = Date.now() - first.endedUnixMs;
    assert.ok(idleMs >= IDLE_TIMEOUT_MS, `scaled to zero ${idleMs} ms after the last request, want at least ${IDLE_TIMEOUT_MS}`);
    assert.ok((await eventReasons(workload)).includes('ScaledToZero'), `events: ${(await eventReasons(workload)).join(', ')}`);

    const syns = await testbed.synCounter('node-0', { address: workload.clusterIPv4, port: 80 });
    const second = await testbed.run(client, 'curl', curlArgs(workload.clusterIPv4, 80));

    assert.ok(second.ok, describeResult(second));
    assert.match(parseCurl(second.stdout).body, /^hello from idle-/);
    assert.equal(await syns.read(), 1, 'SYNs of the second wake entering node-0');
    assert.equal(await testbed.replicas(workload), 1);
  });

  it('sending connection keeps workload warm', async () => {
    const workload = await testbed.deploy(redisWorkload({ workDir: testbed.workloadDir, name: 'busy' }), { scaleToZero: { idleTimeout: `${IDLE_TIMEOUT_MS}ms` } });
    await testbed.waitForPhase(workload.key!, 'Cold', { gateClosed: true });

    // One connection, one PING every 250 ms for 10 s: more than three idle
    // timeouts, each of them with traffic.
    const pings = 40;
    const running = testbed.run(testbed.externalClient(), 'redis-cli', redisCliArgs(workload.clusterIPv4, ['PING'], { repeat: pings, intervalSeconds: 0.25 }), { timeoutMs: 30_000 });
    let done = false;
    void running.finally(() => (done = true));
    await waitFor('the wake of busy', async () => ((await testbed.replicas(workload)) === 1 ? true : undefined), 10_000, 50);
    const replicaSamples: number[] = [];
    while (!done) {
      replicaSamples.push(await testbed.replicas(workload));
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    const result = await running;

    assert.ok(result.ok, describeResult(result));
    assert.equal(result.stdout.trim().split('\n').filter((line) => line === 'PONG').length, pings);
    assert.deepEqual(
      replicaSamples.filter((replicas) => replicas !== 1),
      [],
      'replicas other than 1 while the connection was sending',
    );

    // Without the connection, the idle rule applies again.
    await waitForScaledToZero(workload);
  });
});
