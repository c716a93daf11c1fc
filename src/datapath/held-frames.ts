// The frames held in user space until their service has a backend.
//
// TCP keeps one frame per flow, the newest SYN. A client takes its first
// RTT sample from the SYN that the server acknowledges, and the newest SYN
// gives a sample close to the real RTT instead of the whole wait. Every UDP datagram
// is its own request and is kept separately. The store is bounded per
// service, per client address of a service and in total; a frame over a
// bound is rejected and reported to the caller, never dropped silently.
// perService and perSource are defaults that setServiceLimits() overrides
// for one service, as a ScaleToZero's heldFlowLimits do.

import { flowKeyOf, type HeldRecord } from './records.js';

export interface HeldLimits {
  // Flows held for one service id.
  perService: number;
  // Flows held for one client address, counted per service id.
  perSource: number;
  // Flows held for all services together.
  total: number;
}

export type ServiceHeldLimits = Pick<HeldLimits, 'perService' | 'perSource'>;

export const DEFAULT_HELD_LIMITS: HeldLimits = {
  perService: 4096,
  perSource: 256,
  total: 65536,
};

export interface HeldFlow {
  record: HeldRecord;
  // Timestamp of the first frame of this flow, kept when newer SYNs replace
  // the frame; the cold start is measured from it.
  firstTimestampNs: bigint;
  // SYNs of this flow seen so far, 1 for UDP.
  frames: number;
}

// The bound that made the store reject a frame: the service's flows, the
// client's flows within the service, or the flows of all services.
export type RejectReason = 'service-limit' | 'source-limit' | 'total-limit';

export type HoldOutcome = { result: 'held' } | { result: 'replaced' } | { result: 'rejected'; reason: RejectReason };

export class HeldFrameStore {
  readonly limits: HeldLimits;
  // serviceId -> flow key -> flow. Map iteration order is insertion order,
  // so frames are released in the order their flows arrived.
  private readonly services = new Map<number, Map<string, HeldFlow>>();
  // "serviceId|source address" -> flows held.
  private readonly perSource = new Map<string, number>();
  private readonly serviceLimits = new Map<number, ServiceHeldLimits>();
  private count = 0;
  private byteCount = 0;
  // Makes every UDP datagram a flow of its own.
  private datagramSequence = 0;

  constructor(limits: HeldLimits = DEFAULT_HELD_LIMITS) {
    checkLimits(limits);
    this.limits = { ...limits };
  }

  // Sets the perService and perSource bounds of one service, or with
  // undefined returns it to the defaults. Flows held already stay, even
  // above a lowered bound; the bound applies to the next frames.
  setServiceLimits(serviceId: number, limits: ServiceHeldLimits | undefined): void {
    if (limits === undefined) {
      this.serviceLimits.delete(serviceId);
      return;
    }
    checkLimits(limits);
    this.serviceLimits.set(serviceId, { ...limits });
  }

  // The perService and perSource bounds that apply to serviceId.
  limitsOf(serviceId: number): ServiceHeldLimits {
    return this.serviceLimits.get(serviceId) ?? this.limits;
  }

  get size(): number {
    return this.count;
  }

  get bytes(): number {
    return this.byteCount;
  }

  sizeOf(serviceId: number): number {
    return this.services.get(serviceId)?.size ?? 0;
  }

  // Returns the bound that rejects a flow before it is decoded: the total or
  // the service's bound when it is reached and the flow is not held yet. A
  // held TCP flow is never rejected here, because its newer SYN replaces
  // the held one. Undefined means add() decides, with the per-source bound.
  rejection(serviceId: number, key: string, tcp: boolean): Exclude<RejectReason, 'source-limit'> | undefined {
    const flows = this.services.get(serviceId);
    if (tcp && flows?.has(key)) return undefined;
    return this.fullBound(serviceId, flows);
  }

  add(record: HeldRecord): HoldOutcome {
    const key = this.flowKey(record);
    let flows = this.services.get(record.serviceId);

    const existing = flows?.get(key);
    if (existing) {
      this.byteCount += record.frame.length - existing.record.frame.length;
      existing.record = record;
      existing.frames++;
      return { result: 'replaced' };
    }

    const full = this.fullBound(record.serviceId, flows);
    if (full !== undefined) return { result: 'rejected', reason: full };
    const source = sourceKey(record.serviceId, record.flow.source);
    if ((this.perSource.get(source) ?? 0) >= this.limitsOf(record.serviceId).perSource) {
      return { result: 'rejected', reason: 'source-limit' };
    }

    if (!flows) {
      flows = new Map();
      this.services.set(record.serviceId, flows);
    }
    flows.set(key, { record, firstTimestampNs: record.timestampNs, frames: 1 });
    this.perSource.set(source, (this.perSource.get(source) ?? 0) + 1);
    this.count++;
    this.byteCount += record.frame.length;
    return { result: 'held' };
  }

  // Removes and returns every flow held for serviceId, oldest first.
  take(serviceId: number): HeldFlow[] {
    const flows = this.services.get(serviceId);
    if (!flows) return [];

    this.services.delete(serviceId);
    const taken = [...flows.values()];
    for (const flow of taken) {
      this.forget(flow);
    }
    return taken;
  }

  // Removes and returns the flows of serviceId that match, oldest first.
  takeMatching(serviceId: number, matches: (flow: HeldFlow) => boolean): HeldFlow[] {
    const flows = this.services.get(serviceId);
    if (!flows) return [];

    const taken: HeldFlow[] = [];
    for (const [key, flow] of flows) {
      if (!matches(flow)) continue;
      flows.delete(key);
      this.forget(flow);
      taken.push(flow);
    }
    if (flows.size === 0) this.services.delete(serviceId);
    return taken;
  }

  // Removes and returns the flows of serviceId whose first frame is older
  // than cutoffNs (CLOCK_MONOTONIC, like the record timestamps).
  takeOlderThan(serviceId: number, cutoffNs: bigint): HeldFlow[] {
    const flows = this.services.get(serviceId);
    if (!flows) return [];

    const taken: HeldFlow[] = [];
    for (const [key, flow] of flows) {
      if (flow.firstTimestampNs < cutoffNs) {
        flows.delete(key);
        this.forget(flow);
        taken.push(flow);
      }
    }
    if (flows.size === 0) this.services.delete(serviceId);
    return taken;
  }

  // Returns the held flows without removing them, for status output.
  list(serviceId?: number): HeldFlow[] {
    if (serviceId !== undefined) {
      return [...(this.services.get(serviceId)?.values() ?? [])];
    }
    return [...this.services.values()].flatMap((flows) => [...flows.values()]);
  }

  // Returns the bound that a new flow of serviceId would exceed, the total
  // before the service's, or undefined when both have room.
  private fullBound(serviceId: number, flows: Map<string, HeldFlow> | undefined): Exclude<RejectReason, 'source-limit'> | undefined {
    if (this.count >= this.limits.total) return 'total-limit';
    if ((flows?.size ?? 0) >= this.limitsOf(serviceId).perService) return 'service-limit';
    return undefined;
  }

  private flowKey(record: HeldRecord): string {
    const base = flowKeyOf(record.frame, record.l3Offset, record.l4Offset, record.ipv6, record.l4Proto);
    return record.l4Proto === 6 ? base : `${base}|${this.datagramSequence++}`;
  }

  private forget(flow: HeldFlow): void {
    const source = sourceKey(flow.record.serviceId, flow.record.flow.source);
    const remaining = (this.perSource.get(source) ?? 1) - 1;
    if (remaining === 0) {
      this.perSource.delete(source);
    } else {
      this.perSource.set(source, remaining);
    }
    this.count--;
    this.byteCount -= flow.record.frame.length;
  }
}

function sourceKey(serviceId: number, source: string): string {
  return `${serviceId}|${source}`;
}

function checkLimits(limits: Partial<HeldLimits>): void {
  for (const [name, value] of Object.entries(limits)) {
    if (!Number.isInteger(value) || value < 1) {
      throw new RangeError(`held frame limit ${name} is ${value}, expected a positive integer`);
    }
  }
}
