// Held records that are still in the ring when a release opens the gate.
// The release reads them into the held frame store and sends them itself.
// A record that comes after the release is re-injected at once, or
// discarded with reinjectLate false.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { Datapath, type ReleaseResult } from '../../src/datapath/datapath.js';
import { netnsPath, TestNetwork } from '../lib/netns.js';
import { buildFrame, TCP_SYN } from '../lib/packets.js';

const SERVICE = 3;
const SERVICE_IP = '198.19.0.40';
// Offset of the TCP sequence number in an untagged IPv4 frame.
const SEQ_OFFSET = 14 + 20 + 4;

const network = new TestNetwork();
let netns: string;

before(async () => {
  netns = netnsPath(await network.addNamespace('release-drain'));
});

after(() => network.cleanup());

function syn(seq: number): Buffer {
  return buildFrame({ src: '198.18.0.1', dst: SERVICE_IP, tcp: { srcPort: 40000, dstPort: 80, flags: TCP_SYN, seq } });
}

async function openCold(options: { reinjectLate?: boolean } = {}): Promise<{ dp: Datapath; late: ReleaseResult[] }> {
  const dp = await Datapath.open({ maxServices: 16, netns, ...options });
  dp.configureService(SERVICE, { state: 'cold', wakeIntervalMs: 0 });
  dp.frontends.set({ address: SERVICE_IP, protocol: 'tcp', port: 80 }, SERVICE);
  const late: ReleaseResult[] = [];
  dp.on('late-release', (result) => late.push(result));
  return { dp, late };
}

test('release sends records read in its drain', async () => {
  const { dp, late } = await openCold();
  try {
    // The first SYN is in the store, and its retransmission still in the
    // ring when the release starts.
    dp.program('zh_xdp_hold').testRunSync({ data: syn(1000) });
    dp.drain();
    dp.program('zh_xdp_hold').testRunSync({ data: syn(2000) });

    const result = await dp.release(SERVICE);
    await new Promise((resolve) => setImmediate(resolve));

    assert.deepEqual(late, [], 'a record of the release went out on the late path');
    assert.equal(result.released.length, 1, 'one flow');
    assert.equal(result.released[0]!.record.frame.readUInt32BE(SEQ_OFFSET), 2000, 'the newest SYN of the flow');
  } finally {
    await dp.close();
  }
});

test('late record discarded without reinjectLate', async () => {
  const { dp, late } = await openCold({ reinjectLate: false });
  try {
    // Held while cold, read only after the gate opened.
    dp.program('zh_xdp_hold').testRunSync({ data: syn(3000) });
    dp.setServiceState(SERVICE, 'warm');
    dp.drain();

    assert.equal(late.length, 1);
    assert.deepEqual(late[0]!.released, []);
    assert.equal(late[0]!.discarded?.length, 1);
  } finally {
    await dp.close();
  }
});
