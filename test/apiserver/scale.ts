// The /scale subresource: an autoscaling/v1 Scale view of a workload's
// replica count. Reads build the Scale from the parent object. Writes set
// the parent's replicas through the ordinary update path, so that
// preconditions, generation and watch events work as for the parent.

import { Scale } from 'kubernetes-models/autoscaling/v1/Scale';

import type { ApiContext, WriteOptions } from './api-context.js';
import { updateObject } from './object-writes.js';
import { deepCopy, getPath, isPlainObject, type KubeObject, setPath } from './objects.js';
import { applyPatch } from './patch.js';
import { groupResourceOf, type ResourceType } from './resource-type.js';
import { badRequest, conflict, notFound, OBJECT_MODIFIED } from './status.js';
import { invalidValue, schemaCauses, throwIfInvalid } from './validation.js';

function loadParent(context: ApiContext, type: ResourceType, namespace: string | undefined, name: string): KubeObject {
  const parent = context.store.get(type.storageKey, type.namespaced ? namespace : undefined, name);
  if (!parent) throw notFound(groupResourceOf(type), name);
  return parent;
}

export function scaleOf(type: ResourceType, parent: KubeObject): KubeObject {
  const scale = type.scale!;
  const { name, namespace, uid, resourceVersion, creationTimestamp } = parent.metadata;
  const status: Record<string, unknown> = { replicas: Number(getPath(parent, scale.statusReplicasPath) ?? 0) };
  const selector = scale.selector(parent);
  if (selector !== undefined) status.selector = selector;

  return {
    kind: 'Scale',
    apiVersion: 'autoscaling/v1',
    metadata: { name, ...(namespace ? { namespace } : {}), uid, resourceVersion, creationTimestamp },
    spec: { replicas: Number(getPath(parent, scale.specReplicasPath) ?? 0) },
    status,
  };
}

export function readScale(context: ApiContext, type: ResourceType, namespace: string | undefined, name: string): KubeObject {
  return scaleOf(type, loadParent(context, type, namespace, name));
}

export function updateScale(
  context: ApiContext,
  type: ResourceType,
  namespace: string | undefined,
  name: string,
  body: unknown,
  options: WriteOptions,
): KubeObject {
  if (!isPlainObject(body)) throw badRequest('the body of the request must be a JSON object of kind Scale');
  if (body.kind !== undefined && body.kind !== 'Scale') throw badRequest(`the kind in the data (${String(body.kind)}) does not match the expected kind (Scale)`);
  const metadata = isPlainObject(body.metadata) ? body.metadata : {};
  if (metadata.name !== name) throw badRequest(`the name of the object (${String(metadata.name ?? '')}) does not match the name on the URL (${name})`);

  const causes = schemaCauses(Scale, { ...body, apiVersion: 'autoscaling/v1', kind: 'Scale' } as KubeObject, 'Scale', 'v1');
  const replicas = getPath(body, 'spec.replicas');
  if (typeof replicas === 'number' && replicas < 0) causes.push(invalidValue('spec.replicas', replicas, 'must be greater than or equal to 0'));
  throwIfInvalid(causes, 'Scale', 'autoscaling', name);

  const parent = loadParent(context, type, namespace, name);
  if (metadata.resourceVersion && metadata.resourceVersion !== parent.metadata.resourceVersion) {
    throw conflict(groupResourceOf(type), name, OBJECT_MODIFIED);
  }

  // A Scale without spec.replicas sets zero, as the typed field's zero value does.
  const next = deepCopy(parent) as KubeObject;
  setPath(next, type.scale!.specReplicasPath, typeof replicas === 'number' ? replicas : 0);
  const updated = updateObject(context, type, namespace, name, next, options);
  return scaleOf(type, updated);
}

export function patchScale(
  context: ApiContext,
  type: ResourceType,
  namespace: string | undefined,
  name: string,
  contentType: string | undefined,
  patchText: string,
  options: WriteOptions,
): KubeObject {
  const current = readScale(context, type, namespace, name);
  const patched = applyPatch(contentType, patchText, current, { kind: 'Scale', custom: false });
  return updateScale(context, type, namespace, name, patched, options);
}
