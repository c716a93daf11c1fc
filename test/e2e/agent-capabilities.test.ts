// The agent process as the DaemonSet runs it: inside the node's network
// namespace from the start, with only the capabilities that
// deploy/kubernetes/daemonset.yaml adds, instead of as full root. A cold
// start goes through it, then a SIGKILL and a restart that finds the pins
// of the first run, as after an OOM kill in a cluster.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';

import { describeResult } from '../testbed/client-run.js';
import { curlArgs, parseCurl } from '../testbed/client-commands.js';
import { nodeHttpWorkload } from '../testbed/servers.js';
import { daemonSetCapabilities } from '../lib/daemonset.js';
import { type DeployedWorkload, Testbed } from '../testbed/testbed.js';

describe('agent with DaemonSet capabilities', () => {
  let testbed: Testbed;
  let workload: DeployedWorkload;

  before(async () => {
    testbed = await Testbed.start({ nodes: 1, externalClients: 1, clientPodsPerNode: 0, agentCapabilities: daemonSetCapabilities() });
  });

  after(async () => {
    await testbed?.close();
  });

  it('runs without CAP_SYS_ADMIN', async () => {
    const { pid } = testbed.agent('node-0');
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const effective = BigInt(`0x${/^CapEff:\s+([0-9a-f]+)$/m.exec(status)![1]}`);
    const CAP_SYS_ADMIN = 21n;
    assert.equal((effective >> CAP_SYS_ADMIN) & 1n, 0n, `CapEff ${effective.toString(16)} has CAP_SYS_ADMIN`);
  });

  it('holds and releases a cold start', async () => {
    workload = await testbed.deploy(nodeHttpWorkload({ workDir: testbed.workloadDir, name: 'web-caps' }), { scaleToZero: { idleTimeout: '1h' } });
    await testbed.waitForPhase(workload.key!, 'Cold', { gateClosed: true });

    const syns = await testbed.synCounter('node-0', { address: workload.clusterIPv4, port: 80 });
    const result = await testbed.run(testbed.externalClient(), 'curl', curlArgs(workload.clusterIPv4, 80));
    assert.ok(result.ok, describeResult(result));
    const { body, timing } = parseCurl(result.stdout);
    assert.equal(timing?.httpCode, 200);
    assert.match(body, /^hello from web-caps-/);
    assert.equal(await syns.read(), 1, 'the held SYN connected, with no retransmission');
  });

  it('restarts on its pins after SIGKILL', async () => {
    const agent = testbed.agent('node-0');
    await agent.kill('SIGKILL');
    const before = agent.output.length;
    await agent.start();
    await agent.waitForReady();

    const output = agent.output.slice(before);
    assert.doesNotMatch(output, /replaced the pinned map/, 'every pin is reused, layouts included');
    assert.doesNotMatch(output, /EPERM|Operation not permitted/);
    assert.equal(await testbed.replicas(workload), 1);
    const result = await testbed.run(testbed.externalClient(), 'curl', curlArgs(workload.clusterIPv4, 80));
    assert.ok(result.ok, describeResult(result));
  });
});
