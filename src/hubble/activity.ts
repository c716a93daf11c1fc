// Idle detection from Hubble flows: the activity source of the agent when
// Cilium's Hubble observes the traffic and zerohold's datapath does not
// count it. The source is the node-local Hubble socket (flows of this node) or
// Hubble Relay (flows of every node).
//
// A flow counts as activity when its verdict is not DROPPED or ERROR and
// either its destination_service is a managed Service (a request), or it
// is a reply (is_reply true) whose source_service is one. Replies count
// because a workload that still sends data on an open connection is in
// use, even when the client sends nothing new.
//
// Usage:
//   const activity = new HubbleActivity({ endpoint: { kind: 'socket', path: DEFAULT_HUBBLE_SOCKET }, logger });
//   activity.start();
//   activity.setWorkloads(new Map([['shop/web', ['shop/web', 'shop/web-admin']]]));
//   activity.lastActivity('shop/web'); // CLOCK_MONOTONIC ms, or undefined

import { create } from '@bufbuild/protobuf';

import type { ActivitySource, WorkloadKey } from '../agent/ports.js';
import { HubbleFlowFollower, type HubbleFollowerOptions } from './flow-follower.js';
import { FlowFilterSchema, Verdict, type Flow, type FlowFilter } from './gen/flow/flow_pb.js';
import type { GetFlowsResponse } from './gen/observer/observer_pb.js';

export type HubbleActivityOptions = HubbleFollowerOptions;

// The maximum delay of a live flow from its node to this agent, Relay's
// sorting buffer included. A flow counts as no older than this when it
// arrives, so that a node whose clock runs behind cannot make a busy
// workload look idle. An estimate, with room above Relay's default
// buffer of about 1 s.
export const MAX_FLOW_DELAY_MS = 30_000;

// "namespace/name" of the flow's Service in the direction that counts: the
// destination for a request, the source for a reply. Undefined when Hubble
// named no Service.
function activityServiceOf(flow: Flow): string | undefined {
  const service = flow.isReply === true ? flow.sourceService : flow.destinationService;
  if (service === undefined || service.name === '') return undefined;
  return `${service.namespace}/${service.name}`;
}

export class HubbleActivity extends HubbleFlowFollower implements ActivitySource {
  // Service "namespace/name" to the workloads that it belongs to.
  private workloadsByService = new Map<string, WorkloadKey[]>();
  // Last activity per workload, CLOCK_MONOTONIC ms.
  private readonly last = new Map<WorkloadKey, number>();

  constructor(options: HubbleActivityOptions) {
    super(options, 'activity');
  }

  // Sets the managed workloads and their Services as "namespace/name".
  // Replaces the previous map, and drops the activity of workloads that are
  // not in it.
  setWorkloads(services: ReadonlyMap<WorkloadKey, readonly string[]>): void {
    const byService = new Map<string, WorkloadKey[]>();
    for (const [workload, names] of services) {
      for (const name of names) {
        const workloads = byService.get(name);
        if (workloads) workloads.push(workload);
        else byService.set(name, [workload]);
      }
    }
    this.workloadsByService = byService;
    for (const workload of this.last.keys()) {
      if (!services.has(workload)) this.last.delete(workload);
    }

    this.stream.setFilters(this.whitelist(), this.blacklist());
  }

  // The time of the workload's last flow as CLOCK_MONOTONIC milliseconds.
  lastActivity(workload: WorkloadKey): number | undefined {
    return this.last.get(workload);
  }

  // Requests to the managed Services, and replies from them. Hubble matches
  // Service names by prefix, so receive() checks the names again exactly.
  private whitelist(): FlowFilter[] {
    const names = [...this.workloadsByService.keys()];
    if (names.length === 0) return [];
    return [
      // Requests, and flows of unknown direction (is_reply unset).
      create(FlowFilterSchema, { destinationService: names }),
      create(FlowFilterSchema, { sourceService: names, reply: [true] }),
    ];
  }

  private blacklist(): FlowFilter[] {
    return [create(FlowFilterSchema, { verdict: [Verdict.DROPPED, Verdict.ERROR] })];
  }

  protected receive(flow: Flow, response: GetFlowsResponse): void {
    if (flow.verdict === Verdict.DROPPED || flow.verdict === Verdict.ERROR) return;

    const service = activityServiceOf(flow);
    if (service === undefined) return;
    const workloads = this.workloadsByService.get(service);
    if (workloads === undefined) return;

    // NOTE: flows that a resumed call sends again after a break count as
    // at most MAX_FLOW_DELAY_MS old too, which can postpone a scale-down.
    const nowMs = this.monotonicNow();
    const atMs = Math.max(this.monotonicTimeOf(flow, response, nowMs), nowMs - MAX_FLOW_DELAY_MS);
    for (const workload of workloads) {
      const previous = this.last.get(workload);
      if (previous === undefined || atMs > previous) this.last.set(workload, atMs);
    }
  }
}
