// The flow buffer of the test Hubble server: flows in publish order, each
// stored with its encoded GetFlowsResponse, so a stream to many clients or
// a replay after a reconnect encodes each flow once.

import { create, toBinary, type MessageInitShape } from '@bufbuild/protobuf';
import { timestampNow, type Timestamp } from '@bufbuild/protobuf/wkt';

import { FlowSchema, type Flow } from '../../src/hubble/gen/flow/flow_pb.js';
import { GetFlowsResponseSchema } from '../../src/hubble/gen/observer/observer_pb.js';

export interface LoggedFlow {
  // Position in the log since the server was created, never reused.
  sequence: number;
  flow: Flow;
  timeNs: bigint;
  response: Buffer;
}

export function timestampNs(time: Timestamp): bigint {
  return time.seconds * 1_000_000_000n + BigInt(time.nanos);
}

export class FlowLog {
  private entries: LoggedFlow[] = [];
  // Sequence of entries[0].
  private first = 0;
  private readonly waiters = new Set<() => void>();
  seen = 0;

  // capacity bounds the buffer like Hubble's ring: the oldest flows go.
  constructor(readonly capacity: number) {}

  get size(): number {
    return this.entries.length;
  }

  // Sequence of the next flow to be appended.
  get end(): number {
    return this.first + this.entries.length;
  }

  // Appends a flow, with the current time when it has none, and wakes the
  // following streams.
  append(init: MessageInitShape<typeof FlowSchema>, nodeName: string): LoggedFlow {
    const flow = create(FlowSchema, init);
    flow.time ??= timestampNow();
    if (flow.nodeName === '') flow.nodeName = nodeName;

    const message = create(GetFlowsResponseSchema, { responseTypes: { case: 'flow', value: flow }, nodeName: flow.nodeName, time: flow.time });
    const bytes = toBinary(GetFlowsResponseSchema, message);
    const entry: LoggedFlow = { sequence: this.end, flow, timeNs: timestampNs(flow.time), response: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength) };
    this.entries.push(entry);
    this.seen++;

    // Trim in batches, so that appending stays O(1) on average.
    if (this.entries.length > this.capacity * 2) {
      const excess = this.entries.length - this.capacity;
      this.entries = this.entries.slice(excess);
      this.first += excess;
    }

    this.wake();
    return entry;
  }

  // Returns the entry at sequence, the oldest kept one when sequence was
  // trimmed, or undefined at the end of the log.
  at(sequence: number): LoggedFlow | undefined {
    const index = Math.max(0, sequence - this.first);
    if (this.entries.length - index > this.capacity) return this.entries[this.entries.length - this.capacity];
    return this.entries[index];
  }

  // Resolves at the next append() or wake().
  next(): Promise<void> {
    return new Promise((resolve) => this.waiters.add(resolve));
  }

  wake(): void {
    const waiters = [...this.waiters];
    this.waiters.clear();
    for (const resolve of waiters) resolve();
  }
}
