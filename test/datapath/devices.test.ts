// The datapath on devices whose frames differ from a plain Ethernet frame:
// a tun device, which has no Ethernet header and is rejected, and a veth
// whose receive path strips a VLAN tag before tc, which re-injection puts
// back. Also close() after one of the attached devices was deleted.

import assert from 'node:assert/strict';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { after, before, test } from 'node:test';

import { Datapath } from '../../src/datapath/datapath.js';
import { loadNative } from '../../src/datapath/native.js';
import { linkPinPath } from '../../src/datapath/pinned-links.js';
import type { HeldRecord } from '../../src/datapath/records.js';
import { counterDelta } from '../lib/harness.js';
import { netnsPath, TestNetwork, waitFor } from '../lib/netns.js';
import { buildFrame, ETH_P_8021Q } from '../lib/packets.js';

const SERVICE = 1;
const SERVICE_IP = '198.19.0.10';
const ZH_MAX_FRAME = 3408;

const network = new TestNetwork();
const datapaths: Datapath[] = [];
const pinDir = `/sys/fs/bpf/zh-test-devices-${process.pid}`;
let client: string;
let node: string;

before(async () => {
  client = await network.addNamespace('dev-client');
  node = await network.addNamespace('dev-node');
  await network.addVeth(client, 'c0', node, 'n0');
  // Room for a tagged frame of ZH_MAX_FRAME bytes.
  await network.exec(client, 'ip', ['link', 'set', 'c0', 'mtu', '9000']);
  await network.exec(node, 'ip', ['link', 'set', 'n0', 'mtu', '9000']);
  await network.exec(node, 'ip', ['tuntap', 'add', 'dev', 'tun0', 'mode', 'tun']);
});

after(async () => {
  for (const dp of datapaths) await dp.close();
  await network.cleanup();
  rmSync(pinDir, { recursive: true, force: true });
});

async function openDatapath(): Promise<Datapath> {
  const dp = await Datapath.open({ netns: netnsPath(node), maxServices: 4 });
  datapaths.push(dp);
  return dp;
}

for (const hook of ['xdp', 'tc'] as const) {
  test(`${hook} attach rejects a tun device`, async () => {
    const dp = await openDatapath();

    await assert.rejects(dp.attach('tun0', { hook }), /interface tun0 has link type 65534, but zerohold parses Ethernet frames only \(link type 1\)/);
  });
}

test('tc leaves room for a stripped tag', async () => {
  const dp = await openDatapath();
  await dp.attach('n0', { hook: 'tc' });
  dp.configureService(SERVICE, { state: 'cold', wakeIntervalMs: 0 });
  dp.frontends.set({ address: SERVICE_IP, protocol: 'udp', port: 53 }, SERVICE);
  const heldRecords: HeldRecord[] = [];
  dp.on('held', (record) => heldRecords.push(record));
  dp.start();

  // Two tagged UDP datagrams, sent raw on c0. The receiving stack moves
  // the tag into the skb before tc, so the frames at tc are 4 bytes
  // shorter than what re-injection writes back. The first fits
  // ZH_MAX_FRAME with the tag, the second only without it.
  const tagged = (untaggedLength: number) =>
    buildFrame({ src: '198.18.1.1', dst: SERVICE_IP, vlans: [{ tpid: ETH_P_8021Q, id: 7 }], udp: { srcPort: 40000, dstPort: 53 }, payload: Buffer.alloc(untaggedLength - 42, 0x78) });
  const sender = ['import socket, sys', 's = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)', 's.bind(("c0", 0))', 'for frame in sys.argv[1:]: s.send(bytes.fromhex(frame))'].join('\n');
  const before = dp.services.readCounters(SERVICE);
  await network.exec(client, 'python3', ['-c', sender, tagged(ZH_MAX_FRAME - 4).toString('hex'), tagged(ZH_MAX_FRAME).toString('hex')]);
  await waitFor('the datapath to count both frames', () => (counterDelta(before, dp.services.readCounters(SERVICE)).too_large === 1n && heldRecords.length === 1 ? true : undefined));

  assert.equal(heldRecords[0]!.frame.length, ZH_MAX_FRAME - 4);
  assert.deepEqual(heldRecords[0]!.vlan, { proto: ETH_P_8021Q, tci: 7 });
  const result = await dp.release(SERVICE);
  assert.deepEqual(
    result.failed.map((flow) => flow.error),
    [],
  );
  assert.equal(result.released.length, 1);
});

test('close detaches past a deleted device', async () => {
  await network.exec(node, 'ip', ['link', 'add', 'gone0', 'type', 'veth', 'peer', 'name', 'gone1']);
  await network.exec(node, 'ip', ['link', 'add', 'kept0', 'type', 'veth', 'peer', 'name', 'kept1']);
  mkdirSync(pinDir, { recursive: true });
  const dp = await Datapath.open({ maxServices: 4, netns: netnsPath(node), pinDir });
  await dp.attach('gone0', { hook: 'tc', kind: 'clsact' });
  await dp.attach('kept0', { hook: 'xdp', mode: 'generic' });
  const native = loadNative();
  const keptIndex = await native.ifNameToIndex('kept0', netnsPath(node));

  // A pod's veth deleted while the agent runs takes its clsact filter
  // with it.
  await network.exec(node, 'ip', ['link', 'del', 'gone0']);
  await dp.close();

  assert.equal((await native.queryXdp(keptIndex, netnsPath(node))).progId, 0, 'the XDP program on kept0 stays attached');
  assert.equal(existsSync(linkPinPath(pinDir, 'xdp', 'kept0')), false, 'the link pin of kept0 stays');
});

test('second XDP attach names the conflict', async () => {
  const native = loadNative();
  const dp = await openDatapath();
  const ifindex = await native.ifNameToIndex('n0', netnsPath(node));
  const first = await native.attachXdp(dp.program('zh_xdp_hold'), ifindex, 'generic', netnsPath(node));
  try {
    await assert.rejects(native.attachXdp(dp.program('zh_xdp_hold'), ifindex, 'generic', netnsPath(node)), (err: NodeJS.ErrnoException) => {
      assert.equal(err.code, 'EBUSY');
      assert.match(err.message, /another XDP program or link is attached to the device in this mode; detach it, or attach zerohold with hook tc/);
      return true;
    });
  } finally {
    first.detach();
  }
});
