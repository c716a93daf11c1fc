// Objects that several API server tests create.

import type { V1CustomResourceDefinition, V1Deployment, V1Service } from '@kubernetes/client-node';

export function serviceFixture(name: string, labels: Record<string, string> = {}): V1Service {
  return { metadata: { name, labels }, spec: { selector: { app: name }, ports: [{ name: 'http', port: 80 }] } };
}

export function deploymentFixture(name: string, replicas = 1): V1Deployment {
  return {
    metadata: { name },
    spec: {
      replicas,
      selector: { matchLabels: { app: name } },
      template: { metadata: { labels: { app: name } }, spec: { containers: [{ name: 'web', image: 'nginx:1.27', ports: [{ containerPort: 80 }] }] } },
    },
  };
}

export const SCALE_TO_ZERO = { group: 'zerohold.dev', version: 'v1alpha1', plural: 'scaletozeros', kind: 'ScaleToZero' };

// The CRD of zerohold's ScaleToZero resource, with a status subresource.
export function scaleToZeroCrd(): V1CustomResourceDefinition {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${SCALE_TO_ZERO.plural}.${SCALE_TO_ZERO.group}` },
    spec: {
      group: SCALE_TO_ZERO.group,
      scope: 'Namespaced',
      names: { plural: SCALE_TO_ZERO.plural, singular: 'scaletozero', kind: SCALE_TO_ZERO.kind, shortNames: ['stz'] },
      versions: [
        {
          name: SCALE_TO_ZERO.version,
          served: true,
          storage: true,
          subresources: { status: {} },
          schema: {
            openAPIV3Schema: {
              type: 'object',
              properties: {
                spec: {
                  type: 'object',
                  properties: {
                    targetRef: { type: 'object', properties: { kind: { type: 'string' }, name: { type: 'string' } } },
                    idleSeconds: { type: 'integer' },
                  },
                },
                status: { type: 'object', properties: { phase: { type: 'string' }, observedGeneration: { type: 'integer' } } },
              },
            },
          },
        },
      ],
    },
  };
}
