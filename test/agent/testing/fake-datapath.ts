// A DatapathPort that records what the controller asked for, and lets a
// test deliver wake signals as the BPF datapath would.

import type { Frontend } from '../../../src/datapath/frontends.js';
import type { HeldFlow } from '../../../src/datapath/held-frames.js';
import type { Flow } from '../../../src/datapath/records.js';
import type { DatapathPort, HeldFlowLimits, ReleaseOutcome, WakeSignal, WorkloadKey } from '../../../src/agent/ports.js';

const PLACEHOLDER_FLOW = { protocol: 'tcp' as const, source: '198.18.0.1', sourcePort: 40000, destination: '198.19.0.10', destinationPort: 80 };

export class FakeDatapath implements DatapathPort {
  readonly frontends = new Map<WorkloadKey, Frontend[]>();
  readonly gateClosed = new Map<WorkloadKey, boolean>();
  readonly heldLimits = new Map<WorkloadKey, HeldFlowLimits>();
  readonly releases: WorkloadKey[] = [];
  readonly earlyReleases: { workload: WorkloadKey; frontends: Frontend[] }[] = [];
  // Flows a test pretends the node holds, per workload; a release, an
  // expiry or the workload's removal clears them, as in the real datapath.
  readonly held = new Map<WorkloadKey, number>();
  // Workloads whose release fails to re-inject every held flow.
  readonly failing = new Set<WorkloadKey>();
  // The flow of a workload's held flows, where a test needs another than
  // the placeholder.
  readonly heldFlow = new Map<WorkloadKey, Flow>();
  private readonly listeners: ((signal: WakeSignal) => void)[] = [];

  setFrontends(workload: WorkloadKey, frontends: Frontend[], gateClosed: boolean): void {
    this.frontends.set(workload, frontends);
    this.gateClosed.set(workload, gateClosed);
  }

  setHeldLimits(workload: WorkloadKey, limits: HeldFlowLimits): void {
    this.heldLimits.set(workload, limits);
  }

  removeWorkload(workload: WorkloadKey): HeldFlow[] {
    this.frontends.delete(workload);
    this.gateClosed.delete(workload);
    this.heldLimits.delete(workload);
    const dropped = this.heldFlows(workload);
    this.held.delete(workload);
    return dropped;
  }

  closeGate(workload: WorkloadKey): void {
    this.gateClosed.set(workload, true);
  }

  async release(workload: WorkloadKey): Promise<ReleaseOutcome> {
    this.gateClosed.set(workload, false);
    this.releases.push(workload);
    const flows = this.heldFlows(workload);
    this.held.delete(workload);
    if (this.failing.has(workload)) return { released: [], failed: flows.map((flow) => ({ flow, error: 'ENODEV: no such device' })) };
    return { released: flows, failed: [] };
  }

  async releaseEarly(workload: WorkloadKey, frontends: Frontend[]): Promise<ReleaseOutcome> {
    this.earlyReleases.push({ workload, frontends });
    return { released: [], failed: [] };
  }

  expireHeld(workload: WorkloadKey): HeldFlow[] {
    const expired = this.heldFlows(workload);
    this.held.delete(workload);
    return expired;
  }

  // Placeholder flows: the controller counts them and reads their flow.
  heldFlows(workload?: WorkloadKey): HeldFlow[] {
    const count = workload === undefined ? [...this.held.values()].reduce((a, b) => a + b, 0) : (this.held.get(workload) ?? 0);
    const flow = (workload === undefined ? undefined : this.heldFlow.get(workload)) ?? PLACEHOLDER_FLOW;
    return Array.from({ length: count }, () => ({ frames: 1, firstTimestampNs: 0n, record: { flow } }) as HeldFlow);
  }

  onWake(listener: (signal: WakeSignal) => void): void {
    this.listeners.push(listener);
  }

  wake(workload: WorkloadKey): void {
    for (const listener of this.listeners) listener({ workload, flow: PLACEHOLDER_FLOW, atMs: 0 });
  }
}
