// The testbed's merged event stream: kubelet events, service proxy syncs,
// agent log lines and client runs, each stamped with Unix milliseconds, so
// that a demo can print one timeline of a cold start across components.

import { EventEmitter } from 'node:events';

export type EventSource = 'kubelet' | 'service-proxy' | 'agent' | 'client';

export interface TestbedEvent {
  // Date.now() when the event happened. Agent lines carry pino's own
  // timestamp, which has millisecond resolution.
  unixMs: number;
  source: EventSource;
  // The node of the component, when it runs on one.
  node?: string;
  // The kubelet event name ('pod-ready'), 'sync', the agent's log message,
  // or 'client-exited'.
  type: string;
  fields: Record<string, unknown>;
}

// Events kept for queries. Older ones are dropped first.
const DEFAULT_LIMIT = 100_000;

// Emits 'event' with each TestbedEvent as it is recorded, and keeps the
// latest ones for find() and since().
export class Timeline extends EventEmitter {
  private readonly events: TestbedEvent[] = [];

  constructor(private readonly limit = DEFAULT_LIMIT) {
    super();
  }

  record(event: TestbedEvent): void {
    this.events.push(event);
    if (this.events.length > this.limit) this.events.splice(0, this.events.length - this.limit);
    this.emit('event', event);
  }

  // Returns the kept events at or after unixMs, in recording order.
  since(unixMs: number): TestbedEvent[] {
    return this.events.filter((event) => event.unixMs >= unixMs);
  }

  // Returns the first kept event that matches.
  find(predicate: (event: TestbedEvent) => boolean): TestbedEvent | undefined {
    return this.events.find(predicate);
  }

  filter(predicate: (event: TestbedEvent) => boolean): TestbedEvent[] {
    return this.events.filter(predicate);
  }
}

// Formats events as lines of "+milliseconds source node type fields",
// relative to originUnixMs, sorted by time.
export function formatTimeline(events: readonly TestbedEvent[], originUnixMs: number): string {
  return [...events]
    .sort((a, b) => a.unixMs - b.unixMs)
    .map((event) => {
      const offset = `+${String(event.unixMs - originUnixMs).padStart(6)} ms`;
      const where = (event.node ?? '-').padEnd(8);
      return `${offset}  ${event.source.padEnd(13)} ${where} ${event.type}  ${JSON.stringify(event.fields)}`;
    })
    .join('\n');
}
