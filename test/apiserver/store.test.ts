import assert from 'node:assert/strict';
import { test } from 'node:test';

import type { KubeObject } from './objects.js';
import { Store, type StoreEvent } from './store.js';

const RESOURCE = '/configmaps';

function configMap(name: string, value: string): KubeObject {
  return { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace: 'default' }, data: { value } };
}

function names(entries: Array<[string, KubeObject]>): string[] {
  return entries.map(([, object]) => `${object.metadata.name}=${(object.data as { value: string }).value}`);
}

test('store stamps increasing resourceVersions', () => {
  const store = new Store({ initialRevision: 10 });
  const first = store.put(RESOURCE, configMap('a', '1'));
  const second = store.put('/services', { metadata: { name: 'svc', namespace: 'default' } });
  assert.equal(first.metadata.resourceVersion, '11');
  assert.equal(second.metadata.resourceVersion, '12', 'one counter across resources');
  assert.equal(store.revision, 12);
  assert.ok(Object.isFrozen(first.metadata), 'stored objects are frozen');
});

test('store events carry previous state', () => {
  const store = new Store({ initialRevision: 0 });
  const events: StoreEvent[] = [];
  store.subscribe((event) => events.push(event));

  store.put(RESOURCE, configMap('a', '1'));
  store.put(RESOURCE, configMap('a', '2'));
  const removed = store.remove(RESOURCE, 'default', 'a');

  assert.deepEqual(events.map((event) => event.type), ['ADDED', 'MODIFIED', 'DELETED']);
  assert.equal(events[0]!.previous, undefined);
  assert.equal((events[1]!.previous!.data as { value: string }).value, '1');
  assert.equal(removed!.metadata.resourceVersion, '3', 'DELETED object has the deletion revision');
  assert.equal(events[2]!.previous!.metadata.resourceVersion, '2');
  assert.equal(store.remove(RESOURCE, 'default', 'a'), undefined);
});

test('listAt rebuilds past snapshots', () => {
  const store = new Store({ initialRevision: 0 });
  store.put(RESOURCE, configMap('a', '1'));
  store.put(RESOURCE, configMap('b', '1'));
  store.put(RESOURCE, configMap('a', '2'));
  store.remove(RESOURCE, 'default', 'b');
  store.put(RESOURCE, configMap('c', '1'));

  assert.deepEqual(names(store.listAt(RESOURCE, 0)), []);
  assert.deepEqual(names(store.listAt(RESOURCE, 2)), ['a=1', 'b=1']);
  assert.deepEqual(names(store.listAt(RESOURCE, 3)), ['a=2', 'b=1']);
  assert.deepEqual(names(store.listAt(RESOURCE, 4)), ['a=2']);
  assert.deepEqual(names(store.listAt(RESOURCE, 5)), ['a=2', 'c=1']);
});

test('history limit expires old revisions', () => {
  const store = new Store({ initialRevision: 0, historyLimit: 2 });
  for (const value of ['1', '2', '3', '4']) store.put(RESOURCE, configMap('a', value));

  assert.equal(store.oldestRevision, 2);
  assert.deepEqual(store.eventsAfter(2).map((event) => event.resourceVersion), [3, 4]);
  assert.throws(() => store.eventsAfter(1), { code: 410, reason: 'Expired', message: 'too old resource version: 1 (2)' });
  assert.throws(() => store.listAt(RESOURCE, 1), { code: 410 });
});

test('compact drops history up to a revision', () => {
  const store = new Store({ initialRevision: 0 });
  for (const value of ['1', '2', '3']) store.put(RESOURCE, configMap('a', value));

  store.compact(2);
  assert.equal(store.oldestRevision, 2);
  assert.deepEqual(store.eventsAfter(2).map((event) => event.resourceVersion), [3]);

  store.compact();
  assert.equal(store.oldestRevision, 3);
  assert.deepEqual(store.eventsAfter(3), []);
  assert.throws(() => store.eventsAfter(2), { code: 410 });
});
