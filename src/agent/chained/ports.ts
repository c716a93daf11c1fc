// DatapathPort in chained mode: a host datapath such as Cilium's finds no
// backend for a Service and tail-calls zerohold's chained programs, which
// hold the flow opener. zerohold attaches nothing itself. A workload's
// service ids are the host's ids of its Services (Cilium: rev-NAT ids),
// one or more per workload, and each id is listed in the host's
// zh_chain_svcs so that the host calls zerohold for it.
//
// Ordering: an id gets its state in zh_services before it is listed, and
// leaves the list before it becomes unmanaged, so the host never calls
// zerohold for an id that zerohold would treat as stale.

import type { Logger } from 'pino';

import { Datapath, type DatapathOptions } from '../../datapath/datapath.js';
import { type Frontend, frontendToString } from '../../datapath/frontends.js';
import type { HeldFlow } from '../../datapath/held-frames.js';
import { addCounters, type ServiceCounters } from '../../datapath/services.js';
import { heldTotalsByWorkload, serviceLimits } from '../held-totals.js';
import type { ActivitySource, DatapathPort, HeldFlowLimits, HeldTotals, ReleaseOutcome, WakeSignal, WorkloadKey } from '../ports.js';
import { ChainServiceList } from './chain-services.js';
import { ChainReinserter } from './reinsert.js';
import type { ServiceIdSource } from './service-ids.js';
import { ChainSlots } from './slots.js';

export interface ChainedDatapathOptions {
  // bpffs directory where the host pins zh_chain_xdp, zh_chain_tc,
  // zh_chain_meta and zh_chain_svcs (Cilium: /sys/fs/bpf/tc/globals).
  hostPinDir: string;
  // How often the slots and the list are checked after host reloads.
  reinsertIntervalMs: number;
  wakeIntervalMs: number;
  // False drops held frames at release instead of re-injecting them.
  reinject?: boolean;
  // Called once when the host pinned a new zh_chain_meta, which the
  // loaded programs cannot read (ChainReinserter).
  onHostMetaReplaced?: () => void;
  log: Logger;
}

type GateState = 'cold' | 'warm';

interface ChainedWorkload {
  frontends: Frontend[];
  // Ids this workload configured and listed.
  ids: Set<number>;
  // The frontends, as frontendToString(), that mapped to each listed id
  // when the source last reported it. A cold workload keeps an id that
  // the source stops reporting, so this is how the id's frontends are
  // still known when the controller removes them.
  idFrontends: Map<number, Set<string>>;
  state: GateState;
  // Bounds for each id's held flows, once the controller set them.
  limits?: HeldFlowLimits;
}

export class ChainedDatapath implements DatapathPort, ActivitySource {
  readonly list: ChainServiceList;
  readonly slots: ChainSlots;
  private readonly reinserter: ChainReinserter;
  private readonly workloads = new Map<WorkloadKey, ChainedWorkload>();
  private readonly owners = new Map<number, WorkloadKey>();
  // The last owner of each id that no workload owns now. Counters and the
  // hold budget of an id describe its owner's traffic, so another
  // workload that claims the id starts them afresh.
  private readonly formerOwners = new Map<number, WorkloadKey>();
  // Ids already reported as unusable, so a reconcile loop logs each once.
  private readonly rejectedIds = new Set<string>();
  private closed = false;

  // Takes ownership of datapath, which must have been opened with
  // chainPinDir set to hostPinDir.
  constructor(
    readonly datapath: Datapath,
    private readonly ids: ServiceIdSource,
    private readonly options: ChainedDatapathOptions,
  ) {
    this.list = ChainServiceList.inDirectory(options.hostPinDir);
    this.slots = new ChainSlots(datapath, options.hostPinDir);
    this.reinserter = new ChainReinserter(datapath, this.slots, this.list, { intervalMs: options.reinsertIntervalMs, log: options.log, onMetaReplaced: options.onHostMetaReplaced });
    ids.onChange(() => this.resolveAll());
  }

  // Loads zerohold.o with zh_chain_meta shared with the host. Datapath.open
  // gives the chained programs expected attach type 0, the type of the
  // programs that own Cilium's prog arrays.
  static async open(datapathOptions: DatapathOptions, ids: ServiceIdSource, options: ChainedDatapathOptions): Promise<ChainedDatapath> {
    const datapath = await Datapath.open({ ...datapathOptions, chainPinDir: options.hostPinDir });
    return new ChainedDatapath(datapath, ids, options);
  }

  // Removes the ids that a previous agent listed and no workload claims
  // now, starts reading the ring buffers, and inserts the chained programs.
  // Call it after the controller installed every workload.
  start(): void {
    const stale = this.pruneUnclaimed();
    if (stale.length > 0) this.options.log.info({ ids: stale }, 'removed service ids that no workload claims from zh_chain_svcs');

    this.datapath.start();
    this.reinserter.start();
  }

  // Whether zerohold's programs are in every host prog array that is
  // pinned, inserting them where they are not. Until they are, a program
  // of an earlier agent may still write to the rings that it loaded with.
  programsInPlace(): boolean {
    try {
      this.slots.ensureInserted();
      return true;
    } catch {
      return false;
    }
  }

  // Runs one re-insertion check now, outside the interval.
  checkHost(): boolean {
    return this.reinserter.check();
  }

  // An id that another workload owns is not this one's gate.
  pinnedGateClosed(frontends: Frontend[]): boolean {
    const max = this.datapath.services.maxServiceId;
    return this.ids.revNatIdsOf(frontends).some((id) => id >= 1 && id <= max && !this.owners.has(id) && this.datapath.services.get(id).state === 'cold');
  }

  serviceIdsOf(workload: WorkloadKey): number[] {
    return [...(this.workloads.get(workload)?.ids ?? [])];
  }

  setFrontends(workload: WorkloadKey, frontends: Frontend[], gateClosed: boolean): void {
    let entry = this.workloads.get(workload);
    if (entry === undefined) {
      entry = { frontends, ids: new Set(), idFrontends: new Map(), state: gateClosed ? 'cold' : 'warm' };
      this.workloads.set(workload, entry);
    }
    const released = this.releaseRemovedIds(workload, entry, frontends);
    entry.frontends = frontends;
    this.apply(workload, entry, gateClosed ? 'cold' : 'warm');

    // A workload that a released id was refused to can claim it now.
    if (released) this.resolveAll();
  }

  // Lets go of the ids of frontends that the controller took out of the
  // workload, such as a Service that moved to another workload, at once
  // and also while the gate is closed. Unlike an id that the source stops
  // reporting for a while, such an id does not come back. The host may
  // have deleted the id's entry first, as Cilium does for a deleted
  // Service, so the id's frontends come from what the source reported
  // when the id was listed. Returns whether any id was released.
  private releaseRemovedIds(workload: WorkloadKey, entry: ChainedWorkload, frontends: Frontend[]): boolean {
    const kept = new Set(frontends.map(frontendToString));
    const removed = entry.frontends.filter((frontend) => !kept.has(frontendToString(frontend)));
    if (removed.length === 0) return false;

    const stillUsed = new Set(this.ids.revNatIdsOf(frontends));
    const removedIds = new Set(this.ids.revNatIdsOf(removed));
    for (const [id, sources] of entry.idFrontends) {
      if (![...sources].some((source) => kept.has(source))) removedIds.add(id);
    }
    let released = false;
    for (const id of removedIds) {
      if (stillUsed.has(id) || !entry.ids.has(id)) continue;
      const dropped = this.unclaim(id);
      entry.ids.delete(id);
      entry.idFrontends.delete(id);
      released = true;
      if (dropped.length > 0) this.options.log.warn({ workload, serviceId: id, dropped: dropped.length }, 'dropped held flows of a Service that left its workload; the clients retransmit');
    }
    return released;
  }

  // Each id of the workload gets the bounds of its own, so a workload with
  // several Services holds up to perService flows for each.
  setHeldLimits(workload: WorkloadKey, limits: HeldFlowLimits): void {
    const entry = this.requireWorkload(workload);
    entry.limits = limits;
    for (const id of entry.ids) this.datapath.setHeldLimits(id, serviceLimits(this.datapath.held, limits));
  }

  removeWorkload(workload: WorkloadKey): HeldFlow[] {
    const entry = this.workloads.get(workload);
    if (entry === undefined) return [];

    // NOTE: a connection opened while the workload was cold goes through
    // the host's per-packet LB only while its id is listed (Cilium with
    // socket-LB), so such a connection breaks here.
    const dropped = [...entry.ids].flatMap((id) => this.unclaim(id));
    this.workloads.delete(workload);
    // A workload that one of these ids was refused to can claim it now.
    if (entry.ids.size > 0) this.resolveAll();
    return dropped;
  }

  closeGate(workload: WorkloadKey): void {
    const entry = this.requireWorkload(workload);
    entry.state = 'cold';
    for (const id of entry.ids) this.datapath.setServiceState(id, 'cold');
  }

  // Opens each id's gate, then re-injects its held frames on the device
  // each frame arrived on, in the datapath's netns. The host's state word
  // does not matter to the chained programs, which hold whenever they are
  // called, but it stays consistent for reports and a later close.
  async release(workload: WorkloadKey): Promise<ReleaseOutcome> {
    const entry = this.requireWorkload(workload);
    entry.state = 'warm';

    const outcome: ReleaseOutcome = { released: [], failed: [] };
    for (const id of [...entry.ids]) {
      const result = await this.datapath.release(id, { reinject: this.options.reinject ?? true });
      outcome.released.push(...result.released);
      outcome.failed.push(...result.failed);
      if (result.discarded) (outcome.discarded ??= []).push(...result.discarded);
    }

    // Ids that the host stopped mapping to the workload while it was cold
    // can go now.
    this.apply(workload, entry, 'warm');
    return outcome;
  }

  expireHeld(workload: WorkloadKey, cutoffMs: number): HeldFlow[] {
    const cutoffNs = BigInt(Math.round(cutoffMs * 1e6));
    return this.serviceIdsOf(workload).flatMap((id) => this.datapath.expire(id, cutoffNs));
  }

  heldFlows(workload?: WorkloadKey): HeldFlow[] {
    if (workload === undefined) return this.datapath.held.list();
    return this.serviceIdsOf(workload).flatMap((id) => this.datapath.held.list(id));
  }

  workloadOf(serviceId: number): WorkloadKey | undefined {
    return this.owners.get(serviceId);
  }

  // Flows and bytes held now per workload, for the metrics gauges.
  heldTotals(): Map<WorkloadKey, HeldTotals> {
    return heldTotalsByWorkload(this.datapath.held.list(), (id) => this.owners.get(id));
  }

  // The datapath's counters of each workload, summed over the ids of its
  // Services, for the metrics. An id past zh_svc_stats has none.
  datapathCounters(): Map<WorkloadKey, ServiceCounters> {
    const counters = new Map<WorkloadKey, ServiceCounters>();
    for (const [id, workload] of this.owners) {
      if (id > this.datapath.services.maxServiceId) continue;
      const own = this.datapath.services.readCounters(id);
      const sum = counters.get(workload);
      counters.set(workload, sum === undefined ? own : addCounters(sum, own));
    }
    return counters;
  }

  // The host's devices are not attached by zerohold, so their names are
  // unknown here; reports show the ifindex.
  interfaceName(_ifindex: number): string | undefined {
    return undefined;
  }

  onWake(listener: (signal: WakeSignal) => void): void {
    this.datapath.on('wake', (record) => {
      const workload = this.owners.get(record.serviceId);
      if (workload === undefined) return;
      listener({ workload, flow: record.flow, atMs: Number(record.timestampNs / 1_000_000n) });
    });
  }

  // Warm traffic goes to the host's backends and never reaches zerohold,
  // so the datapath's warm counters stay at zero in chained mode. The
  // agent takes activity from Hubble flows instead (main.ts).
  lastActivity(_workload: WorkloadKey): number | undefined {
    return undefined;
  }

  // Empties the slots, so the host falls back to its own no-backend
  // handling, and closes the datapath. The listed ids stay, because the
  // host translates connections opened while cold only while their id is
  // listed. The next agent prunes the ids that no workload claims.
  // Removes the chained programs from the host's prog arrays, unless
  // keepAttached leaves them there for the next agent to replace.
  async close(options: { keepAttached?: boolean } = {}): Promise<void> {
    if (this.closed) return;
    this.closed = true;

    this.reinserter.stop();
    if (options.keepAttached) {
      this.list.close();
      await this.datapath.close(options);
      return;
    }
    try {
      const removed = this.slots.remove();
      this.options.log.info({ arrays: removed }, 'removed the chained programs from the host prog arrays');
    } catch (err) {
      this.options.log.error({ err, hostPinDir: this.options.hostPinDir }, 'removing the chained programs failed, the host keeps calling them until it reloads');
    }
    this.list.close();
    await this.datapath.close();
  }

  // Brings the workload's ids and their states in line with the host's
  // current ids and the requested gate state. While the gate is closed, ids
  // are only added: an id that the source stops reporting, for example
  // while the host restarts, keeps holding the workload's flow openers.
  private apply(workload: WorkloadKey, entry: ChainedWorkload, state: GateState): void {
    const current = this.resolve(workload, entry.frontends);
    const stateChanged = entry.state !== state;
    entry.state = state;
    this.recordIdFrontends(entry, current);

    for (const id of current) {
      if (entry.ids.has(id)) continue;
      const formerOwner = this.formerOwners.get(id);
      this.formerOwners.delete(id);
      if (formerOwner !== undefined && formerOwner !== workload) this.datapath.services.resetCounters(id);
      this.datapath.configureService(id, { state, wakeIntervalMs: this.options.wakeIntervalMs });
      if (entry.limits) this.datapath.setHeldLimits(id, serviceLimits(this.datapath.held, entry.limits));
      this.owners.set(id, workload);
      this.list.add(id);
      entry.ids.add(id);
      // A later refusal of the same id is news again.
      this.rejectedIds.delete(`${workload}|${id}`);
    }

    if (stateChanged) {
      for (const id of entry.ids) this.datapath.setServiceState(id, state);
    }

    if (state === 'warm') {
      for (const id of [...entry.ids]) {
        if (current.has(id)) continue;
        const dropped = this.unclaim(id);
        entry.ids.delete(id);
        entry.idFrontends.delete(id);
        // The gate is open, so the workload has released its flows, and
        // these are stragglers; their clients retransmit.
        if (dropped.length > 0) this.options.log.warn({ workload, serviceId: id, dropped: dropped.length }, 'dropped held flows of a service id that left its workload');
      }
    }
  }

  // Records which of the workload's frontends map to each of its current
  // ids, replacing the earlier records of those ids.
  private recordIdFrontends(entry: ChainedWorkload, current: Set<number>): void {
    const reported = new Map<number, Set<string>>();
    for (const frontend of entry.frontends) {
      for (const id of this.ids.revNatIdsOf([frontend])) {
        if (!current.has(id)) continue;
        const sources = reported.get(id) ?? new Set<string>();
        sources.add(frontendToString(frontend));
        reported.set(id, sources);
      }
    }
    for (const [id, sources] of reported) entry.idFrontends.set(id, sources);
  }

  private resolveAll(): void {
    for (const [workload, entry] of this.workloads) {
      try {
        this.apply(workload, entry, entry.state);
      } catch (err) {
        this.options.log.error({ err, workload }, 'applying changed service ids failed');
      }
    }
  }

  // Returns the ids of the host's services for the frontends that this
  // workload may use: within the datapath's service tables and not
  // claimed by another workload.
  private resolve(workload: WorkloadKey, frontends: Frontend[]): Set<number> {
    const max = this.datapath.services.maxServiceId;
    const usable = new Set<number>();

    for (const id of this.ids.revNatIdsOf(frontends)) {
      const owner = this.owners.get(id);
      if (owner !== undefined && owner !== workload) {
        this.rejectOnce(workload, id, `service id ${id} already belongs to workload ${owner}`);
      } else if (!Number.isInteger(id) || id < 1 || id > max) {
        // NOTE: a host id above bpf.maxServices cannot be managed. Raising
        // the limit grows the per-CPU zh_svc_stats along with zh_services.
        this.rejectOnce(workload, id, `service id ${id} is outside 1-${max}, raise bpf.maxServices`);
      } else {
        usable.add(id);
      }
    }
    return usable;
  }

  private rejectOnce(workload: WorkloadKey, id: number, reason: string): void {
    const key = `${workload}|${id}`;
    if (this.rejectedIds.has(key)) return;
    this.rejectedIds.add(key);
    this.options.log.error({ workload, serviceId: id }, `service id not managed: ${reason}`);
  }

  // Returns the flows the id still held: no workload releases them now.
  private unclaim(id: number): HeldFlow[] {
    this.list.delete(id);
    this.datapath.configureService(id, { state: 'unmanaged', wakeIntervalMs: this.options.wakeIntervalMs });
    const owner = this.owners.get(id);
    if (owner !== undefined) this.formerOwners.set(id, owner);
    this.owners.delete(id);
    this.datapath.held.setServiceLimits(id, undefined);
    return this.datapath.held.take(id);
  }

  // Unlists the ids that an earlier agent listed and no workload claims
  // now, and zeroes their counters, because the workload that claims one
  // next is not the one they describe.
  private pruneUnclaimed(): number[] {
    const stale = this.list.readPinned().filter((id) => !this.owners.has(id));
    for (const id of stale) {
      this.list.delete(id);
      if (id >= 1 && id <= this.datapath.services.maxServiceId) {
        this.datapath.configureService(id, { state: 'unmanaged', wakeIntervalMs: this.options.wakeIntervalMs });
        this.datapath.services.resetCounters(id);
      }
    }
    return stale;
  }

  private requireWorkload(workload: WorkloadKey): ChainedWorkload {
    const entry = this.workloads.get(workload);
    if (entry === undefined) throw new Error(`workload ${workload} has no frontends on this node`);
    return entry;
  }
}
