// The agent process failing and coming back, on a one-node testbed: a
// SIGKILL in the middle of a wake, a SIGTERM that must detach every
// program, and a close() that must leave no agent process, bpffs pin or
// namespace behind.

import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { loadNative } from '../../src/datapath/native.js';
import { parseLinkPinPath } from '../../src/datapath/pinned-links.js';
import { run, waitFor } from '../lib/netns.js';
import type { ClientResult } from '../testbed/client-run.js';
import { describeResult } from '../testbed/client-run.js';
import { curlArgs } from '../testbed/client-commands.js';
import { nodeHttpWorkload } from '../testbed/servers.js';
import { Testbed } from '../testbed/testbed.js';
import { formatTimeline } from '../testbed/timeline.js';

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('agent restart', () => {
  let testbed: Testbed;

  before(async () => {
    testbed = await Testbed.start({ nodes: 1, externalClients: 1, clientPodsPerNode: 1 });
  });

  after(async () => {
    await testbed?.close();
  });

  // Returns the interfaces of the node's namespace that have an XDP program.
  async function xdpInterfaces(node: string): Promise<string[]> {
    const { stdout } = await testbed.network.exec(testbed.network.nodeNetns(node), 'ip', ['-j', '-d', 'link', 'show']);
    const links = JSON.parse(stdout) as { ifname: string; xdp?: unknown }[];
    return links.filter((link) => link.xdp !== undefined).map((link) => link.ifname);
  }

  // Returns the interfaces whose tcx link is pinned in the agent's pinDir
  // under their name and attached to them.
  async function tcxInterfaces(node: string): Promise<string[]> {
    const pinDir = testbed.agent(node).pinDir;
    const { stdout } = await testbed.network.exec(testbed.network.nodeNetns(node), 'ip', ['-j', 'link', 'show']);
    const ifindexes = new Map((JSON.parse(stdout) as { ifname: string; ifindex: number }[]).map((link) => [link.ifname, link.ifindex]));
    const names: string[] = [];
    for (const name of readdirSync(pinDir)) {
      const parsed = parseLinkPinPath(name);
      if (parsed?.hook !== 'tcx') continue;
      const link = loadNative().openPinnedLink(path.join(pinDir, name));
      if (link.info().ifindex === ifindexes.get(parsed.ifname)) names.push(parsed.ifname);
      link.close();
    }
    return names.sort();
  }

  // The agent pins its XDP links in its pinDir, so they outlive the
  // process and the restarted agent takes them over.
  it('SIGKILL during a wake loses no client', async () => {
    // The startup delay keeps the wake going while the agent is down.
    const workload = await testbed.deploy(nodeHttpWorkload({ workDir: testbed.workloadDir, name: 'survivor', startupDelayMs: 3000 }), {
      scaleToZero: { idleTimeout: '1h' },
    });
    await testbed.waitForPhase(workload.key!, 'Cold', { gateClosed: true });
    const agent = testbed.agent('node-0');
    const origin = Date.now();

    const clients: Promise<ClientResult>[] = [];
    for (let i = 0; i < 3; i++) clients.push(testbed.run(testbed.externalClient(), 'curl', curlArgs(workload.clusterIPv4, 80, { maxTimeSeconds: 30 })));
    clients.push(testbed.run(testbed.clientPod('node-0'), 'curl', curlArgs(workload.clusterIPv4, 80, { maxTimeSeconds: 30 })));
    await waitFor('four held flows', async () => ((await agent.heldFlows()).length === 4 ? true : undefined), 10_000, 20);

    const exit = await testbed.killAgent('node-0', 'SIGKILL');
    assert.equal(exit.signal, 'SIGKILL');
    // The gate must outlive the process: with no XDP program, the clients'
    // retransmitted SYNs meet no DNAT rule and get ICMP unreachable.
    assert.deepEqual(await xdpInterfaces('node-0'), ['eth0'], 'interfaces with XDP after the SIGKILL');
    const clientVeth = testbed.clientPods.get('node-0')![0]!.hostInterface;
    assert.ok((await tcxInterfaces('node-0')).includes(clientVeth), `the client pod's ${clientVeth} keeps its tcx link after the SIGKILL`);
    // Down for a while, as a crashed DaemonSet pod is until it restarts.
    await new Promise((resolve) => setTimeout(resolve, 500));
    await testbed.restartAgent('node-0');
    const results = await Promise.all(clients);

    const timeline = formatTimeline(testbed.events.since(origin), origin);
    for (const result of results) assert.ok(result.ok, `${describeResult(result)}\ntimeline:\n${timeline}`);
    assert.equal(agent.runs, 2);
  });

  it('SIGTERM detaches every program', async () => {
    // A fresh agent, whatever the test before left.
    await testbed.restartAgent('node-0');
    const agent = testbed.agent('node-0');
    assert.deepEqual(await xdpInterfaces('node-0'), ['eth0']);
    const clientVeth = testbed.clientPods.get('node-0')![0]!.hostInterface;
    assert.ok((await tcxInterfaces('node-0')).includes(clientVeth), `${clientVeth} has a tcx link`);

    const exit = await testbed.killAgent('node-0', 'SIGTERM');

    assert.equal(exit.code, 0, agent.output.slice(-4000));
    assert.deepEqual(await xdpInterfaces('node-0'), []);
    assert.deepEqual(await tcxInterfaces('node-0'), []);
  });

  it('close leaves nothing behind', async () => {
    await testbed.restartAgent('node-0');
    const agent = testbed.agent('node-0');
    const pid = agent.pid!;

    await testbed.close();

    assert.equal(isAlive(pid), false, `agent PID ${pid} still runs`);
    assert.equal(existsSync(agent.pinDir), false, `pin directory ${agent.pinDir} still exists`);
    assert.equal(existsSync(testbed.workDir), false, `work directory ${testbed.workDir} still exists`);
    // TestNetwork names every namespace zh<PID>-<counter>-<role>, and this
    // process runs no other testbed.
    const { stdout } = await run('ip', ['netns', 'list']);
    const left = stdout.split('\n').filter((line) => line.startsWith(`zh${process.pid}-`));
    assert.deepEqual(left, [], 'namespaces left by the testbed');
  });
});

// A rolling update with shutdown.handover: the old agent leaves its
// programs attached and holding, and the next agent takes over the held
// ring. With no agent after the deadline, the programs stop holding.
describe('agent hand-over', () => {
  let testbed: Testbed;

  before(async () => {
    testbed = await Testbed.start({ nodes: 1, externalClients: 1, clientPodsPerNode: 0, handover: '30s', failOpenAfter: '1s' });
  });

  after(async () => {
    await testbed?.close();
  });

  it('SIGTERM hands over held flows', async () => {
    const workload = await testbed.deploy(nodeHttpWorkload({ workDir: testbed.workloadDir, name: 'handed' }), { scaleToZero: { idleTimeout: '1h' } });
    await testbed.waitForPhase(workload.key!, 'Cold', { gateClosed: true });
    const agent = testbed.agent('node-0');
    const origin = Date.now();

    const exit = await testbed.killAgent('node-0', 'SIGTERM');
    assert.equal(exit.code, 0, agent.output.slice(-4000));
    assert.match(agent.output, /leaving the programs attached and holding for the next agent until /);
    const { stdout } = await testbed.network.exec(testbed.network.nodeNetns('node-0'), 'ip', ['-j', '-d', 'link', 'show', 'eth0']);
    assert.ok((JSON.parse(stdout) as { xdp?: unknown }[])[0]?.xdp, 'eth0 keeps its XDP program');

    // The client's SYN arrives while no agent runs, and waits in the ring.
    const client = testbed.run(testbed.externalClient(), 'curl', curlArgs(workload.clusterIPv4, 80, { maxTimeSeconds: 30 }));
    await new Promise((resolve) => setTimeout(resolve, 300));
    await testbed.restartAgent('node-0');
    const result = await client;

    const timeline = formatTimeline(testbed.events.since(origin), origin);
    // Detached, the programs would let the SYN and its retransmissions
    // meet no DNAT rule, and the client would get ICMP unreachable.
    assert.ok(result.ok, `${describeResult(result)}\ntimeline:\n${timeline}`);
  });

  it('past the deadline, openers pass', async () => {
    const workload = await testbed.deploy(nodeHttpWorkload({ workDir: testbed.workloadDir, name: 'unheld' }), { scaleToZero: { idleTimeout: '1h' } });
    await testbed.waitForPhase(workload.key!, 'Cold', { gateClosed: true });

    // SIGKILL ends the renewals, and the 1 s deadline passes.
    await testbed.killAgent('node-0', 'SIGKILL');
    await new Promise((resolve) => setTimeout(resolve, 1500));

    // The programs pass the SYN, and with no DNAT rule the client gets an
    // error at once instead of waiting for an agent.
    const result = await testbed.run(testbed.externalClient(), 'curl', curlArgs(workload.clusterIPv4, 80, { maxTimeSeconds: 5 }));
    assert.equal(result.ok, false);
    assert.ok(result.durationMs < 3000, `the client took ${result.durationMs} ms: ${describeResult(result)}`);

    // The next agent reads the wake signal that waited in the ring, and
    // the metric counts the opener that passed.
    await testbed.restartAgent('node-0');
    await testbed.waitForPhase(workload.key!, 'Warm', { timeoutMs: 20_000 });
    const metrics = await testbed.agent('node-0').metrics();
    assert.match(metrics, /^zerohold_datapath_flow_openers_total\{workload="[^"]*unheld",outcome="no-agent"\} [1-9]/m);
  });
});
