// DatapathPort over the real BPF datapath of this node. Each workload gets
// one service id, so one state word gates every frontend of every Service
// of the workload. Ids stay stable across agent restarts: a workload whose
// frontends are still in the pinned table gets the id they carry, so
// records already in the ring buffer keep their meaning.

import type { Datapath } from '../datapath/datapath.js';
import { encodeFrontendKey, frontendToString, type Frontend } from '../datapath/frontends.js';
import type { HeldFlow } from '../datapath/held-frames.js';
import type { ServiceCounters } from '../datapath/services.js';
import { heldTotalsByWorkload, serviceLimits } from './held-totals.js';
import type { ActivitySource, DatapathPort, HeldFlowLimits, HeldTotals, ReleaseOutcome, WakeSignal, WorkloadKey } from './ports.js';

// Id 0 stays unused, so a zeroed entry never names a workload.
const FIRST_ID = 1;

export class NodeDatapath implements DatapathPort, ActivitySource {
  private readonly ids = new Map<WorkloadKey, number>();
  private readonly workloads = new Map<number, WorkloadKey>();
  private readonly installed = new Map<WorkloadKey, Frontend[]>();
  // The workload that each frontend in the table was last set for. A
  // Service can move to another workload in one reconcile, and the
  // controller may install the new owner before it updates or removes the
  // old one, whose removal must then leave the frontend alone.
  // NOTE: two Services of two workloads that share an external IP and
  // port, which kube-proxy does not support either, make the frontend
  // change owner on every reconcile.
  private readonly owners = new Map<string, WorkloadKey>();
  // Gate state as last written, so an unchanged state is not rewritten.
  private readonly states = new Map<WorkloadKey, 'cold' | 'warm'>();
  // Frontend to id as found in the pinned table at start, for reuse.
  private readonly pinnedIds = new Map<string, number>();

  constructor(
    private readonly datapath: Datapath,
    private readonly wakeIntervalMs: number,
    // False drops held frames at release instead of re-injecting them, for
    // the drop-and-retransmit comparison in the cold-start benchmark.
    private readonly reinject = true,
  ) {
    for (const { frontend, serviceId } of datapath.frontends.list()) {
      this.pinnedIds.set(frontendToString(frontend), serviceId);
    }
  }

  serviceIdOf(workload: WorkloadKey): number | undefined {
    return this.ids.get(workload);
  }

  pinnedGateClosed(frontends: Frontend[]): boolean {
    return frontends.some((frontend) => {
      const id = this.pinnedIds.get(frontendToString(frontend));
      return id !== undefined && id <= this.datapath.services.maxServiceId && this.datapath.services.get(id).state === 'cold';
    });
  }

  setFrontends(workload: WorkloadKey, frontends: Frontend[], gateClosed: boolean): void {
    const known = this.ids.get(workload);
    const id = known ?? this.allocate(workload, frontends);
    const state = gateClosed ? 'cold' : 'warm';

    // Gate first, so a new frontend never passes traffic that the
    // workload's state marks for holding. The controller calls this on
    // every reconcile, so unchanged state and frontends cost no syscall.
    if (known === undefined || this.states.get(workload) !== state) {
      this.datapath.configureService(id, { state, wakeIntervalMs: this.wakeIntervalMs });
      this.states.set(workload, state);
    }

    // A frontend that this workload owns is in the table with its id
    // already, so only the others are written.
    const wanted = new Map(frontends.map((f) => [frontendToString(f), f]));
    for (const old of this.installed.get(workload) ?? []) {
      if (!wanted.has(frontendToString(old))) this.deleteOwned(workload, old);
    }
    for (const [name, f] of wanted) {
      if (this.owners.get(name) === workload) continue;
      this.datapath.frontends.set(f, id);
      this.owners.set(name, workload);
    }
    this.installed.set(workload, [...wanted.values()]);
  }

  // Removes the frontends that the pinned table kept from an earlier agent
  // and that no workload claimed, as after a Service was deleted or
  // stopped opting in while no agent ran, and leaves their ids unmanaged.
  // Otherwise their flow openers would stay held for no workload, and a
  // new Service that got the same ClusterIP would lose its traffic. Call
  // it after the controller installed every workload. Returns the removed
  // frontends.
  pruneUnclaimed(): Frontend[] {
    const removed: Frontend[] = [];
    const assigned = new Set(this.ids.values());
    const unmanaged = new Set<number>();
    for (const { frontend, serviceId } of this.datapath.frontends.list()) {
      if (this.owners.has(frontendToString(frontend))) continue;
      this.datapath.frontends.delete(frontend);
      removed.push(frontend);
      if (!assigned.has(serviceId) && serviceId <= this.datapath.services.maxServiceId) unmanaged.add(serviceId);
    }
    for (const id of unmanaged) this.datapath.configureService(id, { state: 'unmanaged', wakeIntervalMs: this.wakeIntervalMs });
    this.pinnedIds.clear();
    return removed;
  }

  setHeldLimits(workload: WorkloadKey, limits: HeldFlowLimits): void {
    this.datapath.setHeldLimits(this.requireId(workload), serviceLimits(this.datapath.held, limits));
  }

  removeWorkload(workload: WorkloadKey): HeldFlow[] {
    const id = this.ids.get(workload);
    if (id === undefined) return [];

    // Taken before the id is freed, so that the next workload to get the
    // id does not release them as its own.
    const dropped = this.datapath.held.take(id);
    this.datapath.held.setServiceLimits(id, undefined);
    for (const f of this.installed.get(workload) ?? []) this.deleteOwned(workload, f);
    this.datapath.configureService(id, { state: 'unmanaged', wakeIntervalMs: this.wakeIntervalMs });
    this.installed.delete(workload);
    this.states.delete(workload);
    this.ids.delete(workload);
    this.workloads.delete(id);
    return dropped;
  }

  closeGate(workload: WorkloadKey): void {
    this.datapath.setServiceState(this.requireId(workload), 'cold');
    this.states.set(workload, 'cold');
  }

  release(workload: WorkloadKey): Promise<ReleaseOutcome> {
    const id = this.requireId(workload);
    this.states.set(workload, 'warm');
    return this.datapath.release(id, { reinject: this.reinject });
  }

  releaseEarly(workload: WorkloadKey, frontends: Frontend[]): Promise<ReleaseOutcome> {
    const id = this.requireId(workload);
    // Compared as datapath keys, because a Service spells an IPv6 address
    // as its manifest does and a held flow in canonical form.
    const programmed = new Set(frontends.map((f) => encodeFrontendKey(f).toString('hex')));
    const matches = (flow: HeldFlow) => {
      const { destination, protocol, destinationPort } = flow.record.flow;
      if (programmed.has(encodeFrontendKey({ address: destination, protocol, port: 'any' }).toString('hex'))) return true;
      // Port 0 has no key of its own, so only an any-port frontend matches it.
      return destinationPort !== 0 && programmed.has(encodeFrontendKey({ address: destination, protocol, port: destinationPort }).toString('hex'));
    };
    return this.datapath.releaseEarly(id, matches, { reinject: this.reinject });
  }

  expireHeld(workload: WorkloadKey, cutoffMs: number): HeldFlow[] {
    const id = this.ids.get(workload);
    if (id === undefined) return [];
    return this.datapath.expire(id, BigInt(Math.round(cutoffMs * 1e6)));
  }

  heldFlows(workload?: WorkloadKey): HeldFlow[] {
    if (workload === undefined) return this.datapath.held.list();
    const id = this.ids.get(workload);
    return id === undefined ? [] : this.datapath.held.list(id);
  }

  workloadOf(serviceId: number): WorkloadKey | undefined {
    return this.workloads.get(serviceId);
  }

  interfaceName(ifindex: number): string | undefined {
    return this.datapath.interfaceName(ifindex);
  }

  // Flows and bytes held now per workload, for the metrics gauges.
  heldTotals(): Map<WorkloadKey, HeldTotals> {
    return heldTotalsByWorkload(this.datapath.held.list(), (id) => this.workloads.get(id));
  }

  onWake(listener: (signal: WakeSignal) => void): void {
    this.datapath.on('wake', (record) => {
      const workload = this.workloads.get(record.serviceId);
      if (workload === undefined) return;
      listener({ workload, flow: record.flow, atMs: Number(record.timestampNs / 1_000_000n) });
    });
  }

  // The datapath's counters of each workload, for the metrics.
  datapathCounters(): Map<WorkloadKey, ServiceCounters> {
    return new Map([...this.ids].map(([workload, id]) => [workload, this.datapath.services.readCounters(id)]));
  }

  // The standalone activity source: the last warm packet of the workload,
  // from the per-CPU counters, as CLOCK_MONOTONIC milliseconds. The
  // datapath stamps it with the coarse clock, so it lags by up to a tick.
  lastActivity(workload: WorkloadKey): number | undefined {
    const id = this.ids.get(workload);
    if (id === undefined) return undefined;
    const lastSeenNs = this.datapath.services.readCounters(id).warm_last_seen_ns;
    return lastSeenNs === 0n ? undefined : Number(lastSeenNs / 1_000_000n);
  }

  private allocate(workload: WorkloadKey, frontends: Frontend[]): number {
    let id = frontends.map((f) => this.pinnedIds.get(frontendToString(f))).find((pinned) => pinned !== undefined && !this.workloads.has(pinned));
    if (id === undefined) {
      id = FIRST_ID;
      while (this.workloads.has(id) || [...this.pinnedIds.values()].includes(id)) id++;
      if (id > this.datapath.services.maxServiceId) {
        throw new RangeError(`no free service id for workload ${workload}: all ${this.datapath.services.maxServiceId} are in use, raise bpf.maxServices`);
      }
      // The id may have served a workload removed earlier. Its counters,
      // the time of the last warm packet among them, are not this one's.
      this.datapath.services.resetCounters(id);
    }
    this.ids.set(workload, id);
    this.workloads.set(id, workload);
    return id;
  }

  // Deletes the frontend unless another workload has taken it over.
  private deleteOwned(workload: WorkloadKey, frontend: Frontend): void {
    const name = frontendToString(frontend);
    if (this.owners.get(name) !== workload) return;
    this.datapath.frontends.delete(frontend);
    this.owners.delete(name);
  }

  private requireId(workload: WorkloadKey): number {
    const id = this.ids.get(workload);
    if (id === undefined) throw new Error(`workload ${workload} has no frontends on this node`);
    return id;
  }
}
