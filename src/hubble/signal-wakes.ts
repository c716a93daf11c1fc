// Signal mode: wakes for stock Cilium, which zerohold does not patch.
// With the Helm value serviceNoBackendResponse=drop, Cilium
// drops a packet to a Service without backends, and Hubble reports a
// DROPPED flow with drop_reason_desc SERVICE_BACKEND_NOT_FOUND (code 158,
// DROP_NO_SERVICE in Cilium's bpf/lib/common.h). Such a flow to a managed
// frontend or Service wakes its workload. Nothing is held: the client
// retransmits its SYN (after 1 s, then 2 s, 4 s with Linux defaults) and
// one of the retransmissions reaches the new backend.
//
// Usage:
//   const datapath = new SignalDatapath({ endpoint: { kind: 'socket', path: DEFAULT_HUBBLE_SOCKET }, logger });
//   datapath.onWake((signal) => ...);
//   datapath.start();
//   // The controller calls setFrontends for each workload, as for NodeDatapath.

import { create } from '@bufbuild/protobuf';
import type { Logger } from 'pino';

import type { Frontend } from '../datapath/frontends.js';
import type { HeldFlow } from '../datapath/held-frames.js';
import type { Flow as DatapathFlow } from '../datapath/records.js';
import type { DatapathPort, HeldFlowLimits, ReleaseOutcome, WakeSignal, WorkloadKey } from '../agent/ports.js';
import { HubbleFlowFollower, type HubbleFollowerOptions } from './flow-follower.js';
import { DropReason, FlowFilterSchema, Verdict, type Flow, type FlowFilter } from './gen/flow/flow_pb.js';
import type { GetFlowsResponse } from './gen/observer/observer_pb.js';

export const DEFAULT_WAKE_INTERVAL_MS = 1000;

// Returns "namespace/name" of the flow's destination Service, or undefined
// when Hubble named none, for Events and logs.
export function serviceNameOf(flow: Flow): string | undefined {
  const service = flow.destinationService;
  if (service === undefined || service.name === '') return undefined;
  return `${service.namespace}/${service.name}`;
}

// The addresses and ports of a TCP or UDP flow in the datapath's shape, or
// undefined for other protocols and flows without addresses.
export function datapathFlowOf(flow: Flow): DatapathFlow | undefined {
  const l4 = flow.l4?.protocol;
  if (flow.IP === undefined || (l4?.case !== 'TCP' && l4?.case !== 'UDP')) return undefined;
  return {
    protocol: l4.case === 'TCP' ? 'tcp' : 'udp',
    source: flow.IP.source,
    sourcePort: l4.value.sourcePort,
    destination: flow.IP.destination,
    destinationPort: l4.value.destinationPort,
  };
}

// The wake conditions of signal mode, for every GetFlows filter.
const SIGNAL_CONDITIONS = { verdict: [Verdict.DROPPED], dropReasonDesc: [DropReason.SERVICE_BACKEND_NOT_FOUND] };

export interface SignalDatapathOptions extends HubbleFollowerOptions {
  // At most one wake per workload in this interval. Cilium drops every
  // retransmission and every other client's SYN too, and each drop is a
  // flow.
  wakeIntervalMs?: number;
}

export class SignalDatapath extends HubbleFlowFollower implements DatapathPort {
  private readonly frontends = new Map<WorkloadKey, Frontend[]>();
  // "tcp/198.19.0.10:80" or "tcp/198.19.0.10:any" to the workload.
  private frontendIndex = new Map<string, WorkloadKey>();
  private readonly serviceNames = new Map<WorkloadKey, readonly string[]>();
  // Service "namespace/name" to the workload.
  private serviceIndex = new Map<string, WorkloadKey>();
  private readonly lastWakeMs = new Map<WorkloadKey, number>();
  private readonly listeners: ((signal: WakeSignal) => void)[] = [];
  private readonly log: Logger;
  private readonly wakeIntervalMs: number;
  // Drops that matched a workload but fell within its wake interval.
  suppressedWakes = 0;
  private pendingUpdate: NodeJS.Immediate | undefined;

  constructor(options: SignalDatapathOptions) {
    super(options, 'signal');
    this.log = options.logger.child({ use: 'signal' });
    this.wakeIntervalMs = options.wakeIntervalMs ?? DEFAULT_WAKE_INTERVAL_MS;
  }

  // Records the frontends, whose addresses select the drops to follow. The
  // gate state does not apply: Cilium drops while the Service has no
  // backend, whatever zerohold decides.
  setFrontends(workload: WorkloadKey, frontends: Frontend[], _gateClosed: boolean): void {
    this.frontends.set(workload, frontends);
    this.scheduleUpdate();
  }

  // Sets the workload's Services as "namespace/name", which match drops
  // that Hubble attributed to a Service at an address zerohold does not
  // know, such as a LoadBalancer IP that is not in the Service status.
  setServices(workload: WorkloadKey, services: readonly string[]): void {
    const current = this.serviceNames.get(workload);
    if (current !== undefined && current.length === services.length && current.every((name, i) => name === services[i])) return;

    this.serviceNames.set(workload, [...services]);
    this.scheduleUpdate();
  }

  // Stock Cilium drops the packets, so nothing is held here.
  setHeldLimits(_workload: WorkloadKey, _limits: HeldFlowLimits): void {}

  removeWorkload(workload: WorkloadKey): HeldFlow[] {
    this.frontends.delete(workload);
    this.serviceNames.delete(workload);
    this.lastWakeMs.delete(workload);
    this.scheduleUpdate();
    return [];
  }

  // Nothing to close: Cilium drops while the Service has no backend.
  closeGate(_workload: WorkloadKey): void {}

  // Nothing to release: the clients' retransmissions complete the
  // connections.
  release(_workload: WorkloadKey): Promise<ReleaseOutcome> {
    return Promise.resolve({ released: [], failed: [] });
  }

  expireHeld(_workload: WorkloadKey, _cutoffMs: number): HeldFlow[] {
    return [];
  }

  heldFlows(_workload?: WorkloadKey): HeldFlow[] {
    return [];
  }

  onWake(listener: (signal: WakeSignal) => void): void {
    this.listeners.push(listener);
  }

  // Rebuilds the indexes and filters once for all the changes made in one
  // event loop turn: the agent sets every workload's Services each second,
  // and a rebuild per call would cost time quadratic in the workloads.
  private scheduleUpdate(): void {
    if (this.pendingUpdate !== undefined) return;
    this.pendingUpdate = setImmediate(() => {
      this.pendingUpdate = undefined;
      this.update();
    });
  }

  private update(): void {
    const frontendIndex = new Map<string, WorkloadKey>();
    const addresses = new Set<string>();
    for (const [workload, frontends] of this.frontends) {
      for (const frontend of frontends) {
        frontendIndex.set(`${frontend.protocol}/${frontend.address}:${frontend.port}`, workload);
        addresses.add(frontend.address);
      }
    }
    const serviceIndex = new Map<string, WorkloadKey>();
    for (const [workload, names] of this.serviceNames) {
      for (const name of names) serviceIndex.set(name, workload);
    }
    this.frontendIndex = frontendIndex;
    this.serviceIndex = serviceIndex;

    const whitelist: FlowFilter[] = [];
    if (addresses.size > 0) whitelist.push(create(FlowFilterSchema, { ...SIGNAL_CONDITIONS, destinationIp: [...addresses] }));
    if (serviceIndex.size > 0) whitelist.push(create(FlowFilterSchema, { ...SIGNAL_CONDITIONS, destinationService: [...serviceIndex.keys()] }));
    this.stream.setFilters(whitelist);
  }

  // The workload of a drop: by its exact frontend first, then by the
  // Service name that Hubble gave it.
  private workloadOf(flow: Flow, addresses: DatapathFlow): WorkloadKey | undefined {
    const { protocol, destination, destinationPort } = addresses;
    const byFrontend = this.frontendIndex.get(`${protocol}/${destination}:${destinationPort}`) ?? this.frontendIndex.get(`${protocol}/${destination}:any`);
    if (byFrontend !== undefined) return byFrontend;

    const service = serviceNameOf(flow);
    return service === undefined ? undefined : this.serviceIndex.get(service);
  }

  protected receive(flow: Flow, response: GetFlowsResponse): void {
    if (flow.verdict !== Verdict.DROPPED || flow.dropReasonDesc !== DropReason.SERVICE_BACKEND_NOT_FOUND) return;
    const addresses = datapathFlowOf(flow);
    if (addresses === undefined) return;
    const workload = this.workloadOf(flow, addresses);
    if (workload === undefined) return;

    // The rate limit uses the time of arrival, not the flow time, so the
    // drops that a resumed call sends in a burst wake at most once per
    // interval.
    const now = this.monotonicNow();
    const last = this.lastWakeMs.get(workload);
    if (last !== undefined && now - last < this.wakeIntervalMs) {
      this.suppressedWakes++;
      return;
    }
    this.lastWakeMs.set(workload, now);

    const atMs = this.monotonicTimeOf(flow, response, now);
    const service = serviceNameOf(flow);
    const signal: WakeSignal = { workload, flow: addresses, atMs, ...(service ? { service } : {}) };
    this.log.debug({ workload, service, node: flow.nodeName, client: `${addresses.source}:${addresses.sourcePort}` }, 'wake from a Hubble drop');
    for (const listener of this.listeners) {
      try {
        listener(signal);
      } catch (err) {
        this.log.error({ err, workload }, 'wake listener failed');
      }
    }
  }
}
