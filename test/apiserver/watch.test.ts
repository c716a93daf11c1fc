import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import { CoreV1Api, type KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';

import { waitUntil, WatchRecorder } from './client-helpers.js';
import { serviceFixture } from './fixtures.js';
import { kubeConfigFor } from './kubeconfig.js';
import { startApiServer, type TestApiServer } from './server.js';

const NS = 'watch';
const PATH = `/api/v1/namespaces/${NS}/services`;
const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

let server: TestApiServer;
let kubeConfig: KubeConfig;
let core: CoreV1Api;
const recorders: WatchRecorder[] = [];

before(async () => {
  server = await startApiServer({ namespaces: [NS], bookmarkIntervalMs: 50 });
  kubeConfig = kubeConfigFor(server.url);
  core = kubeConfig.makeApiClient(CoreV1Api);
});

after(async () => {
  for (const recorder of recorders) recorder.stop();
  await server.close();
});

async function watch(path: string, query: Record<string, string | number | boolean>): Promise<WatchRecorder> {
  const recorder = await WatchRecorder.start(kubeConfig, path, query);
  recorders.push(recorder);
  return recorder;
}

async function cleanNamespace(): Promise<string> {
  await core.deleteCollectionNamespacedService({ namespace: NS });
  return String(server.store.revision);
}

test('watch replays history after resourceVersion', async () => {
  await cleanNamespace();
  await core.createNamespacedService({ namespace: NS, body: serviceFixture('a') });
  const start = String(server.store.revision);
  await core.createNamespacedService({ namespace: NS, body: serviceFixture('b') });
  await core.patchNamespacedService({ name: 'a', namespace: NS, body: { metadata: { labels: { v: '2' } } } }, mergePatch);
  await core.deleteNamespacedService({ name: 'b', namespace: NS });

  const recorder = await watch(PATH, { resourceVersion: start });
  await recorder.waitForCount(3);
  assert.deepEqual(recorder.types(), ['ADDED', 'MODIFIED', 'DELETED']);
  assert.deepEqual(recorder.events.map((event) => event.object.metadata.name), ['b', 'a', 'b']);
  assert.equal(recorder.events[0]!.object.kind, 'Service');
  assert.equal(recorder.events[0]!.object.apiVersion, 'v1');

  const revisions = recorder.events.map((event) => Number(event.object.metadata.resourceVersion));
  assert.deepEqual(revisions, [...revisions].sort((x, y) => x - y), 'events in revision order');
  assert.equal(revisions[2], server.store.revision, 'DELETED carries the deletion revision');

  await core.createNamespacedService({ namespace: NS, body: serviceFixture('c') });
  await recorder.waitForCount(4);
  assert.equal(recorder.events[3]!.type, 'ADDED');
  assert.equal(recorder.events[3]!.object.metadata.name, 'c');
  recorder.stop();
});

test('watch without resourceVersion starts with current objects', async () => {
  await cleanNamespace();
  await core.createNamespacedService({ namespace: NS, body: serviceFixture('x') });
  await core.createNamespacedService({ namespace: NS, body: serviceFixture('y') });

  const recorder = await watch(PATH, {});
  await recorder.waitForCount(2);
  assert.deepEqual(recorder.types(), ['ADDED', 'ADDED']);
  assert.deepEqual(recorder.events.map((event) => event.object.metadata.name), ['x', 'y']);
  recorder.stop();
});

test('bookmarks carry only the current revision', async () => {
  const recorder = await watch(PATH, { resourceVersion: String(server.store.revision), allowWatchBookmarks: true });
  await recorder.waitForCount(2);
  const bookmark = recorder.events[0]!;
  assert.equal(bookmark.type, 'BOOKMARK');
  assert.deepEqual(bookmark.object, { kind: 'Service', apiVersion: 'v1', metadata: { resourceVersion: String(server.store.revision) } });
  recorder.stop();

  const plain = await watch(PATH, { resourceVersion: String(server.store.revision) });
  await sleep(200);
  assert.deepEqual(plain.types(), [], 'no bookmarks unless allowed');
  plain.stop();
});

test('sendInitialEvents ends with an annotated bookmark', async () => {
  await cleanNamespace();
  await core.createNamespacedService({ namespace: NS, body: serviceFixture('init') });
  const recorder = await watch(PATH, { sendInitialEvents: true, allowWatchBookmarks: true, resourceVersionMatch: 'NotOlderThan', resourceVersion: '' });
  await recorder.waitForCount(2);
  assert.deepEqual(recorder.types().slice(0, 2), ['ADDED', 'BOOKMARK']);
  assert.deepEqual(recorder.events[1]!.object.metadata.annotations, { 'k8s.io/initial-events-end': 'true' });
  recorder.stop();
});

test('watch from compacted revision gets 410 in stream', async () => {
  const old = await cleanNamespace();
  await core.createNamespacedService({ namespace: NS, body: serviceFixture('late') });
  server.faults.compactHistory();

  const recorder = await watch(PATH, { resourceVersion: old });
  assert.equal(await recorder.ended, null, 'stream ends cleanly after the error');
  assert.equal(recorder.events.length, 1);
  const [event] = recorder.events;
  assert.equal(event!.type, 'ERROR');
  assert.deepEqual(event!.object, {
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message: `too old resource version: ${old} (${server.store.oldestRevision})`,
    reason: 'Expired',
    code: 410,
  });
});

test('watch with future resourceVersion fails with 504', async () => {
  const recorder = await watch(PATH, { resourceVersion: String(server.store.revision + 100) });
  const err = (await recorder.ended) as { statusCode?: number };
  assert.equal(err?.statusCode, 504);
});

test('label selector transitions become ADDED and DELETED', async () => {
  await cleanNamespace();
  await core.createNamespacedService({ namespace: NS, body: serviceFixture('moving') });
  const recorder = await watch(PATH, { resourceVersion: String(server.store.revision), labelSelector: 'idle=true' });
  // A second watch that the update leaves too shares its DELETED event.
  const other = await watch(PATH, { resourceVersion: String(server.store.revision), labelSelector: 'idle' });

  const label = (value: string | null) =>
    core.patchNamespacedService({ name: 'moving', namespace: NS, body: { metadata: { labels: { idle: value } } } }, mergePatch);
  await label('true');
  await core.patchNamespacedService({ name: 'moving', namespace: NS, body: { metadata: { annotations: { note: 'x' } } } }, mergePatch);
  await label(null);
  const lastRevision = server.store.revision;
  await core.deleteNamespacedService({ name: 'moving', namespace: NS });

  await recorder.waitForCount(3);
  await sleep(50);
  assert.deepEqual(recorder.types(), ['ADDED', 'MODIFIED', 'DELETED']);
  const deleted = recorder.events[2]!.object;
  assert.equal(deleted.metadata.labels.idle, 'true', 'DELETED carries the last matching content');
  assert.equal(deleted.metadata.resourceVersion, String(lastRevision));

  await other.waitForCount(3);
  assert.deepEqual(other.types(), ['ADDED', 'MODIFIED', 'DELETED']);
  assert.deepEqual(other.events[2]!.object, deleted);
  recorder.stop();
  other.stop();
});

test('field selector and /watch/ path select one object', async () => {
  await cleanNamespace();
  const start = String(server.store.revision);
  await core.createNamespacedService({ namespace: NS, body: serviceFixture('one') });
  await core.createNamespacedService({ namespace: NS, body: serviceFixture('two') });

  const byField = await watch(PATH, { resourceVersion: start, fieldSelector: 'metadata.name=two' });
  const byPath = await watch(`/api/v1/watch/namespaces/${NS}/services/one`, { resourceVersion: start });
  await byField.waitForCount(1);
  await byPath.waitForCount(1);
  await sleep(50);
  assert.deepEqual(byField.events.map((event) => event.object.metadata.name), ['two']);
  assert.deepEqual(byPath.events.map((event) => event.object.metadata.name), ['one']);
  byField.stop();
  byPath.stop();
});

test('timeoutSeconds ends the watch cleanly', async () => {
  const started = Date.now();
  const recorder = await watch(PATH, { resourceVersion: String(server.store.revision), timeoutSeconds: 1 });
  assert.equal(await recorder.ended, null);
  const elapsed = Date.now() - started;
  assert.ok(elapsed >= 900, `watch lasted ${elapsed} ms, want at least 900`);
  assert.ok(elapsed < 2500, `watch lasted ${elapsed} ms, want less than 2500`);
});

test('closed watches leave no open streams', async () => {
  for (const recorder of recorders) recorder.stop();
  await waitUntil('all watch streams to close', () => server.openWatchCount() === 0);
});
