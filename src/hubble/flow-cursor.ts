// The resume position of a GetFlows stream. Hubble's `since` is inclusive,
// so a stream resumed at the time of the last flow sends that flow again,
// together with any other flow of the same timestamp. The cursor keeps the
// keys of the flows at the latest timestamp and rejects them once.
//
// Hubble also drops followed flows older than `since`, so a resume never
// starts after this host's clock: a node whose clock runs ahead would
// otherwise hide the flows of every other node until the clocks meet. The
// flows that such a node stamped in the future are sent again after a
// resume, so the cursor keeps their keys too.

import { create } from '@bufbuild/protobuf';
import { TimestampSchema, timestampFromMs, timestampMs, type Timestamp } from '@bufbuild/protobuf/wkt';

import type { Flow } from './gen/flow/flow_pb.js';

// Identifies a flow among the flows of one timestamp. Hubble versions
// whose API has Flow.uuid (field 34) set it on every flow.
// NOTE: without a uuid, two flows of the same timestamp that agree on
// node, addresses, ports, verdict and event type count as one after a
// resume.
export function flowKey(flow: Flow): string {
  if (flow.uuid !== '') return flow.uuid;

  const l4 = flow.l4?.protocol;
  const ports = l4?.case === 'TCP' || l4?.case === 'UDP' || l4?.case === 'SCTP' ? `${l4.value.sourcePort}>${l4.value.destinationPort}` : (l4?.case ?? '');
  return [flow.nodeName, flow.IP?.source, flow.IP?.destination, ports, flow.verdict, flow.eventType?.type, flow.eventType?.subType].join('|');
}

// Keys of flows stamped in the future that the cursor keeps. A node whose
// clock runs ahead stamps all of its flows so, and the oldest keys go
// first.
// NOTE: a resume after more such flows than this sends the older ones
// again.
const MAX_FUTURE_KEYS = 4096;

export class FlowCursor {
  // seconds is -1n until the first flow with a time.
  private seconds = -1n;
  private nanos = 0;
  private readonly keysAtLatest = new Set<string>();
  // Keys of flows whose time was after this host's clock when they came,
  // in arrival order.
  private readonly futureKeys = new Set<string>();
  // The earliest `since` of a resume, in Unix ms.
  private floorMs: number;

  // initial is the `since` of the first request; nothing before it is
  // requested on a resume either. nowMs reads this host's clock.
  constructor(
    private readonly initial?: Timestamp,
    private readonly nowMs: () => number = Date.now,
  ) {
    this.floorMs = initial === undefined ? -Infinity : timestampMs(initial);
  }

  // Records a received flow. Returns false for a flow that was delivered
  // before, which happens only for flows at the latest timestamp or
  // stamped in the future.
  // NOTE: a flow older than the latest one is delivered but not recorded.
  // This assumes that the server sends flows in time order, as Relay does
  // after sorting. A flow that the server would have sent late is lost
  // when the stream breaks before it.
  advance(time: Timestamp | undefined, key: string): boolean {
    if (time === undefined) return true;
    if (this.futureKeys.has(key)) return false;
    if (timestampMs(time) > this.nowMs()) this.rememberFuture(key);

    let order: number;
    if (time.seconds === this.seconds) order = Math.sign(time.nanos - this.nanos);
    else order = time.seconds > this.seconds ? 1 : -1;

    if (order > 0) {
      this.seconds = time.seconds;
      this.nanos = time.nanos;
      this.keysAtLatest.clear();
      this.keysAtLatest.add(key);
      return true;
    }

    if (order < 0) return true;
    if (this.keysAtLatest.has(key)) return false;
    this.keysAtLatest.add(key);
    return true;
  }

  // Keeps later resumes from going back before unixMs, such as flows that
  // a filter change would send again for filters that did not exist then.
  raiseFloor(unixMs: number): void {
    this.floorMs = Math.max(this.floorMs, unixMs);
  }

  // The `since` of the next request: the latest flow time, but not after
  // this host's clock, and not before the floor. Before any flow, the
  // initial one or the floor.
  since(): Timestamp | undefined {
    if (this.seconds < 0n) {
      if (this.initial !== undefined && this.floorMs === timestampMs(this.initial)) return this.initial;
      return this.floorMs === -Infinity ? undefined : timestampFromMs(this.floorMs);
    }

    const latest = create(TimestampSchema, { seconds: this.seconds, nanos: this.nanos });
    const clampedMs = Math.max(Math.min(timestampMs(latest), this.nowMs()), this.floorMs);
    return clampedMs === timestampMs(latest) ? latest : timestampFromMs(clampedMs);
  }

  private rememberFuture(key: string): void {
    this.futureKeys.add(key);
    if (this.futureKeys.size <= MAX_FUTURE_KEYS) return;
    const oldest = this.futureKeys.values().next().value as string;
    this.futureKeys.delete(oldest);
  }
}
