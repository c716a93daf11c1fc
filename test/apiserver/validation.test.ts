import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { AppsV1Api, CoreV1Api, type V1Deployment } from '@kubernetes/client-node';

import { rejection } from './client-helpers.js';
import { deploymentFixture } from './fixtures.js';
import { kubeConfigFor } from './kubeconfig.js';
import { startApiServer, type TestApiServer } from './server.js';

const NS = 'valid';

let server: TestApiServer;
let core: CoreV1Api;
let apps: AppsV1Api;

before(async () => {
  server = await startApiServer({ namespaces: [NS] });
  const kubeConfig = kubeConfigFor(server.url);
  core = kubeConfig.makeApiClient(CoreV1Api);
  apps = kubeConfig.makeApiClient(AppsV1Api);
});

after(() => server.close());

test('deployment without selector is Invalid', async () => {
  const body = deploymentFixture('no-selector');
  delete (body.spec as Partial<NonNullable<V1Deployment['spec']>>).selector;

  const status = await rejection(apps.createNamespacedDeployment({ namespace: NS, body }));
  assert.equal(status.code, 422);
  assert.equal(status.reason, 'Invalid');
  assert.equal(status.message, 'Deployment.apps "no-selector" is invalid: spec.selector: Required value');
  assert.deepEqual(status.details, {
    name: 'no-selector',
    group: 'apps',
    kind: 'Deployment',
    causes: [{ reason: 'FieldValueRequired', message: 'Required value', field: 'spec.selector' }],
  });
});

test('deployment with wrong field type fails decoding', async () => {
  const body = deploymentFixture('typed') as unknown as { spec: Record<string, unknown> };
  body.spec.replicas = 'three';

  // kube-apiserver rejects a JSON type mismatch while decoding, before validation.
  const status = await rejection(apps.createNamespacedDeployment({ namespace: NS, body: body as unknown as V1Deployment }));
  assert.equal(status.code, 400);
  assert.equal(status.reason, 'BadRequest');
  assert.equal(
    status.message,
    'Deployment in version "v1" cannot be handled as a Deployment: json: cannot unmarshal string into Go struct field spec.replicas of type integer',
  );
});

test('deployment selector must match template labels', async () => {
  const body = deploymentFixture('mismatch');
  body.spec!.template.metadata!.labels = { app: 'other' };
  const status = await rejection(apps.createNamespacedDeployment({ namespace: NS, body }));
  assert.equal(status.code, 422);
  assert.match(status.message, /spec\.template\.metadata\.labels: Invalid value: .*`selector` does not match template `labels`/);
});

test('deployment selector is immutable', async () => {
  const created = await apps.createNamespacedDeployment({ namespace: NS, body: deploymentFixture('fixed') });
  created.spec!.selector = { matchLabels: { app: 'fixed', extra: 'x' } };
  created.spec!.template.metadata!.labels = { app: 'fixed', extra: 'x' };
  const status = await rejection(apps.replaceNamespacedDeployment({ name: 'fixed', namespace: NS, body: created }));
  assert.equal(status.code, 422);
  assert.match(status.message, /spec\.selector: Invalid value: .*: field is immutable/);
});

test('service name must be a DNS-1035 label', async () => {
  const status = await rejection(core.createNamespacedService({ namespace: NS, body: { metadata: { name: '1web' }, spec: { ports: [{ port: 80 }] } } }));
  assert.equal(status.code, 422);
  assert.match(status.message, /^Service "1web" is invalid: metadata\.name: Invalid value: "1web": a DNS-1035 label must consist of/);
});

test('name or generateName is required', async () => {
  const status = await rejection(core.createNamespacedConfigMap({ namespace: NS, body: { metadata: {} } }));
  assert.equal(status.code, 422);
  assert.equal(status.message, 'ConfigMap "" is invalid: metadata.name: Required value: name or generateName is required');
});

test('pod without containers is Invalid', async () => {
  const status = await rejection(core.createNamespacedPod({ namespace: NS, body: { metadata: { name: 'empty' }, spec: {} as never } }));
  assert.equal(status.code, 422);
  assert.deepEqual(
    status.details?.causes?.map((cause) => cause.field),
    ['spec.containers'],
  );
});

test('invalid label value is Invalid', async () => {
  const status = await rejection(core.createNamespacedConfigMap({ namespace: NS, body: { metadata: { name: 'labels', labels: { app: 'has space' } } } }));
  assert.equal(status.code, 422);
  assert.equal(status.details?.causes?.[0]?.field, 'metadata.labels');
});

test('valid pod gets defaults and Pending status', async () => {
  const pod = await core.createNamespacedPod({
    namespace: NS,
    body: { metadata: { name: 'ok' }, spec: { containers: [{ name: 'app', image: 'busybox' }] } },
  });
  assert.equal(pod.status?.phase, 'Pending');
  assert.equal(pod.spec?.restartPolicy, 'Always');
  assert.equal(pod.spec?.containers[0]?.imagePullPolicy, 'Always', 'untagged image pulls always');

  const list = await core.listNamespacedPod({ namespace: NS, fieldSelector: 'status.phase=Pending' });
  assert.deepEqual(list.items.map((item) => item.metadata?.name), ['ok']);
});
