// Cold starts through the whole testbed: two nodes with an agent each, an
// external client routed through node-0, and one client pod per node.
// Every workload starts at zero replicas with a ScaleToZero, so the first
// packet of each client is held in XDP until the workload is Ready.
//
// "No SYN retransmission" is measured with a SynCounter on the node that
// receives the client's packets. Held SYNs are counted once, when the
// agent re-injects them. So a count above the number of connections means
// that a client had to send its SYN again after the gate opened. For curl,
// the handshake must also complete soon after the pod turned Ready.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { describeResult } from '../testbed/client-run.js';
import { curlArgs, digArgs, parallelCurl, parseCurl, parseParallelCurl, psqlArgs, redisCliArgs } from '../testbed/client-commands.js';
import { DNS_RECORD_ADDRESS, DNS_RECORD_NAME, dnsWorkload, nginxWorkload, nodeHttpWorkload, postgresWorkload, redisWorkload, type SampleWorkload } from '../testbed/servers.js';
import { type DeployedWorkload, Testbed } from '../testbed/testbed.js';
import { formatTimeline } from '../testbed/timeline.js';

// Maximum time from the pod's Ready to the client's completed handshake.
// A SYN retransmission takes at least 1 s (Linux's initial RTO), so a
// handshake within this bound came from the re-injected SYN.
const READY_TO_CONNECT_MAX_MS = 500;

describe('cold start', () => {
  let testbed: Testbed;

  before(async () => {
    testbed = await Testbed.start({ nodes: 2, externalClients: 1, clientPodsPerNode: 1 });
  });

  after(async () => {
    await testbed?.close();
  });

  // Deploys the sample at zero replicas and waits until every agent reports
  // it Cold with its gate closed.
  async function deployCold(sample: SampleWorkload, node?: string): Promise<DeployedWorkload> {
    const workload = await testbed.deploy(sample, { scaleToZero: { idleTimeout: '1h' }, ...(node ? { node } : {}) });
    await testbed.waitForPhase(workload.key!, 'Cold', { gateClosed: true });
    return workload;
  }

  function timelineSince(unixMs: number): string {
    return `timeline:\n${formatTimeline(testbed.events.since(unixMs - 50), unixMs)}`;
  }

  async function checkCurlColdStart(workload: DeployedWorkload, ns: string, entryNode: string, address: string, port: number, extra: string[] = []): Promise<string> {
    const syns = await testbed.synCounter(entryNode, { address, port });
    const result = await testbed.run(ns, 'curl', curlArgs(address, port, { extra }));
    const { body, timing } = parseCurl(result.stdout);
    const readyMs = testbed.podReadyUnixMs(workload, result.startedUnixMs);

    assert.ok(result.ok, `${describeResult(result)}\n${timelineSince(result.startedUnixMs)}`);
    assert.equal(timing?.httpCode, 200);
    assert.equal(await syns.read(), 1, `SYNs to ${address}:${port} entering ${entryNode}, want 1 (no retransmission)\n${timelineSince(result.startedUnixMs)}`);
    assert.ok(readyMs !== undefined, `no pod-ready event of ${workload.name}`);
    const connectedMs = result.startedUnixMs + timing!.connectSeconds * 1000;
    assert.ok(connectedMs - readyMs < READY_TO_CONNECT_MAX_MS, `handshake ${Math.round(connectedMs - readyMs)} ms after the pod turned Ready, want under ${READY_TO_CONNECT_MAX_MS}`);
    assert.equal(await testbed.replicas(workload), 1);
    return body;
  }

  it('nginx wakes for external curl', async () => {
    const workload = await deployCold(nginxWorkload({ workDir: testbed.workloadDir, name: 'web-ext' }));

    const body = await checkCurlColdStart(workload, testbed.externalClient(), 'node-0', workload.clusterIPv4, 80);

    assert.match(body, /Welcome to nginx/);
  });

  it('nginx wakes for client pod curl', async () => {
    // The pod runs on node-0 and the client behind node-1, so the DNAT'ed
    // SYN crosses the fabric.
    const workload = await deployCold(nginxWorkload({ workDir: testbed.workloadDir, name: 'web-pod' }), 'node-0');

    const body = await checkCurlColdStart(workload, testbed.clientPod('node-1'), 'node-1', workload.clusterIPv4, 80);

    assert.match(body, /Welcome to nginx/);
  });

  it('client pod started later is held', async () => {
    const workload = await deployCold(nginxWorkload({ workDir: testbed.workloadDir, name: 'web-late' }), 'node-0');

    // The agent of node-1 attaches to the new pod's veth as the kernel
    // reports it, without a restart or a change of its configuration, and
    // the pod's first SYN, sent right after its network is set up, is held.
    const origin = Date.now();
    const index = await testbed.addClientPod('node-1');
    const body = await checkCurlColdStart(workload, testbed.clientPod('node-1', index), 'node-1', workload.clusterIPv4, 80);

    assert.match(body, /Welcome to nginx/);
    const veth = testbed.clientPods.get('node-1')![index]!.hostInterface;
    const attached = testbed.events.since(origin).find((event) => event.source === 'agent' && event.node === 'node-1' && event.type === 'attached' && event.fields.interface === veth);
    assert.ok(attached, `no log line of the agent of node-1 attaching to ${veth}\n${timelineSince(origin)}`);
    const listed = (await testbed.agent('node-1').interfaces()).find((iface) => iface.name === veth);
    assert.deepEqual(listed && { hook: listed.hook, entry: listed.entry, state: listed.state }, { hook: 'tc', entry: 'veth+', state: 'attached' }, `${veth} in the agent's interface list`);
  });

  it('IPv6 ClusterIP wakes for curl -6', async () => {
    const workload = await deployCold(nodeHttpWorkload({ workDir: testbed.workloadDir, name: 'web6' }));
    assert.notEqual(workload.clusterIPv6, '');

    const body = await checkCurlColdStart(workload, testbed.externalClient(), 'node-0', workload.clusterIPv6, 80, ['-6']);

    assert.match(body, /^hello from web6-/);
  });

  it('PostgreSQL wakes for psql', async () => {
    const workload = await deployCold(postgresWorkload({ workDir: testbed.workloadDir, name: 'db', startupDelaySeconds: 1.5 }));
    const syns = await testbed.synCounter('node-1', { address: workload.clusterIPv4, port: 5432 });

    const result = await testbed.run(testbed.clientPod('node-1'), 'psql', psqlArgs(workload.clusterIPv4, 'select 40 + 2'));

    assert.ok(result.ok, `${describeResult(result)}\n${timelineSince(result.startedUnixMs)}`);
    assert.equal(result.stdout.trim(), '42');
    const readyMs = testbed.podReadyUnixMs(workload, result.startedUnixMs);
    assert.ok(readyMs !== undefined, 'no pod-ready event of db');
    assert.ok(readyMs - result.startedUnixMs > 1000, `database Ready ${readyMs - result.startedUnixMs} ms after the client started, want over 1000`);
    assert.equal(await syns.read(), 1, `SYNs entering node-1, want 1 (no retransmission after the release)\n${timelineSince(result.startedUnixMs)}`);
  });

  it('pod without readiness probe connects', async () => {
    // Without a probe the pod turns Ready as its container starts, 1.5 s
    // before the server listens. A SYN re-injected at Ready would meet no
    // listener, and the reset in reply fails curl with "connection refused".
    const startupDelayMs = 1500;
    const workload = await deployCold(nodeHttpWorkload({ workDir: testbed.workloadDir, name: 'noprobe', startupDelayMs, readinessProbe: false }), 'node-0');
    const syns = await testbed.synCounter('node-0', { address: workload.clusterIPv4, port: 80 });

    const result = await testbed.run(testbed.externalClient(), 'curl', curlArgs(workload.clusterIPv4, 80));
    const { body, timing } = parseCurl(result.stdout);

    assert.ok(result.ok, `${describeResult(result)}\n${timelineSince(result.startedUnixMs)}`);
    assert.equal(timing?.httpCode, 200);
    assert.match(body, /^hello from noprobe-/);
    assert.equal(await syns.read(), 1, `SYNs entering node-0, want 1 (the held one)\n${timelineSince(result.startedUnixMs)}`);
    const [pod] = await testbed.readyPods(workload);
    const listening = Number(/listening (\d+)/.exec(testbed.kubelet('node-0').logs(workload.namespace, pod!))?.[1]);
    const readyMs = testbed.podReadyUnixMs(workload, result.startedUnixMs);
    assert.ok(readyMs !== undefined, 'no pod-ready event of noprobe');
    assert.ok(listening - readyMs >= startupDelayMs - 100, `pod Ready at ${readyMs}, server listening at ${listening}: want Ready before the server listens`);
    const connectedMs = result.startedUnixMs + timing!.connectSeconds * 1000;
    assert.ok(connectedMs - listening < READY_TO_CONNECT_MAX_MS, `handshake ${Math.round(connectedMs - listening)} ms after the server listened, want under ${READY_TO_CONNECT_MAX_MS}`);
  });

  it('Redis wakes for redis-cli PING', async () => {
    const workload = await deployCold(redisWorkload({ workDir: testbed.workloadDir, name: 'cache' }));
    const syns = await testbed.synCounter('node-0', { address: workload.clusterIPv4, port: 6379 });

    const result = await testbed.run(testbed.externalClient(), 'redis-cli', redisCliArgs(workload.clusterIPv4, ['PING']), { timeoutMs: 20_000 });

    assert.ok(result.ok, `${describeResult(result)}\n${timelineSince(result.startedUnixMs)}`);
    assert.equal(result.stdout.trim(), 'PONG');
    assert.equal(await syns.read(), 1, `SYNs entering node-0, want 1\n${timelineSince(result.startedUnixMs)}`);
  });

  it('dnsmasq wakes for one dig datagram', async () => {
    const workload = await deployCold(dnsWorkload({ workDir: testbed.workloadDir, name: 'dns' }));

    // dig sends a single query (+tries=1), so a reply means that the held
    // datagram itself was re-injected and served.
    const result = await testbed.run(testbed.clientPod('node-0'), 'dig', digArgs(workload.clusterIPv4, DNS_RECORD_NAME));

    assert.ok(result.ok, `${describeResult(result)}\n${timelineSince(result.startedUnixMs)}`);
    assert.equal(result.stdout.trim(), DNS_RECORD_ADDRESS, `${describeResult(result)}\n${timelineSince(result.startedUnixMs)}`);
  });

  it('UDP pod without readiness probe gets the held datagram', async () => {
    // Without a probe the pod turns Ready as its container starts, 1.5 s
    // before dnsmasq binds its port. A datagram re-injected at Ready would
    // meet no socket, and the ICMP port unreachable in reply fails dig.
    const startupDelaySeconds = 1.5;
    const workload = await deployCold(dnsWorkload({ workDir: testbed.workloadDir, name: 'dns-noprobe', startupDelaySeconds, readinessProbe: false }), 'node-0');

    const result = await testbed.run(testbed.clientPod('node-0'), 'dig', digArgs(workload.clusterIPv4, DNS_RECORD_NAME));

    assert.ok(result.ok, `${describeResult(result)}\n${timelineSince(result.startedUnixMs)}`);
    assert.equal(result.stdout.trim(), DNS_RECORD_ADDRESS, `${describeResult(result)}\n${timelineSince(result.startedUnixMs)}`);
    const [pod] = await testbed.readyPods(workload);
    const starting = Number(/starting (\d+)/.exec(testbed.kubelet('node-0').logs(workload.namespace, pod!))?.[1]);
    const readyMs = testbed.podReadyUnixMs(workload, result.startedUnixMs);
    assert.ok(readyMs !== undefined, 'no pod-ready event of dns-noprobe');
    assert.ok(starting - readyMs >= startupDelaySeconds * 1000 - 100, `pod Ready at ${readyMs}, dnsmasq starting at ${starting}: want Ready before dnsmasq binds`);
    const released = testbed.events.since(result.startedUnixMs).find((e) => e.source === 'agent' && e.node === 'node-0' && e.type.startsWith('released held flows') && e.fields.workload === workload.key);
    assert.ok(released !== undefined, `no release line of dns-noprobe\n${timelineSince(result.startedUnixMs)}`);
    assert.ok(released.unixMs >= starting, `released at ${released.unixMs}, dnsmasq starting at ${starting}: want the release after the bind\n${timelineSince(result.startedUnixMs)}`);
    const listens = testbed.events.since(result.startedUnixMs).find((e) => e.source === 'agent' && e.type === 'the backend listens' && e.fields.workload === workload.key);
    assert.ok(listens !== undefined, `no "the backend listens" line of dns-noprobe\n${timelineSince(result.startedUnixMs)}`);
    assert.match(String((listens.fields.endpoints as string[])[0]), /:53\/udp$/);
    assert.ok(Number(listens.fields.waitedMs) >= startupDelaySeconds * 1000 - 100, `the release waited ${listens.fields.waitedMs} ms for the bind`);
  });

  it('200 concurrent clients held and served', async () => {
    const clients = 200;
    // The delay keeps the workload waking long enough to see every flow held.
    const workload = await deployCold(nodeHttpWorkload({ workDir: testbed.workloadDir, name: 'crowd', startupDelayMs: 1500 }));
    const syns = await testbed.synCounter('node-0', { address: workload.clusterIPv4, port: 80 });
    const args = await parallelCurl(join(testbed.workDir, 'crowd.curlrc'), workload.clusterIPv4, 80, clients);
    const reinjectedBefore = reinjectedFrames(await testbed.agent('node-0').metrics());

    const running = testbed.run(testbed.externalClient(), 'curl', args, { timeoutMs: 40_000 });
    let maxHeld = 0;
    let done = false;
    void running.finally(() => (done = true));
    while (!done) {
      const held = (await testbed.agent('node-0').heldFlows()).filter((flow) => flow.workload === workload.key);
      maxHeld = Math.max(maxHeld, held.length);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const result = await running;
    const timings = parseParallelCurl(result.stdout);

    assert.ok(result.ok, `${describeResult(result)}\n${timelineSince(result.startedUnixMs)}`);
    assert.equal(maxHeld, clients, 'flows held on node-0 at once');
    assert.equal(timings.length, clients, 'timing lines from curl');
    assert.deepEqual(
      timings.filter((timing) => timing.httpCode !== 200),
      [],
      'requests without status 200',
    );
    assert.equal(await syns.read(), clients, `SYNs entering node-0, want one per client\n${timelineSince(result.startedUnixMs)}`);
    assert.equal(reinjectedFrames(await testbed.agent('node-0').metrics()) - reinjectedBefore, clients, 'frames counted by the re-injection program');
  });

  it('two nodes wake one workload once', async () => {
    const workload = await deployCold(nodeHttpWorkload({ workDir: testbed.workloadDir, name: 'shared', startupDelayMs: 500 }));
    const scalePath = `/apis/apps/v1/namespaces/${workload.namespace}/deployments/${workload.name}/scale`;
    const syns0 = await testbed.synCounter('node-0', { address: workload.clusterIPv4, port: 80 });
    const syns1 = await testbed.synCounter('node-1', { address: workload.clusterIPv4, port: 80 });

    const [first, second] = await Promise.all([
      testbed.run(testbed.clientPod('node-0'), 'curl', curlArgs(workload.clusterIPv4, 80)),
      testbed.run(testbed.clientPod('node-1'), 'curl', curlArgs(workload.clusterIPv4, 80)),
    ]);

    assert.ok(first.ok, `${describeResult(first)}\n${timelineSince(first.startedUnixMs)}`);
    assert.ok(second.ok, `${describeResult(second)}\n${timelineSince(second.startedUnixMs)}`);
    assert.equal(await syns0.read(), 1, 'SYNs entering node-0');
    assert.equal(await syns1.read(), 1, 'SYNs entering node-1');
    const scaleWrites = testbed.server.requests.filter((r) => r.path.startsWith(scalePath) && (r.method === 'PUT' || r.method === 'PATCH') && r.status < 300);
    assert.equal(scaleWrites.length, 1, `successful scale writes: ${JSON.stringify(scaleWrites)}`);
    const deployment = await testbed.apps.readNamespacedDeployment({ name: workload.name, namespace: workload.namespace });
    // Generation 1 at creation, and one more for the single replicas change.
    assert.equal(deployment.metadata?.generation, 2);
    assert.equal(deployment.spec?.replicas, 1);
  });
});

// Reads zerohold_datapath_reinjected_frames_total from an agent's metrics.
function reinjectedFrames(metrics: string): number {
  const match = /^zerohold_datapath_reinjected_frames_total (\d+)$/m.exec(metrics);
  assert.ok(match, 'no zerohold_datapath_reinjected_frames_total in the metrics');
  return Number(match[1]);
}
