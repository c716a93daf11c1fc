// Helpers over the held frame store that the standalone and chained
// datapath ports share.

import type { HeldFlow, HeldFrameStore, ServiceHeldLimits } from '../datapath/held-frames.js';
import type { HeldFlowLimits, HeldTotals, WorkloadKey } from './ports.js';

// A workload's bounds with the store's defaults, the agent's
// configuration, in place of those it leaves out.
export function serviceLimits(store: HeldFrameStore, limits: HeldFlowLimits): ServiceHeldLimits {
  return { perService: limits.perService ?? store.limits.perService, perSource: limits.perClient ?? store.limits.perSource };
}

// Sums held flows and frame bytes per workload, for the metrics gauges.
export function heldTotalsByWorkload(flows: HeldFlow[], workloadOf: (serviceId: number) => WorkloadKey | undefined): Map<WorkloadKey, HeldTotals> {
  const totals = new Map<WorkloadKey, HeldTotals>();
  for (const flow of flows) {
    const workload = workloadOf(flow.record.serviceId);
    if (workload === undefined) continue;

    const entry = totals.get(workload) ?? { flows: 0, bytes: 0 };
    entry.flows += 1;
    entry.bytes += flow.record.frame.length;
    totals.set(workload, entry);
  }
  return totals;
}
