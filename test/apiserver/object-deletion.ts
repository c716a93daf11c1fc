// DELETE of stored objects: uid and resourceVersion preconditions,
// finalizers that defer removal, and the cascades of Namespaces and
// CustomResourceDefinitions.
//
// Like the writes in object-writes.ts, each function runs without awaiting,
// so a precondition checked here still holds when the removal lands.

import type { ApiContext, WriteOptions } from './api-context.js';
import { CRDS_KEY, NAMESPACES_KEY } from './builtin-kinds.js';
import { present } from './object-writes.js';
import { deepCopy, getPath, isPlainObject, type KubeObject, nowTimestamp } from './objects.js';
import { groupResourceOf, type ResourceType } from './resource-type.js';
import { conflict, forbidden, notFound } from './status.js';

// Namespaces that kube-apiserver rejects deleting.
const PROTECTED_NAMESPACES = ['default', 'kube-system', 'kube-public'];

// The fields of metav1.DeleteOptions that this server honours.
export interface DeleteOptions {
  preconditions?: { uid?: string; resourceVersion?: string };
}

export interface DeleteResult {
  // The removed object, or the object marked for deletion.
  object: KubeObject;
  // False when finalizers (or a Namespace's or CRD's cleanup) keep it for now.
  deletedNow: boolean;
}

export function deleteObject(
  context: ApiContext,
  type: ResourceType,
  namespace: string | undefined,
  name: string,
  deleteOptions: DeleteOptions,
  options: WriteOptions,
): DeleteResult {
  const { store } = context;
  const key = type.storageKey;
  const old = store.get(key, type.namespaced ? namespace : undefined, name);
  if (!old) throw notFound(groupResourceOf(type), name);

  const preconditions = deleteOptions.preconditions ?? {};
  if (preconditions.uid && preconditions.uid !== old.metadata.uid) {
    throw conflict(groupResourceOf(type), name, `Precondition failed: UID in precondition: ${preconditions.uid}, UID in object meta: ${old.metadata.uid}`);
  }
  if (preconditions.resourceVersion && preconditions.resourceVersion !== old.metadata.resourceVersion) {
    throw conflict(
      groupResourceOf(type),
      name,
      `Precondition failed: ResourceVersion in precondition: ${preconditions.resourceVersion}, ResourceVersion in object meta: ${old.metadata.resourceVersion}`,
    );
  }
  if (key === NAMESPACES_KEY && PROTECTED_NAMESPACES.includes(name)) {
    throw forbidden(`namespaces "${name}" is forbidden: this namespace may not be deleted`);
  }
  if (options.dryRun) return { object: present(type, old), deletedNow: true };

  // kube-apiserver responds to these two with the object marked for
  // deletion, because their cleanup runs after the response.
  if (key === NAMESPACES_KEY) return { object: present(type, deleteNamespace(context, old)), deletedNow: false };
  if (key === CRDS_KEY) {
    deleteCustomResources(context, old);
    const removed = store.remove(key, undefined, name)!;
    return { object: present(type, markedForDeletion(removed)), deletedNow: false };
  }

  // With finalizers left, deletion only marks the object; the update that
  // removes the last finalizer deletes it.
  if ((old.metadata.finalizers ?? []).length > 0) {
    if (old.metadata.deletionTimestamp) return { object: present(type, old), deletedNow: false };
    return { object: present(type, store.put(key, markedForDeletion(old))), deletedNow: false };
  }
  return { object: present(type, store.remove(key, old.metadata.namespace, name)!), deletedNow: true };
}

function markedForDeletion(object: KubeObject): KubeObject {
  const marked = deepCopy(object) as KubeObject;
  marked.metadata.deletionTimestamp = nowTimestamp();
  marked.metadata.deletionGracePeriodSeconds = 0;
  return marked;
}

// Marks the namespace Terminating, removes its content and then the
// namespace, all before returning. kube-apiserver leaves the content to the
// namespace controller, which honours finalizers.
// NOTE: finalizers of the content are ignored here.
function deleteNamespace(context: ApiContext, namespace: KubeObject): KubeObject {
  const { store } = context;
  const name = namespace.metadata.name!;

  const terminating = markedForDeletion(namespace);
  terminating.status = { phase: 'Terminating' };
  const marked = store.put(NAMESPACES_KEY, terminating);

  for (const type of context.kinds.all()) {
    if (!type.namespaced) continue;
    for (const [, object] of store.list(type.storageKey)) {
      if (object.metadata.namespace === name) store.remove(type.storageKey, name, object.metadata.name!);
    }
  }
  store.remove(NAMESPACES_KEY, undefined, name);
  return marked;
}

// Removes every object of the CRD's resource, as the CRD finalizer
// customresourcecleanup.apiextensions.k8s.io does before the CRD goes.
function deleteCustomResources(context: ApiContext, crd: KubeObject): void {
  const spec = isPlainObject(crd.spec) ? crd.spec : {};
  const storageKey = `${String(spec.group)}/${String(getPath(spec, 'names.plural'))}`;
  for (const [, object] of context.store.list(storageKey)) {
    context.store.remove(storageKey, object.metadata.namespace, object.metadata.name!);
  }
}
