import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { ADD, CONNECT, CoreV1Api, DELETE, ERROR, type KubeConfig, makeInformer, UPDATE, type V1Service } from '@kubernetes/client-node';

import { waitUntil } from './client-helpers.js';
import { serviceFixture } from './fixtures.js';
import { kubeConfigFor } from './kubeconfig.js';
import { startApiServer, type TestApiServer } from './server.js';

let server: TestApiServer;
let kubeConfig: KubeConfig;
let core: CoreV1Api;
type ServiceInformer = ReturnType<typeof makeInformer<V1Service>>;

const informers: ServiceInformer[] = [];
// Set before teardown so that no error handler restarts a stopped informer.
let stopping = false;

before(async () => {
  server = await startApiServer({ namespaces: ['inf-basic', 'inf-drop', 'inf-abrupt', 'inf-expired', 'inf-gone'] });
  kubeConfig = kubeConfigFor(server.url);
  core = kubeConfig.makeApiClient(CoreV1Api);
});

after(async () => {
  stopping = true;
  for (const informer of informers) await informer.stop();
  await server.close();
});

interface Observed {
  informer: ServiceInformer;
  events: string[];
  errors: unknown[];
  connects: number;
}

// Starts a Service informer for one namespace that records "<verb> <name>"
// for each callback. On error it restarts after 20 ms, the pattern
// client-node documents for informers.
async function startInformer(namespace: string): Promise<Observed> {
  const path = `/api/v1/namespaces/${namespace}/services`;
  const informer = makeInformer(kubeConfig, path, () => core.listNamespacedService({ namespace }));
  informers.push(informer);
  const observed: Observed = { informer, events: [], errors: [], connects: 0 };

  for (const verb of [ADD, UPDATE, DELETE] as const) {
    informer.on(verb, (object: V1Service) => observed.events.push(`${verb} ${object.metadata?.name}`));
  }
  informer.on(CONNECT, () => (observed.connects += 1));
  informer.on(ERROR, (err: unknown) => {
    observed.errors.push(err);
    setTimeout(() => {
      if (!stopping) void informer.start();
    }, 20);
  });

  await informer.start();
  return observed;
}

function cachedNames(observed: Observed): string[] {
  return observed.informer
    .list()
    .map((service) => service.metadata!.name!)
    .sort();
}

function watchRequests(namespace: string): string[] {
  return server.requests.filter((request) => request.path.startsWith(`/api/v1/namespaces/${namespace}/services?`) && request.path.includes('watch=true')).map((request) => request.path);
}

function listRequests(namespace: string): string[] {
  return server.requests.filter((request) => request.method === 'GET' && request.path === `/api/v1/namespaces/${namespace}/services`).map((request) => request.path);
}

test('informer sees add, update and delete', async () => {
  const ns = 'inf-basic';
  await core.createNamespacedService({ namespace: ns, body: serviceFixture('before') });
  const observed = await startInformer(ns);
  assert.deepEqual(observed.events, ['add before'], 'initial list');

  await core.createNamespacedService({ namespace: ns, body: serviceFixture('during') });
  await waitUntil('add during', () => observed.events.includes('add during'));

  const current = await core.readNamespacedService({ name: 'during', namespace: ns });
  current.metadata!.annotations = { touched: 'yes' };
  await core.replaceNamespacedService({ name: 'during', namespace: ns, body: current });
  await waitUntil('update during', () => observed.events.includes('update during'));

  await core.deleteNamespacedService({ name: 'before', namespace: ns });
  await waitUntil('delete before', () => observed.events.includes('delete before'));

  assert.deepEqual(observed.events, ['add before', 'add during', 'update during', 'delete before']);
  assert.deepEqual(cachedNames(observed), ['during']);
  assert.equal(observed.informer.get('during', ns)?.metadata?.annotations?.touched, 'yes');
  assert.deepEqual(observed.errors, []);
});

test('informer resumes after graceful watch drop', async () => {
  const ns = 'inf-drop';
  const observed = await startInformer(ns);
  await waitUntil('first watch', () => watchRequests(ns).length === 1);
  const firstVersion = /resourceVersion=(\d+)/.exec(watchRequests(ns)[0]!)![1];

  assert.ok(server.faults.dropWatches() >= 1, 'at least one watch was open');
  await waitUntil('second watch', () => watchRequests(ns).length === 2);
  assert.ok(watchRequests(ns)[1]!.includes(`resourceVersion=${firstVersion}`), 'resumed from the last seen revision');
  assert.equal(listRequests(ns).length, 1, 'no relist');

  await core.createNamespacedService({ namespace: ns, body: serviceFixture('after-drop') });
  await waitUntil('add after-drop', () => observed.events.includes('add after-drop'));
  assert.ok(observed.connects >= 2);
  assert.deepEqual(observed.errors, []);
});

test('informer restarts after abrupt disconnect', async () => {
  const ns = 'inf-abrupt';
  const observed = await startInformer(ns);
  await waitUntil('first watch', () => watchRequests(ns).length === 1);

  server.faults.dropWatches({ abrupt: true });
  await core.createNamespacedService({ namespace: ns, body: serviceFixture('after-reset') });

  await waitUntil('add after-reset', () => observed.events.includes('add after-reset'));
  // node-fetch reports the reset as "Premature close"; the informer stops,
  // and the error handler's start() resumes the watch without a relist.
  assert.equal(observed.errors.length, 1);
  assert.match(String(observed.errors[0]), /Premature close/);
  assert.equal(listRequests(ns).length, 1, 'no relist');
  assert.deepEqual(cachedNames(observed), ['after-reset']);
});

test('informer relists after 410 from compacted history', async () => {
  const ns = 'inf-expired';
  await core.createNamespacedService({ namespace: ns, body: serviceFixture('stays') });
  await core.createNamespacedService({ namespace: ns, body: serviceFixture('goes') });
  const observed = await startInformer(ns);
  await waitUntil('first watch', () => watchRequests(ns).length === 1);

  // Hold the reconnect while the informer misses a delete and an add, then
  // compact history so the resumed watch starts from an expired revision.
  const heldWatch = server.faults.hold({ method: 'GET', path: `/api/v1/namespaces/${ns}/services`, watch: true });
  server.faults.dropWatches();
  await heldWatch.arrived;
  await core.deleteNamespacedService({ name: 'goes', namespace: ns });
  await core.createNamespacedService({ namespace: ns, body: serviceFixture('new') });
  server.faults.compactHistory();
  heldWatch.release();

  await waitUntil('relist', () => listRequests(ns).length === 2);
  await waitUntil('delete goes and add new', () => observed.events.includes('delete goes') && observed.events.includes('add new'));
  assert.deepEqual(cachedNames(observed), ['new', 'stays']);

  await core.createNamespacedService({ namespace: ns, body: serviceFixture('later') });
  await waitUntil('add later', () => observed.events.includes('add later'));
});

test('informer relists after HTTP 410 at watch start', async () => {
  const ns = 'inf-gone';
  const observed = await startInformer(ns);
  await waitUntil('first watch', () => watchRequests(ns).length === 1);

  server.faults.failNext({ method: 'GET', path: `/api/v1/namespaces/${ns}/services`, watch: true, status: 410, reason: 'Expired' });
  server.faults.dropWatches();
  await waitUntil('relist', () => listRequests(ns).length === 2);

  await core.createNamespacedService({ namespace: ns, body: serviceFixture('after-gone') });
  await waitUntil('add after-gone', () => observed.events.includes('add after-gone'));
  assert.deepEqual(observed.errors, [], '410 is handled by relisting, not reported');
});
