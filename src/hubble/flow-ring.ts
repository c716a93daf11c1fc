// The bounded buffer of recent flows that the agent's observer endpoint
// serves to requests without follow. The oldest flow goes when it is full.

import type { GetFlowsResponse } from './gen/observer/observer_pb.js';

// One buffered flow. The message is built on first use, because most
// flows are never requested and a release of thousands of held flows
// should not build thousands of messages on the agent's event loop.
export class RingEntry {
  private built: GetFlowsResponse | undefined;

  constructor(
    // The flow time as Unix milliseconds.
    readonly unixMs: number,
    private readonly build: () => GetFlowsResponse,
  ) {}

  get response(): GetFlowsResponse {
    this.built ??= this.build();
    return this.built;
  }
}

export class FlowRing {
  private readonly entries: (RingEntry | undefined)[];
  // Index of the next write.
  private next = 0;
  private count = 0;
  // Flows pushed since the ring was created.
  seen = 0;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`invalid flow buffer capacity ${capacity}: expected a positive integer`);
    this.entries = new Array<RingEntry | undefined>(capacity);
  }

  get size(): number {
    return this.count;
  }

  push(entry: RingEntry): void {
    this.entries[this.next] = entry;
    this.next = (this.next + 1) % this.capacity;
    this.count = Math.min(this.capacity, this.count + 1);
    this.seen++;
  }

  // The entries from the oldest to the newest.
  list(): RingEntry[] {
    const start = (this.next - this.count + this.capacity) % this.capacity;
    const result: RingEntry[] = [];
    for (let i = 0; i < this.count; i++) result.push(this.entries[(start + i) % this.capacity]!);
    return result;
  }

  // The number of entries at or after unixMs.
  countSince(unixMs: number): number {
    return this.list().filter((entry) => entry.unixMs >= unixMs).length;
  }
}
