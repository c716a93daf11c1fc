// Server-side defaults for the built-in kinds, a subset of the defaulting
// functions in k8s.io/kubernetes/pkg/apis/*/v1/defaults.go. Clients read
// these fields back (Service clusterIP, Deployment replicas), so objects
// served here need them even when the request omitted them.

import { isPlainObject, type KubeObject } from './objects.js';
import type { DefaultingContext } from './resource-type.js';
import { assignClusterIps } from './service-cluster-ips.js';

type Fields = Record<string, unknown>;

function child(parent: Fields, key: string): Fields {
  if (!isPlainObject(parent[key])) parent[key] = {};
  return parent[key] as Fields;
}

function setDefault(object: Fields, key: string, value: unknown): void {
  if (object[key] === undefined || object[key] === null) object[key] = value;
}

// Defaults a PodSpec in place, shared by Pods and workload templates.
// NOTE: only the fields that controllers and agents commonly read are set.
export function defaultPodSpec(spec: Fields): void {
  setDefault(spec, 'restartPolicy', 'Always');
  setDefault(spec, 'terminationGracePeriodSeconds', 30);
  setDefault(spec, 'dnsPolicy', 'ClusterFirst');
  setDefault(spec, 'schedulerName', 'default-scheduler');
  setDefault(spec, 'securityContext', {});

  for (const listName of ['containers', 'initContainers']) {
    const containers = spec[listName];
    if (!Array.isArray(containers)) continue;
    for (const container of containers) {
      if (!isPlainObject(container)) continue;
      setDefault(container, 'terminationMessagePath', '/dev/termination-log');
      setDefault(container, 'terminationMessagePolicy', 'File');
      setDefault(container, 'imagePullPolicy', imagePullPolicyFor(container.image));
      for (const port of Array.isArray(container.ports) ? container.ports : []) {
        if (isPlainObject(port)) setDefault(port, 'protocol', 'TCP');
      }
    }
  }
}

// Images without a tag or with ":latest" default to Always, others to IfNotPresent.
function imagePullPolicyFor(image: unknown): string {
  if (typeof image !== 'string') return 'IfNotPresent';
  const lastPart = image.split('/').pop()!;
  if (lastPart.includes('@')) return 'IfNotPresent';
  const tag = lastPart.includes(':') ? lastPart.split(':').pop() : undefined;
  return tag === undefined || tag === 'latest' ? 'Always' : 'IfNotPresent';
}

function defaultTemplate(spec: Fields): void {
  const template = spec.template;
  if (isPlainObject(template) && isPlainObject(template.spec)) defaultPodSpec(template.spec);
}

export function defaultDeployment(object: KubeObject): void {
  const spec = child(object, 'spec');
  setDefault(spec, 'replicas', 1);
  setDefault(spec, 'revisionHistoryLimit', 10);
  setDefault(spec, 'progressDeadlineSeconds', 600);

  const strategy = child(spec, 'strategy');
  setDefault(strategy, 'type', 'RollingUpdate');
  if (strategy.type === 'RollingUpdate') {
    const rollingUpdate = child(strategy, 'rollingUpdate');
    setDefault(rollingUpdate, 'maxUnavailable', '25%');
    setDefault(rollingUpdate, 'maxSurge', '25%');
  }

  defaultTemplate(spec);
}

export function defaultDaemonSet(object: KubeObject): void {
  const spec = child(object, 'spec');
  setDefault(spec, 'revisionHistoryLimit', 10);

  const updateStrategy = child(spec, 'updateStrategy');
  setDefault(updateStrategy, 'type', 'RollingUpdate');
  if (updateStrategy.type === 'RollingUpdate') {
    const rollingUpdate = child(updateStrategy, 'rollingUpdate');
    setDefault(rollingUpdate, 'maxUnavailable', 1);
    setDefault(rollingUpdate, 'maxSurge', 0);
  }

  defaultTemplate(spec);
}

// Secrets without a type, or with an empty one, are Opaque.
export function defaultSecret(object: KubeObject): void {
  if (!object.type) object.type = 'Opaque';
}

export function defaultStatefulSet(object: KubeObject): void {
  const spec = child(object, 'spec');
  setDefault(spec, 'replicas', 1);
  setDefault(spec, 'podManagementPolicy', 'OrderedReady');
  setDefault(spec, 'revisionHistoryLimit', 10);
  setDefault(spec, 'persistentVolumeClaimRetentionPolicy', { whenDeleted: 'Retain', whenScaled: 'Retain' });

  const updateStrategy = child(spec, 'updateStrategy');
  setDefault(updateStrategy, 'type', 'RollingUpdate');
  if (updateStrategy.type === 'RollingUpdate') setDefault(child(updateStrategy, 'rollingUpdate'), 'partition', 0);

  defaultTemplate(spec);

  // replicas and availableReplicas are not omitempty in StatefulSetStatus,
  // so a decoded status always has them.
  if (isPlainObject(object.status)) {
    setDefault(object.status, 'replicas', 0);
    setDefault(object.status, 'availableReplicas', 0);
  }
}

export function defaultPod(object: KubeObject): void {
  defaultPodSpec(child(object, 'spec'));
}

// Pods start Pending. NOTE: qosClass is BestEffort or Burstable only; the
// Guaranteed rule (limits equal to requests everywhere) is not modelled.
export function initialPodStatus(object: KubeObject): unknown {
  const spec = isPlainObject(object.spec) ? object.spec : {};
  const containers = Array.isArray(spec.containers) ? spec.containers : [];
  const hasResources = containers.some(
    (container) => isPlainObject(container) && isPlainObject(container.resources) && Object.keys(container.resources).length > 0,
  );
  return { phase: 'Pending', qosClass: hasResources ? 'Burstable' : 'BestEffort' };
}

// Defaults a Service and allocates its ClusterIPs, one per IP family.
export function defaultService(object: KubeObject, context: DefaultingContext, old?: KubeObject): void {
  const spec = child(object, 'spec');
  setDefault(spec, 'type', 'ClusterIP');
  setDefault(spec, 'sessionAffinity', 'None');
  for (const port of Array.isArray(spec.ports) ? spec.ports : []) {
    if (!isPlainObject(port)) continue;
    setDefault(port, 'protocol', 'TCP');
    setDefault(port, 'targetPort', port.port);
  }

  const oldSpec = old && isPlainObject(old.spec) ? old.spec : undefined;
  assignClusterIps(spec, oldSpec, context, object.metadata.name ?? '');
  if (spec.type !== 'ExternalName') setDefault(spec, 'internalTrafficPolicy', 'Cluster');
}

export function defaultNamespace(object: KubeObject): void {
  setDefault(child(object, 'spec'), 'finalizers', ['kubernetes']);
  // Every namespace carries its own name as a label since Kubernetes 1.21.
  object.metadata.labels = { ...object.metadata.labels, 'kubernetes.io/metadata.name': object.metadata.name! };
}

// The NodeSystemInfo fields, which Go encodes even when empty.
const NODE_INFO_FIELDS = [
  'machineID',
  'systemUUID',
  'bootID',
  'kernelVersion',
  'osImage',
  'containerRuntimeVersion',
  'kubeletVersion',
  'kubeProxyVersion',
  'operatingSystem',
  'architecture',
];

// Defaults a Node. kube-apiserver decodes spec and status into Go structs
// and encodes them back, so a Node always has both, status.nodeInfo with
// empty strings and status.daemonEndpoints.kubeletEndpoint.Port 0.
// Allocatable defaults to a copy of capacity, as in SetDefaults_NodeStatus.
export function defaultNode(object: KubeObject): void {
  child(object, 'spec');
  const status = child(object, 'status');
  if (status.allocatable === undefined && isPlainObject(status.capacity)) status.allocatable = { ...status.capacity };

  setDefault(child(child(status, 'daemonEndpoints'), 'kubeletEndpoint'), 'Port', 0);
  const nodeInfo = child(status, 'nodeInfo');
  for (const field of NODE_INFO_FIELDS) setDefault(nodeInfo, field, '');
}

const MICRO_TIME = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z$/;

// Rewrites a metav1.MicroTime in kube-apiserver's form, six fraction digits
// in UTC. Values that do not parse are left for validation to reject.
export function formatMicroTime(value: unknown): unknown {
  if (typeof value !== 'string') return value;
  const utc = MICRO_TIME.exec(value);
  if (utc) return `${utc[1]}.${(utc[2] ?? '').padEnd(6, '0').slice(0, 6)}Z`;

  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return value;
  return date.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

export function defaultLease(object: KubeObject): void {
  const spec = isPlainObject(object.spec) ? object.spec : undefined;
  if (!spec) return;
  for (const field of ['acquireTime', 'renewTime']) {
    if (spec[field] !== undefined) spec[field] = formatMicroTime(spec[field]);
  }
}
