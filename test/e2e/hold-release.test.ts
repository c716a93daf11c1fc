// Real traffic over a veth pair: a client namespace sends to a Service IP
// that a node namespace translates with nftables DNAT, as kube-proxy would.
// The first packet is held while no server listens. Once the server is up
// and the gate opens, the held frame is re-injected, and the client gets
// its response without waiting for a retransmission.

import assert from 'node:assert/strict';
import { readlinkSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';

import { Datapath, type AttachHook } from '../../src/datapath/datapath.js';
import type { HeldRecord } from '../../src/datapath/records.js';
import { MAX_FRAME } from '../../src/datapath/layout.js';
import { loadNative } from '../../src/datapath/native.js';
import { buildLiveFrame } from '../../src/datapath/reinject.js';
import { netnsPath, waitFor } from '../lib/netns.js';
import { buildTopology, NODE_V4, NODE_V6, startClient, type Topology } from '../lib/topology.js';
import { startHttpServer, startUdpEchoServer, udpClientArgs } from '../lib/servers.js';

const SERVICE_V4 = '198.19.0.10';
const SERVICE_V6 = 'fd5a:19::10';

const NFT_RULES = `
table inet zh_test {
  chain prerouting {
    type nat hook prerouting priority dstnat;
    ip daddr ${SERVICE_V4} tcp dport 80 dnat ip to ${NODE_V4}:8080
    ip daddr ${SERVICE_V4} udp dport 53 dnat ip to ${NODE_V4}:5353
    ip6 daddr ${SERVICE_V6} tcp dport 80 dnat ip6 to [${NODE_V6}]:8080
  }
}
`;

function collectHeld(dp: Datapath): HeldRecord[] {
  const held: HeldRecord[] = [];
  dp.on('held', (record) => held.push(record));
  return held;
}

async function coldService(topology: Topology, how: AttachHook): Promise<Datapath> {
  const dp = await Datapath.open({ netns: netnsPath(topology.node), maxServices: 8 });
  await dp.attach('n0', how);
  dp.configureService(1, { state: 'cold', wakeIntervalMs: 0 });
  dp.frontends.set({ address: SERVICE_V4, protocol: 'tcp', port: 80 }, 1);
  dp.frontends.set({ address: SERVICE_V4, protocol: 'udp', port: 53 }, 1);
  dp.frontends.set({ address: SERVICE_V6, protocol: 'tcp', port: 80 }, 1);
  dp.start();
  return dp;
}

const ATTACH_MODES: [string, AttachHook][] = [
  ['native XDP', { hook: 'xdp', mode: 'native' }],
  ['generic XDP', { hook: 'xdp', mode: 'generic' }],
  ['tc', { hook: 'tc' }],
  ['tc clsact', { hook: 'tc', kind: 'clsact' }],
];

for (const [label, how] of ATTACH_MODES) {
  describe(`hold and release over ${label}`, () => {
    let topology: Topology;
    let dp: Datapath;

    before(async () => {
      topology = await buildTopology(NFT_RULES);
      dp = await coldService(topology, how);
    });

    after(async () => {
      await dp?.close();
      await topology?.network.cleanup();
    });

    for (const [family, service] of [['IPv4', SERVICE_V4], ['IPv6', `[${SERVICE_V6}]`]] as const) {
      test(`curl over ${family} connects without retransmit`, async () => {
        const held = collectHeld(dp);
        const wakes: number[] = [];
        dp.on('wake', (w) => wakes.push(w.serviceId));

        try {
          const curl = startClient(topology.network, topology.client, 'curl', ['-sS', '--max-time', '10', '-w', '\n%{time_connect}', `http://${service}/`]);
          await waitFor('the SYN to reach user space', () => (held.length > 0 ? true : undefined));
          const server = await startHttpServer(topology.network, topology.node, family === 'IPv4' ? NODE_V4 : NODE_V6, 8080, `hello over ${label}`);

          const release = await dp.release(1);
          const [body, connectSeconds] = (await curl).split('\n');
          server.kill('SIGKILL');

          assert.equal(release.released.length, 1, 'released flows');
          assert.deepEqual(release.failed, []);
          assert.equal(body, `hello over ${label}`);
          assert.equal(held.length, 1, 'only the first SYN was held: no retransmission happened');
          assert.ok(Number(connectSeconds) < 1, `connect took ${connectSeconds} s, at least a retransmission timeout`);
          assert.ok(wakes.includes(1), 'a wake event was delivered');
        } finally {
          dp.setServiceState(1, 'cold');
        }
      });
    }

    test('early release passes closed gate', async () => {
      const held = collectHeld(dp);
      // A re-injected frame skips native XDP, and tc passes it by its mark,
      // but generic XDP would hold it again behind the closed gate.
      const bypasses = how.hook === 'tc' || how.mode === 'native';
      try {
        const curl = startClient(topology.network, topology.client, 'curl', ['-sS', '--max-time', '10', `http://${SERVICE_V4}/`]);
        await waitFor('the SYN to reach user space', () => (held.length > 0 ? true : undefined));
        const server = await startHttpServer(topology.network, topology.node, NODE_V4, 8080, 'early');

        const early = await dp.releaseEarly(1, (flow) => flow.record.flow.destination === SERVICE_V4);
        assert.equal(early.released.length, bypasses ? 1 : 0, 'flows re-injected with the gate closed');
        assert.equal(dp.held.sizeOf(1), bypasses ? 0 : 1, 'flows still held');
        if (!bypasses) assert.equal((await dp.release(1)).released.length, 1, 'the flow left for the release');

        assert.equal(await curl, 'early');
        assert.equal(held.length, 1, 'the re-injected SYN was not held again');
        server.kill('SIGKILL');
      } finally {
        dp.setServiceState(1, 'cold');
      }
    });

    test('UDP datagram is held and answered', async () => {
      const held = collectHeld(dp);
      try {
        const reply = startClient(topology.network, topology.client, process.execPath, udpClientArgs(SERVICE_V4, 53, 'ping', 5000));
        await waitFor('the datagram to reach user space', () => (held.length > 0 ? true : undefined));
        const server = await startUdpEchoServer(topology.network, topology.node, NODE_V4, 5353);

        const release = await dp.release(1);
        const answer = await reply;
        server.kill('SIGKILL');

        assert.equal(release.released.length, 1);
        assert.equal(answer.trim(), 'echo:ping');
      } finally {
        dp.setServiceState(1, 'cold');
      }
    });
  });
}

describe('tc re-injection marker', () => {
  let topology: Topology;
  let dp: Datapath;

  before(async () => {
    topology = await buildTopology(NFT_RULES);
    dp = await coldService(topology, { hook: 'tc' });
  });

  after(async () => {
    await dp?.close();
    await topology?.network.cleanup();
  });

  test('marked frame passes a closed gate', async () => {
    const held = collectHeld(dp);
    const curl = startClient(topology.network, topology.client, 'curl', ['-sS', '--max-time', '10', `http://${SERVICE_V4}/`]);
    await waitFor('the SYN to reach user space', () => (held.length > 0 ? true : undefined));
    const server = await startHttpServer(topology.network, topology.node, NODE_V4, 8080, 'marked');

    // Re-inject with the gate still cold: only the metadata marker lets
    // the frame through tc. The later segments of the connection are not
    // flow openers and pass anyway.
    const flows = dp.held.take(1);
    const outcome = await dp.program('zh_xdp_reinject').runLive(flows.map((f) => buildLiveFrame(f.record)), netnsPath(topology.node));

    assert.deepEqual(outcome.errors, []);
    assert.equal(await curl, 'marked');
    assert.equal(held.length, 1, 'the re-injected SYN was not held again');
    server.kill('SIGKILL');
  });

  test('live frames stop at MAX_FRAME', async () => {
    // A frame the datapath would hold must also re-inject: the kernel
    // accepts live frames up to MAX_FRAME bytes and rejects longer ones.
    const frame = (length: number) => {
      const bytes = Buffer.alloc(length);
      bytes.writeUInt16BE(0x88b5, 12); // local experimental ethertype, dropped by the stack
      return bytes;
    };
    const ifindex = await loadNative().ifNameToIndex('n0', netnsPath(topology.node));

    const outcome = await dp.program('zh_xdp_reinject').runLive(
      [{ frame: frame(MAX_FRAME), ifindex }, { frame: frame(MAX_FRAME + 1), ifindex }],
      netnsPath(topology.node),
    );

    assert.deepEqual(outcome.errors.map((e) => [e.index, e.code]), [[1, 'EINVAL']]);
    assert.equal(outcome.sent, 1);
  });

  test('live frames now on the JS thread', async () => {
    const frame = (length: number) => {
      const bytes = Buffer.alloc(length);
      bytes.writeUInt16BE(0x88b5, 12);
      return bytes;
    };
    const ifindex = await loadNative().ifNameToIndex('n0', netnsPath(topology.node));
    const program = dp.program('zh_xdp_reinject');
    // The JS thread's own namespace, read on that thread.
    const ownNamespace = readlinkSync('/proc/thread-self/ns/net');

    const outcome = program.runLiveNow([{ frame: frame(MAX_FRAME), ifindex }, { frame: frame(MAX_FRAME + 1), ifindex }], netnsPath(topology.node));
    assert.deepEqual(outcome.errors.map((e) => [e.index, e.code]), [[1, 'EINVAL']]);
    assert.equal(outcome.sent, 1);
    assert.equal(readlinkSync('/proc/thread-self/ns/net'), ownNamespace, 'the thread is back in its namespace');

    const many = Array.from({ length: 17 }, () => ({ frame: frame(60), ifindex }));
    assert.throws(() => program.runLiveNow(many, netnsPath(topology.node)), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' });
    assert.throws(() => program.runLiveNow([{ frame: frame(60), ifindex }], '/run/netns/zh-no-such-namespace'), /zh-no-such-namespace/);
    assert.equal(readlinkSync('/proc/thread-self/ns/net'), ownNamespace);
  });
});

describe('held record of an unmanaged id', () => {
  let topology: Topology;
  let dp: Datapath;

  before(async () => {
    topology = await buildTopology(NFT_RULES);
    // Not started, so the SYN's record waits in the ring, as it does while
    // an agent restarts.
    dp = await Datapath.open({ netns: netnsPath(topology.node), maxServices: 8 });
    await dp.attach('n0', { hook: 'xdp', mode: 'native' });
    dp.configureService(1, { state: 'cold', wakeIntervalMs: 0 });
    dp.frontends.set({ address: SERVICE_V4, protocol: 'tcp', port: 80 }, 1);
  });

  after(async () => {
    await dp?.close();
    await topology?.network.cleanup();
  });

  test('is re-injected at once', async () => {
    const held = collectHeld(dp);
    const late: number[] = [];
    dp.on('late-release', (result) => late.push(result.released.length));

    const curl = startClient(topology.network, topology.client, 'curl', ['-sS', '--max-time', '10', '-w', '\n%{time_connect}', `http://${SERVICE_V4}/`]);
    await waitFor('the SYN to reach the ring', () => (dp.services.readCounters(1).held_frames > 0n ? true : undefined));
    const server = await startHttpServer(topology.network, topology.node, NODE_V4, 8080, 'unmanaged');
    // What the agent does when the workload is removed, or when a restart
    // finds its frontend claimed by no workload.
    dp.frontends.delete({ address: SERVICE_V4, protocol: 'tcp', port: 80 });
    dp.configureService(1, { state: 'unmanaged', wakeIntervalMs: 0 });
    dp.drain();

    const [body, connectSeconds] = (await curl).split('\n');
    server.kill('SIGKILL');
    assert.equal(body, 'unmanaged');
    assert.ok(Number(connectSeconds) < 1, `connect took ${connectSeconds} s, at least a retransmission timeout`);
    assert.equal(held.length, 0, 'the record was not held for a workload');
    await waitFor('the late release', () => (late.length > 0 ? true : undefined));
    assert.deepEqual(late, [1]);
  });
});
