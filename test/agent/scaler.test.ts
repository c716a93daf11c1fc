import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { AppsV1Api, PatchStrategy, setHeaderOptions, type V1StatefulSet } from '@kubernetes/client-node';

import { KubeScaler, ScaleConflictError } from '../../src/agent/scaler.js';
import { deploymentFixture } from '../apiserver/fixtures.js';
import { kubeConfigFor } from '../apiserver/kubeconfig.js';
import { startApiServer, type TestApiServer } from '../apiserver/server.js';

let server: TestApiServer;
let apps: AppsV1Api;

before(async () => {
  server = await startApiServer();
  apps = kubeConfigFor(server.url).makeApiClient(AppsV1Api);
});

after(() => server.close());

const DEPLOYMENT = { apiVersion: 'apps/v1', kind: 'Deployment', name: 'web' };

function scaleWrites(name: string): number {
  return server.requests.filter((r) => r.method === 'PUT' && r.path.includes(`/${name}/scale`) && r.status === 200).length;
}

test('three agents scale up once', async () => {
  await apps.createNamespacedDeployment({ namespace: 'default', body: deploymentFixture('web', 0) });
  // Each agent has its own client, as on three nodes.
  const agents = [1, 2, 3].map(() => new KubeScaler(kubeConfigFor(server.url)));

  const changed = await Promise.all(agents.map((a) => a.scaleUp('default', DEPLOYMENT, 2)));

  assert.equal(changed.filter(Boolean).length, 1, `changed: ${changed}`);
  assert.equal(scaleWrites('web'), 1);
  const deployment = await apps.readNamespacedDeployment({ name: 'web', namespace: 'default' });
  assert.equal(deployment.spec?.replicas, 2);
});

test('scale up keeps a higher count', async () => {
  const scaler = new KubeScaler(kubeConfigFor(server.url));
  assert.equal(await scaler.scaleUp('default', DEPLOYMENT, 1), false);
  const deployment = await apps.readNamespacedDeployment({ name: 'web', namespace: 'default' });
  assert.equal(deployment.spec?.replicas, 2);
});

test('scale a StatefulSet to zero', async () => {
  const statefulSet: V1StatefulSet = {
    metadata: { name: 'db' },
    spec: {
      replicas: 1,
      serviceName: 'db',
      selector: { matchLabels: { app: 'db' } },
      template: { metadata: { labels: { app: 'db' } }, spec: { containers: [{ name: 'postgres', image: 'postgres:16' }] } },
    },
  };
  await apps.createNamespacedStatefulSet({ namespace: 'default', body: statefulSet });

  await new KubeScaler(kubeConfigFor(server.url)).scaleTo('default', { apiVersion: 'apps/v1', kind: 'StatefulSet', name: 'db' }, 0);

  const read = await apps.readNamespacedStatefulSet({ name: 'db', namespace: 'default' });
  assert.equal(read.spec?.replicas, 0);
});

test('scale to zero fails on conflict', async () => {
  const scaler = new KubeScaler(kubeConfigFor(server.url));
  // A write that lands between the scaler's read and its write.
  server.faults.failNext({ method: 'PUT', path: /\/deployments\/web\/scale$/, status: 409, count: 1 });
  await assert.rejects(scaler.scaleTo('default', DEPLOYMENT, 0), ScaleConflictError);
});

test('unknown kind names the target', async () => {
  const scaler = new KubeScaler(kubeConfigFor(server.url));
  await assert.rejects(scaler.scaleUp('default', { apiVersion: 'apps/v1', kind: 'Rollout', name: 'x' }, 1), /kind Rollout not found in apps\/v1 discovery/);
});

test('scale up retries after 409', async () => {
  await apps.createNamespacedDeployment({ namespace: 'default', body: deploymentFixture('retry', 0) });
  const scaler = new KubeScaler(kubeConfigFor(server.url));
  // The first write loses to a concurrent change; the scaler reads again.
  server.faults.failNext({ method: 'PUT', path: /\/deployments\/retry\/scale$/, status: 409, count: 1 });

  assert.equal(await scaler.scaleUp('default', { apiVersion: 'apps/v1', kind: 'Deployment', name: 'retry' }, 1), true);

  const attempts = server.requests.filter((r) => r.method === 'PUT' && r.path.includes('/retry/scale'));
  assert.deepEqual(attempts.map((r) => r.status), [409, 200]);
  assert.equal((await apps.readNamespacedDeployment({ name: 'retry', namespace: 'default' })).spec?.replicas, 1);
});

test('cached version skips the read', async () => {
  const created = await apps.createNamespacedDeployment({ namespace: 'default', body: deploymentFixture('cached', 0) });
  const scaler = new KubeScaler(kubeConfigFor(server.url));
  const before = server.requests.length;

  const changed = await scaler.scaleUp('default', { apiVersion: 'apps/v1', kind: 'Deployment', name: 'cached' }, 1, { replicas: 0, resourceVersion: created.metadata!.resourceVersion! });

  assert.equal(changed, true);
  const scaleCalls = server.requests.slice(before).filter((r) => r.path.includes('/cached/scale'));
  assert.deepEqual(scaleCalls.map((r) => `${r.method} ${r.status}`), ['PUT 200']);
});

test('stale cached version falls back', async () => {
  const created = await apps.createNamespacedDeployment({ namespace: 'default', body: deploymentFixture('stale', 0) });
  const staleVersion = created.metadata!.resourceVersion!;
  // Someone else changes the Deployment after the cache saw it.
  await apps.patchNamespacedDeployment({ name: 'stale', namespace: 'default', body: { metadata: { labels: { touched: 'yes' } } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
  const scaler = new KubeScaler(kubeConfigFor(server.url));
  const before = server.requests.length;

  assert.equal(await scaler.scaleUp('default', { apiVersion: 'apps/v1', kind: 'Deployment', name: 'stale' }, 1, { replicas: 0, resourceVersion: staleVersion }), true);

  const scaleCalls = server.requests.slice(before).filter((r) => r.path.includes('/stale/scale'));
  assert.deepEqual(scaleCalls.map((r) => `${r.method} ${r.status}`), ['PUT 409', 'GET 200', 'PUT 200']);
  assert.equal((await apps.readNamespacedDeployment({ name: 'stale', namespace: 'default' })).spec?.replicas, 1);
});
