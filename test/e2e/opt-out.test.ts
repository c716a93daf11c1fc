// Workloads without a ScaleToZero next to running agents: the agents must
// not scale them, hold their traffic or track them.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { waitFor } from '../lib/netns.js';
import { describeResult } from '../testbed/client-run.js';
import { curlArgs, parseCurl } from '../testbed/client-commands.js';
import { nginxWorkload, nodeHttpWorkload } from '../testbed/servers.js';
import { type DeployedWorkload, Testbed } from '../testbed/testbed.js';

describe('opt-out', () => {
  let testbed: Testbed;

  before(async () => {
    testbed = await Testbed.start({ nodes: 2, externalClients: 1, clientPodsPerNode: 1 });
  });

  after(async () => {
    await testbed?.close();
  });

  function scaleWrites(workload: DeployedWorkload): number {
    const path = `/apis/apps/v1/namespaces/${workload.namespace}/deployments/${workload.name}/scale`;
    return testbed.server.requests.filter((r) => r.path.startsWith(path) && r.method !== 'GET').length;
  }

  async function trackedBy(workload: DeployedWorkload): Promise<string[]> {
    const nodes: string[] = [];
    for (const node of testbed.nodes) {
      if ((await testbed.agent(node).workloads()).some((summary) => summary.target.name === workload.name)) nodes.push(node);
    }
    return nodes;
  }

  it('running workload keeps serving', async () => {
    const workload = await testbed.deploy(nginxWorkload({ workDir: testbed.workloadDir, name: 'plain' }));
    await waitFor('a Ready pod of plain', async () => ((await testbed.readyPods(workload)).length === 1 ? true : undefined), 15_000, 50);
    // The Service proxies sync after the EndpointSlice changes.
    await waitFor('a served request', async () => ((await testbed.run(testbed.externalClient(), 'curl', curlArgs(workload.clusterIPv4, 80, { maxTimeSeconds: 2 }))).ok ? true : undefined), 10_000, 100);
    const syns = await testbed.synCounter('node-1', { address: workload.clusterIPv4, port: 80 });

    const results = [];
    for (let i = 0; i < 5; i++) results.push(await testbed.run(testbed.clientPod('node-1'), 'curl', curlArgs(workload.clusterIPv4, 80)));

    for (const result of results) assert.ok(result.ok, describeResult(result));
    for (const result of results) assert.match(parseCurl(result.stdout).body, /Welcome to nginx/);
    for (const result of results) assert.ok(result.durationMs < 1000, `request took ${Math.round(result.durationMs)} ms, want under 1000`);
    assert.equal(await syns.read(), 5);
    assert.deepEqual(await trackedBy(workload), []);
    assert.equal(scaleWrites(workload), 0);
    const deployment = await testbed.apps.readNamespacedDeployment({ name: workload.name, namespace: workload.namespace });
    assert.equal(deployment.metadata?.generation, 1);
    assert.equal(deployment.spec?.replicas, 1);
  });

  it('workload at zero stays at zero', async () => {
    const workload = await testbed.deploy(nodeHttpWorkload({ workDir: testbed.workloadDir, name: 'dormant' }), { replicas: 0 });

    const result = await testbed.run(testbed.externalClient(), 'curl', curlArgs(workload.clusterIPv4, 80, { maxTimeSeconds: 3 }));
    // Time for an agent that wrongly reacted to the SYN to scale up.
    await new Promise((resolve) => setTimeout(resolve, 2000));

    assert.equal(result.ok, false, describeResult(result));
    assert.deepEqual(await trackedBy(workload), []);
    for (const node of testbed.nodes) assert.deepEqual(await testbed.agent(node).heldFlows(), [], `flows held on ${node}`);
    assert.equal(scaleWrites(workload), 0);
    const deployment = await testbed.apps.readNamespacedDeployment({ name: workload.name, namespace: workload.namespace });
    assert.equal(deployment.metadata?.generation, 1);
    assert.equal(deployment.spec?.replicas, 0);
  });
});
