// A DatapathPort that records what the controller asked for, and lets a
// test deliver wake signals as the BPF datapath would.

import type { Frontend } from '../../../src/datapath/frontends.js';
import type { HeldFlow } from '../../../src/datapath/held-frames.js';
import type { DatapathPort, ReleaseOutcome, WakeSignal, WorkloadKey } from '../../../src/agent/ports.js';

export class FakeDatapath implements DatapathPort {
  readonly frontends = new Map<WorkloadKey, Frontend[]>();
  readonly gateClosed = new Map<WorkloadKey, boolean>();
  readonly releases: WorkloadKey[] = [];
  private readonly listeners: ((signal: WakeSignal) => void)[] = [];

  setFrontends(workload: WorkloadKey, frontends: Frontend[], gateClosed: boolean): void {
    this.frontends.set(workload, frontends);
    this.gateClosed.set(workload, gateClosed);
  }

  removeWorkload(workload: WorkloadKey): void {
    this.frontends.delete(workload);
    this.gateClosed.delete(workload);
  }

  closeGate(workload: WorkloadKey): void {
    this.gateClosed.set(workload, true);
  }

  async release(workload: WorkloadKey): Promise<ReleaseOutcome> {
    this.gateClosed.set(workload, false);
    this.releases.push(workload);
    return { released: [], failed: [] };
  }

  expireHeld(): HeldFlow[] {
    return [];
  }

  heldFlows(): HeldFlow[] {
    return [];
  }

  onWake(listener: (signal: WakeSignal) => void): void {
    this.listeners.push(listener);
  }

  wake(workload: WorkloadKey): void {
    const flow = { protocol: 'tcp' as const, source: '198.18.0.1', sourcePort: 40000, destination: '198.19.0.10', destinationPort: 80 };
    for (const listener of this.listeners) listener({ workload, flow, atMs: 0 });
  }
}
