// Kubernetes objects of deploy/, read from files or from the output of
// helm and kubectl, and checked against their upstream schemas.

import assert from 'node:assert/strict';

import { CustomResourceDefinition } from 'kubernetes-models/apiextensions.k8s.io/v1/CustomResourceDefinition';
import { DaemonSet } from 'kubernetes-models/apps/v1/DaemonSet';
import { ClusterRole } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRole';
import { ClusterRoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRoleBinding';
import { Role } from 'kubernetes-models/rbac.authorization.k8s.io/v1/Role';
import { RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { parseAllDocuments } from 'yaml';

import type { KubeObject } from '../apiserver/objects.js';
import { metadataCauses, type ModelClass, schemaCauses } from '../apiserver/validation.js';

export const MODELS: Record<string, ModelClass> = {
  'v1/Namespace': Namespace,
  'v1/ServiceAccount': ServiceAccount,
  'v1/ConfigMap': ConfigMap,
  'apps/v1/DaemonSet': DaemonSet,
  'rbac.authorization.k8s.io/v1/ClusterRole': ClusterRole,
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding': ClusterRoleBinding,
  'rbac.authorization.k8s.io/v1/Role': Role,
  'rbac.authorization.k8s.io/v1/RoleBinding': RoleBinding,
  'apiextensions.k8s.io/v1/CustomResourceDefinition': CustomResourceDefinition,
};

export interface ManifestObject extends KubeObject {
  apiVersion: string;
  kind: string;
}

// Parses a multi-document YAML stream, skipping empty documents, as
// kubectl apply does.
export function parseObjects(text: string, source: string): ManifestObject[] {
  const objects: ManifestObject[] = [];
  for (const document of parseAllDocuments(text)) {
    assert.equal(document.errors.length, 0, `${source}: ${document.errors.map((e) => e.message).join('; ')}`);
    const object = document.toJS() as ManifestObject | null;
    if (object !== null) objects.push(object);
  }
  return objects;
}

export function objectName(object: ManifestObject): string {
  return `${object.kind} ${object.metadata.namespace ? `${object.metadata.namespace}/` : ''}${object.metadata.name}`;
}

// The schema and metadata problems of an object whose kind MODELS lists,
// as the API server would report them.
export function validationCauses(object: ManifestObject): unknown[] {
  const model = MODELS[`${object.apiVersion}/${object.kind}`];
  assert.ok(model, `no schema for ${object.apiVersion} ${object.kind}`);
  const version = object.apiVersion.split('/').pop()!;
  const nameRule = object.kind === 'Namespace' ? 'dns1123Label' : 'dns1123Subdomain';
  return [...schemaCauses(model, object, object.kind, version), ...metadataCauses(object, nameRule)];
}
