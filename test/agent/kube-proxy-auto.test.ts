// release.kubeProxy: auto against real nft, iptables and devices in network
// namespaces that each test creates: which mode it finds from what
// kube-proxy would have written, and a check that starts releasing on the
// Ready endpoint alone and waits for kube-proxy's rules once its table
// appears.

import assert from 'node:assert/strict';
import { after, test, type TestContext } from 'node:test';

import { pino } from 'pino';

import { detectKubeProxyMode, KubeProxyAuto } from '../../src/agent/kube-proxy-auto.js';
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

async function startAuto(t: TestContext, ns: string): Promise<KubeProxyAuto> {
  const auto = new KubeProxyAuto({ netns: netnsPath(ns), nodeAddresses: [], log, searchIntervalMs: 50 });
  await auto.start();
  t.after(() => auto.stop());
  return auto;
}

test('empty node has no mode', async () => {
  const ns = await network.addNamespace('auto-none');

  assert.equal(await detectKubeProxyMode({ netns: netnsPath(ns), log }), undefined);
});

test('nftables table wins over iptables chains', async () => {
  // kube-proxy switched from iptables to nftables mode and left its old
  // chains behind.
  const ns = await network.addNamespace('auto-nft');
  await network.exec(ns, 'iptables-nft', ['-t', 'nat', '-N', 'KUBE-SERVICES']);
  await programTables(ns, [WEB]);

  assert.equal(await detectKubeProxyMode({ netns: netnsPath(ns), log }), 'nftables');
});

test('iptables chain on either backend', async () => {
  const nft = await network.addNamespace('auto-ipt');
  await network.exec(nft, 'iptables-nft', ['-t', 'nat', '-N', 'KUBE-SERVICES']);
  const legacy = await network.addNamespace('auto-ipt-legacy');
  await network.exec(legacy, 'ip6tables-legacy', ['-t', 'nat', '-N', 'KUBE-SERVICES']);

  assert.equal(await detectKubeProxyMode({ netns: netnsPath(nft), log }), 'iptables');
  assert.equal(await detectKubeProxyMode({ netns: netnsPath(legacy), log }), 'iptables');
});

test('IPVS device means IPVS mode', async () => {
  // IPVS mode writes a KUBE-SERVICES chain too, for its ipset matches.
  const ns = await network.addNamespace('auto-ipvs');
  await addIpvsDevice(ns);
  await network.exec(ns, 'iptables-nft', ['-t', 'nat', '-N', 'KUBE-SERVICES']);

  assert.equal(await detectKubeProxyMode({ netns: netnsPath(ns), log }), 'ipvs');
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
