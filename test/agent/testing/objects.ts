// Objects that the agent tests, the end-to-end test and the agent
// benchmark create in the test API server.

import { readFileSync } from 'node:fs';
import path from 'node:path';

import {
  ApiextensionsV1Api,
  CustomObjectsApi,
  DiscoveryV1Api,
  type KubeConfig,
  type V1CustomResourceDefinition,
  type V1CustomResourceDefinitionNames,
  type V1CustomResourceSubresources,
  type V1JSONSchemaProps,
} from '@kubernetes/client-node';
import { parse as parseYaml } from 'yaml';

import { repoRoot } from '../../../src/paths.js';

// Registers the project's own ScaleToZero CRD from deploy/crds/.
export async function installScaleToZeroCrd(kc: KubeConfig): Promise<void> {
  const crd = parseYaml(readFileSync(path.join(repoRoot, 'deploy/crds/scaletozero.yaml'), 'utf8')) as V1CustomResourceDefinition;
  await kc.makeApiClient(ApiextensionsV1Api).createCustomResourceDefinition({ body: crd });
}

export function createScaleToZero(kc: KubeConfig, namespace: string, name: string, spec: Record<string, unknown>): Promise<object> {
  return kc.makeApiClient(CustomObjectsApi).createNamespacedCustomObject({
    group: 'zerohold.dev',
    version: 'v1alpha1',
    namespace,
    plural: 'scaletozeros',
    body: { apiVersion: 'zerohold.dev/v1alpha1', kind: 'ScaleToZero', metadata: { name }, spec },
  });
}

// Creates an EndpointSlice for service with one Ready endpoint, as the
// EndpointSlice controller does once a pod passes its readiness probe.
export async function createReadyEndpoint(kc: KubeConfig, namespace: string, service: string, address: string, port = 8080): Promise<void> {
  await kc.makeApiClient(DiscoveryV1Api).createNamespacedEndpointSlice({
    namespace,
    body: {
      metadata: { name: `${service}-1`, labels: { 'kubernetes.io/service-name': service } },
      addressType: address.includes(':') ? 'IPv6' : 'IPv4',
      endpoints: [{ addresses: [address], conditions: { ready: true } }],
      ports: [{ port, protocol: 'TCP' }],
    },
  });
}

// A minimal CRD for KEDA's ScaledObject (keda.sh/v1alpha1), with the
// fields the agent reads, standing in for a cluster with KEDA installed.
export async function installScaledObjectCrd(kc: KubeConfig): Promise<void> {
  const schema = {
    type: 'object',
    properties: {
      spec: {
        type: 'object',
        properties: {
          scaleTargetRef: { type: 'object', properties: { apiVersion: { type: 'string' }, kind: { type: 'string' }, name: { type: 'string' } } },
          minReplicaCount: { type: 'integer' },
          maxReplicaCount: { type: 'integer' },
        },
      },
      status: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true },
    },
  };
  await installCrd(kc, {
    group: 'keda.sh',
    version: 'v1alpha1',
    names: { plural: 'scaledobjects', singular: 'scaledobject', kind: 'ScaledObject', shortNames: ['so'] },
    schema: schema as V1JSONSchemaProps,
    subresources: { status: {} },
  });
}

// A CRD with a scale subresource and no informer in the agent, standing in
// for kinds such as Argo Rollouts: example.com/v1 Canary, whose replicas
// are at .spec.replicas and pod selector at .status.selector.
export const CANARIES = { group: 'example.com', version: 'v1', plural: 'canaries' };

export async function installCanaryCrd(kc: KubeConfig): Promise<void> {
  await installCrd(kc, {
    group: CANARIES.group,
    version: CANARIES.version,
    names: { plural: CANARIES.plural, singular: 'canary', kind: 'Canary' },
    schema: { type: 'object', x_kubernetes_preserve_unknown_fields: true },
    subresources: { status: {}, scale: { specReplicasPath: '.spec.replicas', statusReplicasPath: '.status.replicas', labelSelectorPath: '.status.selector' } },
  });
}

// Registers a namespaced CRD with one served and stored version.
async function installCrd(
  kc: KubeConfig,
  crd: { group: string; version: string; names: V1CustomResourceDefinitionNames; schema: V1JSONSchemaProps; subresources: V1CustomResourceSubresources },
): Promise<void> {
  await kc.makeApiClient(ApiextensionsV1Api).createCustomResourceDefinition({
    body: {
      apiVersion: 'apiextensions.k8s.io/v1',
      kind: 'CustomResourceDefinition',
      metadata: { name: `${crd.names.plural}.${crd.group}` },
      spec: {
        group: crd.group,
        scope: 'Namespaced',
        names: crd.names,
        versions: [{ name: crd.version, served: true, storage: true, schema: { openAPIV3Schema: crd.schema }, subresources: crd.subresources }],
      },
    },
  });
}

export function createScaledObject(kc: KubeConfig, namespace: string, name: string, spec: Record<string, unknown>): Promise<object> {
  return kc.makeApiClient(CustomObjectsApi).createNamespacedCustomObject({
    group: 'keda.sh',
    version: 'v1alpha1',
    namespace,
    plural: 'scaledobjects',
    body: { apiVersion: 'keda.sh/v1alpha1', kind: 'ScaledObject', metadata: { name }, spec },
  });
}
