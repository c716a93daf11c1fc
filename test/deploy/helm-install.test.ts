// The agent's Helm chart installed, upgraded and uninstalled by the real
// Helm binary against the in-repo API server, as `helm install` runs
// against a cluster. Helm stores its release records as Secrets in
// Kubernetes protobuf, which the server reads.
//
// Two flags differ from a cluster install: --server-side=false, because
// the server has no server-side apply, and --disable-openapi-validation,
// because it serves no OpenAPI document. The server still validates each
// object against its upstream schema, as kube-apiserver does.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { ApiextensionsV1Api, AppsV1Api, CoreV1Api, type KubeConfig, RbacAuthorizationV1Api } from '@kubernetes/client-node';
import { parse as parseYaml } from 'yaml';

import { repoRoot } from '../../src/paths.js';
import { kubeConfigFor } from '../apiserver/kubeconfig.js';
import { startApiServer, type TestApiServer } from '../apiserver/server.js';
import { helm } from '../lib/kube-tools.js';

const CHART = path.join(repoRoot, 'deploy/helm/zerohold');
const NAMESPACE = 'zerohold';
const NAME = 'zerohold-agent';

let server: TestApiServer;
let kc: KubeConfig;
let dir: string;
let kubeconfig: string;

before(async () => {
  server = await startApiServer({ namespaces: [NAMESPACE] });
  kc = kubeConfigFor(server.url);
  dir = mkdtempSync(path.join(tmpdir(), 'zh-helm-install-'));
  kubeconfig = path.join(dir, 'kubeconfig');
  writeFileSync(kubeconfig, kc.exportConfig());
});

after(async () => {
  await server?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function helmCluster(args: string[]): Promise<string> {
  return helm([...args, '--kubeconfig', kubeconfig, '--namespace', NAMESPACE]);
}

const APPLY_FLAGS = ['--server-side=false', '--disable-openapi-validation'];

interface Release {
  name: string;
  revision: string;
  status: string;
}

async function releases(): Promise<Release[]> {
  return JSON.parse(await helmCluster(['list', '--deployed', '--failed', '--pending', '--output', 'json'])) as Release[];
}

test('install creates the chart\'s objects', async () => {
  await helmCluster(['install', 'zerohold', CHART, ...APPLY_FLAGS]);

  const core = kc.makeApiClient(CoreV1Api);
  const rbac = kc.makeApiClient(RbacAuthorizationV1Api);
  const daemonSet = await kc.makeApiClient(AppsV1Api).readNamespacedDaemonSet({ name: NAME, namespace: NAMESPACE });
  assert.equal(daemonSet.spec?.template.spec?.serviceAccountName, NAME);
  assert.equal(daemonSet.spec?.template.spec?.hostNetwork, true);
  const configMap = await core.readNamespacedConfigMap({ name: NAME, namespace: NAMESPACE });
  assert.equal((parseYaml(configMap.data?.['agent.yaml'] ?? '') as { mode?: string }).mode, 'chained');
  await core.readNamespacedServiceAccount({ name: NAME, namespace: NAMESPACE });
  await rbac.readClusterRole({ name: NAME });
  await rbac.readClusterRoleBinding({ name: NAME });
  await rbac.readNamespacedRole({ name: NAME, namespace: NAMESPACE });
  await rbac.readNamespacedRoleBinding({ name: NAME, namespace: NAMESPACE });
  await kc.makeApiClient(ApiextensionsV1Api).readCustomResourceDefinition({ name: 'scaletozeros.zerohold.dev' });

  // Every object that the chart renders, and nothing else of its kinds.
  const rendered = parseAllYaml(await helm(['template', 'zerohold', CHART, '--namespace', NAMESPACE]));
  const stored = [
    ...(await core.listNamespacedConfigMap({ namespace: NAMESPACE })).items.map((o) => `ConfigMap/${o.metadata?.name}`),
    ...(await core.listNamespacedServiceAccount({ namespace: NAMESPACE })).items.map((o) => `ServiceAccount/${o.metadata?.name}`),
    ...(await rbac.listClusterRole()).items.map((o) => `ClusterRole/${o.metadata?.name}`),
    ...(await rbac.listClusterRoleBinding()).items.map((o) => `ClusterRoleBinding/${o.metadata?.name}`),
    ...(await rbac.listNamespacedRole({ namespace: NAMESPACE })).items.map((o) => `Role/${o.metadata?.name}`),
    ...(await rbac.listNamespacedRoleBinding({ namespace: NAMESPACE })).items.map((o) => `RoleBinding/${o.metadata?.name}`),
    ...(await kc.makeApiClient(AppsV1Api).listNamespacedDaemonSet({ namespace: NAMESPACE })).items.map((o) => `DaemonSet/${o.metadata?.name}`),
  ];
  assert.deepEqual(stored.sort(), rendered.map((o) => `${o.kind}/${o.metadata.name}`).sort());

  assert.deepEqual(
    (await releases()).map(({ name, revision, status }) => ({ name, revision, status })),
    [{ name: 'zerohold', revision: '1', status: 'deployed' }],
  );
  const records = await core.listNamespacedSecret({ namespace: NAMESPACE, labelSelector: 'owner=helm,name=zerohold' });
  assert.deepEqual(
    records.items.map((s) => s.type),
    ['helm.sh/release.v1'],
  );
});

test('upgrade patches the DaemonSet', async () => {
  const apps = kc.makeApiClient(AppsV1Api);
  const before = await apps.readNamespacedDaemonSet({ name: NAME, namespace: NAMESPACE });

  await helmCluster(['upgrade', 'zerohold', CHART, ...APPLY_FLAGS, '--set', 'logLevel=debug']);

  const after = await apps.readNamespacedDaemonSet({ name: NAME, namespace: NAMESPACE });
  const logLevel = (daemonSet: typeof after) => daemonSet.spec?.template.spec?.containers[0]?.env?.find((e) => e.name === 'ZEROHOLD_LOG_LEVEL')?.value;
  assert.equal(logLevel(after), 'debug');
  assert.notEqual(logLevel(before), 'debug');
  assert.equal(after.metadata?.generation, (before.metadata?.generation ?? 0) + 1);
  assert.equal(after.metadata?.uid, before.metadata?.uid, 'patched in place, not replaced');
  assert.deepEqual(
    (await releases()).map(({ revision, status }) => ({ revision, status })),
    [{ revision: '2', status: 'deployed' }],
  );
});

test('uninstall keeps only the CRD', async () => {
  await helmCluster(['uninstall', 'zerohold']);

  const core = kc.makeApiClient(CoreV1Api);
  assert.deepEqual((await kc.makeApiClient(AppsV1Api).listNamespacedDaemonSet({ namespace: NAMESPACE })).items, []);
  assert.deepEqual((await core.listNamespacedConfigMap({ namespace: NAMESPACE })).items, []);
  assert.deepEqual((await kc.makeApiClient(RbacAuthorizationV1Api).listClusterRole()).items, []);
  assert.deepEqual((await core.listNamespacedSecret({ namespace: NAMESPACE })).items, [], 'the release records are gone');
  assert.deepEqual(await releases(), []);
  // Helm installs the CRDs of crds/ but never deletes them, so that the
  // ScaleToZero objects survive.
  await kc.makeApiClient(ApiextensionsV1Api).readCustomResourceDefinition({ name: 'scaletozeros.zerohold.dev' });
});

function parseAllYaml(text: string): { kind: string; metadata: { name: string } }[] {
  return text
    .split(/^---$/m)
    .map((document) => parseYaml(document) as { kind: string; metadata: { name: string } } | null)
    .filter((object): object is { kind: string; metadata: { name: string } } => object !== null && typeof object === 'object' && 'kind' in object);
}
