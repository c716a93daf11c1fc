// A DatapathPort that reports what happens to held flows to the agent's
// own Hubble observer endpoint: each flow the datapath holds, and each
// flow a release re-injects or a wake timeout drops. The controller uses
// it in place of the node's datapath, and it forwards every call.

import type { Datapath } from '../datapath/datapath.js';
import type { HeldFlow } from '../datapath/held-frames.js';
import type { Frontend } from '../datapath/frontends.js';
import { monotonicMs } from '../hubble/monotonic-time.js';
import type { ObserverServer } from '../hubble/observer-server.js';
import type { DatapathPort, HeldFlowLimits, ReleaseOutcome, WakeSignal, WorkloadKey } from './ports.js';

export interface ObservedDatapathOptions {
  inner: DatapathPort & { workloadOf(serviceId: number): WorkloadKey | undefined; interfaceName(ifindex: number): string | undefined };
  // The loaded datapath, for its 'held' events; none in signal mode.
  datapath?: Datapath;
  observer: ObserverServer;
  // The Service "namespace/name" of a workload's flows, when it has one.
  serviceOf: (workload: WorkloadKey) => string | undefined;
  // CLOCK_MONOTONIC milliseconds.
  now?: () => number;
}

export class ObservedDatapath implements DatapathPort {
  private readonly inner: ObservedDatapathOptions['inner'];
  private readonly now: () => number;

  constructor(private readonly options: ObservedDatapathOptions) {
    this.inner = options.inner;
    this.now = options.now ?? monotonicMs;
    // A replaced SYN of a flow already held is the same flow, so only the
    // first frame of a flow is reported.
    options.datapath?.on('held', (record, outcome) => {
      if (outcome.result !== 'held') return;
      const workload = this.inner.workloadOf(record.serviceId);
      if (workload === undefined) return;
      this.report('held', workload, { record, firstTimestampNs: record.timestampNs, frames: 1 });
    });
  }

  setFrontends(workload: WorkloadKey, frontends: Frontend[], gateClosed: boolean): void {
    this.inner.setFrontends(workload, frontends, gateClosed);
  }

  pinnedGateClosed(frontends: Frontend[]): boolean {
    return this.inner.pinnedGateClosed?.(frontends) ?? false;
  }

  setHeldLimits(workload: WorkloadKey, limits: HeldFlowLimits): void {
    this.inner.setHeldLimits(workload, limits);
  }

  removeWorkload(workload: WorkloadKey): HeldFlow[] {
    // The Service name is looked up before the workload is gone.
    const service = this.options.serviceOf(workload);
    const dropped = this.inner.removeWorkload(workload);
    for (const flow of dropped) this.report('expired', workload, flow, { service, cause: 'no longer opts in' });
    return dropped;
  }

  closeGate(workload: WorkloadKey): void {
    this.inner.closeGate(workload);
  }

  async release(workload: WorkloadKey): Promise<ReleaseOutcome> {
    const outcome = await this.inner.release(workload);
    for (const flow of outcome.released) this.report('released', workload, flow);
    return outcome;
  }

  async releaseEarly(workload: WorkloadKey, frontends: Frontend[]): Promise<ReleaseOutcome> {
    if (this.inner.releaseEarly === undefined) return { released: [], failed: [] };
    const outcome = await this.inner.releaseEarly(workload, frontends);
    for (const flow of outcome.released) this.report('released', workload, flow);
    return outcome;
  }

  expireHeld(workload: WorkloadKey, cutoffMs: number): HeldFlow[] {
    const expired = this.inner.expireHeld(workload, cutoffMs);
    for (const flow of expired) this.report('expired', workload, flow);
    return expired;
  }

  heldFlows(workload?: WorkloadKey): HeldFlow[] {
    return this.inner.heldFlows(workload);
  }

  onWake(listener: (signal: WakeSignal) => void): void {
    this.inner.onWake(listener);
  }

  // Records one flow event. extra.service replaces the workload's Service
  // name, for a workload that is gone, and extra.cause gives the reason an
  // expired flow was dropped.
  private report(kind: 'held' | 'released' | 'expired', workload: WorkloadKey, held: HeldFlow, extra: { service?: string | undefined; cause?: string } = {}): void {
    const now = this.now();
    const firstMs = Number(held.firstTimestampNs / 1_000_000n);
    const { record } = held;
    const service = 'service' in extra ? extra.service : this.options.serviceOf(workload);
    this.options.observer.record({
      kind,
      workload,
      ...(service === undefined ? {} : { service }),
      ...(extra.cause === undefined ? {} : { cause: extra.cause }),
      flow: record.flow,
      atMs: kind === 'held' ? firstMs : now,
      interface: { index: record.ifindex, ...(this.inner.interfaceName(record.ifindex) === undefined ? {} : { name: this.inner.interfaceName(record.ifindex)! }) },
      ...(kind === 'held' ? {} : { heldForMs: Math.max(0, now - firstMs) }),
    });
  }
}
