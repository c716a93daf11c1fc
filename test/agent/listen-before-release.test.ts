// The controller's wait, before a release, for the endpoints that held TCP
// flows go to to accept connections. The test API server provides the
// Service and its EndpointSlices; the datapath is the fake one, and the
// ListenCheck gets a scripted probe, so each test decides how the
// endpoints reply. test/agent/listen-check.test.ts probes real sockets.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { AppsV1Api, CoreV1Api, DiscoveryV1Api, type KubeConfig, type V1Service } from '@kubernetes/client-node';
import { pino } from 'pino';

import { Controller } from '../../src/agent/controller.js';
import { EndpointReadiness } from '../../src/agent/endpoint-readiness.js';
import { EventRecorder } from '../../src/agent/events.js';
import { ListenCheck } from '../../src/agent/listen-check.js';
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
  server = await startApiServer({ namespaces: ['listens', 'refuses', 'silent'] });
  kc = kubeConfigFor(server.url);
  await installScaleToZeroCrd(kc);
});

after(async () => {
  await server.close();
});

// A dual-stack Service with an HTTP port, which the fake datapath's held
// flow (TCP to port 80) goes to, an admin port that no held flow uses, and
// a UDP port.
function webService(): V1Service {
  return {
    metadata: { name: 'web' },
    spec: {
      selector: { app: 'web' },
      ipFamilies: ['IPv4', 'IPv6'],
      ipFamilyPolicy: 'RequireDualStack',
      ports: [
        { name: 'http', port: 80, protocol: 'TCP' },
        { name: 'admin', port: 9000, protocol: 'TCP' },
        { name: 'dns', port: 53, protocol: 'UDP' },
      ],
    },
  };
}

// One Ready endpoint per IP family, as the EndpointSlice controller writes
// them: one slice per family, ports named after the Service's.
async function createReadySlices(namespace: string): Promise<void> {
  const ports = [
    { name: 'http', port: 8080, protocol: 'TCP' },
    { name: 'admin', port: 9090, protocol: 'TCP' },
    { name: 'dns', port: 5353, protocol: 'UDP' },
  ];
  const discovery = kc.makeApiClient(DiscoveryV1Api);
  for (const [family, address] of [['IPv4', '198.18.7.1'], ['IPv6', 'fd5a:18::7:1']] as const) {
    await discovery.createNamespacedEndpointSlice({
      namespace,
      body: {
        metadata: { name: `web-${family.toLowerCase()}`, labels: { 'kubernetes.io/service-name': 'web' } },
        addressType: family,
        endpoints: [{ addresses: [address], conditions: { ready: true } }],
        ports,
      },
    });
  }
}

interface Probe {
  address: string;
  port: number;
  atMs: number;
}

// Starts a controller whose ListenCheck records each probe and returns
// reply(n) for the nth, counting from 0.
async function run(namespace: string, wakeTimeout: string, reply: (n: number) => string | null) {
  await kc.makeApiClient(AppsV1Api).createNamespacedDeployment({ namespace, body: deploymentFixture('web', 0) });
  await kc.makeApiClient(CoreV1Api).createNamespacedService({ namespace, body: webService() });
  await createScaleToZero(kc, namespace, 'web', { targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'web' }, idleTimeout: '1h', wakeTimeout });

  const probes: Probe[] = [];
  const listenCheck = new ListenCheck({
    log,
    probe: async (address, port) => {
      probes.push({ address, port, atMs: performance.now() });
      return reply(probes.length - 1);
    },
  });
  const readiness = new EndpointReadiness(kc, log);
  const datapath = new FakeDatapath();
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
    isLeader: () => true,
    log,
    tickMs: 50,
  });
  await controller.start();

  const key = `${namespace}/web`;
  await waitFor('the gate closed', () => (datapath.gateClosed.get(key) === true ? true : undefined));
  datapath.held.set(key, 1);
  datapath.wake(key);
  await waitFor('the scale-up', () => (controller.phaseOf(key)?.phase === 'Waking' ? true : undefined));
  const readyMs = performance.now();
  await createReadySlices(namespace);

  return {
    probes,
    datapath,
    readyMs,
    stop: async () => {
      await controller.stop();
      await readiness.stop();
    },
  };
}

test('release waits for a listener', async () => {
  const agent = await run('listens', '2m', (n) => (n < 5 ? 'ECONNREFUSED' : null));
  try {
    await waitFor('the release', () => (agent.datapath.releases.length > 0 ? true : undefined));

    // Only the HTTP target port, and only the IPv4 endpoint: the held flow
    // is IPv4, to port 80.
    assert.deepEqual(new Set(agent.probes.map((p) => `${p.address}:${p.port}`)), new Set(['198.18.7.1:8080']));
    assert.equal(agent.probes.length, 6, 'five refusals, then the accepted probe');
    // The release came after the accepted probe, and the refusals were
    // about 10 ms apart.
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
  const agent = await run('refuses', '3s', () => 'ECONNREFUSED');
  try {
    await waitFor('the release', () => (agent.datapath.releases.length > 0 ? true : undefined), 8000);

    assert.ok(agent.probes.length > 10, `${agent.probes.length} probes`);
    const lastProbe = agent.probes.at(-1)!.atMs;
    assert.ok(lastProbe - agent.readyMs < 3000, 'no probe after the wake timeout');
    const event = await waitFor('the BackendNotListening Event', async () =>
      (await kc.makeApiClient(CoreV1Api).listNamespacedEvent({ namespace: 'refuses' })).items.find((e) => e.reason === 'BackendNotListening' && e.involvedObject.kind === 'ScaleToZero'),
    );
    assert.equal(event.type, 'Warning');
    assert.match(event.message ?? '', /^198\.18\.7\.1:8080 refused connections for \d+s after turning Ready.*readiness probe/);
  } finally {
    await agent.stop();
  }
});

test('unanswered probe releases at once', async () => {
  const agent = await run('silent', '2m', () => 'ETIMEDOUT');
  try {
    await waitFor('the release', () => (agent.datapath.releases.length > 0 ? true : undefined));

    assert.equal(agent.probes.length, 1, 'one probe, which cannot tell');
  } finally {
    await agent.stop();
  }
});
