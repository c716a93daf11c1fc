import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  ApiextensionsV1Api,
  ApisApi,
  CoreV1Api,
  EventsV1Api,
  KubernetesObjectApi,
  type KubernetesObject,
  VersionApi,
} from '@kubernetes/client-node';

import { scaleToZeroCrd } from './fixtures.js';
import { kubeConfigFor } from './kubeconfig.js';
import { startApiServer, type TestApiServer } from './server.js';

let server: TestApiServer;
let kubeConfig: ReturnType<typeof kubeConfigFor>;

before(async () => {
  server = await startApiServer({ namespaces: ['disco'] });
  kubeConfig = kubeConfigFor(server.url);
});

after(() => server.close());

async function getJson(path: string): Promise<Record<string, unknown>> {
  const response = await fetch(`${server.url}${path}`);
  assert.equal(response.status, 200, `GET ${path}`);
  return (await response.json()) as Record<string, unknown>;
}

interface ResourceEntry {
  name: string;
  kind: string;
  namespaced: boolean;
  verbs: string[];
  shortNames?: string[];
  group?: string;
  version?: string;
}

test('core discovery lists v1 resources', async () => {
  const versions = await getJson('/api');
  assert.equal(versions.kind, 'APIVersions');
  assert.deepEqual(versions.versions, ['v1']);

  const list = await getJson('/api/v1');
  const resources = list.resources as ResourceEntry[];
  const services = resources.find((resource) => resource.name === 'services')!;
  assert.equal(services.kind, 'Service');
  assert.equal(services.namespaced, true);
  assert.deepEqual(services.shortNames, ['svc']);
  assert.ok(services.verbs.includes('watch'));
  assert.equal(resources.find((resource) => resource.name === 'namespaces')?.namespaced, false);
  assert.ok(resources.some((resource) => resource.name === 'pods/status'));
});

test('apps discovery lists the scale subresource', async () => {
  const list = await getJson('/apis/apps/v1');
  const scale = (list.resources as ResourceEntry[]).find((resource) => resource.name === 'deployments/scale');
  assert.deepEqual(scale, { name: 'deployments/scale', singularName: '', namespaced: true, group: 'autoscaling', version: 'v1', kind: 'Scale', verbs: ['get', 'patch', 'update'] });
});

test('group list includes CRD groups once registered', async () => {
  const apis = kubeConfig.makeApiClient(ApisApi);
  const before = await apis.getAPIVersions();
  const names = before.groups.map((group) => group.name);
  for (const group of ['apps', 'coordination.k8s.io', 'discovery.k8s.io', 'events.k8s.io', 'apiextensions.k8s.io']) {
    assert.ok(names.includes(group), `group ${group} listed`);
  }
  assert.ok(!names.includes('zerohold.dev'));

  await kubeConfig.makeApiClient(ApiextensionsV1Api).createCustomResourceDefinition({ body: scaleToZeroCrd() });
  const after = await apis.getAPIVersions();
  const zerohold = after.groups.find((group) => group.name === 'zerohold.dev');
  assert.equal(zerohold?.preferredVersion?.groupVersion, 'zerohold.dev/v1alpha1');

  const resources = await getJson('/apis/zerohold.dev/v1alpha1');
  assert.deepEqual(
    (resources.resources as ResourceEntry[]).map((resource) => resource.name),
    ['scaletozeros', 'scaletozeros/status'],
  );
});

test('unknown paths are NotFound Status', async () => {
  for (const path of ['/apis/nope.example.com/v1', '/api/v1/namespaces/default/widgets', '/healthz-nope']) {
    const response = await fetch(`${server.url}${path}`);
    assert.equal(response.status, 404, path);
    const body = (await response.json()) as { kind: string; reason: string };
    assert.equal(body.kind, 'Status');
    assert.equal(body.reason, 'NotFound');
  }
});

test('version endpoint', async () => {
  const info = await kubeConfig.makeApiClient(VersionApi).getCode();
  assert.equal(info.major, '1');
  assert.match(info.gitVersion, /^v1\.\d+\.\d+/);
});

test('generic client resolves kinds through discovery', async () => {
  const client = KubernetesObjectApi.makeApiClient(kubeConfig);
  const slice = {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: 'web-abc', namespace: 'disco', labels: { 'kubernetes.io/service-name': 'web' } },
    addressType: 'IPv4',
    endpoints: [{ addresses: ['198.18.0.10'], conditions: { ready: true } }],
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  };
  const created = (await client.create(slice as KubernetesObject)) as KubernetesObject & { endpoints: unknown[] };
  assert.equal(created.metadata?.generation, 1);

  const read = await client.read({ apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: 'web-abc', namespace: 'disco' } });
  assert.equal(read.metadata?.uid, created.metadata?.uid);

  const listed = await client.list('discovery.k8s.io/v1', 'EndpointSlice', 'disco', undefined, undefined, undefined, undefined, 'kubernetes.io/service-name=web');
  assert.deepEqual(listed.items.map((item) => item.metadata?.name), ['web-abc']);
});

test('events in both APIs', async () => {
  const core = kubeConfig.makeApiClient(CoreV1Api);
  const coreEvent = await core.createNamespacedEvent({
    namespace: 'disco',
    body: {
      metadata: { name: 'web.1' },
      involvedObject: { kind: 'Deployment', name: 'web', namespace: 'disco' },
      reason: 'ScaledToZero',
      message: 'idle for 300s',
      type: 'Normal',
    },
  });
  assert.equal(coreEvent.reason, 'ScaledToZero');
  const byReason = await core.listNamespacedEvent({ namespace: 'disco', fieldSelector: 'reason=ScaledToZero,involvedObject.name=web' });
  assert.equal(byReason.items.length, 1);

  const events = kubeConfig.makeApiClient(EventsV1Api);
  const event = await events.createNamespacedEvent({
    namespace: 'disco',
    body: {
      metadata: { name: 'web.2' },
      eventTime: new Date(),
      reportingController: 'zerohold.dev/agent',
      reportingInstance: 'node-a',
      action: 'Wake',
      reason: 'FirstPacket',
      regarding: { kind: 'Deployment', name: 'web', namespace: 'disco' },
      type: 'Normal',
    },
  });
  assert.equal(event.reason, 'FirstPacket');
});
