import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, test } from 'node:test';

import {
  ApiextensionsV1Api,
  CustomObjectsApi,
  type KubeConfig,
  loadYaml,
  PatchStrategy,
  setHeaderOptions,
  type V1CustomResourceDefinition,
} from '@kubernetes/client-node';

import { rejection, WatchRecorder } from './client-helpers.js';
import { SCALE_TO_ZERO, scaleToZeroCrd } from './fixtures.js';
import { kubeConfigFor } from './kubeconfig.js';
import { startApiServer, type TestApiServer } from './server.js';

const NS = 'crs';
const { group, version, plural } = SCALE_TO_ZERO;
const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

let server: TestApiServer;
let kubeConfig: KubeConfig;
let extensions: ApiextensionsV1Api;
let custom: CustomObjectsApi;

interface ScaleToZero {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; namespace?: string; resourceVersion?: string; generation?: number };
  spec?: { targetRef?: { kind: string; name: string }; idleSeconds?: number };
  status?: { phase?: string; observedGeneration?: number };
}

function scaleToZero(name: string, idleSeconds = 300): ScaleToZero {
  return {
    apiVersion: `${group}/${version}`,
    kind: SCALE_TO_ZERO.kind,
    metadata: { name },
    spec: { targetRef: { kind: 'Deployment', name: 'web' }, idleSeconds },
    status: { phase: 'Ignored' },
  };
}

before(async () => {
  server = await startApiServer({ namespaces: [NS] });
  kubeConfig = kubeConfigFor(server.url);
  extensions = kubeConfig.makeApiClient(ApiextensionsV1Api);
  custom = kubeConfig.makeApiClient(CustomObjectsApi);
});

after(() => server.close());

test('custom resources are served only while their CRD exists', async () => {
  const before = await rejection(custom.listNamespacedCustomObject({ group, version, namespace: NS, plural }));
  assert.equal(before.code, 404);

  const crd = await extensions.createCustomResourceDefinition({ body: scaleToZeroCrd() });
  const established = crd.status?.conditions?.find((condition) => condition.type === 'Established');
  assert.equal(established?.status, 'True');
  assert.deepEqual(crd.status?.storedVersions, [version]);
  assert.equal(crd.spec.names.listKind, 'ScaleToZeroList', 'listKind defaulted');

  const list = await custom.listNamespacedCustomObject({ group, version, namespace: NS, plural });
  assert.equal(list.kind, 'ScaleToZeroList');
  assert.deepEqual(list.items, []);
});

test('CRD name must be plural.group', async () => {
  const crd = scaleToZeroCrd();
  crd.metadata!.name = 'wrong.zerohold.dev';
  const status = await rejection(extensions.createCustomResourceDefinition({ body: crd }));
  assert.equal(status.code, 422);
  assert.match(status.message, /metadata\.name: Invalid value: "wrong\.zerohold\.dev": must be spec\.names\.plural\+"\."\+spec\.group/);
});

test('create ignores status and sets generation', async () => {
  const created = (await custom.createNamespacedCustomObject({ group, version, namespace: NS, plural, body: scaleToZero('web') })) as ScaleToZero;
  assert.equal(created.kind, 'ScaleToZero');
  assert.equal(created.metadata.generation, 1);
  assert.equal(created.status, undefined, 'status is dropped on create with a status subresource');
});

test('main updates ignore status; status updates change only status', async () => {
  const current = (await custom.getNamespacedCustomObject({ group, version, namespace: NS, plural, name: 'web' })) as ScaleToZero;

  current.spec!.idleSeconds = 60;
  current.status = { phase: 'Ignored' };
  const updated = (await custom.replaceNamespacedCustomObject({ group, version, namespace: NS, plural, name: 'web', body: current })) as ScaleToZero;
  assert.equal(updated.metadata.generation, 2, 'spec change bumps generation');
  assert.equal(updated.status, undefined);

  updated.spec!.idleSeconds = 1;
  updated.status = { phase: 'Idle', observedGeneration: 2 };
  const withStatus = (await custom.replaceNamespacedCustomObjectStatus({ group, version, namespace: NS, plural, name: 'web', body: updated })) as ScaleToZero;
  assert.deepEqual(withStatus.status, { phase: 'Idle', observedGeneration: 2 });
  assert.equal(withStatus.spec!.idleSeconds, 60, 'spec change through /status is ignored');
  assert.equal(withStatus.metadata.generation, 2, 'status change keeps generation');

  const patched = (await custom.patchNamespacedCustomObjectStatus(
    { group, version, namespace: NS, plural, name: 'web', body: { status: { phase: 'Awake' }, spec: { idleSeconds: 5 } } },
    mergePatch,
  )) as ScaleToZero;
  assert.deepEqual(patched.status, { phase: 'Awake', observedGeneration: 2 });
  assert.equal(patched.spec!.idleSeconds, 60);

  const read = (await custom.getNamespacedCustomObjectStatus({ group, version, namespace: NS, plural, name: 'web' })) as ScaleToZero;
  assert.equal(read.status?.phase, 'Awake');
});

test('custom resource update needs resourceVersion', async () => {
  const current = (await custom.getNamespacedCustomObject({ group, version, namespace: NS, plural, name: 'web' })) as ScaleToZero;
  const stale = { ...current, metadata: { ...current.metadata, resourceVersion: '1' } };
  const conflict = await rejection(custom.replaceNamespacedCustomObject({ group, version, namespace: NS, plural, name: 'web', body: stale }));
  assert.equal(conflict.code, 409);

  const unconditional = { ...current, metadata: { name: 'web' } };
  const invalid = await rejection(custom.replaceNamespacedCustomObject({ group, version, namespace: NS, plural, name: 'web', body: unconditional }));
  assert.equal(invalid.code, 422);
  assert.match(invalid.message, /metadata\.resourceVersion: Invalid value: 0x0: must be specified for an update/);
});

test('strategic merge patch on custom resource is 415', async () => {
  const status = await rejection(
    custom.patchNamespacedCustomObject(
      { group, version, namespace: NS, plural, name: 'web', body: { spec: { idleSeconds: 2 } } },
      setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch),
    ),
  );
  assert.equal(status.code, 415);
});

test('custom resource list items keep kind', async () => {
  await custom.createNamespacedCustomObject({ group, version, namespace: NS, plural, body: scaleToZero('api') });
  const list = (await custom.listNamespacedCustomObject({ group, version, namespace: NS, plural })) as { items: ScaleToZero[] };
  assert.deepEqual(
    list.items.map((item) => [item.kind, item.apiVersion, item.metadata.name]),
    [
      ['ScaleToZero', `${group}/${version}`, 'api'],
      ['ScaleToZero', `${group}/${version}`, 'web'],
    ],
  );
});

test('deleting the CRD deletes its objects', async () => {
  const recorder = await WatchRecorder.start(kubeConfig, `/apis/${group}/${version}/namespaces/${NS}/${plural}`, { resourceVersion: String(server.store.revision) });
  await extensions.deleteCustomResourceDefinition({ name: `${plural}.${group}` });
  await recorder.waitForCount(2);
  assert.deepEqual(recorder.types(), ['DELETED', 'DELETED']);
  recorder.stop();

  const afterDelete = await rejection(custom.listNamespacedCustomObject({ group, version, namespace: NS, plural }));
  assert.equal(afterDelete.code, 404);
});

test('project CRD manifest registers', async () => {
  // The manifest that deploy/ ships must pass this server's CRD validation.
  const manifest = await readFile(new URL('../../../deploy/crds/scaletozero.yaml', import.meta.url), 'utf8');
  const crd = loadYaml<V1CustomResourceDefinition>(manifest);
  const created = await extensions.createCustomResourceDefinition({ body: crd });
  assert.equal(created.status?.conditions?.find((condition) => condition.type === 'Established')?.status, 'True');

  const list = await custom.listNamespacedCustomObject({ group, version, namespace: NS, plural });
  assert.deepEqual(list.items, []);
});
