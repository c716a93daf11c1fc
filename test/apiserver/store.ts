// In-memory object storage with etcd-like resourceVersions. One global
// revision counter orders every write across all resources, and a bounded
// history of events serves watches and consistent list snapshots.

import { compareStrings, deepCopy, deepFreeze, type KubeObject, objectKey } from './objects.js';
import { tooOldResourceVersion } from './status.js';

export type StoreEventType = 'ADDED' | 'MODIFIED' | 'DELETED';

export interface StoreEvent {
  type: StoreEventType;
  // Storage key of the resource, "<group>/<plural>", shared by all versions.
  resource: string;
  resourceVersion: number;
  // The state after the change. A DELETED event carries the last state with
  // the deletion's resourceVersion, as etcd-backed watches do.
  object: KubeObject;
  // The state before the change, absent only for ADDED.
  previous?: KubeObject;
}

export type StoreListener = (event: StoreEvent) => void;

export interface StoreOptions {
  // Number of events kept for watches and snapshots; older ones are dropped.
  historyLimit?: number;
  initialRevision?: number;
}

export class Store {
  #revision: number;
  // #history contains every event with a resourceVersion in (#oldestRevision, #revision],
  // so a watch or snapshot can start at any revision >= #oldestRevision.
  #oldestRevision: number;
  #history: StoreEvent[] = [];
  readonly #historyLimit: number;
  readonly #objects = new Map<string, Map<string, KubeObject>>();
  readonly #listeners = new Set<StoreListener>();

  constructor(options: StoreOptions = {}) {
    this.#revision = options.initialRevision ?? 1000;
    this.#oldestRevision = this.#revision;
    this.#historyLimit = options.historyLimit ?? 1000;
  }

  get revision(): number {
    return this.#revision;
  }

  get oldestRevision(): number {
    return this.#oldestRevision;
  }

  // Returns the stored object, frozen: copy it before editing.
  get(resource: string, namespace: string | undefined, name: string): KubeObject | undefined {
    return this.#objects.get(resource)?.get(objectKey(namespace, name));
  }

  // Returns the current objects of a resource in key order, frozen.
  list(resource: string): Array<[key: string, object: KubeObject]> {
    const objects = this.#objects.get(resource);
    if (!objects) return [];
    return sortByKey([...objects.entries()]);
  }

  // Returns the objects of a resource as they were at `revision`, rebuilt by
  // undoing the newer events. Throws 410 Expired when history no longer
  // reaches back that far.
  listAt(resource: string, revision: number): Array<[key: string, object: KubeObject]> {
    if (revision < this.#oldestRevision) throw tooOldResourceVersion(revision, this.#oldestRevision);
    const objects = new Map(this.list(resource));

    for (let i = this.#history.length - 1; i >= 0; i--) {
      const event = this.#history[i]!;
      if (event.resourceVersion <= revision) break;
      if (event.resource !== resource) continue;
      const key = objectKey(event.object.metadata.namespace, event.object.metadata.name!);
      if (event.type === 'ADDED') objects.delete(key);
      else objects.set(key, event.previous!);
    }

    return sortByKey([...objects.entries()]);
  }

  // Returns the events after `revision`, oldest first. Throws 410 Expired when
  // some of them were already dropped from history.
  eventsAfter(revision: number): StoreEvent[] {
    if (revision < this.#oldestRevision) throw tooOldResourceVersion(revision, this.#oldestRevision);
    const first = this.#history.findIndex((event) => event.resourceVersion > revision);
    return first < 0 ? [] : this.#history.slice(first);
  }

  // Writes an object (ADDED when new, MODIFIED otherwise) at the next
  // revision and returns the stored, frozen copy. Preconditions such as
  // resourceVersion checks belong to the caller, which runs without awaiting
  // between its read and this write.
  put(resource: string, object: KubeObject): KubeObject {
    const key = objectKey(object.metadata.namespace, object.metadata.name!);
    let objects = this.#objects.get(resource);
    if (!objects) {
      objects = new Map();
      this.#objects.set(resource, objects);
    }
    const previous = objects.get(key);

    const stored = this.#stamp(object);
    objects.set(key, stored);
    this.#record(previous ? { type: 'MODIFIED', resource, resourceVersion: this.#revision, object: stored, previous } : {
      type: 'ADDED',
      resource,
      resourceVersion: this.#revision,
      object: stored,
    });
    return stored;
  }

  // Removes an object at the next revision and returns its last state with
  // the deletion's resourceVersion, or undefined when it does not exist.
  remove(resource: string, namespace: string | undefined, name: string): KubeObject | undefined {
    const objects = this.#objects.get(resource);
    const key = objectKey(namespace, name);
    const previous = objects?.get(key);
    if (!objects || !previous) return undefined;

    objects.delete(key);
    const last = this.#stamp(previous);
    this.#record({ type: 'DELETED', resource, resourceVersion: this.#revision, object: last, previous });
    return last;
  }

  // Drops history up to `revision` (default: all of it), like an etcd
  // compaction: a later watch or exact list from an older revision gets 410.
  compact(revision: number = this.#revision): void {
    const target = Math.min(revision, this.#revision);
    if (target <= this.#oldestRevision) return;
    this.#history = this.#history.filter((event) => event.resourceVersion > target);
    this.#oldestRevision = target;
  }

  // Calls `listener` synchronously after every write, in revision order.
  subscribe(listener: StoreListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #stamp(object: KubeObject): KubeObject {
    this.#revision += 1;
    const copy = deepCopy(object);
    copy.metadata = { ...copy.metadata, resourceVersion: String(this.#revision) };
    return deepFreeze(copy);
  }

  #record(event: StoreEvent): void {
    this.#history.push(event);
    while (this.#history.length > this.#historyLimit) {
      this.#oldestRevision = this.#history.shift()!.resourceVersion;
    }
    for (const listener of [...this.#listeners]) listener(event);
  }
}

function sortByKey<T>(entries: Array<[string, T]>): Array<[string, T]> {
  return entries.sort(([a], [b]) => compareStrings(a, b));
}
