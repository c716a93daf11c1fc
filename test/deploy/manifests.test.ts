// The plain manifests in deploy/kubernetes and deploy/crds, and the Cilium
// Helm values in deploy/cilium-values.yaml: every object against its
// upstream schema, the agent's RBAC against the calls it makes, the
// DaemonSet's privileges, the ConfigMap against the agent's own validation.

import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

import { Container } from 'kubernetes-models/v1/Container';
import { Volume } from 'kubernetes-models/v1/Volume';
import { VolumeMount } from 'kubernetes-models/v1/VolumeMount';
import { parse as parseYaml, parseAllDocuments } from 'yaml';

import { validateConfig } from '../../src/agent/config.js';
import { repoRoot } from '../../src/paths.js';
import { crdCauses } from '../apiserver/kind-rules.js';
import type { KubeObject } from '../apiserver/objects.js';
import { metadataCauses, type ModelClass, schemaCauses } from '../apiserver/validation.js';
import { kubectl } from '../lib/kube-tools.js';
import { type ManifestObject, MODELS, objectName, parseObjects } from './manifest-objects.js';

const KUBERNETES_DIR = path.join(repoRoot, 'deploy/kubernetes');
const CRDS_DIR = path.join(repoRoot, 'deploy/crds');
const MONITORING_DIR = path.join(repoRoot, 'deploy/monitoring');
const CILIUM_VALUES = path.join(repoRoot, 'deploy/cilium-values.yaml');
const NAMESPACE = 'zerohold-system';
const SERVICE_ACCOUNT = 'zerohold-agent';

// The calls of src/agent, as "group/resource" (core group: "/resource")
// and the verbs that RBAC checks for them. An informer needs list and
// watch, a client read needs get, and a replace needs update.
const CLUSTER_ACCESS: Record<string, string[]> = {
  // controller.ts: ScaleToZero informer. workload-status.ts: status patch.
  'zerohold.dev/scaletozeros': ['list', 'watch'],
  'zerohold.dev/scaletozeros/status': ['patch'],
  // controller.ts: Service informer. workload-status.ts: annotation patch,
  // read again after a conflict.
  '/services': ['get', 'list', 'watch', 'patch'],
  // controller.ts: target informers.
  'apps/deployments': ['list', 'watch'],
  'apps/statefulsets': ['list', 'watch'],
  // scaler.ts: getNamespacedCustomObjectScale, replaceNamespacedCustomObjectScale.
  'apps/deployments/scale': ['get', 'update'],
  'apps/statefulsets/scale': ['get', 'update'],
  // autoscalers.ts: HPA and KEDA ScaledObject informers.
  'autoscaling/horizontalpodautoscalers': ['list', 'watch'],
  'keda.sh/scaledobjects': ['list', 'watch'],
  // endpoint-readiness.ts: EndpointSlice informer.
  'discovery.k8s.io/endpointslices': ['list', 'watch'],
  // events.ts: createNamespacedEvent, patchNamespacedEvent.
  '/events': ['create', 'patch'],
  // main.ts: readNode.
  '/nodes': ['get'],
};

// leader.ts and node-reports.ts, in the agent's namespace only.
const NAMESPACE_ACCESS: Record<string, string[]> = {
  'coordination.k8s.io/leases': ['create', 'get', 'list', 'update', 'watch'],
};

// Key paths of the cilium chart v1.18.6 that deploy/cilium-values.yaml may
// set, each checked by hand against install/kubernetes/cilium/values.yaml,
// values.schema.json and the chart's templates in a checkout of v1.18.6
// (commit 95896696119f). Arrays are leaves: their items are Kubernetes
// objects, checked with the models.
const CILIUM_1_18_6_KEYS = new Set([
  'extraInitContainers',
  'extraVolumes',
  'extraVolumeMounts',
  'kubeProxyReplacement',
  'socketLB.enabled',
  'socketLB.hostNamespaceOnly',
  'serviceNoBackendResponse',
  'hubble.enabled',
  'hubble.socketPath',
  'hubble.relay.enabled',
  'loadBalancer.acceleration',
  'k8sServiceHost',
  'k8sServicePort',
]);

// The bpf directory that the Cilium v1.18.6 agent compiles its programs
// from (pkg/defaults: LibraryPath "/var/lib/cilium", BpfDir "bpf").
const CILIUM_BPF_DIR = '/var/lib/cilium/bpf';

interface Document {
  file: string;
  object: ManifestObject;
}

interface PolicyRule {
  apiGroups?: string[];
  resources?: string[];
  verbs: string[];
  resourceNames?: string[];
  nonResourceURLs?: string[];
}

interface ContainerSpec {
  name: string;
  args?: string[];
  env?: { name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string } } }[];
  ports?: { name?: string; containerPort: number }[];
  startupProbe?: { httpGet?: { path: string; port: string | number } };
  livenessProbe?: { httpGet?: { path: string; port: string | number } };
  securityContext?: {
    privileged?: boolean;
    readOnlyRootFilesystem?: boolean;
    capabilities?: { add?: string[]; drop?: string[] };
  };
  volumeMounts?: { name: string; mountPath: string; mountPropagation?: string }[];
}

interface PodSpec {
  hostNetwork?: boolean;
  priorityClassName?: string;
  serviceAccountName?: string;
  tolerations?: { operator?: string; key?: string }[];
  containers: ContainerSpec[];
  initContainers?: ContainerSpec[];
  volumes?: { name: string; hostPath?: { path: string }; configMap?: { name: string } }[];
}

function yamlFiles(dir: string): string[] {
  return readdirSync(dir)
    .filter((name) => name.endsWith('.yaml') && name !== 'kustomization.yaml')
    .sort();
}

function readDocuments(dir: string): Document[] {
  const documents: Document[] = [];
  for (const file of yamlFiles(dir)) {
    for (const document of parseAllDocuments(readFileSync(path.join(dir, file), 'utf8'))) {
      assert.equal(document.errors.length, 0, `${file}: ${document.errors.map((e) => e.message).join('; ')}`);
      documents.push({ file: path.join(path.basename(dir), file), object: document.toJS() as ManifestObject });
    }
  }
  return documents;
}

const documents = [...readDocuments(KUBERNETES_DIR), ...readDocuments(CRDS_DIR)];

function findObject(kind: string): ManifestObject {
  const found = documents.filter((document) => document.object.kind === kind);
  assert.equal(found.length, 1, `expected one ${kind} in deploy/, got ${found.length}`);
  return found[0]!.object;
}

function rulesOf(kind: string): PolicyRule[] {
  return findObject(kind).rules as PolicyRule[];
}

// Flattens RBAC rules to "group/resource" -> sorted verbs.
function accessOf(rules: PolicyRule[]): Record<string, string[]> {
  const access: Record<string, Set<string>> = {};
  for (const rule of rules) {
    for (const group of rule.apiGroups ?? []) {
      for (const resource of rule.resources ?? []) {
        const key = `${group}/${resource}`;
        access[key] ??= new Set();
        for (const verb of rule.verbs) access[key].add(verb);
      }
    }
  }
  return Object.fromEntries(Object.entries(access).map(([key, verbs]) => [key, [...verbs].sort()]));
}

function sortedTable(table: Record<string, string[]>): Record<string, string[]> {
  return Object.fromEntries(Object.entries(table).map(([key, verbs]) => [key, [...verbs].sort()]));
}

function podSpec(): PodSpec {
  const daemonSet = findObject('DaemonSet') as { spec?: { template?: { spec?: PodSpec } } };
  return daemonSet.spec!.template!.spec!;
}

function agentContainer(): ContainerSpec {
  const containers = podSpec().containers;
  assert.equal(containers.length, 1);
  return containers[0]!;
}

function agentConfigText(): string {
  const configMap = findObject('ConfigMap') as { data?: Record<string, string> };
  return configMap.data!['agent.yaml']!;
}

// Leaf key paths of a values document. Arrays count as leaves.
function keyPaths(value: unknown, prefix = ''): string[] {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return [prefix];
  return Object.entries(value).flatMap(([key, child]) => keyPaths(child, prefix ? `${prefix}.${key}` : key));
}

function readCiliumValues(): Record<string, unknown> {
  return parseYaml(readFileSync(CILIUM_VALUES, 'utf8')) as Record<string, unknown>;
}

test('manifests have known kinds', () => {
  for (const { file, object } of documents) {
    assert.ok(MODELS[`${object.apiVersion}/${object.kind}`], `${file}: no schema for ${object.apiVersion} ${object.kind}`);
  }
});

test('manifests match upstream schemas', () => {
  for (const { file, object } of documents) {
    const model = MODELS[`${object.apiVersion}/${object.kind}`]!;
    const version = object.apiVersion.split('/').pop()!;
    assert.deepEqual(schemaCauses(model, object, object.kind, version), [], `${file}: ${object.kind} ${object.metadata.name}`);
  }
});

test('manifests have valid metadata', () => {
  for (const { file, object } of documents) {
    const nameRule = object.kind === 'Namespace' ? 'dns1123Label' : 'dns1123Subdomain';
    assert.deepEqual(metadataCauses(object, nameRule), [], `${file}: ${object.kind} ${object.metadata.name}`);
  }
});

test('manifests name the agent namespace', () => {
  const clusterScoped = new Set(['Namespace', 'ClusterRole', 'ClusterRoleBinding', 'CustomResourceDefinition']);
  for (const { file, object } of documents) {
    const expected = clusterScoped.has(object.kind) ? undefined : NAMESPACE;
    assert.equal(object.metadata.namespace, expected, `${file}: ${object.kind} ${object.metadata.name}`);
  }
});

test('crd passes apiserver rules', () => {
  assert.deepEqual(crdCauses(findObject('CustomResourceDefinition')), []);
});

test('clusterrole grants agent calls exactly', () => {
  const rules = rulesOf('ClusterRole');

  assert.deepEqual(accessOf(rules), sortedTable(CLUSTER_ACCESS));
});

test('role grants lease calls exactly', () => {
  const rules = rulesOf('Role');

  assert.deepEqual(accessOf(rules), sortedTable(NAMESPACE_ACCESS));
});

test('rbac rules have no wildcards', () => {
  for (const kind of ['ClusterRole', 'Role']) {
    for (const rule of rulesOf(kind)) {
      const values = [...(rule.apiGroups ?? []), ...(rule.resources ?? []), ...rule.verbs];
      assert.ok(!values.some((value) => value.includes('*')), `${kind} rule ${JSON.stringify(rule)} has a wildcard`);
      assert.equal(rule.nonResourceURLs, undefined, `${kind} rule ${JSON.stringify(rule)} grants URLs`);
    }
  }
});

test('bindings point at agent account', () => {
  for (const [bindingKind, roleKind] of [['ClusterRoleBinding', 'ClusterRole'], ['RoleBinding', 'Role']] as const) {
    const binding = findObject(bindingKind);
    const roleRef = binding.roleRef as { kind: string; name: string };

    assert.equal(roleRef.kind, roleKind);
    assert.equal(roleRef.name, findObject(roleKind).metadata.name);
    assert.deepEqual(binding.subjects, [{ kind: 'ServiceAccount', name: SERVICE_ACCOUNT, namespace: NAMESPACE }]);
  }
  assert.equal(podSpec().serviceAccountName, SERVICE_ACCOUNT);
});

test('daemonset has no privileged container', () => {
  const spec = podSpec();
  for (const container of [...spec.containers, ...(spec.initContainers ?? [])]) {
    assert.notEqual(container.securityContext?.privileged, true, `container ${container.name} is privileged`);
  }
});

test('daemonset adds listed capabilities only', () => {
  const capabilities = agentContainer().securityContext?.capabilities;

  assert.deepEqual(capabilities?.drop, ['ALL']);
  assert.deepEqual([...(capabilities?.add ?? [])].sort(), ['BPF', 'NET_ADMIN', 'NET_RAW', 'PERFMON']);
});

test('daemonset root filesystem is read-only', () => {
  assert.equal(agentContainer().securityContext?.readOnlyRootFilesystem, true);
});

// kube-apiserver rejects Bidirectional propagation outside privileged
// containers, which the kubernetes-models schema does not express.
test('daemonset mounts avoid bidirectional propagation', () => {
  for (const mount of agentContainer().volumeMounts ?? []) {
    assert.notEqual(mount.mountPropagation, 'Bidirectional', `volume mount ${mount.name}`);
  }
});

test('daemonset runs on every node', () => {
  const spec = podSpec();

  assert.equal(spec.hostNetwork, true);
  assert.equal(spec.priorityClassName, 'system-node-critical');
  assert.ok(spec.tolerations?.some((t) => t.operator === 'Exists' && t.key === undefined), 'no toleration for every taint');
});

test('daemonset sets node name', () => {
  const nodeName = agentContainer().env?.find((variable) => variable.name === 'NODE_NAME');

  assert.equal(nodeName?.valueFrom?.fieldRef?.fieldPath, 'spec.nodeName');
});

test('daemonset mounts host paths', () => {
  const spec = podSpec();
  const hostPaths = new Map(spec.volumes?.filter((v) => v.hostPath).map((v) => [v.name, v.hostPath!.path]));
  const mounts = new Map(agentContainer().volumeMounts?.map((m) => [m.mountPath, m.name]));

  for (const dir of ['/sys/fs/bpf', '/var/run/cilium', '/run/zerohold']) {
    assert.equal(hostPaths.get(mounts.get(dir) ?? ''), dir, `host path ${dir} is not mounted at ${dir}`);
  }
});

test('configmap passes agent validation', () => {
  const config = validateConfig(parseYaml(agentConfigText()), 'deploy/kubernetes/configmap.yaml');

  assert.equal(config.mode, 'chained');
  assert.equal(config.kubernetes.namespace, NAMESPACE);
});

test('configmap paths lie in mounts', () => {
  const config = validateConfig(parseYaml(agentConfigText()));
  const mountPaths = (agentContainer().volumeMounts ?? []).map((m) => m.mountPath);
  const files = [
    config.bpf.pinDir,
    config.chained.hostPinDir,
    config.cilium.bpfPinDir,
    config.cilium.apiSocket,
    config.hubble.socket,
    config.hubble.observerSocket,
    config.api.socket,
  ];

  for (const file of files) {
    assert.ok(mountPaths.some((dir) => file.startsWith(`${dir}/`)), `${file} is outside every volume mount`);
  }
});

test('daemonset reads configmap', () => {
  const spec = podSpec();
  const container = agentContainer();
  const configVolume = spec.volumes?.find((v) => v.configMap?.name === findObject('ConfigMap').metadata.name);
  const mount = container.volumeMounts?.find((m) => m.name === configVolume?.name);

  assert.equal(mount?.mountPath, '/etc/zerohold');
  assert.deepEqual(container.args, ['--config', '/etc/zerohold/agent.yaml']);
});

test('metrics port matches configmap', () => {
  // validateConfig fills in the default port when agent.yaml sets none.
  const config = validateConfig(parseYaml(agentConfigText()));
  const port = agentContainer().ports?.find((p) => p.name === 'metrics');

  assert.equal(port?.containerPort, config.metrics.port, 'containerPort "metrics" differs from metrics.port in agent.yaml');
});

test('probes use metrics port', () => {
  const config = validateConfig(parseYaml(agentConfigText()));
  const container = agentContainer();
  const probes = { startupProbe: container.startupProbe?.httpGet, livenessProbe: container.livenessProbe?.httpGet };

  for (const [name, probe] of Object.entries(probes)) {
    assert.ok(probe, `${name} has no httpGet`);
    assert.equal(probe.path, '/metrics', `${name} path`);
    // A probe names a container port or gives its number.
    const port = typeof probe.port === 'number' ? probe.port : container.ports?.find((p) => p.name === probe.port)?.containerPort;
    assert.equal(port, config.metrics.port, `${name} port ${probe.port} differs from metrics.port in agent.yaml`);
  }
});

test('kustomization lists every manifest', () => {
  const kustomization = parseYaml(readFileSync(path.join(KUBERNETES_DIR, 'kustomization.yaml'), 'utf8')) as { resources: string[] };

  assert.deepEqual([...kustomization.resources].sort(), ['../crds', ...yamlFiles(KUBERNETES_DIR)].sort());
});

// kubectl's built-in kustomize, as `kubectl apply -k` runs it.
test('kustomization renders every manifest', async () => {
  const rendered = parseObjects(await kubectl(['kustomize', KUBERNETES_DIR]), 'kubectl kustomize deploy/kubernetes');
  const byName = new Map(rendered.map((object) => [objectName(object), object]));

  assert.deepEqual([...byName.keys()].sort(), documents.map((d) => objectName(d.object)).sort());
  for (const { file, object } of documents) {
    assert.deepEqual(byName.get(objectName(object)), object, `${file}: ${objectName(object)}`);
  }
});

test('monitoring kustomization renders', async () => {
  const rendered = parseObjects(await kubectl(['kustomize', MONITORING_DIR]), 'kubectl kustomize deploy/monitoring');
  const dashboard = rendered.find((object) => object.kind === 'ConfigMap') as { metadata: KubeObject['metadata']; data: Record<string, string> } | undefined;

  assert.deepEqual(rendered.map(objectName).sort(), [
    'ConfigMap zerohold-system/zerohold-grafana-dashboard',
    'PodMonitor zerohold-system/zerohold-agent',
    'PrometheusRule zerohold-system/zerohold',
  ]);
  assert.equal(dashboard?.metadata.labels?.grafana_dashboard, '1');
  assert.equal(dashboard?.data['zerohold.json'], readFileSync(path.join(MONITORING_DIR, 'grafana-dashboard.json'), 'utf8'));
});

test('crds kustomization lists every crd', () => {
  const kustomization = parseYaml(readFileSync(path.join(CRDS_DIR, 'kustomization.yaml'), 'utf8')) as { resources: string[] };

  assert.deepEqual([...kustomization.resources].sort(), yamlFiles(CRDS_DIR));
});

test('cilium values use known keys', () => {
  for (const key of keyPaths(readCiliumValues())) {
    assert.ok(CILIUM_1_18_6_KEYS.has(key), `${key} is not a key of the cilium chart v1.18.6 in this test's table`);
  }
});

test('cilium values enable zerohold settings', () => {
  const values = readCiliumValues() as { serviceNoBackendResponse?: string; hubble?: { enabled?: boolean; socketPath?: string } };
  const config = validateConfig(parseYaml(agentConfigText()));

  assert.equal(values.serviceNoBackendResponse, 'drop');
  assert.equal(values.hubble?.enabled, true);
  assert.equal(values.hubble?.socketPath, config.hubble.socket);
});

test('cilium values match upstream schemas', () => {
  const values = readCiliumValues() as Record<string, KubeObject[]>;
  const lists: [string, ModelClass][] = [
    ['extraInitContainers', Container],
    ['extraVolumes', Volume],
    ['extraVolumeMounts', VolumeMount],
  ];

  for (const [key, model] of lists) {
    for (const item of values[key] ?? []) {
      assert.deepEqual(schemaCauses(model, item, key, 'v1'), [], `${key}: ${JSON.stringify(item)}`);
    }
  }
});

test('cilium values mount patched bpf', () => {
  const values = readCiliumValues() as {
    extraInitContainers: { name: string; volumeMounts?: { name: string; mountPath: string }[] }[];
    extraVolumes: { name: string; emptyDir?: object }[];
    extraVolumeMounts: { name: string; mountPath: string }[];
  };
  const agentMount = values.extraVolumeMounts.find((m) => m.mountPath === CILIUM_BPF_DIR);
  const volume = values.extraVolumes.find((v) => v.name === agentMount?.name);
  const filled = values.extraInitContainers.some((c) => c.volumeMounts?.some((m) => m.name === volume?.name));

  assert.ok(agentMount, `no extraVolumeMounts entry at ${CILIUM_BPF_DIR}`);
  assert.ok(volume?.emptyDir, `volume ${agentMount?.name} is not an emptyDir in extraVolumes`);
  assert.ok(filled, `no init container writes volume ${volume?.name}`);
});
