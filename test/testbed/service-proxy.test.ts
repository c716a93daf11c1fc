// Privileged tests of the kube-proxy stand-in: a two-node cluster network,
// the in-repo API server, one ServiceProxy per node, real servers in pods,
// and curl or a UDP client in an external client or a client pod.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { CoreV1Api, DiscoveryV1Api, type KubeConfig, type V1EndpointSlice, type V1Service } from '@kubernetes/client-node';
import { pino } from 'pino';

import { kubeConfigFor } from '../apiserver/kubeconfig.js';
import { startApiServer, type TestApiServer } from '../apiserver/server.js';
import { waitFor } from '../lib/netns.js';
import { startHttpServer, startUdpEchoServer, udpClientArgs } from '../lib/servers.js';
import { runNft, startClient } from '../lib/topology.js';
import { ClusterNetwork } from './cluster-network.js';
import { endpointChainName, serviceChainName } from './kube-proxy-names.js';
import { renderTransaction } from './kube-proxy-ruleset.js';
import type { PodAddresses } from './pod-network.js';
import { servicePorts } from './service-ports.js';
import { ServiceProxy, type ServiceProxyOptions, type SyncRecord } from './service-proxy.js';

const NS = 'demo';
const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

let server: TestApiServer;
let kubeConfig: KubeConfig;
let core: CoreV1Api;
let discovery: DiscoveryV1Api;
let cluster: ClusterNetwork;
const proxies = new Map<string, ServiceProxy>();
// A pod on node-0 and one on node-1, each serving HTTP on 8080 and UDP
// echo on 5353, and a client pod on node-0.
let nearPod: PodAddresses;
let farPod: PodAddresses;
let clientPod: PodAddresses;
let externalClient: string;

before(async () => {
  server = await startApiServer({ namespaces: [NS] });
  kubeConfig = kubeConfigFor(server.url);
  core = kubeConfig.makeApiClient(CoreV1Api);
  discovery = kubeConfig.makeApiClient(DiscoveryV1Api);

  cluster = await ClusterNetwork.create({ nodes: 2, externalClients: 1 });
  externalClient = cluster.externalClients[0]!;
  nearPod = await cluster.addPod('node-0', 'near');
  farPod = await cluster.addPod('node-1', 'far');
  clientPod = await cluster.addPod('node-0', 'client');
  for (const [pod, body] of [[nearPod, 'near'], [farPod, 'far']] as const) {
    await startHttpServer(cluster.testNetwork, pod.netns, '::', 8080, body);
    await startUdpEchoServer(cluster.testNetwork, pod.netns, '::', 5353);
  }

  // No periodic full sync during the file, so that a partial sync that
  // leaves the tables wrong is not repaired before a test looks.
  for (const node of cluster.nodes) {
    const proxy = new ServiceProxy({ ...proxyOptions(cluster, node), fullSyncIntervalMs: 600_000 });
    proxies.set(node, proxy);
    await proxy.start();
  }
});

after(async () => {
  for (const proxy of proxies.values()) await proxy.stop();
  await cluster?.close();
  await server?.close();
});

function proxyOptions(network: ClusterNetwork, node: string): ServiceProxyOptions {
  return { kubeConfig, nodeName: node, netns: network.nodeNetns(node), nodeAddresses: network.nodeAddresses(node), podCidrs: network.podCidrs() };
}

interface ServiceSpec {
  name: string;
  clusterIPs: string[];
  protocol?: 'TCP' | 'UDP';
  port?: number;
  targetPort?: number;
  nodePort?: number;
}

async function createService(spec: ServiceSpec): Promise<void> {
  const families = spec.clusterIPs.map((ip) => (ip.includes(':') ? 'IPv6' : 'IPv4'));
  const body: V1Service = {
    metadata: { name: spec.name },
    spec: {
      type: spec.nodePort === undefined ? 'ClusterIP' : 'NodePort',
      clusterIP: spec.clusterIPs[0],
      clusterIPs: spec.clusterIPs,
      ipFamilies: families,
      ipFamilyPolicy: families.length > 1 ? 'RequireDualStack' : 'SingleStack',
      selector: { app: spec.name },
      ports: [{ name: 'http', protocol: spec.protocol ?? 'TCP', port: spec.port ?? 80, targetPort: spec.targetPort ?? 8080, ...(spec.nodePort === undefined ? {} : { nodePort: spec.nodePort }) }],
    },
  };
  await core.createNamespacedService({ namespace: NS, body });
}

function sliceBody(service: string, family: 'IPv4' | 'IPv6', addresses: string[], ready: boolean, protocol: 'TCP' | 'UDP' = 'TCP', port = 8080): V1EndpointSlice {
  return {
    metadata: { name: `${service}-${family.toLowerCase()}`, labels: { [SERVICE_NAME_LABEL]: service } },
    addressType: family,
    ports: [{ name: 'http', protocol, port }],
    endpoints: addresses.map((address) => ({ addresses: [address], conditions: { ready } })),
  };
}

async function createSlices(service: string, pod: PodAddresses, options: { ready?: boolean; protocol?: 'TCP' | 'UDP'; port?: number } = {}): Promise<void> {
  for (const [family, address] of [['IPv4', pod.ipv4], ['IPv6', pod.ipv6]] as const) {
    await discovery.createNamespacedEndpointSlice({ namespace: NS, body: sliceBody(service, family, [address], options.ready ?? true, options.protocol, options.port) });
  }
}

// The service-ips map of one node and family, as nft lists it.
async function serviceIps(node: string, family: 'ip' | 'ip6'): Promise<string> {
  const { stdout } = await cluster.exec(cluster.nodeNetns(node), 'nft', ['list', 'map', family, 'kube-proxy', 'service-ips']);
  return stdout;
}

async function waitForServiceIp(node: string, clusterIP: string, port = 80, protocol = 'tcp'): Promise<void> {
  const family = clusterIP.includes(':') ? 'ip6' : 'ip';
  const key = `${clusterIP} . ${protocol} . ${port} :`;
  await waitFor(`${key} in ${family} service-ips on ${node}`, async () => ((await serviceIps(node, family)).includes(key) ? true : undefined), 5000, 20);
}

async function waitForServiceIpOnAllNodes(clusterIPs: string[], port = 80, protocol = 'tcp'): Promise<void> {
  for (const node of cluster.nodes) {
    for (const ip of clusterIPs) await waitForServiceIp(node, ip, port, protocol);
  }
}

function url(address: string, port: number): string {
  return address.includes(':') ? `http://[${address}]:${port}/` : `http://${address}:${port}/`;
}

async function curl(ns: string, address: string, port = 80): Promise<string> {
  const { stdout } = await cluster.exec(ns, 'curl', ['-sS', '--max-time', '5', url(address, port)]);
  return stdout;
}

test('service proxy ClusterIP to pod on same node', async () => {
  await createService({ name: 'same', clusterIPs: ['198.19.1.10', 'fd5a:19::1:10'] });
  await createSlices('same', nearPod);
  await waitForServiceIpOnAllNodes(['198.19.1.10', 'fd5a:19::1:10']);

  assert.equal(await curl(externalClient, '198.19.1.10'), 'near', 'IPv4');
  assert.equal(await curl(externalClient, 'fd5a:19::1:10'), 'near', 'IPv6');
});

test('service proxy ClusterIP to pod on other node', async () => {
  await createService({ name: 'other', clusterIPs: ['198.19.1.11', 'fd5a:19::1:11'] });
  await createSlices('other', farPod);
  await waitForServiceIpOnAllNodes(['198.19.1.11', 'fd5a:19::1:11']);

  assert.equal(await curl(externalClient, '198.19.1.11'), 'far', 'IPv4');
  assert.equal(await curl(externalClient, 'fd5a:19::1:11'), 'far', 'IPv6');
});

test('service proxy ClusterIP from client pod', async () => {
  await createService({ name: 'inside', clusterIPs: ['198.19.1.12', 'fd5a:19::1:12'] });
  await createSlices('inside', farPod);
  await waitForServiceIpOnAllNodes(['198.19.1.12', 'fd5a:19::1:12']);

  assert.equal(await curl(clientPod.netns, '198.19.1.12'), 'far', 'IPv4');
  assert.equal(await curl(clientPod.netns, 'fd5a:19::1:12'), 'far', 'IPv6');
});

test('service proxy UDP ClusterIP', async () => {
  await createService({ name: 'echo', clusterIPs: ['198.19.1.13', 'fd5a:19::1:13'], protocol: 'UDP', port: 53, targetPort: 5353 });
  await createSlices('echo', farPod, { protocol: 'UDP', port: 5353 });
  await waitForServiceIpOnAllNodes(['198.19.1.13', 'fd5a:19::1:13'], 53, 'udp');

  for (const address of ['198.19.1.13', 'fd5a:19::1:13']) {
    const output = await startClient(cluster.testNetwork, externalClient, process.execPath, udpClientArgs(address, 53, 'ping', 3000));
    assert.equal(output.trim(), 'echo:ping', address);
  }
});

test('service proxy NodePort to pod on other node', async () => {
  await createService({ name: 'nodeport', clusterIPs: ['198.19.1.14', 'fd5a:19::1:14'], nodePort: 30080 });
  await createSlices('nodeport', farPod);
  await waitForServiceIpOnAllNodes(['198.19.1.14', 'fd5a:19::1:14']);

  const node = cluster.nodeAddresses('node-0');
  assert.equal(await curl(externalClient, node.ipv4, 30080), 'far', 'IPv4');
  assert.equal(await curl(externalClient, node.ipv6, 30080), 'far', 'IPv6');
});

test('service proxy skips unready endpoints', async () => {
  await createService({ name: 'waking', clusterIPs: ['198.19.1.15', 'fd5a:19::1:15'] });
  await createSlices('waking', nearPod, { ready: false });
  // The marker's slice follows the waking slices on the same EndpointSlice
  // watch, so once a node programs the marker, its cache had them too.
  await createService({ name: 'marker', clusterIPs: ['198.19.1.16'] });
  await createSlices('marker', nearPod);
  await waitForServiceIpOnAllNodes(['198.19.1.16']);

  for (const node of cluster.nodes) {
    assert.doesNotMatch(await serviceIps(node, 'ip'), /198\.19\.1\.15 /, `no IPv4 element on ${node}`);
    assert.doesNotMatch(await serviceIps(node, 'ip6'), /fd5a:19::1:15 /, `no IPv6 element on ${node}`);
  }
  const failed = await cluster.exec(externalClient, 'curl', ['-sS', '--max-time', '2', url('198.19.1.15', 80)]).then(
    () => false,
    () => true,
  );
  assert.ok(failed, 'curl to a Service with no ready endpoint fails');

  for (const family of ['IPv4', 'IPv6'] as const) {
    const name = `waking-${family.toLowerCase()}`;
    const slice = await discovery.readNamespacedEndpointSlice({ name, namespace: NS });
    slice.endpoints = slice.endpoints!.map((endpoint) => ({ ...endpoint, conditions: { ready: true } }));
    await discovery.replaceNamespacedEndpointSlice({ name, namespace: NS, body: slice });
  }
  await waitForServiceIpOnAllNodes(['198.19.1.15', 'fd5a:19::1:15']);
  assert.equal(await curl(externalClient, '198.19.1.15'), 'near', 'IPv4 after ready');
  assert.equal(await curl(externalClient, 'fd5a:19::1:15'), 'near', 'IPv6 after ready');
});

test('service proxy chain names follow kube-proxy', async () => {
  await waitForServiceIpOnAllNodes(['198.19.1.11', 'fd5a:19::1:11']);
  const port = { namespace: NS, name: 'other', protocol: 'tcp', portName: 'http' };
  const { stdout } = await cluster.exec(cluster.nodeNetns('node-0'), 'nft', ['-j', 'list', 'table', 'ip6', 'kube-proxy']);
  const chains = (JSON.parse(stdout) as { nftables: { chain?: { name: string } }[] }).nftables.flatMap((item) => (item.chain ? [item.chain.name] : []));

  assert.ok(chains.includes(serviceChainName(port)), `service chain in ${chains.join(', ')}`);
  assert.ok(chains.includes(endpointChainName(port, farPod.ipv6, 8080)), `endpoint chain in ${chains.join(', ')}`);
  assert.match(serviceChainName(port), /^service-[A-Z2-7]{8}-demo\/other\/tcp\/http$/);
  assert.match(endpointChainName(port, farPod.ipv6, 8080), /^endpoint-[A-Z2-7]{8}-demo\/other\/tcp\/http__fd5a\.18\.17\.\.2\/8080$/);
});

test('service proxy coalesces bursts', async () => {
  const proxy = proxies.get('node-0')!;
  const before = proxy.syncCount;
  const names = Array.from({ length: 20 }, (_, i) => `burst-${i}`);

  await Promise.all(names.map((name, i) => createService({ name, clusterIPs: [`198.19.2.${i + 1}`] })));
  await Promise.all(names.map((name) => discovery.createNamespacedEndpointSlice({ namespace: NS, body: sliceBody(name, 'IPv4', [nearPod.ipv4], true) })));
  await waitForServiceIp('node-0', `198.19.2.${names.length}`);
  await proxy.synced();

  const syncs = proxy.syncCount - before;
  assert.ok(syncs >= 1, `at least one sync, got ${syncs}`);
  assert.ok(syncs < names.length * 2, `${names.length * 2} events took ${syncs} syncs`);
  const elements = await serviceIps('node-0', 'ip');
  for (let i = 1; i <= names.length; i++) assert.ok(elements.includes(`198.19.2.${i} . tcp . 80 :`), `burst-${i - 1} programmed`);
});

// The chains and rules, sets and maps of one kube-proxy table, without
// handles and in a stable order, so that two tables with the same content
// compare equal however their syncs created them.
async function tableContents(network: ClusterNetwork, ns: string, family: 'ip' | 'ip6'): Promise<string[]> {
  const { stdout } = await network.exec(ns, 'nft', ['-j', 'list', 'table', family, 'kube-proxy']);
  const items = (JSON.parse(stdout) as { nftables: Record<string, Record<string, unknown>>[] }).nftables;
  const rulesPerChain = new Map<string, number>();
  const lines: string[] = [];

  for (const item of items) {
    const [kind, body] = Object.entries(item)[0]!;
    if (kind === 'metainfo' || kind === 'table') continue;
    const { handle: _handle, elem, ...fields } = body as Record<string, unknown>;
    if (kind === 'rule') {
      const index = rulesPerChain.get(fields.chain as string) ?? 0;
      rulesPerChain.set(fields.chain as string, index + 1);
      lines.push(`rule ${fields.chain as string} #${index} ${JSON.stringify(fields.expr)}`);
      continue;
    }
    const elements = ((elem as unknown[] | undefined) ?? []).map((element) => JSON.stringify(element)).sort();
    lines.push(`${kind} ${JSON.stringify(fields)} ${elements.join(' ')}`);
  }
  return lines.sort();
}

// Applies a full render of the API server's current Services and
// EndpointSlices to a new namespace, with node-0's addresses.
async function renderFullSyncCopy(): Promise<string> {
  const ns = await cluster.testNetwork.addNamespace('full');
  const services = (await core.listServiceForAllNamespaces()).items;
  const slices = (await discovery.listEndpointSliceForAllNamespaces()).items;
  const node = cluster.nodeAddresses('node-0');
  const podCidrs = cluster.podCidrs();
  await runNft(ns, renderTransaction([
    { family: 'ipv4', servicePorts: servicePorts(services, slices, 'ipv4'), nodePortAddresses: [node.ipv4], podCidrs: podCidrs.ipv4, noEndpointVerdict: 'fall-through' },
    { family: 'ipv6', servicePorts: servicePorts(services, slices, 'ipv6'), nodePortAddresses: [node.ipv6], podCidrs: podCidrs.ipv6, noEndpointVerdict: 'fall-through' },
  ]));
  return ns;
}

async function chainNames(ns: string, family: 'ip' | 'ip6'): Promise<string[]> {
  const { stdout } = await cluster.exec(ns, 'nft', ['-j', 'list', 'chains', family]);
  return (JSON.parse(stdout) as { nftables: { chain?: { name: string } }[] }).nftables.flatMap((item) => (item.chain ? [item.chain.name] : []));
}

test('service proxy partial sync sends changes only', async () => {
  const proxy = proxies.get('node-0')!;
  await createService({ name: 'pair', clusterIPs: ['198.19.1.30', 'fd5a:19::1:30'], nodePort: 30030 });
  for (const [family, addresses] of [['IPv4', [nearPod.ipv4, farPod.ipv4]], ['IPv6', [nearPod.ipv6, farPod.ipv6]]] as const) {
    await discovery.createNamespacedEndpointSlice({ namespace: NS, body: sliceBody('pair', family, [...addresses], true) });
  }
  await waitForServiceIpOnAllNodes(['198.19.1.30', 'fd5a:19::1:30']);
  await proxy.synced();

  const records: SyncRecord[] = [];
  proxy.on('sync', (record: SyncRecord) => records.push(record));
  const slice = await discovery.readNamespacedEndpointSlice({ name: 'pair-ipv4', namespace: NS });
  slice.endpoints = slice.endpoints!.filter((endpoint) => endpoint.addresses[0] === nearPod.ipv4);
  await discovery.replaceNamespacedEndpointSlice({ name: 'pair-ipv4', namespace: NS, body: slice });
  const port = { namespace: NS, name: 'pair', protocol: 'tcp', portName: 'http' };
  const removedChain = endpointChainName(port, farPod.ipv4, 8080);
  await waitFor('a sync after the slice change', () => (records.length > 0 ? true : undefined));
  await proxy.synced();

  const record = records.at(-1)!;
  assert.equal(record.full, false, 'partial sync');
  // Flush and two rules for the service chain, one flush for the endpoint chain.
  assert.equal(record.commands, 4, `commands:\n${proxy.lastRuleset}`);
  assert.doesNotMatch(proxy.lastRuleset, /table/, 'no table command');
  assert.ok((await chainNames(cluster.nodeNetns('node-0'), 'ip')).includes(removedChain), 'removed chain flushed, not yet deleted');
  await waitFor(`deletion of ${removedChain}`, async () => ((await chainNames(cluster.nodeNetns('node-0'), 'ip')).includes(removedChain) ? undefined : true), 5000, 50);
});

test('service proxy partial syncs match full sync', async () => {
  const proxy = proxies.get('node-0')!;
  // Removals on top of the earlier tests' additions: the pair Service
  // loses its IPv6 far endpoint, and the inside Service is deleted.
  const slice = await discovery.readNamespacedEndpointSlice({ name: 'pair-ipv6', namespace: NS });
  slice.endpoints = slice.endpoints!.filter((endpoint) => endpoint.addresses[0] === nearPod.ipv6);
  await discovery.replaceNamespacedEndpointSlice({ name: 'pair-ipv6', namespace: NS, body: slice });
  await core.deleteNamespacedService({ name: 'inside', namespace: NS });
  await waitFor('inside removed on node-0', async () => ((await serviceIps('node-0', 'ip')).includes('198.19.1.12 ') ? undefined : true), 5000, 20);
  await proxy.synced();

  assert.equal(proxy.failedSyncCount, 0, 'no failed sync, which a full sync would have repaired');
  const copy = await renderFullSyncCopy();
  for (const family of ['ip', 'ip6'] as const) {
    const expected = await tableContents(cluster, copy, family);
    const actual = await tableContents(cluster, cluster.nodeNetns('node-0'), family);
    // Chains that a partial sync flushed stay until their delayed deletion.
    const withoutFlushed = actual.filter((line) => !line.startsWith('chain ') || expected.includes(line));
    assert.deepEqual(withoutFlushed, expected, `${family} kube-proxy table`);
  }
});

test('service proxy full sync repairs tables', async () => {
  const small = await ClusterNetwork.create({ nodes: ['solo'] });
  const proxy = new ServiceProxy({ ...proxyOptions(small, 'solo'), fullSyncIntervalMs: 300 });
  try {
    await proxy.start();
    await waitFor('same in service-ips on solo', async () => {
      const { stdout } = await small.exec(small.nodeNetns('solo'), 'nft', ['list', 'map', 'ip', 'kube-proxy', 'service-ips']);
      return stdout.includes('198.19.1.10 . tcp . 80 :') ? true : undefined;
    });

    await small.exec(small.nodeNetns('solo'), 'nft', ['delete', 'element', 'ip', 'kube-proxy', 'service-ips', '{ 198.19.1.10 . tcp . 80 }']);
    const records: SyncRecord[] = [];
    proxy.on('sync', (record: SyncRecord) => records.push(record));
    await waitFor('same back in service-ips on solo', async () => {
      const { stdout } = await small.exec(small.nodeNetns('solo'), 'nft', ['list', 'map', 'ip', 'kube-proxy', 'service-ips']);
      return stdout.includes('198.19.1.10 . tcp . 80 :') ? true : undefined;
    }, 5000, 50);

    assert.equal(records[0]?.full, true);
  } finally {
    await proxy.stop();
    await small.close();
  }
});

test('service proxy full sync after failed sync', async () => {
  const small = await ClusterNetwork.create({ nodes: ['solo'] });
  const proxy = new ServiceProxy({ ...proxyOptions(small, 'solo'), retryDelayMs: 50, log: pino({ level: 'silent' }) });
  try {
    await proxy.start();
    await small.exec(small.nodeNetns('solo'), 'nft', ['delete', 'table', 'ip', 'kube-proxy']);

    // The partial sync for this Service refers to a table that is gone.
    await createService({ name: 'rebuilt', clusterIPs: ['198.19.1.31'] });
    await createSlices('rebuilt', nearPod);
    await waitFor('rebuilt in service-ips on solo', async () => {
      const result = await small.exec(small.nodeNetns('solo'), 'nft', ['list', 'map', 'ip', 'kube-proxy', 'service-ips']).catch(() => ({ stdout: '' }));
      return result.stdout.includes('198.19.1.31 . tcp . 80 :') ? true : undefined;
    }, 5000, 50);

    assert.ok(proxy.failedSyncCount >= 1, `failed syncs: ${proxy.failedSyncCount}`);
    assert.match(proxy.lastRuleset, /^add table ip kube-proxy$/m, 'the retry rebuilt the table');
  } finally {
    await proxy.stop();
    await small.close();
  }
});

test('service proxy rejects without endpoints in reject mode', async () => {
  const small = await ClusterNetwork.create({ nodes: ['solo'], externalClients: 1 });
  const proxy = new ServiceProxy({ ...proxyOptions(small, 'solo'), noEndpointVerdict: 'reject' });
  try {
    await createService({ name: 'refused', clusterIPs: ['198.19.1.20'] });
    await proxy.start();
    await waitFor('refused in no-endpoint-services', async () => {
      const { stdout } = await small.exec(small.nodeNetns('solo'), 'nft', ['list', 'map', 'ip', 'kube-proxy', 'no-endpoint-services']);
      return stdout.includes('198.19.1.20 . tcp . 80 comment "demo/refused:http" : goto reject-chain') ? true : undefined;
    });

    const result = await small.exec(small.externalClients[0]!, 'curl', ['-sS', '--max-time', '2', url('198.19.1.20', 80)]).then(
      () => 'connected',
      (err: Error) => err.message,
    );
    assert.match(result, /Connection refused|Couldn't connect/, 'rejected at once rather than timed out');
  } finally {
    await proxy.stop();
    await small.close();
  }
});

test('service proxy stop removes tables', async () => {
  const proxy = proxies.get('node-1')!;
  await proxy.stop();
  proxies.delete('node-1');

  const { stdout } = await cluster.exec(cluster.nodeNetns('node-1'), 'nft', ['list', 'tables']);
  assert.doesNotMatch(stdout, /kube-proxy/);
});
