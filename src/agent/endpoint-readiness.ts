// The standalone release check: a workload's held flows may go once one of
// its Services has a Ready endpoint, as EndpointSlices report it. Ready
// here means conditions.ready is not false, because the EndpointSlice API
// documents an unset value as one that consumers should treat as ready.

import {
  ADD,
  DELETE,
  DiscoveryV1Api,
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

function readyEndpoints(slice: V1EndpointSlice): number {
  return (slice.endpoints ?? []).filter((e) => e.conditions?.ready !== false).length;
}

export class EndpointReadiness implements ReleaseCheck {
  private readonly informer: Informer<V1EndpointSlice>;
  // "namespace/service" -> slice name -> Ready endpoint count.
  private readonly ready = new Map<string, Map<string, number>>();
  private readonly services = new Map<WorkloadKey, string[]>();
  private readonly listeners: ((workload: WorkloadKey) => void)[] = [];
  private stopped = false;

  constructor(
    kc: KubeConfig,
    log: Logger,
  ) {
    const api = kc.makeApiClient(DiscoveryV1Api);
    this.informer = makeInformer(kc, '/apis/discovery.k8s.io/v1/endpointslices', () => api.listEndpointSliceForAllNamespaces());

    this.informer.on(ADD, (slice) => this.record(slice, readyEndpoints(slice)));
    this.informer.on(UPDATE, (slice) => this.record(slice, readyEndpoints(slice)));
    this.informer.on(DELETE, (slice) => this.record(slice, 0));
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
      for (const n of this.ready.get(service)?.values() ?? []) count += n;
    }
    return count;
  }

  // Calls listener with each tracked workload whose Ready count may have
  // changed, on the informer's event, so a release waits for no poll.
  onChange(listener: (workload: WorkloadKey) => void): void {
    this.listeners.push(listener);
  }

  private record(slice: V1EndpointSlice, count: number): void {
    const service = slice.metadata?.labels?.[SERVICE_NAME_LABEL];
    if (!service || !slice.metadata?.name) return;

    const key = `${slice.metadata.namespace ?? 'default'}/${service}`;
    let slices = this.ready.get(key);
    if (!slices) {
      slices = new Map();
      this.ready.set(key, slices);
    }
    if (count === 0) slices.delete(slice.metadata.name);
    else slices.set(slice.metadata.name, count);
    if (slices.size === 0) this.ready.delete(key);

    for (const [workload, services] of this.services) {
      if (services.includes(key)) for (const listener of this.listeners) listener(workload);
    }
  }
}
