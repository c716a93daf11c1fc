// A cold start on a node whose kube-proxy runs in iptables mode, where the
// agent waits with release.kubeProxy: iptables. The stand-in writes each
// change 400 ms late, as kube-proxy on a large node does, and until then
// its filter table rejects the Service. A held SYN re-injected at the
// Ready endpoint would meet that reject, and curl would fail at once with
// "connection refused" instead of connecting.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { describeResult } from '../testbed/client-run.js';
import { curlArgs, parseCurl } from '../testbed/client-commands.js';
import { nodeHttpWorkload } from '../testbed/servers.js';
import { Testbed } from '../testbed/testbed.js';
import { formatTimeline } from '../testbed/timeline.js';

const SYNC_DELAY_MS = 400;

describe('kube-proxy iptables mode', () => {
  let testbed: Testbed;

  before(async () => {
    testbed = await Testbed.start({ nodes: 1, externalClients: 1, clientPodsPerNode: 0, kubeProxyMode: 'iptables', kubeProxySyncDelayMs: SYNC_DELAY_MS });
  });

  after(async () => {
    await testbed?.close();
  });

  it('cold start waits for the sync', async () => {
    const workload = await testbed.deploy(nodeHttpWorkload({ workDir: testbed.workloadDir, name: 'web-ipt' }), { scaleToZero: { idleTimeout: '1h' } });
    await testbed.waitForPhase(workload.key!, 'Cold', { gateClosed: true });

    const syns = await testbed.synCounter('node-0', { address: workload.clusterIPv4, port: 80 });
    const result = await testbed.run(testbed.externalClient(), 'curl', curlArgs(workload.clusterIPv4, 80));
    const timeline = `timeline:\n${formatTimeline(testbed.events.since(result.startedUnixMs - 50), result.startedUnixMs)}`;

    assert.ok(result.ok, `${describeResult(result)}\n${timeline}`);
    const { body, timing } = parseCurl(result.stdout);
    assert.equal(timing?.httpCode, 200);
    assert.match(body, /^hello from web-ipt-/);
    assert.equal(await syns.read(), 1, `SYNs entering node-0, want 1 (no retransmission)\n${timeline}`);

    // The handshake came after the sync that followed Ready, and before a
    // SYN retransmission could have.
    const readyMs = testbed.podReadyUnixMs(workload, result.startedUnixMs)!;
    const sync = testbed.events.since(readyMs).find((event) => event.type === 'iptables-sync' && (event.fields.services as string[]).includes(`${testbed.namespace}/web-ipt`));
    assert.ok(sync, `no iptables sync with the Service after Ready\n${timeline}`);
    // The agent re-injected the held SYN once the IPv4 rules were in
    // force, when their restore returned, which comes before the IPv6
    // restore and the sync event. The agent logs whole milliseconds.
    const ipv4AppliedMs = (sync.fields.appliedUnixMs as { ipv4: number }).ipv4;
    const release = testbed.events.since(readyMs).find((event) => event.source === 'agent' && event.type.startsWith('released held flows'));
    assert.ok(release, `no release after Ready\n${timeline}`);
    assert.ok(release.unixMs >= Math.floor(ipv4AppliedMs), `released ${ipv4AppliedMs - release.unixMs} ms before the IPv4 rules were written\n${timeline}`);
    const connectedMs = result.startedUnixMs + timing!.connectSeconds * 1000;
    assert.ok(connectedMs - readyMs < SYNC_DELAY_MS + 500, `handshake ${Math.round(connectedMs - readyMs)} ms after Ready\n${timeline}`);
  });
});
