// The standalone release check: a workload's held flows may go once one of
// its Services has a Ready endpoint, as EndpointSlices report it. Ready
// here means conditions.ready is not false, because the EndpointSlice API
// documents an unset value as one that consumers should treat as ready.

import {
  ADD,
  DELETE,
  DiscoveryV1Api,
  type DiscoveryV1EndpointPort,
  type Informer,
  KubeConfig,
  makeInformer,
  UPDATE,
  type V1EndpointSlice,
} from '@kubernetes/client-node';
import type { Logger } from 'pino';

import { restartOnError } from './informers.js';
import type { ReleaseCheck, WorkloadKey } from './ports.js';

const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

// The Ready endpoints of one EndpointSlice and the ports they serve.
export interface ReadyBackends {
  addressType: string;
  // The first address of each Ready endpoint, the one kube-proxy uses.
  addresses: string[];
  ports: DiscoveryV1EndpointPort[];
}

function readyBackends(slice: V1EndpointSlice): ReadyBackends {
  const ready = (slice.endpoints ?? []).filter((e) => e.conditions?.ready !== false);
  return { addressType: slice.addressType, addresses: ready.flatMap((e) => e.addresses.slice(0, 1)), ports: slice.ports ?? [] };
}

export class EndpointReadiness implements ReleaseCheck {
  private readonly informer: Informer<V1EndpointSlice>;
  // "namespace/service" -> slice name -> its Ready endpoints.
  private readonly ready = new Map<string, Map<string, ReadyBackends>>();
  private readonly services = new Map<WorkloadKey, string[]>();
  private readonly listeners: ((workload: WorkloadKey) => void)[] = [];
  private stopped = false;

  constructor(
    kc: KubeConfig,
    log: Logger,
  ) {
    const api = kc.makeApiClient(DiscoveryV1Api);
    this.informer = makeInformer(kc, '/apis/discovery.k8s.io/v1/endpointslices', () => api.listEndpointSliceForAllNamespaces());

    this.informer.on(ADD, (slice) => this.record(slice, readyBackends(slice)));
    this.informer.on(UPDATE, (slice) => this.record(slice, readyBackends(slice)));
    this.informer.on(DELETE, (slice) => this.record(slice, null));
    restartOnError(this.informer, log, 'EndpointSlice', () => this.stopped);
  }

  start(): Promise<void> {
    this.stopped = false;
    return this.informer.start();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.informer.stop();
  }

  // Sets the Services whose endpoints release a workload's flows.
  track(workload: WorkloadKey, namespace: string, serviceNames: string[]): void {
    this.services.set(workload, serviceNames.map((name) => `${namespace}/${name}`));
  }

  untrack(workload: WorkloadKey): void {
    this.services.delete(workload);
  }

  readyToRelease(workload: WorkloadKey): boolean {
    return this.readyCount(workload) > 0;
  }

  readyCount(workload: WorkloadKey): number {
    let count = 0;
    for (const service of this.services.get(workload) ?? []) {
      for (const backends of this.ready.get(service)?.values() ?? []) count += backends.addresses.length;
    }
    return count;
  }

  // The Ready endpoints of a Service, "namespace/name", one entry per
  // EndpointSlice that has any.
  readyBackends(service: string): ReadyBackends[] {
    return [...(this.ready.get(service)?.values() ?? [])];
  }

  // Calls listener with each tracked workload whose Ready count may have
  // changed, on the informer's event, so a release waits for no poll.
  onChange(listener: (workload: WorkloadKey) => void): void {
    this.listeners.push(listener);
  }

  private record(slice: V1EndpointSlice, backends: ReadyBackends | null): void {
    const service = slice.metadata?.labels?.[SERVICE_NAME_LABEL];
    if (!service || !slice.metadata?.name) return;

    const key = `${slice.metadata.namespace ?? 'default'}/${service}`;
    let slices = this.ready.get(key);
    if (!slices) {
      slices = new Map();
      this.ready.set(key, slices);
    }
    if (backends === null || backends.addresses.length === 0) slices.delete(slice.metadata.name);
    else slices.set(slice.metadata.name, backends);
    if (slices.size === 0) this.ready.delete(key);

    for (const [workload, services] of this.services) {
      if (services.includes(key)) for (const listener of this.listeners) listener(workload);
    }
  }
}
