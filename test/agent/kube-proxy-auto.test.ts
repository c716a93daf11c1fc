// release.kubeProxy: auto against real nft, iptables and devices in network
// namespaces that each test creates: which mode it finds from what
// kube-proxy would have written, and a check that starts releasing on the
// Ready endpoint alone and waits for kube-proxy's rules once its table
// appears.

import assert from 'node:assert/strict';
import { after, test, type TestContext } from 'node:test';

import { pino } from 'pino';

import { detectKubeProxyMode, KubeProxyAuto, type KubeProxyMode } from '../../src/agent/kube-proxy-auto.js';
import { KubeProxyIptables, servicesChainMode } from '../../src/agent/kube-proxy-iptables-check.js';
import type { Frontend } from '../../src/datapath/frontends.js';
import { netnsPath, TestNetwork, waitFor } from '../lib/netns.js';
import { runNft } from '../lib/topology.js';
import { type FamilyRules, renderTransaction } from '../testbed/kube-proxy-ruleset.js';

const log = pino({ level: 'warn' }, pino.destination(2));
const network = new TestNetwork();
after(() => network.cleanup());

const WEB: Frontend = { address: '198.19.1.10', protocol: 'tcp', port: 80 };

// Writes kube-proxy's nftables tables with one Service port per frontend,
// each with one endpoint.
async function programTables(ns: string, frontends: Frontend[]): Promise<void> {
  const servicePorts = frontends.map((frontend, index) => ({
    name: { namespace: 'demo', name: `svc-${index}`, protocol: frontend.protocol, portName: 'p' },
    clusterIP: frontend.address,
    port: frontend.port as number,
    nodePort: 0,
    endpoints: [{ address: `198.18.1.${index + 10}`, port: 8080 }],
  }));
  const rules: FamilyRules[] = [
    { family: 'ipv4', servicePorts, nodePortAddresses: ['198.18.0.1'], podCidrs: [], noEndpointVerdict: 'fall-through' },
    { family: 'ipv6', servicePorts: [], nodePortAddresses: ['fd5a:18::1'], podCidrs: [], noEndpointVerdict: 'fall-through' },
  ];
  await runNft(ns, renderTransaction(rules));
}

// kube-proxy's kube-ipvs0 is a dummy device. This kernel may lack the dummy
// driver, and the search looks for the name alone, so the test uses a
// veth.
async function addIpvsDevice(ns: string): Promise<void> {
  await network.exec(ns, 'ip', ['link', 'add', 'kube-ipvs0', 'type', 'veth', 'peer', 'name', 'ipvs-peer']);
}

function detect(ns: string): Promise<KubeProxyMode | undefined> {
  return detectKubeProxyMode({ netns: netnsPath(ns), iptables: new KubeProxyIptables({ netns: netnsPath(ns), log }) });
}

// Writes a KUBE-SERVICES chain as kube-proxy in iptables mode does: a jump
// to a per-Service chain.
async function addIptablesModeChains(ns: string, command: string): Promise<void> {
  const clusterIP = command.startsWith('ip6tables') ? 'fd5a:19::1:10/128' : '198.19.1.10/32';
  await network.exec(ns, command, ['-t', 'nat', '-N', 'KUBE-SVC-TESTWEB']);
  await network.exec(ns, command, ['-t', 'nat', '-N', 'KUBE-SERVICES']);
  await network.exec(ns, command, ['-t', 'nat', '-A', 'KUBE-SERVICES', '-d', clusterIP, '-p', 'tcp', '--dport', '80', '-j', 'KUBE-SVC-TESTWEB']);
}

async function startAuto(t: TestContext, ns: string, recheckIntervalMs?: number): Promise<KubeProxyAuto> {
  const auto = new KubeProxyAuto({ netns: netnsPath(ns), nodeAddresses: [], log, searchIntervalMs: 50, ...(recheckIntervalMs ? { recheckIntervalMs } : {}) });
  await auto.start();
  t.after(() => auto.stop());
  return auto;
}

test('empty node has no mode', async () => {
  const ns = await network.addNamespace('auto-none');

  assert.equal(await detect(ns), undefined);
});

test('nftables table wins over iptables chains', async () => {
  // kube-proxy switched from iptables to nftables mode and left its old
  // chains behind.
  const ns = await network.addNamespace('auto-nft');
  await addIptablesModeChains(ns, 'iptables-nft');
  await programTables(ns, [WEB]);

  assert.equal(await detect(ns), 'nftables');
});

test('iptables chains on either backend', async () => {
  const nft = await network.addNamespace('auto-ipt');
  await addIptablesModeChains(nft, 'iptables-nft');
  const legacy = await network.addNamespace('auto-ipt-legacy');
  await addIptablesModeChains(legacy, 'ip6tables-legacy');

  assert.equal(await detect(nft), 'iptables');
  assert.equal(await detect(legacy), 'iptables');
});

test('empty KUBE-SERVICES chain is no mode yet', async () => {
  // kube-proxy created its chains and has not synced yet.
  const ns = await network.addNamespace('auto-ipt-empty');
  await network.exec(ns, 'iptables-nft', ['-t', 'nat', '-N', 'KUBE-SERVICES']);

  assert.equal(await detect(ns), undefined);
});

test('IPVS device means IPVS mode', async () => {
  // IPVS mode writes a KUBE-SERVICES chain too, without per-Service
  // chains. Its ipset match needs the ip_set module, so only its
  // NodePort jump is written here.
  const ns = await network.addNamespace('auto-ipvs');
  await addIpvsDevice(ns);
  await network.exec(ns, 'iptables-nft', ['-t', 'nat', '-N', 'KUBE-NODE-PORT']);
  await network.exec(ns, 'iptables-nft', ['-t', 'nat', '-N', 'KUBE-SERVICES']);
  await network.exec(ns, 'iptables-nft', ['-t', 'nat', '-A', 'KUBE-SERVICES', '-m', 'addrtype', '--dst-type', 'LOCAL', '-j', 'KUBE-NODE-PORT']);

  assert.equal(await detect(ns), 'ipvs');
});

test('leftover IPVS device on an iptables node', async () => {
  // kube-proxy switched from IPVS to iptables mode keeps kube-ipvs0.
  const ns = await network.addNamespace('auto-ipvs-left');
  await addIpvsDevice(ns);
  await addIptablesModeChains(ns, 'iptables-nft');

  assert.equal(await detect(ns), 'iptables');
});

test('search that cannot run nft rejects', async () => {
  // A namespace file that does not exist reads as nsenter's error, not as
  // a node without kube-proxy's table.
  const missing = '/run/netns/zh-no-such-netns';
  await assert.rejects(detectKubeProxyMode({ netns: missing, iptables: new KubeProxyIptables({ netns: missing, log }) }), /nft list map ip kube-proxy service-ips failed: nsenter: cannot open \/run\/netns\/zh-no-such-netns/);
});

test('auto check outlives a failing search', async (t) => {
  const auto = new KubeProxyAuto({ netns: '/run/netns/zh-no-such-netns', nodeAddresses: [], log, searchIntervalMs: 50 });
  t.after(() => auto.stop());

  await auto.start();

  assert.equal(auto.mode, undefined);
  assert.equal(await auto.waitProgrammed([WEB], 5000), true, 'released on the Ready endpoint alone');
});

test('KUBE-SERVICES listings by mode', () => {
  // Lines as `iptables -t nat -S KUBE-SERVICES` prints them for each mode
  // (kube-proxy v1.31, pkg/proxy/iptables and pkg/proxy/ipvs).
  const iptables = [
    '-N KUBE-SERVICES',
    '-A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m comment --comment "default/kubernetes:https cluster IP" -m tcp --dport 443 -j KUBE-SVC-NPX46M4PTMTKRN6Y',
    '-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS',
  ].join('\n');
  const ipvs = [
    '-N KUBE-SERVICES',
    '-A KUBE-SERVICES -m comment --comment "Kubernetes service cluster ip + port for masquerade purpose" -m set --match-set KUBE-CLUSTER-IP dst,dst -j KUBE-MARK-MASQ',
    '-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODE-PORT',
    '-A KUBE-SERVICES -m set --match-set KUBE-CLUSTER-IP dst,dst -j ACCEPT',
  ].join('\n');

  assert.equal(servicesChainMode(iptables), 'iptables');
  assert.equal(servicesChainMode(ipvs), 'ipvs');
  assert.equal(servicesChainMode('-N KUBE-SERVICES\n'), undefined);
});

test('auto check waits once kube-proxy appears', async (t) => {
  const ns = await network.addNamespace('auto-late');
  const auto = await startAuto(t, ns);
  assert.equal(auto.mode, undefined);
  assert.equal(await auto.waitProgrammed([WEB], 5000), true, 'released on the Ready endpoint alone');

  // kube-proxy starts and syncs a Service other than WEB.
  await programTables(ns, [{ address: '198.19.1.11', protocol: 'tcp', port: 80 }]);
  await waitFor('the nftables mode', () => (auto.mode === 'nftables' ? true : undefined));

  assert.equal(await auto.waitProgrammed([WEB], 300), false, 'WEB has no rule yet');
  const waiting = auto.waitProgrammed([WEB], 5000);
  await programTables(ns, [WEB]);
  assert.equal(await waiting, true);
});

test('auto check in IPVS mode releases at once', async (t) => {
  const ns = await network.addNamespace('auto-ipvs-check');
  await addIpvsDevice(ns);

  const auto = await startAuto(t, ns);

  assert.equal(auto.mode, 'ipvs');
  assert.equal(await auto.waitProgrammed([WEB], 5000), true);
});

test('auto check follows a mode change', async (t) => {
  const ns = await network.addNamespace('auto-change');
  await programTables(ns, [{ address: '198.19.1.11', protocol: 'tcp', port: 80 }]);
  const auto = await startAuto(t, ns, 100);
  assert.equal(auto.mode, 'nftables');

  // A release that waits on the nftables check when kube-proxy moves to
  // iptables mode: it runs to its own timeout, not cut short.
  const startedMs = Date.now();
  const waiting = auto.waitProgrammed([WEB], 1500);
  await runNft(ns, 'delete table ip kube-proxy\ndelete table ip6 kube-proxy\n');
  await addIptablesModeChains(ns, 'iptables-nft');
  await waitFor('the iptables mode', () => (auto.mode === 'iptables' ? true : undefined));

  assert.equal(await waiting, false, 'WEB never got an nftables rule');
  assert.ok(Date.now() - startedMs >= 1400, `the wait ended after ${Date.now() - startedMs} ms, before its timeout`);
});
