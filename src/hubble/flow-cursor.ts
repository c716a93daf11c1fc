// The resume position of a GetFlows stream. Hubble's `since` is inclusive,
// so a stream resumed at the time of the last flow sends that flow again,
// together with any other flow of the same timestamp. The cursor keeps the
// keys of the flows at the latest timestamp and rejects them once.

import { create } from '@bufbuild/protobuf';
import { TimestampSchema, type Timestamp } from '@bufbuild/protobuf/wkt';

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

export class FlowCursor {
  // seconds is -1n until the first flow with a time.
  private seconds = -1n;
  private nanos = 0;
  private readonly keysAtLatest = new Set<string>();

  // initial is the `since` of the first request; nothing before it is
  // requested on a resume either.
  constructor(private readonly initial?: Timestamp) {}

  // Records a received flow. Returns false for a flow that was delivered
  // before, which happens only for flows at the latest timestamp.
  // NOTE: a flow older than the latest one is delivered but not recorded.
  // This assumes that the server sends flows in time order, as Relay does
  // after sorting. A flow that the server would have sent late is lost
  // when the stream breaks before it.
  advance(time: Timestamp | undefined, key: string): boolean {
    if (time === undefined) return true;

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

  // The `since` of the next request: the latest flow time, or the initial
  // one before any flow arrived.
  since(): Timestamp | undefined {
    if (this.seconds < 0n) return this.initial;
    return create(TimestampSchema, { seconds: this.seconds, nanos: this.nanos });
  }
}
