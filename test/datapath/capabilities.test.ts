// The datapath with only the capabilities that the agent's DaemonSet
// grants (deploy/kubernetes/daemonset.yaml), in place of the full root
// that the other tests run with. A call that needs CAP_SYS_ADMIN, such as
// reading a map's BTF from the kernel or a program's name from its id,
// fails here as it would in the cluster.

import assert from 'node:assert/strict';
import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { chainedModeCapabilities, daemonSetCapabilities } from '../lib/daemonset.js';
import { TestHost } from '../lib/test-host.js';
import { netnsPath, run, TestNetwork } from '../lib/netns.js';
import { startUdpEchoServer } from '../lib/servers.js';
import type { ChildOptions } from './capabilities-child.js';

const CHILD_SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'capabilities-child.js');
const XDP_DROP = 1;

const network = new TestNetwork();
const pinDir = `/sys/fs/bpf/zh-test-caps-${process.pid}`;
let node: string;

interface ChildReport {
  error?: string;
  replacedPins?: string[];
  sweptInterfaces?: string[];
  sweepErrors?: string[];
  holdVerdict?: number;
  heldRecords?: number;
  reinjected?: { sent: number; errors: unknown[] };
  iptablesProgrammed?: boolean;
  nftablesProgrammed?: boolean;
  chained?: Record<string, { replacedPins: string[]; inPlace: boolean; ids: number[] }>;
  udpBound?: (string | null)[];
}

// Runs the child in the node namespace with the DaemonSet's capabilities,
// or with the given ones, on the shared pin directory unless options name
// another.
// nsenter enters the namespace first, with full root, so the child needs
// no CAP_SYS_ADMIN for setns().
async function runChild(options: Omit<ChildOptions, 'pinDir'> & { pinDir?: string }, capabilities = daemonSetCapabilities()): Promise<ChildReport> {
  const bounding = ['-all', ...capabilities.map((name) => `+${name.toLowerCase()}`)].join(',');
  const { stdout } = await run('nsenter', [
    `--net=${netnsPath(node)}`,
    'setpriv',
    '--inh-caps=-all',
    `--bounding-set=${bounding}`,
    '--',
    process.execPath,
    CHILD_SCRIPT,
    JSON.stringify({ pinDir, ...options }),
  ]);
  return JSON.parse(stdout.trim().split('\n').at(-1)!) as ChildReport;
}

async function clsactProgramCount(ifname: string): Promise<number> {
  const { stdout } = await network.exec(node, 'tc', ['-j', 'filter', 'show', 'dev', ifname, 'ingress']);
  return (JSON.parse(stdout || '[]') as { options?: { prog?: unknown } }[]).filter((filter) => filter.options?.prog !== undefined).length;
}

before(async () => {
  node = await network.addNamespace('node');
  await network.addVeth(node, 'zx0', node, 'zx1');
  await network.addVeth(node, 'zc0', node, 'zc1');
  mkdirSync(pinDir);
});

after(async () => {
  rmSync(pinDir, { recursive: true, force: true });
  await network.cleanup();
});

test('DaemonSet grants no CAP_SYS_ADMIN', () => {
  assert.equal(daemonSetCapabilities().includes('SYS_ADMIN'), false);
});

test('first start holds and re-injects', async () => {
  const report = await runChild({ maxServices: 8, xdpInterface: 'zx0', clsactInterface: 'zc0', keepAttached: true });

  assert.equal(report.error, undefined);
  assert.deepEqual(report.replacedPins, []);
  assert.deepEqual(report.sweptInterfaces, []);
  assert.deepEqual(report.sweepErrors, []);
  assert.equal(report.holdVerdict, XDP_DROP);
  assert.equal(report.heldRecords, 1);
  assert.deepEqual(report.reinjected, { sent: 1, errors: [] });
  assert.equal(await clsactProgramCount('zc0'), 1, 'the clsact filter stays, as after a SIGKILL');
});

test('restart reuses pins and sweeps', async () => {
  // zc0 is no longer configured, so its filter is a leftover.
  const report = await runChild({ maxServices: 8, xdpInterface: 'zx0', clsactInterface: '', keepAttached: false });

  assert.equal(report.error, undefined);
  assert.deepEqual(report.replacedPins, [], 'every pin matches, layouts included');
  assert.deepEqual(report.sweptInterfaces, ['zc0']);
  assert.deepEqual(report.sweepErrors, []);
  assert.equal(await clsactProgramCount('zc0'), 0);
});

test('iptables check reads the legacy backend', async () => {
  // kube-proxy's rule for a Service with an endpoint, on the legacy
  // backend, which is read through a raw socket.
  const rules = [
    '*nat',
    ':KUBE-SERVICES - [0:0]',
    ':KUBE-SVC-CAPABILITIES0000 - [0:0]',
    '-A KUBE-SERVICES -d 198.19.0.41/32 -p tcp -m comment --comment "shop/web:http cluster IP" -m tcp --dport 80 -j KUBE-SVC-CAPABILITIES0000',
    'COMMIT',
    '',
  ].join('\n');
  await network.exec(node, 'sh', ['-c', `printf '%s' '${rules}' | iptables-legacy-restore --noflush`]);

  const report = await runChild({ maxServices: 8, xdpInterface: '', clsactInterface: '', keepAttached: false, iptablesFrontend: { address: '198.19.0.41', protocol: 'tcp', port: 80 } });

  assert.equal(report.error, undefined);
  assert.equal(report.iptablesProgrammed, true);
});

test('nftables check follows the maps', async () => {
  // A Service port with an endpoint in kube-proxy's nftables mode: its
  // element in service-ips, which the check reads and then follows with
  // `nft monitor`.
  const table = [
    'table ip kube-proxy {',
    '  chain service-capabilities { }',
    '  map service-ips { type ipv4_addr . inet_proto . inet_service : verdict; elements = { 198.19.0.42 . tcp . 80 : goto service-capabilities } }',
    '  map service-nodeports { type inet_proto . inet_service : verdict; }',
    '}',
    '',
  ].join('\n');
  await network.exec(node, 'sh', ['-c', `printf '%s' '${table}' | nft -f -`]);

  const report = await runChild({ maxServices: 8, xdpInterface: '', clsactInterface: '', keepAttached: false, nftablesFrontend: { address: '198.19.0.42', protocol: 'tcp', port: 80 } });

  assert.equal(report.error, undefined);
  assert.equal(report.nftablesProgrammed, true);
});

test('chained datapath runs on the host pins', async () => {
  // A host datapath, loaded as root as Cilium's agent does, pins the
  // chained-mode maps that the agent then uses with the capabilities that
  // the Helm chart grants in chained mode.
  const hostPinDir = `${pinDir}-host`;
  mkdirSync(hostPinDir);
  const host = await TestHost.load(hostPinDir);
  try {
    const report = await runChild({ maxServices: 8, xdpInterface: '', clsactInterface: '', keepAttached: false, chainedHostPinDir: hostPinDir }, chainedModeCapabilities());

    assert.equal(report.error, undefined);
    assert.deepEqual(report.chained?.first, { replacedPins: [], inPlace: true, ids: [5] });
    assert.deepEqual(report.chained?.restart, { replacedPins: [], inPlace: true, ids: [5] });
  } finally {
    host.close();
    rmSync(hostPinDir, { recursive: true, force: true });
    rmSync(`${pinDir}-chained`, { recursive: true, force: true });
  }
});

// The hold and the re-injection that chained mode shares with standalone
// mode, with the chart's chained-mode capabilities, on a pin directory of
// its own so that the shared one keeps its sizes.
test('holds and re-injects without NET_RAW', async () => {
  const ownPinDir = `${pinDir}-no-net-raw`;
  mkdirSync(ownPinDir);
  try {
    const report = await runChild({ pinDir: ownPinDir, maxServices: 8, xdpInterface: 'zx1', clsactInterface: '', keepAttached: false }, chainedModeCapabilities());

    assert.equal(report.error, undefined);
    assert.equal(report.holdVerdict, XDP_DROP);
    assert.equal(report.heldRecords, 1);
    assert.deepEqual(report.reinjected, { sent: 1, errors: [] });
  } finally {
    rmSync(ownPinDir, { recursive: true, force: true });
  }
});

// The UDP listen check reads another namespace's addresses through
// rtnetlink (IFA_TARGET_NETNSID, which needs CAP_NET_ADMIN there) and
// looks its sockets up with BPF_PROG_RUN.
test('UDP listen check with either capability set', async () => {
  const pod = await network.addNamespace('udp-pod');
  await network.addVeth(node, 'zu0', pod, 'eth0');
  await network.exec(pod, 'ip', ['addr', 'add', '198.18.50.2/32', 'dev', 'eth0']);
  await network.exec(node, 'ip', ['route', 'add', '198.18.50.2/32', 'dev', 'zu0']);
  await startUdpEchoServer(network, pod, '0.0.0.0', 5353);
  const ownPinDir = `${pinDir}-udp`;
  mkdirSync(ownPinDir);
  try {
    for (const capabilities of [daemonSetCapabilities(), chainedModeCapabilities()]) {
      const udpEndpoints = [
        { address: '198.18.50.2', port: 5353 },
        { address: '198.18.50.2', port: 5354 },
      ];
      const report = await runChild({ pinDir: ownPinDir, maxServices: 8, xdpInterface: '', clsactInterface: '', keepAttached: false, udpEndpoints }, capabilities);

      assert.equal(report.error, undefined, capabilities.join(', '));
      assert.deepEqual(report.udpBound, [null, 'ECONNREFUSED'], capabilities.join(', '));
    }
  } finally {
    rmSync(ownPinDir, { recursive: true, force: true });
  }
});

test('changed size replaces its maps', async () => {
  const report = await runChild({ maxServices: 16, xdpInterface: 'zx0', clsactInterface: '', keepAttached: false });

  assert.equal(report.error, undefined);
  assert.deepEqual(report.replacedPins, ['zh_hold_budget', 'zh_services', 'zh_svc_stats', 'zh_wake_state']);
});
