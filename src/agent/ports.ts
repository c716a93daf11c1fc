// The interfaces between the agent's controller and what it drives: the
// node's datapath, the source of activity, the release check and the
// workload's scale. Each has a real implementation and a fake for tests,
// and later modes (chained Cilium, Hubble) add implementations here.

import type { Frontend } from '../datapath/frontends.js';
import type { HeldFlow } from '../datapath/held-frames.js';
import type { Flow } from '../datapath/records.js';

// A workload that opted in: "namespace/name" of its ScaleToZero or, for
// the annotation shortcut, "namespace/service/name" of its Service.
export type WorkloadKey = string;

export interface WakeSignal {
  workload: WorkloadKey;
  flow: Flow;
  // CLOCK_MONOTONIC in milliseconds, the clock of the datapath's records
  // and of process.hrtime.
  atMs: number;
  // "namespace/name" of the Service the flow was sent to, when the source
  // of the signal has it (Hubble does, the datapath does not).
  service?: string;
}

export interface ReleaseOutcome {
  released: HeldFlow[];
  failed: { flow: HeldFlow; error: string }[];
  // Flows discarded instead of re-injected, with release.heldPackets drop.
  discarded?: HeldFlow[];
}

// The node's datapath as the controller uses it.
export interface DatapathPort {
  // Installs the frontends of a workload, replacing the previous set, with
  // the gate closed (hold) or open (pass).
  setFrontends(workload: WorkloadKey, frontends: Frontend[], gateClosed: boolean): void;
  // Returns whether the gate that an earlier agent left in the datapath
  // for any of these frontends is closed, before this agent installs
  // them. A datapath that keeps no state across restarts returns false.
  pinnedGateClosed?(frontends: Frontend[]): boolean;
  // Sets the bounds on the flows held for the workload, from its
  // heldFlowLimits. Call it after setFrontends.
  setHeldLimits(workload: WorkloadKey, limits: HeldFlowLimits): void;
  // Forgets the workload and returns the flows it still held, which
  // nothing releases any more, for counting.
  removeWorkload(workload: WorkloadKey): HeldFlow[];
  closeGate(workload: WorkloadKey): void;
  // Opens the gate, then re-injects the held frames of the workload.
  release(workload: WorkloadKey): Promise<ReleaseOutcome>;
  // Re-injects, with the gate still closed, the held frames sent to the
  // given frontends, once the node's load balancer has a backend for them
  // but not yet for every frontend of the workload. A datapath that cannot
  // re-inject past its closed gate leaves them for release().
  releaseEarly?(workload: WorkloadKey, frontends: Frontend[]): Promise<ReleaseOutcome>;
  // Drops held frames whose first packet is older than cutoffMs
  // (CLOCK_MONOTONIC), and returns them for counting.
  expireHeld(workload: WorkloadKey, cutoffMs: number): HeldFlow[];
  heldFlows(workload?: WorkloadKey): HeldFlow[];
  onWake(listener: (signal: WakeSignal) => void): void;
}

// A bound left out is the agent's default from its configuration.
export interface HeldFlowLimits {
  // Flows held at once for one service id of the workload.
  perService?: number;
  // Flows held at once for one client address, per service id.
  perClient?: number;
}

// Flows held now and the bytes of their frames.
export interface HeldTotals {
  flows: number;
  bytes: number;
}

// The source of activity: datapath counters in standalone mode, Hubble
// flows in the others. Returns the last time each workload saw traffic on
// this node, as CLOCK_MONOTONIC milliseconds, or nothing for a workload
// with none yet.
export interface ActivitySource {
  lastActivity(workload: WorkloadKey): number | undefined;
}

// Whether held flows of a workload may be released. Standalone mode requires
// for a Ready endpoint; chained mode adds "this node's Cilium datapath has
// a backend".
export interface ReleaseCheck {
  readyToRelease(workload: WorkloadKey): boolean;
}

// Whether this node's service load balancer (kube-proxy, Cilium) has
// programmed a backend for the frontends, so that a re-injected packet
// reaches one instead of missing the translation.
export interface BackendCheck {
  // Resolves true once every frontend has a backend, false after timeoutMs.
  // A check that can tell may pass onProgrammed the frontends that got a
  // backend while others are still missing.
  waitProgrammed(frontends: Frontend[], timeoutMs: number, onProgrammed?: (frontends: Frontend[]) => void): Promise<boolean>;
}

// A workload's replica count and resourceVersion from an informer cache.
// The Scale subresource shares its parent object's resourceVersion.
export interface KnownScale {
  replicas: number;
  resourceVersion: string;
}

export interface TargetRef {
  apiVersion: string;
  kind: string;
  name: string;
}

// The /scale subresource of a workload.
export interface ScalePort {
  // Scales to at least replicas. Returns true when this call changed the
  // count, false when it already was at least replicas. known is the
  // target as an informer last saw it, which saves the read before the
  // write when it is current.
  scaleUp(namespace: string, target: TargetRef, replicas: number, known?: KnownScale): Promise<boolean>;
  // Scales to exactly replicas, failing on a concurrent change.
  scaleTo(namespace: string, target: TargetRef, replicas: number): Promise<void>;
  // Reads the target's Scale: its replica count and the label selector of
  // its pods, or null when the target does not exist. Rejects with a
  // message naming the target when it cannot be scaled at all, such as a
  // kind the API server does not serve.
  readScale(namespace: string, target: TargetRef): Promise<TargetScale | null>;
}

export interface TargetScale {
  replicas: number;
  // status.selector of the Scale, in label selector syntax ("app=web").
  selector: string | undefined;
}
