// The testbed's EndpointSlice controller: for every Service with a
// selector, EndpointSlices (discovery.k8s.io/v1) that list the Pods it
// selects, one slice per address family of the Service and per distinct
// set of resolved ports.
//
// Slice names are derived from the Service, family and ports, so a
// reconcile can tell which slice to update without generateName. Slices are
// created and updated before surplus ones are deleted, so a consumer can
// briefly see both the old and the new slice of a family. A Service
// whose Pods are all gone keeps one empty slice per family, as the
// Kubernetes controller keeps a placeholder slice.
//
// Endpoint conditions follow Kubernetes 1.26 and later: ready is the Pod's
// Ready condition and false while the Pod terminates, serving is the Ready
// condition regardless of termination, and terminating is whether the Pod
// has a deletionTimestamp.

import { createHash } from 'node:crypto';

import {
  ADD,
  ApiException,
  CoreV1Api,
  DELETE,
  DiscoveryV1Api,
  type Informer,
  type KubeConfig,
  makeInformer,
  type ObjectCache,
  UPDATE,
  type V1Endpoint,
  type V1EndpointSlice,
  type V1Pod,
  type V1Service,
  type V1ServicePort,
  type DiscoveryV1EndpointPort,
} from '@kubernetes/client-node';
import { pino, type Logger } from 'pino';

import { restartOnError } from '../../src/agent/informers.js';
import { EndpointSliceTracker } from './endpointslice-tracker.js';
import { WorkQueue } from './work-queue.js';
import { isPodReady } from './workload-controller.js';

export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';
const MANAGED_BY_LABEL = 'endpointslice.kubernetes.io/managed-by';
// The value of Kubernetes' own controller, so consumers that filter on it
// treat these slices as they would in a real cluster.
const MANAGED_BY = 'endpointslice-controller.k8s.io';

type Family = 'IPv4' | 'IPv6';

export class EndpointSliceController {
  private readonly core: CoreV1Api;
  private readonly discovery: DiscoveryV1Api;
  private readonly services: Informer<V1Service> & ObjectCache<V1Service>;
  private readonly pods: Informer<V1Pod> & ObjectCache<V1Pod>;
  private readonly slices: Informer<V1EndpointSlice> & ObjectCache<V1EndpointSlice>;
  private readonly queue: WorkQueue;
  private readonly tracker = new EndpointSliceTracker();
  // Services whose reconcile found the slice cache behind this
  // controller's writes. The next slice event of the Service queues it.
  private readonly waitingForCache = new Set<string>();
  private readonly log: Logger;
  private stopped = false;

  constructor(kc: KubeConfig, options: { log?: Logger } = {}) {
    this.log = (options.log ?? pino({ level: 'silent' })).child({ component: 'endpointslice-controller' });
    this.core = kc.makeApiClient(CoreV1Api);
    this.discovery = kc.makeApiClient(DiscoveryV1Api);
    this.queue = new WorkQueue((key) => this.reconcile(key), this.log);

    this.services = makeInformer(kc, '/api/v1/services', () => this.core.listServiceForAllNamespaces());
    this.pods = makeInformer(kc, '/api/v1/pods', () => this.core.listPodForAllNamespaces());
    this.slices = makeInformer(
      kc,
      '/apis/discovery.k8s.io/v1/endpointslices',
      () => this.discovery.listEndpointSliceForAllNamespaces({ labelSelector: `${MANAGED_BY_LABEL}=${MANAGED_BY}` }),
      `${MANAGED_BY_LABEL}=${MANAGED_BY}`,
    );

    for (const event of [ADD, UPDATE, DELETE] as const) {
      this.services.on(event, (service) => this.queue.add(keyOf(service.metadata!.namespace!, service.metadata!.name!)));
      // Any Pod change may change the slices of any Service in its namespace.
      this.pods.on(event, (pod) => this.queueNamespace(pod.metadata!.namespace!));
      this.slices.on(event, (slice) => this.onSliceEvent(event, slice));
    }
    restartOnError(this.services, this.log, 'Service', () => this.stopped);
    restartOnError(this.pods, this.log, 'Pod', () => this.stopped);
    restartOnError(this.slices, this.log, 'EndpointSlice', () => this.stopped);
  }

  async start(): Promise<void> {
    this.stopped = false;
    await this.slices.start();
    await this.pods.start();
    await this.services.start();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.queue.stop();
    await Promise.all([this.services.stop(), this.pods.stop(), this.slices.stop()]);
  }

  idle(): Promise<void> {
    return this.queue.idle();
  }

  private queueNamespace(namespace: string): void {
    for (const service of this.services.list(namespace)) this.queue.add(keyOf(namespace, service.metadata!.name!));
  }

  // Own writes come back as events too. Those need no reconcile, which
  // would only read the Service's other slices before their own events
  // arrived.
  private onSliceEvent(event: string, slice: V1EndpointSlice): void {
    const service = slice.metadata?.labels?.[SERVICE_NAME_LABEL];
    if (!service) return;
    const key = keyOf(slice.metadata!.namespace!, service);

    if (event === DELETE) this.tracker.forget(key, slice);
    const waiting = this.waitingForCache.delete(key);
    if (waiting || event === DELETE || this.tracker.shouldSync(key, slice)) this.queue.add(key);
  }

  private async reconcile(key: string): Promise<void> {
    const [namespace, name] = key.split('/') as [string, string];
    const service = this.services.get(name, namespace);
    const existing = this.slices.list(namespace).filter((slice) => slice.metadata?.labels?.[SERVICE_NAME_LABEL] === name);
    if (this.tracker.isStale(key, existing)) {
      this.waitingForCache.add(key);
      return;
    }

    // A Service without a selector has manually managed endpoints, and a
    // deleted Service's slices go with it, because this API server has no
    // garbage collector to follow the owner reference.
    const wanted = service && service.spec?.selector ? this.desiredSlices(service) : [];
    const wantedNames = new Set(wanted.map((slice) => slice.metadata!.name!));

    for (const slice of wanted) {
      const current = existing.find((candidate) => candidate.metadata!.name === slice.metadata!.name);
      if (!current) await this.create(key, slice);
      else if (!sameContent(current, slice)) await this.replace(key, { ...slice, metadata: { ...slice.metadata, resourceVersion: current.metadata!.resourceVersion } });
    }
    for (const slice of existing) {
      if (!wantedNames.has(slice.metadata!.name!)) await this.delete(key, slice);
    }
  }

  private desiredSlices(service: V1Service): V1EndpointSlice[] {
    const namespace = service.metadata!.namespace!;
    const selector = service.spec!.selector!;
    const pods = this.pods
      .list(namespace)
      .filter((pod) => Object.entries(selector).every(([label, value]) => pod.metadata?.labels?.[label] === value))
      .filter((pod) => pod.status?.phase !== 'Succeeded' && pod.status?.phase !== 'Failed')
      .sort((a, b) => a.metadata!.name!.localeCompare(b.metadata!.name!));
    const families = (service.spec!.ipFamilies ?? ['IPv4']) as Family[];

    const slices: V1EndpointSlice[] = [];
    for (const family of families) {
      // Endpoints grouped by their resolved ports, because a named
      // targetPort may resolve to different numbers in different Pods.
      const groups = new Map<string, { ports: DiscoveryV1EndpointPort[]; endpoints: V1Endpoint[] }>();
      for (const pod of pods) {
        const address = podAddress(pod, family);
        const ports = resolvePorts(service.spec!.ports ?? [], pod);
        if (!address || !ports) continue;
        const portsKey = JSON.stringify(ports);
        if (!groups.has(portsKey)) groups.set(portsKey, { ports, endpoints: [] });
        groups.get(portsKey)!.endpoints.push(endpointFor(pod, address));
      }
      if (groups.size === 0) groups.set('[]', { ports: [], endpoints: [] });

      // The first group in key order keeps the plain name, so the common
      // case of one group updates one slice in place as Pods come and go.
      const sorted = [...groups.entries()].sort(([a], [b]) => a.localeCompare(b));
      sorted.forEach(([portsKey, group], index) => {
        const name = sliceName(service.metadata!.name!, family, index === 0 ? undefined : portsKey);
        slices.push(this.slice(service, family, name, group.ports, group.endpoints));
      });
    }
    return slices;
  }

  private slice(service: V1Service, family: Family, name: string, ports: DiscoveryV1EndpointPort[], endpoints: V1Endpoint[]): V1EndpointSlice {
    return {
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: {
        name,
        namespace: service.metadata!.namespace!,
        labels: { [SERVICE_NAME_LABEL]: service.metadata!.name!, [MANAGED_BY_LABEL]: MANAGED_BY },
        ownerReferences: [{ apiVersion: 'v1', kind: 'Service', name: service.metadata!.name!, uid: service.metadata!.uid!, controller: true, blockOwnerDeletion: true }],
      },
      addressType: family,
      ports,
      endpoints,
    };
  }

  private async create(service: string, slice: V1EndpointSlice): Promise<void> {
    try {
      this.tracker.recordWrite(service, await this.discovery.createNamespacedEndpointSlice({ namespace: slice.metadata!.namespace!, body: slice }));
    } catch (err) {
      // The informer had not delivered a slice created earlier. The event
      // that follows queues this Service again.
      if (err instanceof ApiException && err.code === 409) return;
      throw err;
    }
  }

  private async replace(service: string, slice: V1EndpointSlice): Promise<void> {
    this.tracker.recordWrite(service, await this.discovery.replaceNamespacedEndpointSlice({ name: slice.metadata!.name!, namespace: slice.metadata!.namespace!, body: slice }));
  }

  private async delete(service: string, slice: V1EndpointSlice): Promise<void> {
    try {
      await this.discovery.deleteNamespacedEndpointSlice({ name: slice.metadata!.name!, namespace: slice.metadata!.namespace! });
      this.tracker.recordDeletion(service, slice);
    } catch (err) {
      if (err instanceof ApiException && err.code === 404) return;
      throw err;
    }
  }
}

function keyOf(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

function podAddress(pod: V1Pod, family: Family): string | undefined {
  const addresses = (pod.status?.podIPs ?? []).map((entry) => entry.ip);
  if (addresses.length === 0 && pod.status?.podIP) addresses.push(pod.status.podIP);
  return addresses.find((address) => address.includes(':') === (family === 'IPv6'));
}

// Resolves each Service port's targetPort for one Pod. Returns undefined
// when a named targetPort matches no container port of the Pod, because
// Kubernetes leaves such a Pod out of the Service's endpoints.
function resolvePorts(servicePorts: V1ServicePort[], pod: V1Pod): DiscoveryV1EndpointPort[] | undefined {
  const resolved: DiscoveryV1EndpointPort[] = [];
  for (const servicePort of servicePorts) {
    const protocol = servicePort.protocol ?? 'TCP';
    const target = servicePort.targetPort ?? servicePort.port;
    let port: number | undefined;
    if (typeof target === 'number' || /^\d+$/.test(target)) {
      port = Number(target);
    } else {
      const containerPorts = (pod.spec?.containers ?? []).flatMap((container) => container.ports ?? []);
      port = containerPorts.find((candidate) => candidate.name === target && (candidate.protocol ?? 'TCP') === protocol)?.containerPort;
    }
    if (port === undefined) return undefined;
    resolved.push({ ...(servicePort.name ? { name: servicePort.name } : {}), port, protocol, ...(servicePort.appProtocol ? { appProtocol: servicePort.appProtocol } : {}) });
  }
  return resolved;
}

function endpointFor(pod: V1Pod, address: string): V1Endpoint {
  const terminating = Boolean(pod.metadata?.deletionTimestamp);
  const ready = isPodReady(pod);
  return {
    addresses: [address],
    conditions: { ready: ready && !terminating, serving: ready, terminating },
    ...(pod.spec?.nodeName ? { nodeName: pod.spec.nodeName } : {}),
    targetRef: { kind: 'Pod', namespace: pod.metadata!.namespace!, name: pod.metadata!.name!, uid: pod.metadata!.uid! },
  };
}

// "<service>-<ipv4|ipv6>", followed by "-<8 hex digits of the ports>" when
// portsKey is given, and cut to stay within the 63 characters of a DNS label.
function sliceName(service: string, family: Family, portsKey: string | undefined): string {
  const hash = portsKey === undefined ? '' : `-${createHash('sha256').update(portsKey).digest('hex').slice(0, 8)}`;
  const suffix = `-${family.toLowerCase()}${hash}`;
  return service.slice(0, 63 - suffix.length) + suffix;
}

function sameContent(current: V1EndpointSlice, wanted: V1EndpointSlice): boolean {
  return (
    JSON.stringify(normalizePorts(current.ports ?? [])) === JSON.stringify(normalizePorts(wanted.ports ?? [])) &&
    JSON.stringify(normalizeEndpoints(current.endpoints ?? [])) === JSON.stringify(normalizeEndpoints(wanted.endpoints)) &&
    JSON.stringify(current.metadata?.labels ?? {}) === JSON.stringify(wanted.metadata!.labels)
  );
}

function normalizePorts(ports: DiscoveryV1EndpointPort[]): unknown[] {
  return ports.map((port) => [port.name, port.port, port.protocol, port.appProtocol]);
}

// Endpoints in a fixed key order, so a slice read back from the API server
// compares equal to the one built here.
function normalizeEndpoints(endpoints: V1Endpoint[]): unknown[] {
  return endpoints.map((endpoint) => ({
    addresses: endpoint.addresses,
    ready: endpoint.conditions?.ready,
    serving: endpoint.conditions?.serving,
    terminating: endpoint.conditions?.terminating,
    nodeName: endpoint.nodeName,
    targetRef: [endpoint.targetRef?.kind, endpoint.targetRef?.namespace, endpoint.targetRef?.name, endpoint.targetRef?.uid],
  }));
}
