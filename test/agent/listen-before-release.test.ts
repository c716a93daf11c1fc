// The controller's wait, before a release, for the endpoints that held TCP
// flows go to to accept connections. The test API server provides the
// Services and their EndpointSlices, and the datapath is the fake one.
// The ListenCheck gets a scripted probe, so each test decides how the
// endpoints reply. test/agent/listen-check.test.ts probes real sockets.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { AppsV1Api, type CoreV1Event, CoreV1Api, DiscoveryV1Api, type KubeConfig, type V1Service } from '@kubernetes/client-node';
import { pino } from 'pino';

import { Controller } from '../../src/agent/controller.js';
import { EndpointReadiness } from '../../src/agent/endpoint-readiness.js';
import { EventRecorder } from '../../src/agent/events.js';
import { AgentMetrics } from '../../src/agent/metrics.js';
import { ListenCheck } from '../../src/agent/listen-check.js';
import type { BackendCheck } from '../../src/agent/ports.js';
import type { Frontend } from '../../src/datapath/frontends.js';
import { KubeScaler } from '../../src/agent/scaler.js';
import { deploymentFixture } from '../apiserver/fixtures.js';
import { kubeConfigFor } from '../apiserver/kubeconfig.js';
import { startApiServer, type TestApiServer } from '../apiserver/server.js';
import { waitFor } from '../lib/netns.js';
import { FakeDatapath } from './testing/fake-datapath.js';
import { createScaleToZero, installScaleToZeroCrd } from './testing/objects.js';

const log = pino({ level: process.env.ZH_TEST_LOG ?? 'silent' });
let server: TestApiServer;
let kc: KubeConfig;

before(async () => {
  server = await startApiServer({ namespaces: ['listens', 'refuses', 'silent', 'shared-port', 'late-v6', 'early-v6', 'one-slow', 'udp-waits', 'udp-never', 'no-check', 'gate-closes'] });
  kc = kubeConfigFor(server.url);
  await installScaleToZeroCrd(kc);
});

after(async () => {
  await server.close();
});

// A dual-stack Service with an HTTP port, an admin port that no held
// flow uses, and a UDP port.
function webService(name = 'web', httpPortName = 'http'): V1Service {
  return {
    metadata: { name },
    spec: {
      selector: { app: 'web' },
      ipFamilies: ['IPv4', 'IPv6'],
      ipFamilyPolicy: 'RequireDualStack',
      ports: [
        { name: httpPortName, port: 80, protocol: 'TCP' },
        { name: 'admin', port: 9000, protocol: 'TCP' },
        { name: 'dns', port: 53, protocol: 'UDP' },
      ],
    },
  };
}

// Ready endpoints in one EndpointSlice of the Service, as the EndpointSlice
// controller writes them: one slice per family, ports named after the
// Service's.
async function createReadySlice(namespace: string, service: string, family: 'IPv4' | 'IPv6', addresses: string[], ports = WEB_ENDPOINT_PORTS): Promise<void> {
  await kc.makeApiClient(DiscoveryV1Api).createNamespacedEndpointSlice({
    namespace,
    body: {
      metadata: { name: `${service}-${family.toLowerCase()}`, labels: { 'kubernetes.io/service-name': service } },
      addressType: family,
      endpoints: addresses.map((address) => ({ addresses: [address], conditions: { ready: true } })),
      ports,
    },
  });
}

const WEB_ENDPOINT_PORTS = [
  { name: 'http', port: 8080, protocol: 'TCP' },
  { name: 'admin', port: 9090, protocol: 'TCP' },
  { name: 'dns', port: 5353, protocol: 'UDP' },
];

interface Probe {
  address: string;
  port: number;
  protocol: 'tcp' | 'udp';
  atMs: number;
}

interface RunOptions {
  wakeTimeout: string;
  // The probe's reply to the nth probe, counting from 0, of address:port.
  reply: (n: number, address: string, port: number) => string | null;
  // The Services of the workload. Defaults to one webService().
  services?: V1Service[];
  // The IP family of the held flow, to the first Service's ClusterIP of
  // that family on port 80. Defaults to 4.
  flowFamily?: 4 | 6;
  // The held flow's protocol: TCP to port 80, or UDP to port 53. Defaults
  // to TCP.
  flowProtocol?: 'tcp' | 'udp';
  // spec.checkListening of the ScaleToZero, unset by default.
  checkListening?: boolean;
  backendCheck?: BackendCheck;
}

// Starts a controller whose ListenCheck records each probe and returns
// options.reply() for it, holds one TCP flow and wakes the workload.
async function run(namespace: string, options: RunOptions) {
  await kc.makeApiClient(AppsV1Api).createNamespacedDeployment({ namespace, body: deploymentFixture('web', 0) });
  const created: V1Service[] = [];
  for (const service of options.services ?? [webService()]) created.push(await kc.makeApiClient(CoreV1Api).createNamespacedService({ namespace, body: service }));
  await createScaleToZero(kc, namespace, 'web', {
    targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'web' },
    idleTimeout: '1h',
    wakeTimeout: options.wakeTimeout,
    ...(options.checkListening === undefined ? {} : { checkListening: options.checkListening }),
  });

  const probes: Probe[] = [];
  const listenCheck = new ListenCheck({
    log,
    probe: async ({ address, port, protocol }) => {
      probes.push({ address, port, protocol, atMs: performance.now() });
      return options.reply(probes.length - 1, address, port);
    },
  });
  const readiness = new EndpointReadiness(kc, log);
  const datapath = new FakeDatapath();
  const metrics = new AgentMetrics({ held: () => new Map() });
  await readiness.start();
  const controller = new Controller({
    kc,
    nodeAddresses: [],
    datapath,
    readiness,
    scaler: new KubeScaler(kc),
    events: new EventRecorder(kc, 'node-1', log),
    activity: { lastActivity: () => undefined },
    listenCheck,
    ...(options.backendCheck ? { backendCheck: options.backendCheck } : {}),
    isLeader: () => true,
    log,
    metrics,
    tickMs: 50,
  });
  await controller.start();

  const key = `${namespace}/web`;
  const flowFamily = options.flowFamily ?? 4;
  const destination = created[0]!.spec!.clusterIPs!.find((address) => address.includes(':') === (flowFamily === 6))!;
  const protocol = options.flowProtocol ?? 'tcp';
  datapath.heldFlow.set(key, { protocol, source: flowFamily === 6 ? 'fd5a:18::100' : '198.18.0.100', sourcePort: 40000, destination, destinationPort: protocol === 'udp' ? 53 : 80 });
  await waitFor('the gate closed', () => (datapath.gateClosed.get(key) === true ? true : undefined));
  datapath.held.set(key, 1);
  datapath.wake(key);
  await waitFor('the scale-up', () => (controller.phaseOf(key)?.phase === 'Waking' ? true : undefined));

  return {
    probes,
    controller,
    datapath,
    readiness,
    metrics,
    readyMs: performance.now(),
    stop: async () => {
      await controller.stop();
      await readiness.stop();
    },
  };
}

const released = (agent: { datapath: FakeDatapath }) => (agent.datapath.releases.length > 0 ? true : undefined);

async function backendNotListening(namespace: string): Promise<CoreV1Event> {
  return waitFor('the BackendNotListening Event', async () =>
    (await kc.makeApiClient(CoreV1Api).listNamespacedEvent({ namespace })).items.find((e) => e.reason === 'BackendNotListening' && e.involvedObject.kind === 'ScaleToZero'),
  );
}

test('release waits for a listener', async () => {
  const agent = await run('listens', { wakeTimeout: '2m', reply: (n) => (n < 5 ? 'ECONNREFUSED' : null) });
  try {
    await createReadySlice('listens', 'web', 'IPv4', ['198.18.7.1']);
    await createReadySlice('listens', 'web', 'IPv6', ['fd5a:18::7:1']);
    await waitFor('the release', () => released(agent));

    // Only the HTTP target port, and only the IPv4 endpoint: the held flow
    // is IPv4, to port 80.
    assert.deepEqual(new Set(agent.probes.map((p) => `${p.address}:${p.port}`)), new Set(['198.18.7.1:8080']));
    assert.equal(agent.probes.length, 6, 'five refusals, then the accepted probe');
    const accepted = agent.probes[5]!.atMs;
    assert.ok(accepted - agent.probes[0]!.atMs >= 40, `five retries took ${(accepted - agent.probes[0]!.atMs).toFixed(1)} ms, want about 50`);
    assert.deepEqual(agent.datapath.earlyReleases, [], 'nothing re-injected early, before the endpoint listened');
  } finally {
    await agent.stop();
  }
});

test('refusing endpoint released at wakeTimeout', async () => {
  // Long enough that the wake does not time out before the slices exist
  // on a busy machine, which would drop the held flow and probe nothing.
  const agent = await run('refuses', { wakeTimeout: '3s', reply: () => 'ECONNREFUSED' });
  const waitingFor = () => agent.controller.snapshot().find((w) => w.key === 'refuses/web')?.waitingFor;
  try {
    assert.deepEqual(waitingFor(), ['a Ready endpoint']);

    await createReadySlice('refuses', 'web', 'IPv4', ['198.18.7.1']);
    await waitFor('the endpoint reported as not listening', () => (waitingFor()?.includes('198.18.7.1:8080 to listen') ? true : undefined));
    await waitFor('the release', () => released(agent), 8000);

    assert.deepEqual(waitingFor(), [], 'nothing to wait for after the release');
    assert.ok(agent.probes.length > 10, `${agent.probes.length} probes`);
    const lastProbe = agent.probes.at(-1)!.atMs;
    assert.ok(lastProbe - agent.readyMs < 3000, 'no probe after the wake timeout');
    const event = await backendNotListening('refuses');
    assert.equal(event.type, 'Warning');
    assert.equal((await agent.metrics.backendRefused.get()).values.find((v) => v.labels.workload === 'refuses/web')?.value, 1);
    const waits = (await agent.metrics.listenWait.get()).values.find((v) => v.labels.workload === 'refuses/web' && v.metricName === 'zerohold_release_listen_wait_seconds_count');
    assert.equal(waits?.value, 1, 'one release that waited for a listener');
    assert.match(event.message ?? '', /^198\.18\.7\.1:8080 refused connections after turning Ready.*readiness probe/);
  } finally {
    await agent.stop();
  }
});

test('UDP flow waits for a bound socket', async () => {
  const agent = await run('udp-waits', { wakeTimeout: '2m', flowProtocol: 'udp', reply: (n) => (n < 3 ? 'ECONNREFUSED' : null) });
  try {
    await createReadySlice('udp-waits', 'web', 'IPv4', ['198.18.7.1']);
    await waitFor('the release', () => released(agent));

    assert.deepEqual(new Set(agent.probes.map((p) => `${p.address}:${p.port}/${p.protocol}`)), new Set(['198.18.7.1:5353/udp']));
    assert.equal(agent.probes.length, 4, 'three attempts without a socket, then the bound one');
    assert.equal((await agent.metrics.backendRefused.get()).values.find((v) => v.labels.workload === 'udp-waits/web')?.value, 0);
  } finally {
    await agent.stop();
  }
});

test('unbound UDP endpoint names the opt-out', async () => {
  const agent = await run('udp-never', { wakeTimeout: '3s', flowProtocol: 'udp', reply: () => 'ECONNREFUSED' });
  try {
    await createReadySlice('udp-never', 'web', 'IPv4', ['198.18.7.1']);
    await waitFor('the release', () => released(agent), 8000);

    const event = await backendNotListening('udp-never');
    assert.match(event.message ?? '', /^198\.18\.7\.1:5353\/udp had no socket bound after turning Ready/);
    assert.match(event.message ?? '', /set spec\.checkListening: false on the ScaleToZero$/);
  } finally {
    await agent.stop();
  }
});

test('checkListening false skips the probes', async () => {
  const agent = await run('no-check', { wakeTimeout: '2m', checkListening: false, reply: () => 'ECONNREFUSED' });
  try {
    await createReadySlice('no-check', 'web', 'IPv4', ['198.18.7.1']);
    await waitFor('the release', () => released(agent));

    assert.deepEqual(agent.probes, []);
  } finally {
    await agent.stop();
  }
});

test('unanswered probe releases at once', async () => {
  const agent = await run('silent', { wakeTimeout: '2m', reply: () => 'ETIMEDOUT' });
  try {
    await createReadySlice('silent', 'web', 'IPv4', ['198.18.7.1']);
    await waitFor('the release', () => released(agent));

    assert.equal(agent.probes.length, 1, 'one probe, which cannot tell');
    assert.equal((await agent.metrics.backendRefused.get()).values.find((v) => v.labels.workload === 'silent/web')?.value, 0, 'no release to a refusing backend');
  } finally {
    await agent.stop();
  }
});

test('flow probes only its own Service', async () => {
  // Two Services of the workload share port 80. The held flow went to
  // web, whose pods listen; web-debug's target port never does.
  const services = [webService(), webService('web-debug', 'debug')];
  const agent = await run('shared-port', { wakeTimeout: '2m', services, reply: (_n, _address, port) => (port === 8080 ? null : 'ECONNREFUSED') });
  try {
    await createReadySlice('shared-port', 'web', 'IPv4', ['198.18.7.1']);
    await createReadySlice('shared-port', 'web-debug', 'IPv4', ['198.18.7.1'], [{ name: 'debug', port: 5005, protocol: 'TCP' }]);
    await waitFor('the release', () => released(agent));

    assert.deepEqual(new Set(agent.probes.map((p) => `${p.address}:${p.port}`)), new Set(['198.18.7.1:8080']));
  } finally {
    await agent.stop();
  }
});

test('endpoints Ready during the wait are probed', async () => {
  // The held flow is IPv6, and the IPv4 slice turns Ready first. The
  // backend check passes only once the IPv6 slice exists, as kube-proxy's
  // rule for the IPv6 ClusterIP would.
  let programmed: (value: boolean) => void = () => undefined;
  const backendCheck: BackendCheck = { waitProgrammed: () => new Promise((resolve) => (programmed = resolve)) };
  const agent = await run('late-v6', { wakeTimeout: '2m', flowFamily: 6, backendCheck, reply: () => null });
  try {
    await createReadySlice('late-v6', 'web', 'IPv4', ['198.18.7.1']);
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(released(agent), undefined, 'released before the backend check passed');
    assert.equal(agent.probes.length, 0, 'no IPv4 endpoint probed for an IPv6 flow');
    assert.deepEqual(agent.controller.snapshot().find((w) => w.key === 'late-v6/web')?.waitingFor, ["the node's load balancer"]);

    await createReadySlice('late-v6', 'web', 'IPv6', ['fd5a:18::7:1']);
    await waitFor('the IPv6 slice at the agent', () => (agent.readiness.readyBackends('late-v6/web').length === 2 ? true : undefined));
    programmed(true);
    await waitFor('the release', () => released(agent));

    assert.deepEqual(agent.probes.map((p) => `${p.address}:${p.port}`), ['fd5a:18::7:1:8080']);
  } finally {
    await agent.stop();
  }
});

test('closed gate ends the listed waits', async () => {
  // The load balancer check of the release runs out its 3 s after the
  // workload was scaled to zero, which ends the release.
  const backendCheck: BackendCheck = { waitProgrammed: () => new Promise((resolve) => setTimeout(() => resolve(false), 3000)) };
  const agent = await run('gate-closes', { wakeTimeout: '2m', backendCheck, reply: () => null });
  const waitingFor = () => agent.controller.snapshot().find((w) => w.key === 'gate-closes/web')?.waitingFor;
  try {
    await createReadySlice('gate-closes', 'web', 'IPv4', ['198.18.7.1']);
    await waitFor('the load balancer wait', () => (waitingFor()?.includes("the node's load balancer") ? true : undefined));

    await kc.makeApiClient(AppsV1Api).patchNamespacedDeploymentScale({ name: 'web', namespace: 'gate-closes', body: [{ op: 'replace', path: '/spec/replicas', value: 0 }] });
    await waitFor('the workload cold', () => (agent.controller.phaseOf('gate-closes/web')?.phase === 'Cold' ? true : undefined));

    assert.deepEqual(waitingFor(), []);
  } finally {
    await agent.stop();
  }
});

test('early release probes new endpoints first', async () => {
  // As above, but the load balancer reports the IPv6 frontend programmed
  // on its own before the whole check passes, as kube-proxy does per IP
  // family. The early release of the IPv6 flow must wait for the IPv6
  // endpoint, which refuses three times before it listens.
  let programmed: (value: boolean) => void = () => undefined;
  let reportV6: ((frontends: Frontend[]) => void) | undefined;
  const backendCheck: BackendCheck = {
    waitProgrammed: (_frontends, _timeoutMs, onProgrammed) => {
      reportV6 = onProgrammed;
      return new Promise((resolve) => (programmed = resolve));
    },
  };
  const agent = await run('early-v6', { wakeTimeout: '2m', flowFamily: 6, backendCheck, reply: (n) => (n < 3 ? 'ECONNREFUSED' : null) });
  let probesAtEarlyRelease = -1;
  const releaseEarly = agent.datapath.releaseEarly.bind(agent.datapath);
  agent.datapath.releaseEarly = (workload, frontends) => {
    probesAtEarlyRelease = agent.probes.length;
    return releaseEarly(workload, frontends);
  };
  try {
    await createReadySlice('early-v6', 'web', 'IPv4', ['198.18.7.1']);
    await waitFor('the first round of probes', () => (reportV6 !== undefined ? true : undefined));
    await new Promise((resolve) => setTimeout(resolve, 100));
    await createReadySlice('early-v6', 'web', 'IPv6', ['fd5a:18::7:1']);
    await waitFor('the IPv6 slice at the agent', () => (agent.readiness.readyBackends('early-v6/web').length === 2 ? true : undefined));

    reportV6!([{ address: agent.datapath.heldFlow.get('early-v6/web')!.destination, protocol: 'tcp', port: 80 }]);
    await waitFor('the early release', () => (agent.datapath.earlyReleases.length > 0 ? true : undefined));
    programmed(true);
    await waitFor('the release', () => released(agent));

    assert.equal(probesAtEarlyRelease, 4, 'three refusals and the accepted probe of the IPv6 endpoint before the early release');
    assert.deepEqual(new Set(agent.probes.map((p) => p.address)), new Set(['fd5a:18::7:1']));
  } finally {
    await agent.stop();
  }
});

test('one listener cuts the wait short', async () => {
  // Of two endpoints, one listens and one keeps refusing. The flows go
  // out about 1 s after the first listens, not at wakeTimeout.
  const agent = await run('one-slow', { wakeTimeout: '2m', reply: (_n, address) => (address === '198.18.7.1' ? null : 'ECONNREFUSED') });
  try {
    await createReadySlice('one-slow', 'web', 'IPv4', ['198.18.7.1', '198.18.7.2']);
    const readyMs = performance.now();
    await waitFor('the release', () => released(agent), 5000);

    assert.ok(performance.now() - readyMs < 3000, `released ${(performance.now() - readyMs).toFixed(0)} ms after the slice`);
    const event = await backendNotListening('one-slow');
    assert.match(event.message ?? '', /^198\.18\.7\.2:8080 refused connections/);
  } finally {
    await agent.stop();
  }
});
