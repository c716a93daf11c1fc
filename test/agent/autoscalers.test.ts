// Which autoscalers keep a workload above zero: HPAs above their minimum
// and KEDA ScaledObjects with a minReplicaCount, including a KEDA that is
// installed after the agent started.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { AutoscalingV2Api, CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';

import { Autoscalers } from '../../src/agent/autoscalers.js';
import { kubeConfigFor } from '../apiserver/kubeconfig.js';
import { startApiServer, type TestApiServer } from '../apiserver/server.js';
import { waitFor } from '../lib/netns.js';
import { createScaledObject, installScaledObjectCrd } from './testing/objects.js';

const log = pino({ level: 'silent' });
const WORKER = { apiVersion: 'apps/v1', kind: 'Deployment', name: 'worker' };
let server: TestApiServer;
let kc: KubeConfig;
let autoscalers: Autoscalers;

before(async () => {
  server = await startApiServer({ namespaces: ['jobs'] });
  kc = kubeConfigFor(server.url);
  autoscalers = new Autoscalers(kc, log, { kedaDiscoveryIntervalMs: 50 });
  await autoscalers.start();
});

after(async () => {
  await autoscalers.stop();
  await server.close();
});

test('no autoscaler holds nothing', () => {
  assert.equal(autoscalers.heldAboveZeroBy('jobs', WORKER), null);
});

test('HPA holds only above minimum', async () => {
  const autoscaling = kc.makeApiClient(AutoscalingV2Api);
  const hpa = await autoscaling.createNamespacedHorizontalPodAutoscaler({
    namespace: 'jobs',
    body: { metadata: { name: 'worker' }, spec: { scaleTargetRef: WORKER, minReplicas: 2, maxReplicas: 5 } },
  });
  hpa.status = { currentReplicas: 2, desiredReplicas: 2 };
  await autoscaling.replaceNamespacedHorizontalPodAutoscalerStatus({ name: 'worker', namespace: 'jobs', body: hpa });
  await new Promise((resolve) => setTimeout(resolve, 200));
  assert.equal(autoscalers.heldAboveZeroBy('jobs', WORKER), null, 'an HPA at its minimum does not object');

  const current = await autoscaling.readNamespacedHorizontalPodAutoscaler({ name: 'worker', namespace: 'jobs' });
  current.status = { currentReplicas: 2, desiredReplicas: 4 };
  await autoscaling.replaceNamespacedHorizontalPodAutoscalerStatus({ name: 'worker', namespace: 'jobs', body: current });
  const reason = await waitFor('the HPA to hold the workload', () => autoscalers.heldAboveZeroBy('jobs', WORKER) ?? undefined);
  assert.equal(reason, 'HorizontalPodAutoscaler worker wants 4 replicas, above its minimum of 2');

  await autoscaling.deleteNamespacedHorizontalPodAutoscaler({ name: 'worker', namespace: 'jobs' });
  await waitFor('the deleted HPA to let go', () => (autoscalers.heldAboveZeroBy('jobs', WORKER) === null ? true : undefined));
});

test('KEDA installed later is followed', async () => {
  await installScaledObjectCrd(kc);
  await createScaledObject(kc, 'jobs', 'worker-queue', { scaleTargetRef: { name: 'worker' }, minReplicaCount: 1 });

  const reason = await waitFor('the ScaledObject to hold the workload', () => autoscalers.heldAboveZeroBy('jobs', WORKER) ?? undefined, 5000);
  assert.equal(reason, 'KEDA ScaledObject worker-queue sets minReplicaCount 1');
  assert.equal(autoscalers.heldAboveZeroBy('jobs', { ...WORKER, name: 'other' }), null, 'other workloads are not held');
  assert.equal(autoscalers.heldAboveZeroBy('jobs', { ...WORKER, kind: 'StatefulSet' }), null, 'the target kind defaults to Deployment');
});

test('ScaledObject at zero minimum holds nothing', async () => {
  await kc.makeApiClient(CustomObjectsApi).patchNamespacedCustomObject(
    { group: 'keda.sh', version: 'v1alpha1', namespace: 'jobs', plural: 'scaledobjects', name: 'worker-queue', body: [{ op: 'replace', path: '/spec/minReplicaCount', value: 0 }] },
  );
  await waitFor('minReplicaCount 0 to let go', () => (autoscalers.heldAboveZeroBy('jobs', WORKER) === null ? true : undefined));
});
