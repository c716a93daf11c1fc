// Create and update of stored objects with kube-apiserver's rules:
// server-owned metadata, resourceVersion and uid preconditions, status
// subresource separation, generation, defaulting, validation, and the
// completion of a deletion when its last finalizer goes.
//
// Each function reads and writes the store without awaiting in between, so
// a precondition checked here still holds when the write lands.

import { randomUUID } from 'node:crypto';

import type { ApiContext, WriteOptions } from './api-context.js';
import { NAMESPACES_KEY } from './builtin-kinds.js';
import { deepCopy, deepEqual, getPath, isPlainObject, type KubeObject, nowTimestamp } from './objects.js';
import { apiVersionOf, groupResourceOf, type ResourceType } from './resource-type.js';
import { alreadyExists, badRequest, conflict, forbidden, invalid, notFound, OBJECT_MODIFIED, type StatusCause } from './status.js';
import { invalidValue, throwIfInvalid } from './validation.js';

// Returns a mutable copy of the object with the apiVersion and kind of the
// version that `type` serves.
export function present(type: ResourceType, object: KubeObject): KubeObject {
  return { ...deepCopy(object), apiVersion: apiVersionOf(type), kind: type.kind };
}

// Checks what every write body must satisfy and returns it as an object.
export function checkBody(type: ResourceType, body: unknown, namespace: string | undefined): KubeObject {
  if (!isPlainObject(body)) throw badRequest(`the body of the request must be a JSON object of kind ${type.kind}`);
  if (body.metadata !== undefined && !isPlainObject(body.metadata)) throw badRequest('metadata must be a JSON object');

  const expectedVersion = apiVersionOf(type);
  if (body.apiVersion !== undefined && body.apiVersion !== expectedVersion) {
    throw badRequest(`the API version in the data (${String(body.apiVersion)}) does not match the expected API version (${expectedVersion})`);
  }
  if (body.kind !== undefined && body.kind !== type.kind) {
    throw badRequest(`the kind in the data (${String(body.kind)}) does not match the expected kind (${type.kind})`);
  }

  const object = { ...body, metadata: { ...(body.metadata as object) } } as KubeObject;
  if (type.namespaced && object.metadata.namespace && object.metadata.namespace !== namespace) {
    throw badRequest('the namespace of the provided object does not match the namespace sent on the request');
  }
  return object;
}

export function createObject(context: ApiContext, type: ResourceType, namespace: string | undefined, body: unknown, options: WriteOptions): KubeObject {
  const object = deepCopy(checkBody(type, body, namespace));
  object.apiVersion = apiVersionOf(type);
  object.kind = type.kind;
  const metadata = object.metadata;
  if (metadata.resourceVersion) throw badRequest('resourceVersion should not be set on objects to be created');

  if (type.namespaced) {
    metadata.namespace = namespace!;
    requireLiveNamespace(context, namespace!);
  } else {
    delete metadata.namespace;
  }
  if (!metadata.name && metadata.generateName) metadata.name = metadata.generateName + randomSuffix();

  // Server-owned metadata: whatever the client sent is replaced.
  metadata.uid = randomUUID();
  metadata.creationTimestamp = nowTimestamp();
  delete metadata.deletionTimestamp;
  delete metadata.deletionGracePeriodSeconds;
  if (type.tracksGeneration) metadata.generation = 1;
  else delete metadata.generation;

  if (type.statusSubresource && !type.createKeepsStatus) {
    // Custom resources start without .status; built-in kinds start with their zero status.
    delete object.status;
    if (type.initialStatus) object.status = type.initialStatus(object);
    else if (!type.custom) object.status = {};
  }
  type.applyDefaults?.(object, context.defaulting);
  throwIfInvalid(type.validate(object), type.kind, type.group, metadata.name ?? '');

  if (context.store.get(type.storageKey, metadata.namespace, metadata.name!)) throw alreadyExists(groupResourceOf(type), metadata.name!);
  if (options.dryRun) return present(type, object);
  return present(type, context.store.put(type.storageKey, object));
}

// kube-apiserver's generateName suffix: five characters from an alphabet
// without vowels, so generated names do not spell words.
function randomSuffix(): string {
  const alphabet = 'bcdfghjklmnpqrstvwxz2456789';
  let suffix = '';
  for (let i = 0; i < 5; i++) suffix += alphabet[Math.floor(Math.random() * alphabet.length)];
  return suffix;
}

function requireLiveNamespace(context: ApiContext, namespace: string): void {
  const stored = context.store.get(NAMESPACES_KEY, undefined, namespace);
  if (!stored) throw notFound({ group: '', resource: 'namespaces' }, namespace);
  if (stored.metadata.deletionTimestamp) {
    throw forbidden(`unable to create new content in namespace ${namespace} because it is being terminated`);
  }
}

export interface UpdateOptions extends WriteOptions {
  // 'status' for the /status subresource: only .status changes.
  subresource?: 'status';
}

export function updateObject(
  context: ApiContext,
  type: ResourceType,
  namespace: string | undefined,
  name: string,
  body: unknown,
  options: UpdateOptions,
): KubeObject {
  const request = checkBody(type, body, namespace);
  if (request.metadata.name !== name) {
    throw badRequest(`the name of the object (${request.metadata.name ?? ''}) does not match the name on the URL (${name})`);
  }
  const old = context.store.get(type.storageKey, type.namespaced ? namespace : undefined, name);
  if (!old) throw notFound(groupResourceOf(type), name);
  checkPreconditions(type, request, old);

  const next = options.subresource === 'status' ? withStatusOf(old, request) : withServerFieldsOf(type, old, request);
  // Defaulting runs on every write, /status included, as decoding does in kube-apiserver.
  type.applyDefaults?.(next, context.defaulting, old);
  throwIfInvalid([...type.validate(next), ...updateCauses(type, old, next)], type.kind, type.group, name);

  if (type.tracksGeneration && !deepEqual(trackedFields(type, old), trackedFields(type, next))) {
    next.metadata.generation = (old.metadata.generation ?? 0) + 1;
  }

  // An update that changes nothing is not written, so watchers see no event.
  if (deepEqual(withoutResourceVersion(old), withoutResourceVersion(next))) return present(type, old);
  if (options.dryRun) return present(type, next);

  const stored = context.store.put(type.storageKey, next);
  if (stored.metadata.deletionTimestamp && (stored.metadata.finalizers ?? []).length === 0) {
    // The last finalizer is gone: the pending deletion completes now.
    context.store.remove(type.storageKey, stored.metadata.namespace, name);
  }
  return present(type, stored);
}

function checkPreconditions(type: ResourceType, request: KubeObject, old: KubeObject): void {
  const { resourceVersion, uid } = request.metadata;
  if (!resourceVersion && !type.allowUnconditionalUpdate) {
    throw invalid(type.kind, type.group, old.metadata.name!, [
      { reason: 'FieldValueInvalid', message: 'Invalid value: 0x0: must be specified for an update', field: 'metadata.resourceVersion' },
    ]);
  }
  if (resourceVersion && resourceVersion !== old.metadata.resourceVersion) {
    throw conflict(groupResourceOf(type), old.metadata.name!, OBJECT_MODIFIED);
  }
  if (uid && uid !== old.metadata.uid) {
    throw conflict(groupResourceOf(type), old.metadata.name!, `Precondition failed: UID in precondition: ${uid}, UID in object meta: ${old.metadata.uid}`);
  }
}

// A /status update keeps everything of the stored object but its .status.
function withStatusOf(old: KubeObject, request: KubeObject): KubeObject {
  const next = deepCopy(old) as KubeObject;
  if (request.status === undefined) delete next.status;
  else next.status = deepCopy(request.status);
  return next;
}

// A main-resource update takes the request but keeps server-owned metadata
// and, with a status subresource, the stored .status.
function withServerFieldsOf(type: ResourceType, old: KubeObject, request: KubeObject): KubeObject {
  const next = deepCopy(request);
  next.apiVersion = old.apiVersion!;
  next.kind = old.kind!;
  for (const field of ['name', 'namespace', 'uid', 'creationTimestamp', 'generation', 'deletionTimestamp', 'deletionGracePeriodSeconds'] as const) {
    if (old.metadata[field] === undefined) delete next.metadata[field];
    else next.metadata[field] = old.metadata[field] as never;
  }
  if (type.statusSubresource) {
    if (old.status === undefined) delete next.status;
    else next.status = deepCopy(old.status);
  }
  return next;
}

function updateCauses(type: ResourceType, old: KubeObject, next: KubeObject): StatusCause[] {
  const causes: StatusCause[] = [...(type.validateUpdate?.(old, next) ?? [])];
  for (const field of type.immutableFields) {
    const before = getPath(old, field);
    if (before !== undefined && !deepEqual(before, getPath(next, field))) causes.push(invalidValue(field, getPath(next, field), 'field is immutable'));
  }

  if (old.metadata.deletionTimestamp) {
    const added = (next.metadata.finalizers ?? []).filter((finalizer) => !(old.metadata.finalizers ?? []).includes(finalizer));
    if (added.length > 0) {
      causes.push({ reason: 'FieldValueForbidden', message: `Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers ${JSON.stringify(added)}`, field: 'metadata.finalizers' });
    }
  }
  return causes;
}

// Everything that generation tracks: all fields but metadata, and but
// status when a status subresource owns it.
function trackedFields(type: ResourceType, object: KubeObject): Record<string, unknown> {
  const { metadata: _metadata, ...rest } = object;
  if (type.statusSubresource) delete rest.status;
  return rest;
}

function withoutResourceVersion(object: KubeObject): KubeObject {
  const { resourceVersion: _resourceVersion, ...metadata } = object.metadata;
  return { ...object, metadata };
}
