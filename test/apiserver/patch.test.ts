import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { AppsV1Api, CoreV1Api, PatchStrategy, setHeaderOptions, type V1Deployment } from '@kubernetes/client-node';

import { rejection } from './client-helpers.js';
import { deploymentFixture, serviceFixture } from './fixtures.js';
import { applyJsonPatch } from './json-patch.js';
import { kubeConfigFor } from './kubeconfig.js';
import { applyMergePatch } from './merge-patch.js';
import { startApiServer, type TestApiServer } from './server.js';
import { applyStrategicMergePatch } from './strategic-merge-patch.js';

const NS = 'patch';

let server: TestApiServer;
let core: CoreV1Api;
let apps: AppsV1Api;

// client-node 1.4 sends every patch as application/json-patch+json unless a
// middleware overrides the Content-Type header; setHeaderOptions builds one.
const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
const strategicMergePatch = setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch);

before(async () => {
  server = await startApiServer({ namespaces: [NS] });
  const kubeConfig = kubeConfigFor(server.url);
  core = kubeConfig.makeApiClient(CoreV1Api);
  apps = kubeConfig.makeApiClient(AppsV1Api);
});

after(() => server.close());

test('merge patch follows RFC 7386', () => {
  const target = { a: 'b', c: { d: 'e', f: 'g' }, list: [1, 2] };
  const patched = applyMergePatch(target, { a: 'z', c: { f: null }, list: [3], n: null });
  assert.deepEqual(patched, { a: 'z', c: { d: 'e' }, list: [3] });
  assert.deepEqual(target, { a: 'b', c: { d: 'e', f: 'g' }, list: [1, 2] }, 'target unchanged');
});

test('json patch applies RFC 6902 operations', () => {
  const patched = applyJsonPatch({ a: { b: [1, 3] }, x: 1 }, [
    { op: 'add', path: '/a/b/1', value: 2 },
    { op: 'add', path: '/a/b/-', value: 4 },
    { op: 'replace', path: '/x', value: 2 },
    { op: 'copy', from: '/x', path: '/y' },
    { op: 'move', from: '/y', path: '/a/z' },
    { op: 'remove', path: '/x' },
    { op: 'test', path: '/a/z', value: 2 },
    { op: 'add', path: '/a~1b', value: 'slash' },
  ]);
  assert.deepEqual(patched, { a: { b: [1, 2, 3, 4], z: 2 }, 'a/b': 'slash' });

  assert.throws(() => applyJsonPatch({ a: 1 }, [{ op: 'test', path: '/a', value: 2 }]), { code: 422, reason: 'Invalid' });
  assert.throws(() => applyJsonPatch({ a: 1 }, [{ op: 'remove', path: '/missing' }]), { code: 422 });
  assert.throws(() => applyJsonPatch({ a: 1 }, { op: 'remove', path: '/a' }), { code: 400 });
});

test('strategic merge patch merges containers by name', () => {
  const original = {
    spec: {
      template: {
        spec: {
          containers: [
            { name: 'web', image: 'nginx:1', ports: [{ containerPort: 80 }], env: [{ name: 'A', value: '1' }] },
            { name: 'sidecar', image: 'envoy:1' },
          ],
          tolerations: [{ key: 'a' }],
        },
      },
    },
    metadata: { finalizers: ['x'] },
  };
  const patched = applyStrategicMergePatch(
    original,
    {
      spec: {
        template: {
          spec: {
            containers: [
              { name: 'web', image: 'nginx:2', ports: [{ containerPort: 443 }], env: [{ name: 'A', $patch: 'delete' }] },
              { name: 'sidecar', $patch: 'delete' },
              { name: 'new', image: 'busybox' },
            ],
            tolerations: [{ key: 'b' }],
          },
        },
      },
      metadata: { finalizers: ['y'] },
    },
    'Deployment',
  );
  assert.deepEqual(patched, {
    spec: {
      template: {
        spec: {
          containers: [
            { name: 'web', image: 'nginx:2', ports: [{ containerPort: 80 }, { containerPort: 443 }], env: [] },
            { name: 'new', image: 'busybox' },
          ],
          tolerations: [{ key: 'b' }],
        },
      },
    },
    metadata: { finalizers: ['x', 'y'] },
  });
});

test('strategic merge patch directives', () => {
  const original = { metadata: { finalizers: ['a', 'b'] }, spec: { ports: [{ port: 80, name: 'http' }], selector: { x: '1', y: '2' } } };
  const patched = applyStrategicMergePatch(
    original,
    {
      metadata: { '$deleteFromPrimitiveList/finalizers': ['a'] },
      spec: { ports: [{ port: 443, name: 'https' }, { $patch: 'replace' }], selector: { $patch: 'replace', z: '3' } },
    },
    'Service',
  );
  assert.deepEqual(patched, { metadata: { finalizers: ['b'] }, spec: { ports: [{ port: 443, name: 'https' }], selector: { z: '3' } } });

  assert.throws(() => applyStrategicMergePatch(original, { spec: { ports: [{ name: 'no-key' }] } }, 'Service'), { code: 400 });
});

test('merge patch through client-node', async () => {
  await apps.createNamespacedDeployment({ namespace: NS, body: deploymentFixture('merge') });
  const patched = await apps.patchNamespacedDeployment(
    { name: 'merge', namespace: NS, body: { metadata: { labels: { patched: 'merge' } }, spec: { replicas: 4 } } },
    mergePatch,
  );
  assert.equal(patched.metadata?.labels?.patched, 'merge');
  assert.equal(patched.spec?.replicas, 4);
  assert.equal(patched.metadata?.generation, 2);
});

test('strategic merge patch through client-node', async () => {
  await apps.createNamespacedDeployment({ namespace: NS, body: deploymentFixture('smp') });
  const patch = { spec: { template: { spec: { containers: [{ name: 'sidecar', image: 'envoy:1.30' }] } } } };
  const patched = await apps.patchNamespacedDeployment({ name: 'smp', namespace: NS, body: patch }, strategicMergePatch);
  const containers = patched.spec?.template.spec?.containers.map((container) => container.name);
  assert.deepEqual(containers, ['web', 'sidecar'], 'containers merged by name');
  assert.equal(patched.spec?.template.spec?.containers[1]?.imagePullPolicy, 'IfNotPresent', 'defaults applied to the merged container');
});

test('patch with stale resourceVersion is Conflict', async () => {
  const created = await core.createNamespacedService({ namespace: NS, body: serviceFixture('rv') });
  await core.patchNamespacedService({ name: 'rv', namespace: NS, body: { metadata: { labels: { a: '1' } } } }, strategicMergePatch);

  const stale = { metadata: { resourceVersion: created.metadata!.resourceVersion, labels: { a: '2' } } };
  for (const options of [strategicMergePatch, mergePatch]) {
    const status = await rejection(core.patchNamespacedService({ name: 'rv', namespace: NS, body: stale }, options));
    assert.equal(status.code, 409);
    assert.equal(status.reason, 'Conflict');
  }
});

test('json patch through client-node default content type', async () => {
  await core.createNamespacedConfigMap({ namespace: NS, body: { metadata: { name: 'jp' }, data: { a: '1' } } });
  const patched = await core.patchNamespacedConfigMap({ name: 'jp', namespace: NS, body: [{ op: 'add', path: '/data/b', value: '2' }] });
  assert.deepEqual(patched.data, { a: '1', b: '2' });

  // An object body without the header goes out as json-patch and fails.
  const status = await rejection(core.patchNamespacedConfigMap({ name: 'jp', namespace: NS, body: { data: { c: '3' } } }));
  assert.equal(status.code, 400);
});

test('unsupported patch type is 415', async () => {
  await core.createNamespacedConfigMap({ namespace: NS, body: { metadata: { name: 'apply' } } });
  const status = await rejection(
    core.patchNamespacedConfigMap({ name: 'apply', namespace: NS, body: {} }, setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply)),
  );
  assert.equal(status.code, 415);
  assert.equal(status.reason, 'UnsupportedMediaType');
});

test('deployment scale read and merge patch', async () => {
  await apps.createNamespacedDeployment({ namespace: NS, body: deploymentFixture('scaled', 2) });
  await apps.patchNamespacedDeploymentStatus({ name: 'scaled', namespace: NS, body: { status: { replicas: 2, readyReplicas: 2 } } }, mergePatch);

  const scale = await apps.readNamespacedDeploymentScale({ name: 'scaled', namespace: NS });
  assert.equal(scale.kind, 'Scale');
  assert.equal(scale.apiVersion, 'autoscaling/v1');
  assert.equal(scale.spec?.replicas, 2);
  assert.equal(scale.status?.replicas, 2);
  assert.equal(scale.status?.selector, 'app=scaled');

  const patched = await apps.patchNamespacedDeploymentScale({ name: 'scaled', namespace: NS, body: { spec: { replicas: 0 } } }, mergePatch);
  assert.equal(patched.spec?.replicas, 0);

  const deployment: V1Deployment = await apps.readNamespacedDeployment({ name: 'scaled', namespace: NS });
  assert.equal(deployment.spec?.replicas, 0);
  assert.equal(deployment.metadata?.generation, 2);
  assert.equal(patched.metadata?.resourceVersion, deployment.metadata?.resourceVersion);
});

test('scale replace checks resourceVersion', async () => {
  await apps.createNamespacedStatefulSet({
    namespace: NS,
    body: { metadata: { name: 'db' }, spec: { serviceName: 'db', selector: { matchLabels: { app: 'db' } }, template: { metadata: { labels: { app: 'db' } }, spec: { containers: [{ name: 'db', image: 'postgres:16' }] } } } },
  });
  const scale = await apps.readNamespacedStatefulSetScale({ name: 'db', namespace: NS });
  assert.equal(scale.spec?.replicas, 1, 'replicas defaulted to 1');

  scale.spec = { replicas: 3 };
  const replaced = await apps.replaceNamespacedStatefulSetScale({ name: 'db', namespace: NS, body: scale });
  assert.equal(replaced.spec?.replicas, 3);

  scale.spec = { replicas: 0 };
  const conflict = await rejection(apps.replaceNamespacedStatefulSetScale({ name: 'db', namespace: NS, body: scale }));
  assert.equal(conflict.code, 409);

  const negative = await rejection(apps.patchNamespacedStatefulSetScale({ name: 'db', namespace: NS, body: { spec: { replicas: -1 } } }, mergePatch));
  assert.equal(negative.code, 422);
  assert.match(negative.message, /^Scale\.autoscaling "db" is invalid: spec\.replicas: Invalid value: -1/);
});
