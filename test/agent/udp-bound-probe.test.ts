// The listen check of UDP endpoints against real sockets. endpointNetns()
// finds the namespace behind a routed veth, behind a bridge port and on
// the node itself, and returns the reason for addresses it cannot place.
// The probe then finds the UDP servers that a datagram would reach in
// that namespace, and only those.
//
// The node namespace has:
// - a routed pod: a veth and a /32 route, as Calico or Cilium with
//   endpoint routes set it up;
// - a decoy namespace with the addresses of two others, behind the
//   node's first veth;
// - two pods behind a bridge, as the bridge plugin and Flannel set up;
// - a pod whose subnet is routed through a gateway on a host veth, as
//   Cilium routes through cilium_host;
// - a subnet behind a gateway on the bridge (another node's pods) and one
//   behind a VXLAN device (an overlay to other nodes).

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { pino } from 'pino';

import { ListenCheck, listenProbe } from '../../src/agent/listen-check.js';
import { type UdpBoundProbe, udpBoundProbe } from '../../src/agent/udp-bound-probe.js';
import { Datapath } from '../../src/datapath/datapath.js';
import { loadNative } from '../../src/datapath/native.js';
import { netnsPath, TestNetwork } from '../lib/netns.js';
import { startUdpEchoServer } from '../lib/servers.js';

const log = pino({ level: process.env.ZH_TEST_LOG ?? 'silent' });
const native = loadNative();

const ROUTED_V4 = '198.18.60.2';
const ROUTED_V6 = 'fd5a:18:60::2';
const NODE_ON_BRIDGE = '198.18.61.1';
const BRIDGED_A = '198.18.61.2';
const BRIDGED_B = '198.18.61.3';
const BRIDGED_FREE = '198.18.61.9';
const BEHIND_GATEWAY = '198.18.62.5';
const BEHIND_HOST_DEVICE = '198.18.64.2';
const BEHIND_TUNNEL = '198.18.63.5';

let network: TestNetwork;
let node: string;
let routed: string;
let bridgedA: string;
let bridgedB: string;
let hostRouted: string;
let decoy: string;
let datapath: Datapath;
let probe: UdpBoundProbe;
let nodeNetns: string;

before(async () => {
  network = new TestNetwork();
  node = await network.addNamespace('node');
  routed = await network.addNamespace('routed');
  bridgedA = await network.addNamespace('bra');
  bridgedB = await network.addNamespace('brb');
  hostRouted = await network.addNamespace('lxc');
  nodeNetns = netnsPath(node);

  // A namespace with the addresses of the routed pod and of bridged pod A,
  // behind the node's first veth, so that a plain scan of the veths in
  // ifindex order would find it first.
  decoy = await network.addNamespace('decoy');
  await network.addVeth(node, 'vdecoy', decoy, 'eth0');
  await network.exec(decoy, 'ip', ['addr', 'add', `${ROUTED_V4}/32`, 'dev', 'eth0']);
  await network.exec(decoy, 'ip', ['addr', 'add', `${BRIDGED_A}/32`, 'dev', 'eth0']);

  await network.addVeth(node, 'vroute', routed, 'eth0');
  await network.exec(routed, 'ip', ['addr', 'add', `${ROUTED_V4}/32`, 'dev', 'eth0']);
  await network.exec(routed, 'ip', ['-6', 'addr', 'add', `${ROUTED_V6}/128`, 'dev', 'eth0', 'nodad']);
  await network.exec(node, 'ip', ['route', 'add', `${ROUTED_V4}/32`, 'dev', 'vroute']);
  await network.exec(node, 'ip', ['-6', 'route', 'add', `${ROUTED_V6}/128`, 'dev', 'vroute']);

  await network.exec(node, 'ip', ['link', 'add', 'br0', 'type', 'bridge']);
  await network.exec(node, 'ip', ['link', 'set', 'br0', 'up']);
  await network.exec(node, 'ip', ['addr', 'add', `${NODE_ON_BRIDGE}/24`, 'dev', 'br0']);
  for (const [pod, port, address] of [
    [bridgedA, 'vbra', BRIDGED_A],
    [bridgedB, 'vbrb', BRIDGED_B],
  ] as const) {
    await network.addVeth(node, port, pod, 'eth0');
    await network.exec(node, 'ip', ['link', 'set', port, 'master', 'br0']);
    await network.exec(pod, 'ip', ['addr', 'add', `${address}/24`, 'dev', 'eth0']);
  }
  await network.exec(node, 'ip', ['route', 'add', '198.18.62.0/24', 'via', '198.18.61.254']);
  await network.addVeth(node, 'chost', node, 'cnet');
  await network.exec(node, 'ip', ['route', 'add', '198.18.64.0/24', 'via', '198.18.64.254', 'dev', 'chost', 'onlink']);
  await network.addVeth(node, 'lxc0', hostRouted, 'eth0');
  await network.exec(hostRouted, 'ip', ['addr', 'add', `${BEHIND_HOST_DEVICE}/32`, 'dev', 'eth0']);
  await network.exec(node, 'ip', ['link', 'add', 'tun0', 'type', 'vxlan', 'id', '5', 'dstport', '4789']);
  await network.exec(node, 'ip', ['link', 'set', 'tun0', 'up']);
  await network.exec(node, 'ip', ['route', 'add', '198.18.63.0/24', 'dev', 'tun0']);
  // Calico's routes for the address blocks that it hands out, and a
  // prohibit route.
  await network.exec(node, 'ip', ['route', 'add', 'blackhole', '198.18.65.0/24']);
  await network.exec(node, 'ip', ['route', 'add', 'prohibit', '198.18.66.0/24']);

  datapath = await Datapath.open({ maxServices: 4 });
  probe = udpBoundProbe(datapath.program('zh_tc_udp_bound'));
});

after(async () => {
  datapath?.close();
  await network?.cleanup();
});

// The peer namespace id of a veth in the node namespace, as ip reports it.
async function linkNetnsId(device: string): Promise<number> {
  const { stdout } = await network.exec(node, 'ip', ['-j', 'link', 'show', device]);
  return (JSON.parse(stdout) as { link_netnsid: number }[])[0]!.link_netnsid;
}

test('routed veth leads to its pod', async () => {
  // The decoy has the address too, behind a veth that comes first.
  const expected = { netnsId: await linkNetnsId('vroute'), device: 'vroute' };

  assert.deepEqual(await native.endpointNetns(ROUTED_V4, nodeNetns), expected);
  assert.deepEqual(await native.endpointNetns(ROUTED_V6, nodeNetns), expected);
});

test('bridge port of the pod with the address', async () => {
  // Pod A's address is also the decoy's, which is not on the bridge.
  assert.deepEqual(await native.endpointNetns(BRIDGED_A, nodeNetns), { netnsId: await linkNetnsId('vbra'), device: 'vbra' });
  assert.deepEqual(await native.endpointNetns(BRIDGED_B, nodeNetns), { netnsId: await linkNetnsId('vbrb'), device: 'vbrb' });
});

test('pod routed through a host device', async () => {
  assert.deepEqual(await native.endpointNetns(BEHIND_HOST_DEVICE, nodeNetns), { netnsId: await linkNetnsId('lxc0'), device: 'lxc0' });
});

test('node address is the node namespace', async () => {
  assert.deepEqual(await native.endpointNetns(NODE_ON_BRIDGE, nodeNetns), { netnsId: -1, device: 'lo' });
});

test('unplaceable addresses say why', async () => {
  const none = (address: string, route: string) => ({ reason: `no pod's network namespace on this node has the address ${address} (the route to it leaves through ${route})` });

  assert.deepEqual(await native.endpointNetns(BRIDGED_FREE, nodeNetns), none(BRIDGED_FREE, 'br0'));
  assert.deepEqual(await native.endpointNetns(BEHIND_GATEWAY, nodeNetns), none(BEHIND_GATEWAY, 'br0 by way of a gateway'));
  assert.deepEqual(await native.endpointNetns(BEHIND_TUNNEL, nodeNetns), none(BEHIND_TUNNEL, 'tun0'));
  assert.deepEqual(await native.endpointNetns('fd5a:18:99::1', nodeNetns), { reason: 'this node has no route to fd5a:18:99::1 (ENETUNREACH)' });
  assert.deepEqual(await native.endpointNetns('198.18.65.5', nodeNetns), { reason: 'this node has no route to 198.18.65.5 (EINVAL)' });
  assert.deepEqual(await native.endpointNetns('198.18.66.5', nodeNetns), { reason: 'this node has no route to 198.18.66.5 (EACCES)' });
});

test('bad arguments reject', async () => {
  await assert.rejects(native.endpointNetns('dns.demo', nodeNetns), { name: 'TypeError', message: 'invalid endpoint address dns.demo: expected a numeric IPv4 or IPv6 address' });
  await assert.rejects(native.endpointNetns(ROUTED_V4, '/run/netns/zh-no-such-netns'), { code: 'ENOENT' });
  await assert.rejects(probe('dns.demo', 53, nodeNetns), /invalid probe address "dns\.demo"/);
  await assert.rejects(probe(ROUTED_V4, 0, nodeNetns), /invalid probe port 0: expected an integer from 1 to 65535/);
});

test('routed pod: unbound, then bound', async () => {
  assert.equal(await probe(ROUTED_V4, 5301, nodeNetns), 'ECONNREFUSED');
  assert.equal(await probe(ROUTED_V6, 5301, nodeNetns), 'ECONNREFUSED');

  await startUdpEchoServer(network, routed, '0.0.0.0', 5301);
  await startUdpEchoServer(network, routed, '::', 5302);

  assert.equal(await probe(ROUTED_V4, 5301, nodeNetns), null);
  assert.equal(await probe(ROUTED_V6, 5302, nodeNetns), null);
  // Another port of the same pod is still unbound.
  assert.equal(await probe(ROUTED_V4, 5303, nodeNetns), 'ECONNREFUSED');
});

test('pod behind a host device', async () => {
  assert.equal(await probe(BEHIND_HOST_DEVICE, 5350, nodeNetns), 'ECONNREFUSED');

  await startUdpEchoServer(network, hostRouted, '0.0.0.0', 5350);

  assert.equal(await probe(BEHIND_HOST_DEVICE, 5350, nodeNetns), null);
});

test('a neighbour pod\'s server does not count', async () => {
  // Both pods sit behind one bridge; only pod A binds the port, on every
  // address. The node namespace has no socket on it either.
  await startUdpEchoServer(network, bridgedA, '0.0.0.0', 5310);

  assert.equal(await probe(BRIDGED_A, 5310, nodeNetns), null);
  assert.equal(await probe(BRIDGED_B, 5310, nodeNetns), 'ECONNREFUSED');
});

test('bound address must be the one the datagram goes to', async () => {
  await startUdpEchoServer(network, bridgedB, BRIDGED_B, 5320);
  await startUdpEchoServer(network, bridgedB, '127.0.0.1', 5321);

  assert.equal(await probe(BRIDGED_B, 5320, nodeNetns), null);
  // A server on loopback only never receives the Service's datagrams.
  assert.equal(await probe(BRIDGED_B, 5321, nodeNetns), 'ECONNREFUSED');
});

test('IPv4 datagram finds a dual-stack socket', async () => {
  await startUdpEchoServer(network, routed, '::', 5370);

  assert.equal(await probe(ROUTED_V4, 5370, nodeNetns), null);
  assert.equal(await probe(ROUTED_V6, 5370, nodeNetns), null);
});

test('address moved to another pod', async () => {
  // The first probe leaves pod A's namespace id as the hint for the
  // address, which then moves to pod B, where the server is.
  const moving = '198.18.61.20';
  await network.exec(bridgedA, 'ip', ['addr', 'add', `${moving}/32`, 'dev', 'eth0']);
  assert.equal(await probe(moving, 5360, nodeNetns), 'ECONNREFUSED');

  await network.exec(bridgedA, 'ip', ['addr', 'del', `${moving}/32`, 'dev', 'eth0']);
  await network.exec(bridgedB, 'ip', ['addr', 'add', `${moving}/32`, 'dev', 'eth0']);
  await startUdpEchoServer(network, bridgedB, '0.0.0.0', 5360);

  assert.equal(await probe(moving, 5360, nodeNetns), null);
});

test('host network endpoint', async () => {
  assert.equal(await probe(NODE_ON_BRIDGE, 5330, nodeNetns), 'ECONNREFUSED');

  await startUdpEchoServer(network, node, NODE_ON_BRIDGE, 5330);

  assert.equal(await probe(NODE_ON_BRIDGE, 5330, nodeNetns), null);
});

test('endpoint on another node cannot tell', async () => {
  assert.equal(await probe(BEHIND_GATEWAY, 53, nodeNetns), `no pod's network namespace on this node has the address ${BEHIND_GATEWAY} (the route to it leaves through br0 by way of a gateway)`);
});

test('listen check waits for the bind', async () => {
  const check = new ListenCheck({ probe: listenProbe(probe), log, netns: nodeNetns });
  const startedMs = performance.now();
  const bound = new Promise<number>((resolve) => {
    setTimeout(() => void startUdpEchoServer(network, routed, ROUTED_V4, 5340).then(() => resolve(performance.now())), 300);
  });

  const outcome = await check.wait([{ address: ROUTED_V4, port: 5340, protocol: 'udp' }], 5000);
  const endedMs = performance.now();
  const boundMs = await bound;

  assert.deepEqual(outcome, { listening: [{ address: ROUTED_V4, port: 5340, protocol: 'udp' }], unknown: [], refusing: [] });
  assert.ok(endedMs - startedMs >= 300, `ended ${(endedMs - startedMs).toFixed(0)} ms after the start, before the server bound`);
  // The server prints "listening" after its bind, so the wait may end
  // before the line arrives here.
  assert.ok(endedMs - boundMs < 100, `ended ${(endedMs - boundMs).toFixed(0)} ms after the server bound`);
});

test('listen check releases a remote UDP endpoint on its Ready condition', async () => {
  const check = new ListenCheck({ probe: listenProbe(probe), log, netns: nodeNetns });
  const startedMs = performance.now();

  const outcome = await check.wait([{ address: BEHIND_GATEWAY, port: 53, protocol: 'udp' }], 5000);

  assert.deepEqual(outcome.unknown, [
    { target: { address: BEHIND_GATEWAY, port: 53, protocol: 'udp' }, error: `no pod's network namespace on this node has the address ${BEHIND_GATEWAY} (the route to it leaves through br0 by way of a gateway)` },
  ]);
  assert.ok(performance.now() - startedMs < 100, 'no wait for an endpoint that cannot be checked');
});
