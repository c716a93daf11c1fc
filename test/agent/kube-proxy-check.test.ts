// Tests of the kube-proxy nftables release check against real nft in
// network namespaces that each test creates. Most tests write kube-proxy's
// tables with the testbed's ruleset renderer, so they control the moment
// of each commit. The last one runs the testbed's kube-proxy stand-in
// against the in-repo API server.

import assert from 'node:assert/strict';
import { after, test, type TestContext } from 'node:test';

import { CoreV1Api, DiscoveryV1Api, type V1EndpointSlice } from '@kubernetes/client-node';
import { pino } from 'pino';

import { KubeProxyNftables } from '../../src/agent/kube-proxy-check.js';
import { KubeProxyMaps } from '../../src/agent/kube-proxy-maps.js';
import type { Frontend } from '../../src/datapath/frontends.js';
import { kubeConfigFor } from '../apiserver/kubeconfig.js';
import { startApiServer } from '../apiserver/server.js';
import { netnsPath, TestNetwork, waitFor } from '../lib/netns.js';
import { runNft } from '../lib/topology.js';
import { type FamilyRules, type NoEndpointVerdict, renderDeletion, renderTransaction } from '../testbed/kube-proxy-ruleset.js';
import { ServiceProxy } from '../testbed/service-proxy.js';
import type { IpFamily, ServicePort } from '../testbed/service-ports.js';

const log = pino({ level: 'warn' }, pino.destination(2));
const network = new TestNetwork();
after(() => network.cleanup());

const NODE_IPV4 = '198.18.0.1';
const NODE_IPV6 = 'fd5a:18::1';
const WEB: Frontend = { address: '198.19.1.10', protocol: 'tcp', port: 80 };
const DNS: Frontend = { address: '198.19.1.11', protocol: 'udp', port: 53 };
const WEB6: Frontend = { address: 'fd5a:19::1:10', protocol: 'tcp', port: 80 };

interface PortSpec {
  frontend: Frontend;
  // Ready endpoints; none leaves the port out of service-ips.
  endpoints?: number;
  nodePort?: number;
}

function servicePort(spec: PortSpec, index: number): ServicePort {
  const { frontend } = spec;
  const ipv6 = frontend.address.includes(':');
  const endpoints = Array.from({ length: spec.endpoints ?? 1 }, (_, i) => ({ address: ipv6 ? `fd5a:18:1::${i + 10}` : `198.18.1.${i + 10}`, port: 8080 }));
  return {
    name: { namespace: 'demo', name: `svc-${index}`, protocol: frontend.protocol, portName: 'p' },
    clusterIP: frontend.address,
    port: frontend.port as number,
    nodePort: spec.nodePort ?? 0,
    endpoints,
  };
}

// Replaces both kube-proxy tables in one transaction, as kube-proxy's
// full sync and the testbed's stand-in do. 'reject' adds kube-proxy's
// no-endpoint-services elements for ports without endpoints.
async function programTables(ns: string, specs: PortSpec[], noEndpointVerdict: NoEndpointVerdict = 'fall-through'): Promise<void> {
  const ports = specs.map(servicePort);
  const rules: FamilyRules[] = (['ipv4', 'ipv6'] as IpFamily[]).map((family) => ({
    family,
    servicePorts: ports.filter((port) => port.clusterIP.includes(':') === (family === 'ipv6')),
    nodePortAddresses: [family === 'ipv4' ? NODE_IPV4 : NODE_IPV6],
    podCidrs: [],
    noEndpointVerdict,
  }));
  await runNft(ns, renderTransaction(rules));
}

async function startCheck(t: TestContext, ns: string, options: { restartDelayMs?: (attempt: number) => number } = {}): Promise<KubeProxyNftables> {
  const check = new KubeProxyNftables({ netns: netnsPath(ns), log, ...options });
  await check.start();
  t.after(() => check.stop());
  return check;
}

// Records when a promise settles, on the clock of performance.now().
function settledAt<T>(promise: Promise<T>): Promise<{ value: T; at: number }> {
  return promise.then((value) => ({ value, at: performance.now() }));
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

const format = (ms: number) => ms.toFixed(2);

test('kube-proxy maps read nft element forms', () => {
  const maps = new KubeProxyMaps();
  const element = (operation: string, name: string, set: unknown[], family = 'ip') => ({ [operation]: { element: { family, table: 'kube-proxy', name, elem: { set } } } });
  const jump = { goto: { target: 'service-X' } };

  maps.applyEvent({ add: { set: { family: 'ip', table: 'kube-proxy', name: 'nodeport-ips' } } });
  maps.applyEvent(element('add', 'service-ips', [[{ elem: { val: { concat: ['198.19.1.10', 'tcp', 80] }, comment: 'demo/web' } }, jump]]));
  maps.applyEvent(element('add', 'service-ips', [[{ concat: ['198.19.1.11', 17, 53] }, jump]]));
  maps.applyEvent(element('add', 'service-ips', [[{ concat: ['fd5a:19:0::1:10', 'tcp', 80] }, jump]], 'ip6'));
  maps.applyEvent(element('add', 'service-ips', [[{ concat: ['198.19.1.12', 'tcp', 80] }, jump]], 'inet'));
  maps.applyEvent(element('add', 'nodeport-ips', ['198.18.0.1']));
  maps.applyEvent(element('add', 'service-nodeports', [[{ concat: ['tcp', 30080] }, jump]]));

  assert.equal(maps.isProgrammed(WEB), true, 'element with a comment');
  assert.equal(maps.isProgrammed(DNS), true, 'protocol as a number');
  assert.equal(maps.isProgrammed(WEB6), true, 'IPv6 address in another form');
  assert.equal(maps.isProgrammed({ address: '198.19.1.12', protocol: 'tcp', port: 80 }), false, 'inet table is not kube-proxy');
  assert.equal(maps.isProgrammed({ address: '198.19.1.10', protocol: 'tcp', port: 'any' }), true, 'port any');
  assert.equal(maps.isProgrammed({ address: '198.19.1.10', protocol: 'udp', port: 'any' }), false, 'port any, other protocol');
  assert.equal(maps.isProgrammed({ address: NODE_IPV4, protocol: 'tcp', port: 30080 }), true, 'NodePort on a node address');
  assert.equal(maps.isProgrammed({ address: '198.18.0.2', protocol: 'tcp', port: 30080 }), false, 'NodePort on another address');
  assert.equal(maps.ignoredElements, 0);

  maps.applyEvent({ delete: { table: { family: 'ip', name: 'kube-proxy' } } });
  assert.equal(maps.isProgrammed(WEB), false, 'deleted table');
  assert.equal(maps.isProgrammed(WEB6), true, 'other family keeps its table');
});

test('kube-proxy check false while unprogrammed', async (t) => {
  const ns = await network.addNamespace('kp');
  await programTables(ns, [{ frontend: WEB, endpoints: 0 }, { frontend: DNS }], 'reject');
  const check = await startCheck(t, ns);

  const startedAt = performance.now();
  const programmed = await check.waitProgrammed([WEB, DNS], 300);
  const elapsed = performance.now() - startedAt;

  assert.equal(programmed, false);
  assert.ok(elapsed >= 290, `resolved after ${format(elapsed)} ms, want the 300 ms timeout`);
});

test('kube-proxy check waits for missing table', async (t) => {
  const ns = await network.addNamespace('kp');
  const check = await startCheck(t, ns);

  const waiting = settledAt(check.waitProgrammed([WEB], 5000));
  assert.equal(await check.waitProgrammed([WEB], 100), false, 'no table yet');

  await programTables(ns, [{ frontend: WEB }]);
  const committedAt = performance.now();
  const { value, at } = await waiting;

  assert.equal(value, true);
  assert.ok(at - committedAt < 100, `resolved ${format(at - committedAt)} ms after nft exited`);
});

test('kube-proxy check resolves soon after commit', async (t) => {
  const ns = await network.addNamespace('kp');
  await programTables(ns, []);
  const check = await startCheck(t, ns);
  const rounds = 20;

  // Two kinds of commit: kube-proxy's partial sync adds one element to
  // the existing map, and a full sync replaces the tables.
  for (const kind of ['element', 'table'] as const) {
    const afterExit: number[] = [];
    const afterSpawn: number[] = [];
    const specs: PortSpec[] = [];

    for (let i = 0; i < rounds; i++) {
      const frontend: Frontend = { address: `198.19.${kind === 'element' ? 2 : 3}.${i + 1}`, protocol: 'tcp', port: 80 };
      specs.push({ frontend });
      const waiting = settledAt(check.waitProgrammed([frontend], 5000));

      const spawnedAt = performance.now();
      if (kind === 'element') {
        await runNft(ns, `add chain ip kube-proxy svc-${kind}-${i}\nadd element ip kube-proxy service-ips { ${frontend.address} . tcp . 80 : goto svc-${kind}-${i} }\n`);
      } else {
        await programTables(ns, specs);
      }
      const exitedAt = performance.now();
      const { value, at } = await waiting;

      assert.equal(value, true, `round ${i} of ${kind}`);
      afterExit.push(at - exitedAt);
      afterSpawn.push(at - spawnedAt);
    }

    t.diagnostic(`${kind} commits: resolve minus nft exit median ${format(median(afterExit))} ms, max ${format(Math.max(...afterExit))} ms; resolve minus nft spawn median ${format(median(afterSpawn))} ms, max ${format(Math.max(...afterSpawn))} ms`);
    assert.ok(median(afterExit) < 5, `median ${format(median(afterExit))} ms after nft exited, want under 5 ms`);
  }
});

test('kube-proxy check follows IPv6', async (t) => {
  const ns = await network.addNamespace('kp');
  const check = await startCheck(t, ns);

  const waiting = check.waitProgrammed([WEB6], 5000);
  await programTables(ns, [{ frontend: WEB }]);
  assert.equal(await check.waitProgrammed([WEB6], 100), false, 'IPv4 element does not count');

  await programTables(ns, [{ frontend: WEB }, { frontend: WEB6 }]);
  assert.equal(await waiting, true);
});

test('kube-proxy check reports progress', async (t) => {
  const ns = await network.addNamespace('kp');
  await programTables(ns, [{ frontend: DNS }]);
  const check = await startCheck(t, ns);
  const reports: string[][] = [];

  const waiting = check.waitProgrammed([WEB, DNS, WEB6], 5000, (frontends) => reports.push(frontends.map((f) => f.address)));
  assert.deepEqual(reports, [[DNS.address]], 'at once for what is programmed already');

  await programTables(ns, [{ frontend: DNS }, { frontend: WEB }]);
  await waitFor('the IPv4 report', () => (reports.length === 2 ? true : undefined));
  assert.deepEqual(reports[1], [WEB.address], 'only the newly programmed frontend');

  await programTables(ns, [{ frontend: DNS }, { frontend: WEB }, { frontend: WEB6 }]);
  assert.equal(await waiting, true);
  assert.equal(reports.length, 2, 'the last frontend resolves the wait instead');
});

test('kube-proxy check true when programmed', async (t) => {
  const ns = await network.addNamespace('kp');
  await programTables(ns, [{ frontend: WEB }, { frontend: DNS }, { frontend: WEB6 }]);
  const check = await startCheck(t, ns);

  const startedAt = performance.now();
  const programmed = await check.waitProgrammed([WEB, DNS, WEB6], 5000);
  const elapsed = performance.now() - startedAt;

  assert.equal(programmed, true);
  assert.ok(elapsed < 5, `resolved after ${format(elapsed)} ms, want at once`);
});

test('kube-proxy check tracks table re-creation', async (t) => {
  const ns = await network.addNamespace('kp');
  await programTables(ns, [{ frontend: WEB }]);
  const check = await startCheck(t, ns);
  assert.equal(await check.waitProgrammed([WEB], 1000), true, 'initial table');

  // The same transaction deletes the table and re-creates it without WEB.
  await programTables(ns, [{ frontend: WEB, endpoints: 0 }, { frontend: DNS }]);
  assert.equal(await check.waitProgrammed([WEB], 100), false, 're-created without WEB');
  assert.equal(await check.waitProgrammed([DNS], 1000), true, 're-created with DNS');

  await runNft(ns, renderDeletion(['ipv4', 'ipv6']));
  assert.equal(await check.waitProgrammed([DNS], 100), false, 'deleted table');

  const waiting = check.waitProgrammed([WEB, DNS], 5000);
  await programTables(ns, [{ frontend: WEB }, { frontend: DNS }]);
  assert.equal(await waiting, true, 're-created with both');
});

test('kube-proxy check matches NodePorts', async (t) => {
  const ns = await network.addNamespace('kp');
  await programTables(ns, [{ frontend: WEB, nodePort: 30080 }, { frontend: DNS, endpoints: 0, nodePort: 30053 }]);
  const check = await startCheck(t, ns);

  assert.equal(await check.waitProgrammed([{ address: NODE_IPV4, protocol: 'tcp', port: 30080 }], 1000), true, 'node address');
  assert.equal(await check.waitProgrammed([{ address: '198.18.0.2', protocol: 'tcp', port: 30080 }], 100), false, 'not a NodePort address');
  assert.equal(await check.waitProgrammed([{ address: NODE_IPV4, protocol: 'udp', port: 30053 }], 100), false, 'no endpoints');
});

test('kube-proxy check skips unserved node address', async (t) => {
  // kube-proxy serves NodePorts on NODE_IPV4 only (nodeport-ips), as with
  // its default --nodeport-addresses primary, and the Node also reports an
  // ExternalIP, on which the controller makes NodePort frontends too.
  const ns = await network.addNamespace('kp');
  await programTables(ns, [{ frontend: WEB, nodePort: 30080 }]);
  const externalIp = '198.18.200.1';
  const check = new KubeProxyNftables({ netns: netnsPath(ns), log, nodeAddresses: [NODE_IPV4, externalIp] });
  await check.start();
  t.after(() => check.stop());

  const frontends: Frontend[] = [WEB, { address: NODE_IPV4, protocol: 'tcp', port: 30080 }, { address: externalIp, protocol: 'tcp', port: 30080 }];
  assert.equal(await check.waitProgrammed(frontends, 1000), true);
  assert.equal(await check.waitProgrammed([{ address: '198.19.9.9', protocol: 'tcp', port: 30080 }], 100), false, 'an address that is no node address still waits');
});

test('kube-proxy check port any', async (t) => {
  const ns = await network.addNamespace('kp');
  await programTables(ns, [{ frontend: WEB }]);
  const check = await startCheck(t, ns);

  assert.equal(await check.waitProgrammed([{ ...WEB, port: 'any' }], 1000), true, 'tcp');
  assert.equal(await check.waitProgrammed([{ ...WEB, protocol: 'udp', port: 'any' }], 100), false, 'udp');
});

test('kube-proxy check rejects invalid address', async (t) => {
  const ns = await network.addNamespace('kp');
  const check = await startCheck(t, ns);

  await assert.rejects(check.waitProgrammed([{ address: 'web.demo', protocol: 'tcp', port: 80 }], 100), RangeError);
});

test('kube-proxy check restarts dead monitor', async (t) => {
  const ns = await network.addNamespace('kp');
  const check = await startCheck(t, ns, { restartDelayMs: () => 20 });
  const firstPid = check.monitorPid!;

  process.kill(firstPid, 'SIGKILL');
  const secondPid = await waitFor('a new monitor', () => (check.monitorPid !== undefined && check.monitorPid !== firstPid ? check.monitorPid : undefined), 5000);
  assert.equal(isRunning(firstPid), false, 'first monitor is gone');

  // A change made while no monitor ran reaches the copy through the
  // new monitor's listing.
  await programTables(ns, [{ frontend: WEB }]);
  assert.equal(await check.waitProgrammed([WEB], 5000), true, 'change after restart');
  assert.equal(check.monitorPid, secondPid);
});

test('kube-proxy check restarts a blind monitor', async (t) => {
  const ns = await network.addNamespace('kp');
  await programTables(ns, [{ frontend: DNS }]);
  // A restart after an exit would wait a minute, so only the cache-miss
  // path can make this test pass in time.
  const check = await startCheck(t, ns, { restartDelayMs: () => 60_000 });
  const firstPid = check.monitorPid!;

  // With the only rule that uses service-ips gone, nft 1.0.6 drops the map
  // from its cache and reports the next element only as "Received event
  // for an unknown set" on stderr.
  await runNft(ns, 'flush chain ip kube-proxy services\nadd chain ip kube-proxy svc-test\n');
  await runNft(ns, `add element ip kube-proxy service-ips { ${WEB.address} . tcp . ${WEB.port} : goto svc-test }\n`);

  assert.equal(await check.waitProgrammed([WEB], 5000), true, 'the element reached the check through a new monitor');
  assert.notEqual(check.monitorPid, firstPid);
});

test('kube-proxy check stop ends monitor', async (t) => {
  const ns = await network.addNamespace('kp');
  const check = await startCheck(t, ns);
  const pid = check.monitorPid!;
  assert.equal(isRunning(pid), true, 'monitor runs');

  const waiting = check.waitProgrammed([WEB], 10_000);
  await check.stop();

  assert.equal(isRunning(pid), false, 'monitor ended');
  assert.equal(check.monitorPid, undefined);
  assert.equal(await waiting, false, 'pending wait');
  assert.equal(await check.waitProgrammed([WEB], 10_000), false, 'wait after stop');
});

test('kube-proxy check with service proxy', async (t) => {
  const ns = await network.addNamespace('kp');
  const server = await startApiServer({ namespaces: ['demo'] });
  t.after(() => server.close());
  const kubeConfig = kubeConfigFor(server.url);
  const proxy = new ServiceProxy({
    kubeConfig,
    nodeName: 'node-0',
    netns: ns,
    nodeAddresses: { ipv4: NODE_IPV4, ipv6: NODE_IPV6 },
    podCidrs: { ipv4: ['198.18.1.0/24'], ipv6: ['fd5a:18:1::/64'] },
  });
  await proxy.start();
  t.after(() => proxy.stop());
  const check = await startCheck(t, ns);

  await kubeConfig.makeApiClient(CoreV1Api).createNamespacedService({
    namespace: 'demo',
    body: {
      metadata: { name: 'web' },
      spec: {
        type: 'NodePort',
        clusterIP: WEB.address,
        clusterIPs: [WEB.address, WEB6.address],
        ipFamilies: ['IPv4', 'IPv6'],
        ipFamilyPolicy: 'RequireDualStack',
        selector: { app: 'web' },
        ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 8080, nodePort: 30080 }],
      },
    },
  });
  const frontends: Frontend[] = [WEB, WEB6, { address: NODE_IPV4, protocol: 'tcp', port: 30080 }, { address: NODE_IPV6, protocol: 'tcp', port: 30080 }];
  assert.equal(await check.waitProgrammed(frontends, 300), false, 'Service without endpoints');

  const syncs: number[] = [];
  proxy.on('sync', () => syncs.push(performance.now()));
  const waiting = settledAt(check.waitProgrammed(frontends, 10_000));
  const discovery = kubeConfig.makeApiClient(DiscoveryV1Api);
  for (const [family, address] of [['IPv4', '198.18.1.10'], ['IPv6', 'fd5a:18:1::10']] as const) {
    const body: V1EndpointSlice = {
      metadata: { name: `web-${family.toLowerCase()}`, labels: { 'kubernetes.io/service-name': 'web' } },
      addressType: family,
      ports: [{ name: 'http', protocol: 'TCP', port: 8080 }],
      endpoints: [{ addresses: [address], conditions: { ready: true } }],
    };
    await discovery.createNamespacedEndpointSlice({ namespace: 'demo', body });
  }
  const { value, at } = await waiting;
  await proxy.synced();

  assert.equal(value, true);
  assert.ok(syncs.length > 0, 'the stand-in synced');
  const nearestSync = syncs.reduce((best, syncAt) => (Math.abs(syncAt - at) < Math.abs(best - at) ? syncAt : best));
  t.diagnostic(`resolved ${format(nearestSync - at)} ms before the stand-in's nearest sync event (negative: after it)`);
});
