import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { ApiException, CoreV1Api, type KubeConfig } from '@kubernetes/client-node';

import { rejection, WatchRecorder } from './client-helpers.js';
import { kubeConfigFor } from './kubeconfig.js';
import { startApiServer, type TestApiServer } from './server.js';

const SERVICES = '/api/v1/namespaces/default/services';

let server: TestApiServer;
let kubeConfig: KubeConfig;
let core: CoreV1Api;

before(async () => {
  server = await startApiServer();
  kubeConfig = kubeConfigFor(server.url);
  core = kubeConfig.makeApiClient(CoreV1Api);
});

after(() => server.close());

test('503 once, then success', async () => {
  server.faults.failNext({ method: 'GET', path: SERVICES, status: 503 });

  const status = await rejection(core.listNamespacedService({ namespace: 'default' }));
  assert.equal(status.code, 503);
  assert.equal(status.reason, 'ServiceUnavailable');
  assert.equal(status.message, 'the server is currently unable to handle the request');

  const list = await core.listNamespacedService({ namespace: 'default' });
  assert.deepEqual(list.items, []);
});

test('403 arrives as a Forbidden Status', async () => {
  const message = 'services is forbidden: User "system:serviceaccount:zerohold:agent" cannot list resource "services" in API group "" in the namespace "default"';
  server.faults.failNext({ path: SERVICES, status: 403, message });

  const status = await rejection(core.listNamespacedService({ namespace: 'default' }));
  assert.deepEqual(status, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason: 'Forbidden', code: 403 });
});

test('429 carries Retry-After', async () => {
  server.faults.failNext({ path: SERVICES, status: 429, retryAfterSeconds: 2 });

  try {
    await core.listNamespacedService({ namespace: 'default' });
    assert.fail('got success, want 429');
  } catch (err) {
    assert.ok(err instanceof ApiException);
    assert.equal(err.code, 429);
    assert.equal(err.headers['retry-after'], '2');
    const body = JSON.parse(err.body as string);
    assert.equal(body.reason, 'TooManyRequests');
    assert.deepEqual(body.details, { retryAfterSeconds: 2 });
  }
});

test('count fails that many matching requests', async () => {
  server.faults.failNext({ method: 'GET', path: /\/services$/, status: 500, count: 2 });

  assert.equal((await rejection(core.listNamespacedService({ namespace: 'default' }))).reason, 'InternalError');
  // A request that does not match leaves the count alone.
  await core.listNamespacedConfigMap({ namespace: 'default' });
  assert.equal((await rejection(core.listNamespacedService({ namespace: 'kube-system' }))).code, 500);
  await core.listNamespacedService({ namespace: 'default' });
});

test('watch filter leaves plain requests alone', async () => {
  server.faults.failNext({ path: SERVICES, watch: true, status: 503 });
  await core.listNamespacedService({ namespace: 'default' });

  const recorder = await WatchRecorder.start(kubeConfig, SERVICES, { resourceVersion: String(server.store.revision) });
  const err = (await recorder.ended) as { statusCode?: number };
  assert.equal(err?.statusCode, 503);
});

test('latency delays matching requests', async () => {
  server.faults.addLatency({ path: SERVICES, ms: 300, count: 1 });

  let started = Date.now();
  await core.listNamespacedService({ namespace: 'default' });
  const delayed = Date.now() - started;
  assert.ok(delayed >= 290, `first request took ${delayed} ms, want at least 300`);

  // count: 1 delays only the first request. The margin keeps this check
  // stable on a loaded machine.
  started = Date.now();
  await core.listNamespacedService({ namespace: 'default' });
  const plain = Date.now() - started;
  assert.ok(plain < delayed - 150, `second request took ${plain} ms after a first of ${delayed} ms, want no added latency`);
});

test('clear removes pending faults', async () => {
  server.faults.failNext({ path: SERVICES, status: 500 });
  server.faults.clear();
  await core.listNamespacedService({ namespace: 'default' });
});
