import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { ApiException, AppsV1Api, CoreV1Api, KubeConfig, type V1Service } from '@kubernetes/client-node';

import { rejection } from './client-helpers.js';
import { deploymentFixture, serviceFixture } from './fixtures.js';
import { kubeConfigFor, writeKubeConfigFile } from './kubeconfig.js';
import { startApiServer, type TestApiServer } from './server.js';

const NS = 'crud';

let server: TestApiServer;
let core: CoreV1Api;
let apps: AppsV1Api;

before(async () => {
  server = await startApiServer({ namespaces: [NS] });
  const kubeConfig = kubeConfigFor(server.url);
  core = kubeConfig.makeApiClient(CoreV1Api);
  apps = kubeConfig.makeApiClient(AppsV1Api);
});

after(() => server.close());

test('service create, read, replace, delete', async () => {
  const created = await core.createNamespacedService({ namespace: NS, body: serviceFixture('web') });
  assert.equal(created.metadata?.namespace, NS);
  assert.match(created.metadata?.uid ?? '', /^[0-9a-f-]{36}$/);
  assert.match(created.metadata?.resourceVersion ?? '', /^\d+$/);
  assert.ok(created.metadata?.creationTimestamp instanceof Date);
  assert.match(created.spec?.clusterIP ?? '', /^198\.19\.\d+\.\d+$/);
  assert.equal(created.spec?.ports?.[0]?.protocol, 'TCP');

  const read = await core.readNamespacedService({ name: 'web', namespace: NS });
  assert.equal(read.metadata?.uid, created.metadata?.uid);

  read.metadata!.labels = { tier: 'front' };
  const replaced = await core.replaceNamespacedService({ name: 'web', namespace: NS, body: read });
  assert.ok(Number(replaced.metadata!.resourceVersion) > Number(created.metadata!.resourceVersion));
  assert.equal(replaced.spec?.clusterIP, created.spec?.clusterIP, 'ClusterIP kept across replace');

  const deleted = await core.deleteNamespacedService({ name: 'web', namespace: NS });
  assert.equal((deleted as V1Service).metadata?.name, 'web');
  const readAfterDelete = await rejection(core.readNamespacedService({ name: 'web', namespace: NS }));
  assert.equal(readAfterDelete.code, 404);
  assert.equal(readAfterDelete.reason, 'NotFound');
  assert.equal(readAfterDelete.message, 'services "web" not found');
});

test('create duplicate name is AlreadyExists', async () => {
  await core.createNamespacedService({ namespace: NS, body: serviceFixture('dup') });
  const status = await rejection(core.createNamespacedService({ namespace: NS, body: serviceFixture('dup') }));
  assert.equal(status.code, 409);
  assert.equal(status.reason, 'AlreadyExists');
  assert.deepEqual(status.details, { name: 'dup', group: '', kind: 'services' });
});

test('delete answers with Status unless the kind returns the object', async () => {
  const created = await core.createNamespacedConfigMap({ namespace: NS, body: { metadata: { name: 'gone' } } });
  const status = await core.deleteNamespacedConfigMap({ name: 'gone', namespace: NS });
  assert.equal(status.status, 'Success');
  assert.deepEqual({ ...status.details }, { name: 'gone', group: '', kind: 'configmaps', uid: created.metadata?.uid });

  const missing = await rejection(core.deleteNamespacedConfigMap({ name: 'gone', namespace: NS }));
  assert.equal(missing.code, 404);
});

test('delete preconditions must match', async () => {
  const created = await core.createNamespacedConfigMap({ namespace: NS, body: { metadata: { name: 'guarded' } } });
  const status = await rejection(
    core.deleteNamespacedConfigMap({ name: 'guarded', namespace: NS, body: { preconditions: { resourceVersion: '1' } } }),
  );
  assert.equal(status.code, 409);
  assert.match(status.message, /Precondition failed: ResourceVersion in precondition: 1, ResourceVersion in object meta: \d+/);
  await core.deleteNamespacedConfigMap({ name: 'guarded', namespace: NS, body: { preconditions: { uid: created.metadata!.uid! } } });
});

test('dryRun create stores nothing', async () => {
  const before = server.store.revision;
  const created = await core.createNamespacedConfigMap({ namespace: NS, body: { metadata: { name: 'dry' } }, dryRun: 'All' });
  assert.equal(created.metadata?.name, 'dry');
  assert.equal(server.store.revision, before, 'no write');
  assert.equal((await rejection(core.readNamespacedConfigMap({ name: 'dry', namespace: NS }))).code, 404);
});

test('generateName gets a random suffix', async () => {
  const created = await core.createNamespacedConfigMap({ namespace: NS, body: { metadata: { generateName: 'cfg-' }, data: { a: '1' } } });
  assert.match(created.metadata?.name ?? '', /^cfg-[bcdfghjklmnpqrstvwxz2456789]{5}$/);
});

test('replace with stale resourceVersion is Conflict', async () => {
  const created = await apps.createNamespacedDeployment({ namespace: NS, body: deploymentFixture('stale') });
  const fresh = await apps.readNamespacedDeployment({ name: 'stale', namespace: NS });
  fresh.spec!.replicas = 3;
  await apps.replaceNamespacedDeployment({ name: 'stale', namespace: NS, body: fresh });

  created.spec!.replicas = 5;
  const status = await rejection(apps.replaceNamespacedDeployment({ name: 'stale', namespace: NS, body: created }));
  assert.equal(status.code, 409);
  assert.equal(status.reason, 'Conflict');
  assert.match(status.message, /^Operation cannot be fulfilled on deployments\.apps "stale": the object has been modified/);
});

test('deployment generation follows spec changes only', async () => {
  const created = await apps.createNamespacedDeployment({ namespace: NS, body: deploymentFixture('gen') });
  assert.equal(created.metadata?.generation, 1);
  assert.equal(created.status?.replicas, undefined, 'status starts empty');
  assert.equal(created.spec?.strategy?.type, 'RollingUpdate', 'defaulted');

  created.metadata!.labels = { touched: 'yes' };
  const relabeled = await apps.replaceNamespacedDeployment({ name: 'gen', namespace: NS, body: created });
  assert.equal(relabeled.metadata?.generation, 1);

  relabeled.spec!.replicas = 2;
  relabeled.status = { replicas: 7 };
  const scaled = await apps.replaceNamespacedDeployment({ name: 'gen', namespace: NS, body: relabeled });
  assert.equal(scaled.metadata?.generation, 2);
  assert.equal(scaled.status?.replicas, undefined, 'status is ignored by a main-resource update');

  scaled.status = { replicas: 2, readyReplicas: 2, observedGeneration: 2 };
  const withStatus = await apps.replaceNamespacedDeploymentStatus({ name: 'gen', namespace: NS, body: scaled });
  assert.equal(withStatus.status?.readyReplicas, 2);
  assert.equal(withStatus.metadata?.generation, 2);
});

test('unchanged replace keeps resourceVersion', async () => {
  const created = await core.createNamespacedConfigMap({ namespace: NS, body: { metadata: { name: 'same' }, data: { a: '1' } } });
  const replaced = await core.replaceNamespacedConfigMap({ name: 'same', namespace: NS, body: created });
  assert.equal(replaced.metadata?.resourceVersion, created.metadata?.resourceVersion);
});

test('list filters by label and field selectors', async () => {
  await core.createNamespacedService({ namespace: NS, body: serviceFixture('sel-a', { tier: 'front', zh: 'yes' }) });
  await core.createNamespacedService({ namespace: NS, body: serviceFixture('sel-b', { tier: 'back', zh: 'yes' }) });
  await core.createNamespacedService({ namespace: NS, body: serviceFixture('sel-c', { zh: 'yes' }) });

  const names = async (labelSelector?: string, fieldSelector?: string): Promise<string[]> => {
    const list = await core.listNamespacedService({ namespace: NS, labelSelector, fieldSelector });
    return list.items.map((item) => item.metadata!.name!);
  };
  assert.deepEqual(await names('zh=yes,tier=front'), ['sel-a']);
  assert.deepEqual(await names('zh=yes,tier!=front'), ['sel-b', 'sel-c'], '!= matches objects without the key');
  assert.deepEqual(await names('zh,tier in (front,back)'), ['sel-a', 'sel-b']);
  assert.deepEqual(await names('zh,!tier'), ['sel-c']);
  assert.deepEqual(await names('zh', 'metadata.name=sel-b'), ['sel-b']);
  assert.deepEqual(await names('zh', 'metadata.name!=sel-b,metadata.namespace=crud'), ['sel-a', 'sel-c']);

  const bad = await rejection(core.listNamespacedService({ namespace: NS, fieldSelector: 'spec.clusterIP=1.2.3.4' }));
  assert.equal(bad.code, 400);
  assert.equal(bad.message, 'field label not supported: spec.clusterIP');
});

test('list resourceVersion is the global revision', async () => {
  const before = await core.listNamespacedService({ namespace: NS });
  await apps.createNamespacedDeployment({ namespace: NS, body: deploymentFixture('bump') });
  const afterList = await core.listNamespacedService({ namespace: NS });
  assert.ok(Number(afterList.metadata!.resourceVersion) > Number(before.metadata!.resourceVersion), 'a Deployment write advances the Service list revision');
  assert.equal(afterList.metadata!.resourceVersion, String(server.store.revision));
});

test('list pages with limit and continue', async () => {
  for (const name of ['page-1', 'page-2', 'page-3']) {
    await core.createNamespacedConfigMap({ namespace: NS, body: { metadata: { name, labels: { paged: 'yes' } } } });
  }
  const first = await core.listNamespacedConfigMap({ namespace: NS, labelSelector: 'paged=yes', limit: 2 });
  assert.deepEqual(first.items.map((item) => item.metadata?.name), ['page-1', 'page-2']);
  assert.ok(first.metadata?._continue);

  // A page after a write still shows the snapshot of the first page.
  await core.deleteNamespacedConfigMap({ name: 'page-3', namespace: NS });
  const second = await core.listNamespacedConfigMap({ namespace: NS, labelSelector: 'paged=yes', limit: 2, _continue: first.metadata!._continue! });
  assert.deepEqual(second.items.map((item) => item.metadata?.name), ['page-3']);
  assert.equal(second.metadata?._continue, undefined);
  assert.equal(second.metadata?.resourceVersion, first.metadata?.resourceVersion);

  server.faults.compactHistory();
  const expired = await rejection(core.listNamespacedConfigMap({ namespace: NS, limit: 2, _continue: first.metadata!._continue! }));
  assert.equal(expired.code, 410);
  assert.equal(expired.reason, 'Expired');
});

test('exact list reads the past until compaction', async () => {
  await core.createNamespacedConfigMap({ namespace: NS, body: { metadata: { name: 'past', labels: { past: 'yes' } } } });
  const snapshot = (await core.listNamespacedConfigMap({ namespace: NS, labelSelector: 'past=yes' })).metadata!.resourceVersion!;
  await core.deleteNamespacedConfigMap({ name: 'past', namespace: NS });

  const exact = await core.listNamespacedConfigMap({ namespace: NS, labelSelector: 'past=yes', resourceVersion: snapshot, resourceVersionMatch: 'Exact' });
  assert.deepEqual(exact.items.map((item) => item.metadata?.name), ['past']);

  server.faults.compactHistory();
  const status = await rejection(core.listNamespacedConfigMap({ namespace: NS, resourceVersion: snapshot, resourceVersionMatch: 'Exact' }));
  assert.equal(status.code, 410);
  assert.equal(status.message, `too old resource version: ${snapshot} (${server.store.revision})`);
});

test('create in missing namespace is NotFound', async () => {
  const status = await rejection(core.createNamespacedService({ namespace: 'nowhere', body: serviceFixture('x') }));
  assert.equal(status.code, 404);
  assert.equal(status.message, 'namespaces "nowhere" not found');
});

test('namespace delete removes its content', async () => {
  await core.createNamespace({ body: { metadata: { name: 'doomed' } } });
  await core.createNamespacedService({ namespace: 'doomed', body: serviceFixture('inside') });
  const deleted = await core.deleteNamespace({ name: 'doomed' });
  assert.equal((deleted as { status?: { phase?: string } }).status?.phase, 'Terminating');
  assert.equal((await rejection(core.readNamespacedService({ name: 'inside', namespace: 'doomed' }))).code, 404);
  assert.equal((await rejection(core.readNamespace({ name: 'doomed' }))).code, 404);
});

test('finalizers defer deletion', async () => {
  await core.createNamespacedConfigMap({ namespace: NS, body: { metadata: { name: 'held', finalizers: ['zerohold.dev/hold'] } } });
  await core.deleteNamespacedConfigMap({ name: 'held', namespace: NS });
  const marked = await core.readNamespacedConfigMap({ name: 'held', namespace: NS });
  assert.ok(marked.metadata?.deletionTimestamp, 'deletionTimestamp set');

  marked.metadata!.finalizers = [];
  await core.replaceNamespacedConfigMap({ name: 'held', namespace: NS, body: marked });
  assert.equal((await rejection(core.readNamespacedConfigMap({ name: 'held', namespace: NS }))).code, 404);
});

test('kubeconfig file with token loads', async () => {
  const secured = await startApiServer({ token: 'sekret' });
  const file = await writeKubeConfigFile(secured.url, { token: 'sekret' });
  try {
    const fromFile = new KubeConfig();
    fromFile.loadFromFile(file.path);
    const namespaces = await fromFile.makeApiClient(CoreV1Api).listNamespace();
    assert.ok(namespaces.items.some((item) => item.metadata?.name === 'default'));

    // client-node 1.4 drops the body of a 401, so only the code is visible.
    const anonymous = kubeConfigFor(secured.url).makeApiClient(CoreV1Api);
    await assert.rejects(anonymous.listNamespace(), (err: unknown) => err instanceof ApiException && err.code === 401);
  } finally {
    await file.remove();
    await secured.close();
  }
});
