// The Helm chart in deploy/helm/zerohold, rendered by helm: with the
// default values it must render the plain manifests of deploy/kubernetes,
// which manifests.test.ts checks in detail. Every rendered object must
// match its upstream schema, every agent.yaml must pass the agent's own
// validation, and bad values must fail the install with the value and
// the fix.

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';

import { parse as parseYaml, stringify } from 'yaml';

import { type AgentConfig, validateConfig } from '../../src/agent/config.js';
import { repoRoot } from '../../src/paths.js';
import { chainedModeCapabilities, daemonSetCapabilities } from '../lib/daemonset.js';
import { helm, kubectl, ToolError } from '../lib/kube-tools.js';
import { type ManifestObject, objectName, parseObjects, validationCauses } from './manifest-objects.js';

const CHART_DIR = path.join(repoRoot, 'deploy/helm/zerohold');
const MONITORING_DIR = path.join(repoRoot, 'deploy/monitoring');
const DEFAULT_NAMESPACE = 'zerohold-system';

// Labels that only the chart sets, and the annotation that rolls the pods
// on a configuration change.
const HELM_LABELS = ['app.kubernetes.io/instance', 'app.kubernetes.io/version', 'app.kubernetes.io/managed-by', 'helm.sh/chart'];
const CONFIG_CHECKSUM = 'checksum/config';

interface PodSpec {
  containers: {
    name: string;
    image: string;
    securityContext: { capabilities: { add: string[]; drop: string[] } };
    ports?: { name?: string; containerPort: number }[];
    volumeMounts?: { name: string; mountPath: string; readOnly?: boolean }[];
  }[];
  volumes?: { name: string; secret?: { secretName: string }; hostPath?: { path: string } }[];
}

const valuesDir = mkdtempSync(path.join(tmpdir(), 'zerohold-chart-'));
after(() => rmSync(valuesDir, { recursive: true, force: true }));
let valuesFiles = 0;

// Renders the chart with values over its defaults, CRDs included.
async function render(values: object = {}, namespace = DEFAULT_NAMESPACE): Promise<ManifestObject[]> {
  const file = path.join(valuesDir, `values-${valuesFiles++}.yaml`);
  writeFileSync(file, stringify(values));
  const output = await helm(['template', 'zerohold', CHART_DIR, '--namespace', namespace, '--include-crds', '--values', file]);
  return parseObjects(output, `helm template with ${JSON.stringify(values)}`);
}

// Renders values that must fail and returns helm's standard error.
async function renderError(values: object): Promise<string> {
  try {
    await render(values);
  } catch (err) {
    if (err instanceof ToolError) return err.stderr;
    throw err;
  }
  assert.fail(`helm template accepted ${JSON.stringify(values)}`);
}

function find(objects: ManifestObject[], kind: string, name?: string): ManifestObject {
  const found = objects.filter((object) => object.kind === kind && (name === undefined || object.metadata.name === name));
  assert.equal(found.length, 1, `expected one ${kind}${name ? ` ${name}` : ''}, got ${found.length}`);
  return found[0]!;
}

function podSpec(objects: ManifestObject[]): PodSpec {
  return (find(objects, 'DaemonSet') as unknown as { spec: { template: { spec: PodSpec } } }).spec.template.spec;
}

function agentConfig(objects: ManifestObject[]): AgentConfig {
  const configMap = find(objects, 'ConfigMap', 'zerohold-agent') as unknown as { data: Record<string, string> };
  return validateConfig(parseYaml(configMap.data['agent.yaml']!), 'the chart\'s agent.yaml');
}

function configChecksum(objects: ManifestObject[]): string {
  const daemonSet = find(objects, 'DaemonSet') as unknown as { spec: { template: { metadata: { annotations: Record<string, string> } } } };
  return daemonSet.spec.template.metadata.annotations[CONFIG_CHECKSUM]!;
}

// A copy without the chart's own labels and annotation, for comparison
// with the plain manifests.
function withoutHelmMetadata(object: ManifestObject): ManifestObject {
  const copy = structuredClone(object);
  const metadatas = [copy.metadata, (copy as { spec?: { template?: { metadata?: ManifestObject['metadata'] } } }).spec?.template?.metadata];
  for (const metadata of metadatas) {
    if (!metadata) continue;
    for (const label of HELM_LABELS) delete metadata.labels?.[label];
    delete metadata.annotations?.[CONFIG_CHECKSUM];
    if (metadata.annotations && Object.keys(metadata.annotations).length === 0) delete metadata.annotations;
  }
  return copy;
}

// Value sets for the schema and agent.yaml checks below: each mode, Relay
// with TLS, and the optional objects and pod settings.
const VARIANTS: Record<string, { values: object; namespace?: string }> = {
  defaults: { values: {} },
  signal: { values: { mode: 'signal' } },
  standalone: {
    values: { mode: 'standalone', interfaces: [{ name: 'eth0', hook: 'xdp' }, { name: 'veth+', hook: 'tc' }], config: { release: { kubeProxy: 'nftables' } } },
  },
  'relay with tls': {
    values: { hubbleRelay: { address: 'hubble-relay.kube-system.svc:443', tls: { secretName: 'hubble-relay-client-certs', serverName: 'ui.hubble-relay.cilium.io' } } },
  },
  'everything on': {
    namespace: 'platform-zerohold',
    values: {
      logLevel: 'debug',
      image: { repository: 'registry.example.com/zerohold-agent', tag: '0.1.1', pullPolicy: 'Always' },
      imagePullSecrets: [{ name: 'registry' }],
      metrics: { port: 9500, podMonitor: { enabled: true, labels: { release: 'kps' } }, prometheusRule: { enabled: true }, grafanaDashboard: { enabled: true } },
      nodeSelector: { 'kubernetes.io/os': 'linux' },
      podAnnotations: { team: 'platform' },
      podLabels: { tier: 'node' },
      extraVolumes: [{ name: 'kubeconfig', secret: { secretName: 'zerohold-kubeconfig' } }],
      extraVolumeMounts: [{ name: 'kubeconfig', mountPath: '/etc/zerohold-kubeconfig', readOnly: true }],
      config: { kubernetes: { kubeconfig: '/etc/zerohold-kubeconfig/config' }, shutdown: { handover: '60s' } },
    },
  },
};

test('chart passes helm lint', async () => {
  await helm(['lint', '--strict', CHART_DIR]);
  await helm(['lint', '--strict', CHART_DIR, '--set', 'mode=standalone', '--set', 'interfaces[0].name=eth0']);
});

// The CRD, the alerts and the dashboard are symbolic links into deploy/,
// so the archive must carry the files themselves.
test('packaged chart renders the same', async () => {
  const values = ['--set', 'metrics.podMonitor.enabled=true', '--set', 'metrics.prometheusRule.enabled=true', '--set', 'metrics.grafanaDashboard.enabled=true'];
  await helm(['package', CHART_DIR, '--destination', valuesDir]);
  const fromArchive = await helm(['template', 'zerohold', path.join(valuesDir, 'zerohold-0.1.0.tgz'), '--include-crds', ...values]);
  const fromDirectory = await helm(['template', 'zerohold', CHART_DIR, '--include-crds', ...values]);

  assert.match(fromArchive, /kind: CustomResourceDefinition/);
  assert.equal(fromArchive, fromDirectory);
});

// deploy/kubernetes sets chained mode in its ConfigMap, but its DaemonSet
// carries what standalone mode needs too, so that a ConfigMap switched to
// standalone works. The chart's DaemonSet follows the mode.
test('defaults render plain manifests', async () => {
  const chart = await render();
  const standalone = await render(VARIANTS.standalone!.values);
  const plain = parseObjects(await kubectl(['kustomize', path.join(repoRoot, 'deploy/kubernetes')]), 'kubectl kustomize deploy/kubernetes');
  // Helm does not create the release's namespace: `helm install
  // --create-namespace` does.
  const expected = plain.filter((object) => object.kind !== 'Namespace');
  const rendered = new Map(chart.map((object) => [objectName(object), object]));

  assert.deepEqual([...rendered.keys()].sort(), expected.map(objectName).sort());
  for (const object of expected) {
    const name = objectName(object);
    if (object.kind === 'ConfigMap') {
      const data = (o: ManifestObject) => (o as unknown as { data: Record<string, string> }).data['agent.yaml']!;
      assert.deepEqual(validateConfig(parseYaml(data(rendered.get(name)!))), validateConfig(parseYaml(data(object))), `${name}: agent.yaml`);
      continue;
    }
    if (object.kind === 'DaemonSet') {
      assert.deepEqual(withoutHelmMetadata(find(standalone, 'DaemonSet')), object, `${name} in standalone mode`);
      continue;
    }
    assert.deepEqual(withoutHelmMetadata(rendered.get(name)!), object, name);
  }
});

test('crd is the one in deploy/crds', async () => {
  const chart = await render();
  const plain = parseObjects(readFileSync(path.join(repoRoot, 'deploy/crds/scaletozero.yaml'), 'utf8'), 'deploy/crds/scaletozero.yaml');

  assert.deepEqual(find(chart, 'CustomResourceDefinition'), plain[0]);
});

for (const [name, { values, namespace }] of Object.entries(VARIANTS)) {
  test(`${name}: objects match schemas`, async () => {
    for (const object of await render(values, namespace)) {
      if (object.apiVersion === 'monitoring.coreos.com/v1') continue;
      assert.deepEqual(validationCauses(object), [], objectName(object));
    }
  });

  test(`${name}: agent.yaml passes validation`, async () => {
    const objects = await render(values, namespace);
    const config = agentConfig(objects);
    const spec = podSpec(objects);
    const container = spec.containers[0]!;
    const mountPaths = (container.volumeMounts ?? []).map((m) => m.mountPath);
    const files = [config.bpf.pinDir, config.hubble.observerSocket, config.api.socket];
    if (config.mode !== 'standalone') files.push(config.hubble.socket);
    if (config.mode === 'chained') files.push(config.chained.hostPinDir, config.cilium.bpfPinDir, config.cilium.apiSocket);

    assert.equal(config.mode, (values as { mode?: string }).mode ?? 'chained');
    assert.equal(config.kubernetes.namespace, namespace ?? DEFAULT_NAMESPACE);
    assert.equal(container.ports?.find((p) => p.name === 'metrics')?.containerPort, config.metrics.port);
    for (const file of files) {
      assert.ok(mountPaths.some((dir) => file.startsWith(`${dir}/`)), `${file} is outside every volume mount`);
    }
  });
}

test('capabilities follow the mode', async () => {
  const added = async (values: object) => podSpec(await render(values)).containers[0]!.securityContext.capabilities.add;

  assert.deepEqual(await added(VARIANTS.standalone!.values), daemonSetCapabilities());
  assert.deepEqual(await added({}), chainedModeCapabilities());
  assert.deepEqual(await added({ mode: 'signal' }), chainedModeCapabilities());
});

// iptables' legacy backend takes the lock, and only standalone mode reads
// iptables rules.
test('xtables lock only in standalone', async () => {
  const lockMounted = async (values: object) => {
    const spec = podSpec(await render(values));
    const volume = spec.volumes?.some((v) => v.hostPath?.path === '/run/xtables.lock') ?? false;
    const mount = spec.containers[0]!.volumeMounts?.some((m) => m.mountPath === '/run/xtables.lock') ?? false;
    assert.equal(volume, mount, `volume and mount disagree for ${JSON.stringify(values)}`);
    return mount;
  };

  assert.equal(await lockMounted(VARIANTS.standalone!.values), true);
  assert.equal(await lockMounted({}), false);
  assert.equal(await lockMounted({ mode: 'signal' }), false);
});

test('numeric image tag keeps digits', async () => {
  const image = podSpec(await render({ image: { repository: 'registry.example.com/zerohold-agent', tag: 20240101 } })).containers[0]!.image;

  assert.equal(image, 'registry.example.com/zerohold-agent:20240101');
});

test('ondelete strategy drops rolling update', async () => {
  const daemonSet = find(await render({ updateStrategy: { type: 'OnDelete' } }), 'DaemonSet') as unknown as { spec: { updateStrategy: object } };

  assert.deepEqual(daemonSet.spec.updateStrategy, { type: 'OnDelete' });
});

test('standalone config keeps interfaces', async () => {
  const config = agentConfig(await render(VARIANTS.standalone!.values));

  assert.deepEqual(
    config.interfaces.map((i) => [i.name, i.hook]),
    [
      ['eth0', 'xdp'],
      ['veth+', 'tc'],
    ],
  );
  assert.equal(config.release.kubeProxy, 'nftables');
});

test('config merges over chart fields', async () => {
  const config = agentConfig(await render(VARIANTS['everything on']!.values, 'platform-zerohold'));

  assert.equal(config.kubernetes.kubeconfig, '/etc/zerohold-kubeconfig/config');
  assert.equal(config.shutdown.handover, 60_000);
  assert.equal(config.cilium.apiSocket, '/var/run/cilium/cilium.sock');
  assert.equal(config.metrics.port, 9500);
});

test('relay tls mounts its secret', async () => {
  const objects = await render(VARIANTS['relay with tls']!.values);
  const spec = podSpec(objects);
  const volume = spec.volumes?.find((v) => v.secret?.secretName === 'hubble-relay-client-certs');
  const mount = spec.containers[0]!.volumeMounts?.find((m) => m.name === volume?.name);
  const relay = agentConfig(objects).hubble.relay;

  assert.ok(volume, 'no volume of the Secret');
  assert.equal(mount?.readOnly, true);
  assert.equal(relay?.address, 'hubble-relay.kube-system.svc:443');
  assert.equal(relay?.tls?.serverName, 'ui.hubble-relay.cilium.io');
  assert.equal(path.dirname(relay?.tls?.ca ?? ''), mount?.mountPath);
  assert.equal(relay?.tls?.cert, undefined, 'a client certificate without clientCertificate');
  assert.equal(relay?.tls?.key, undefined);
});

test('relay client certificate from secret', async () => {
  const values = { hubbleRelay: { address: 'hubble-relay.kube-system.svc:443', tls: { secretName: 'hubble-relay-client-certs', clientCertificate: true } } };
  const relay = agentConfig(await render(values)).hubble.relay;

  assert.equal(relay?.tls?.cert, '/etc/zerohold-relay-tls/tls.crt');
  assert.equal(relay?.tls?.key, '/etc/zerohold-relay-tls/tls.key');
});

test('release namespace reaches every object', async () => {
  const namespace = 'platform-zerohold';
  const objects = await render({}, namespace);
  const clusterScoped = new Set(['ClusterRole', 'ClusterRoleBinding', 'CustomResourceDefinition']);

  for (const object of objects) {
    assert.equal(object.metadata.namespace, clusterScoped.has(object.kind) ? undefined : namespace, objectName(object));
  }
  for (const kind of ['RoleBinding', 'ClusterRoleBinding']) {
    const subjects = (find(objects, kind) as unknown as { subjects: { namespace: string }[] }).subjects;
    assert.deepEqual(
      subjects.map((s) => s.namespace),
      [namespace],
      kind,
    );
  }
});

test('monitoring matches deploy/monitoring', async () => {
  const namespace = 'observability';
  const objects = await render({ metrics: { podMonitor: { enabled: true }, prometheusRule: { enabled: true }, grafanaDashboard: { enabled: true } } }, namespace);
  // The plain objects, moved to the release's namespace as the chart does.
  const plainText = (file: string) => readFileSync(path.join(MONITORING_DIR, file), 'utf8').replaceAll(DEFAULT_NAMESPACE, namespace);
  const podMonitor = parseYaml(plainText('podmonitor.yaml')) as ManifestObject;
  const rule = parseYaml(plainText('prometheusrule.yaml')) as ManifestObject & { spec: object };
  const dashboard = find(objects, 'ConfigMap', 'zerohold-grafana-dashboard') as unknown as ManifestObject & { data: Record<string, string> };

  assert.deepEqual(withoutHelmMetadata(find(objects, 'PodMonitor')), podMonitor);
  assert.deepEqual((find(objects, 'PrometheusRule') as unknown as { spec: object }).spec, rule.spec);
  assert.match(JSON.stringify(rule.spec), new RegExp(`job=\\\\"${namespace}/zerohold-agent\\\\"`));
  assert.deepEqual(JSON.parse(dashboard.data['zerohold.json']!), JSON.parse(plainText('grafana-dashboard.json')));
  assert.equal(dashboard.metadata.labels?.grafana_dashboard, '1');
});

test('monitoring is off by default', async () => {
  const kinds = (await render()).map((object) => object.kind);

  assert.ok(!kinds.includes('PodMonitor'));
  assert.ok(!kinds.includes('PrometheusRule'));
  assert.equal(kinds.filter((kind) => kind === 'ConfigMap').length, 1);
});

test('config change rolls pods', async () => {
  const before = configChecksum(await render());
  const after = configChecksum(await render({ config: { release: { checkListening: false } } }));

  assert.match(before, /^[0-9a-f]{64}$/);
  assert.notEqual(after, before);
});

const BAD_VALUES: [string, object, RegExp][] = [
  ['unknown mode', { mode: 'proxy' }, /at '\/mode': value must be one of 'chained', 'signal', 'standalone'/],
  ['misspelled value', { mdoe: 'signal' }, /additional properties 'mdoe' not allowed/],
  ['metrics port 0', { metrics: { port: 0 } }, /at '\/metrics\/port': minimum: got 0, want 1/],
  ['unknown hook', { mode: 'standalone', interfaces: [{ name: 'eth0', hook: 'tcx' }] }, /at '\/interfaces\/0\/hook': value must be one of 'xdp', 'tc'/],
  ['long interface name', { mode: 'standalone', interfaces: [{ name: 'a-very-long-name0' }] }, /at '\/interfaces\/0\/name': maxLength: got 17, want 15/],
  ['standalone without interfaces', { mode: 'standalone' }, /mode standalone needs the value interfaces, .*--set interfaces\[0\]\.name=eth0/],
  ['interfaces outside standalone', { interfaces: [{ name: 'eth0' }] }, /interfaces is for mode standalone only, and mode is chained: remove interfaces, or set mode=standalone/],
  ['mode in config', { config: { mode: 'signal' } }, /config\.mode is set from the chart's value mode: set mode instead/],
  ['interfaces in config', { mode: 'standalone', interfaces: [{ name: 'eth0' }], config: { interfaces: [] } }, /config\.interfaces is set from the chart's value interfaces/],
  ['metrics port in config', { config: { metrics: { port: 9500 } } }, /config\.metrics\.port is set from the chart's value metrics\.port/],
  ['namespace in config', { config: { kubernetes: { namespace: 'other' } } }, /config\.kubernetes\.namespace is the release's namespace \(zerohold-system\)/],
  ['relay in config', { config: { hubble: { relay: { address: 'relay:80' } } } }, /config\.hubble\.relay is set from the chart's value hubbleRelay/],
  ['relay tls without address', { hubbleRelay: { tls: { secretName: 'certs' } } }, /hubbleRelay\.tls is set but hubbleRelay\.address is empty/],
  ['server name without secret', { hubbleRelay: { address: 'relay:443', tls: { serverName: 'relay' } } }, /hubbleRelay\.tls\.serverName and hubbleRelay\.tls\.clientCertificate need hubbleRelay\.tls\.secretName/],
  ['client certificate without secret', { hubbleRelay: { address: 'relay:443', tls: { clientCertificate: true } } }, /need hubbleRelay\.tls\.secretName/],
  ['relay address without port', { hubbleRelay: { address: 'hubble-relay.kube-system.svc' } }, /at '\/hubbleRelay\/address': '.*' does not match pattern/],
  ['relay in standalone without activity', { mode: 'standalone', interfaces: [{ name: 'eth0' }], hubbleRelay: { address: 'relay:80' } }, /hubbleRelay\.address is read in mode standalone only with config\.hubble\.activity: true/],
  ['null config section', { config: { hubble: null } }, /at '\/config\/hubble'/],
  ['scalar config section', { config: { metrics: 5 } }, /config\.metrics must be a mapping of agent\.yaml fields, got 5: remove config\.metrics/],
  ['node name in config', { config: { nodeName: 'node-1' } }, /config\.nodeName would give the agent of every node the same name/],
  ['netns in config', { config: { netns: '/run/netns/node1' } }, /config\.netns is for tests and the demo/],
  ['kube-proxy mode in chained', { config: { release: { kubeProxy: 'nftables' } } }, /config\.release\.kubeProxy nftables is for mode standalone only, and mode is chained/],
  ['handover in signal', { mode: 'signal', config: { shutdown: { handover: '60s' } } }, /config\.shutdown\.handover 60s is not used in mode signal/],
  ['interface listed twice', { mode: 'standalone', interfaces: [{ name: 'eth0' }, { name: 'eth0', hook: 'tc' }] }, /interfaces lists eth0 twice: keep one entry/],
  ['plus inside interface name', { mode: 'standalone', interfaces: [{ name: 've+th' }] }, /at '\/interfaces\/0\/name': 've\+th' does not match pattern/],
  ['recreate strategy', { updateStrategy: { type: 'Recreate' } }, /at '\/updateStrategy\/type': value must be one of 'RollingUpdate', 'OnDelete'/],
  ['max surge', { updateStrategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1 } } }, /at '\/updateStrategy\/rollingUpdate\/maxSurge': value must be one of/],
  ['chart label in podLabels', { podLabels: { 'app.kubernetes.io/name': 'other' } }, /podLabels\.app\.kubernetes\.io\/name is a label that the chart sets: remove it from podLabels/],
  ['checksum in podAnnotations', { podAnnotations: { 'checksum/config': 'x' } }, /podAnnotations\.checksum\/config is the chart's own annotation/],
];

// Zero durations in signal mode change nothing, so the agent accepts them.
test('signal accepts zero handover', async () => {
  for (const handover of ['0s', '0ms']) {
    assert.equal(agentConfig(await render({ mode: 'signal', config: { shutdown: { handover } } })).shutdown.handover, 0, handover);
  }
});

for (const [name, values, message] of BAD_VALUES) {
  test(`rejects ${name}`, async () => {
    assert.match(await renderError(values), message);
  });
}
