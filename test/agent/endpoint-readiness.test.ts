import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { DiscoveryV1Api, type V1EndpointSlice } from '@kubernetes/client-node';
import { pino } from 'pino';

import { EndpointReadiness } from '../../src/agent/endpoint-readiness.js';
import { kubeConfigFor } from '../apiserver/kubeconfig.js';
import { startApiServer, type TestApiServer } from '../apiserver/server.js';
import { waitFor } from '../lib/netns.js';

let server: TestApiServer;
let discovery: DiscoveryV1Api;
let readiness: EndpointReadiness;
const changes: string[] = [];

function slice(name: string, service: string, ready: (boolean | undefined)[]): V1EndpointSlice {
  return {
    metadata: { name, namespace: 'shop', labels: { 'kubernetes.io/service-name': service } },
    addressType: 'IPv4',
    endpoints: ready.map((r, i) => ({ addresses: [`198.18.5.${i + 1}`], ...(r === undefined ? {} : { conditions: { ready: r } }) })),
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  };
}

before(async () => {
  server = await startApiServer({ namespaces: ['shop'] });
  const kc = kubeConfigFor(server.url);
  discovery = kc.makeApiClient(DiscoveryV1Api);
  readiness = new EndpointReadiness(kc, pino({ level: 'silent' }));
  readiness.onChange((workload) => changes.push(workload));
  readiness.track('shop/web', 'shop', ['web', 'web-admin']);
  await readiness.start();
});

after(async () => {
  await readiness.stop();
  await server.close();
});

test('not ready until an endpoint is', async () => {
  await discovery.createNamespacedEndpointSlice({ namespace: 'shop', body: slice('web-abc', 'web', [false, false]) });
  await waitFor('the slice to arrive', () => (changes.length > 0 ? true : undefined));
  assert.equal(readiness.readyToRelease('shop/web'), false);

  await discovery.replaceNamespacedEndpointSlice({ name: 'web-abc', namespace: 'shop', body: slice('web-abc', 'web', [false, true]) });
  await waitFor('the Ready endpoint', () => (readiness.readyToRelease('shop/web') ? true : undefined));
  assert.equal(readiness.readyCount('shop/web'), 1);
});

test('unset ready counts as ready', async () => {
  readiness.track('shop/db', 'shop', ['db']);
  await discovery.createNamespacedEndpointSlice({ namespace: 'shop', body: slice('db-1', 'db', [undefined]) });
  await waitFor('the db slice', () => (readiness.readyToRelease('shop/db') ? true : undefined));
});

test('counts every slice and Service', async () => {
  await discovery.createNamespacedEndpointSlice({ namespace: 'shop', body: slice('web-admin-1', 'web-admin', [true, true]) });
  await waitFor('three Ready endpoints', () => (readiness.readyCount('shop/web') === 3 ? true : undefined));

  await discovery.deleteNamespacedEndpointSlice({ name: 'web-abc', namespace: 'shop' });
  await waitFor('the deletion', () => (readiness.readyCount('shop/web') === 2 ? true : undefined));
});

test('untracked workload is never ready', () => {
  assert.equal(readiness.readyToRelease('shop/other'), false);
});

test('relists after a dropped watch', async () => {
  server.faults.dropWatches();
  await discovery.createNamespacedEndpointSlice({ namespace: 'shop', body: slice('cache-1', 'cache', [true]) });
  readiness.track('shop/cache', 'shop', ['cache']);
  await waitFor('the slice created across the drop', () => (readiness.readyToRelease('shop/cache') ? true : undefined), 10_000);
});

test('restarts after an abrupt drop', async () => {
  server.faults.dropWatches({ abrupt: true });
  readiness.track('shop/queue', 'shop', ['queue']);
  await discovery.createNamespacedEndpointSlice({ namespace: 'shop', body: slice('queue-1', 'queue', [true]) });
  await waitFor('the slice after the informer restarts', () => (readiness.readyToRelease('shop/queue') ? true : undefined), 10_000);
});
