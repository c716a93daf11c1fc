// A FlowStream whose whitelist follows a changing set of managed Services.
// An empty whitelist matches every flow, so the stream is open only while
// the whitelist has a filter. Changes made in one event loop turn, such as
// one setFrontends call per workload during a reconcile, open one new call
// instead of one call per change.

import type { Logger } from 'pino';

import type { Backoff } from './backoff.js';
import type { HubbleEndpoint } from './endpoint.js';
import { FlowStream, type FlowStreamStats } from './flow-stream.js';
import type { Flow, FlowFilter } from './gen/flow/flow_pb.js';
import type { GetFlowsResponse } from './gen/observer/observer_pb.js';

export interface ManagedFlowStreamOptions {
  endpoint: HubbleEndpoint;
  logger: Logger;
  onFlow: (flow: Flow, response: GetFlowsResponse) => void;
  // Creates the backoff of each new FlowStream. Defaults to FlowStream's.
  backoff?: () => Backoff;
  // The earliest flow time of the first call. Defaults to the time the
  // first call opens.
  since?: Date;
  // Unix time in milliseconds, replaced by tests.
  unixNow?: () => number;
}

export class ManagedFlowStream {
  private stream: FlowStream | undefined;
  private whitelist: FlowFilter[] = [];
  private blacklist: FlowFilter[] = [];
  // The filters that the open call uses, as JSON, to skip unchanged updates.
  private appliedKey = '[]';
  private pending: NodeJS.Immediate | undefined;
  private started = false;
  // Used by the first call only, see apply().
  private firstSince: Date | undefined;
  private readonly totals: FlowStreamStats = { flows: 0, duplicates: 0, garbled: 0, lostEvents: 0, disconnects: 0 };

  constructor(private readonly options: ManagedFlowStreamOptions) {
    this.firstSince = options.since;
  }

  // Counters over every stream this object opened.
  get stats(): FlowStreamStats {
    const current = this.stream?.stats;
    if (current === undefined) return { ...this.totals };
    return {
      flows: this.totals.flows + current.flows,
      duplicates: this.totals.duplicates + current.duplicates,
      garbled: this.totals.garbled + current.garbled,
      lostEvents: this.totals.lostEvents + current.lostEvents,
      disconnects: this.totals.disconnects + current.disconnects,
    };
  }

  get state(): FlowStream['state'] {
    return this.stream?.state ?? 'idle';
  }

  start(): void {
    this.started = true;
    this.schedule();
  }

  stop(): void {
    this.started = false;
    if (this.pending !== undefined) clearImmediate(this.pending);
    this.pending = undefined;
    this.closeStream();
  }

  // Replaces the filters. The call changes in the next event loop turn.
  setFilters(whitelist: FlowFilter[], blacklist: FlowFilter[] = []): void {
    this.whitelist = whitelist;
    this.blacklist = blacklist;
    this.schedule();
  }

  private schedule(): void {
    if (!this.started || this.pending !== undefined) return;

    this.pending = setImmediate(() => {
      this.pending = undefined;
      this.apply();
    });
  }

  private apply(): void {
    const key = JSON.stringify([this.whitelist, this.blacklist], (_name, value: unknown) => (typeof value === 'bigint' ? String(value) : value));
    if (this.whitelist.length === 0) {
      this.closeStream();
      this.appliedKey = key;
      return;
    }
    if (this.stream !== undefined && key === this.appliedKey) return;
    this.appliedKey = key;

    if (this.stream !== undefined) {
      this.stream.setFilters(this.whitelist, this.blacklist);
      return;
    }

    // A stream that reopens after all Services were gone resumes at the
    // time it reopens, so flows from the gap are not replayed.
    const since = this.firstSince ?? new Date((this.options.unixNow ?? Date.now)());
    this.firstSince = undefined;
    this.stream = new FlowStream({
      endpoint: this.options.endpoint,
      whitelist: this.whitelist,
      blacklist: this.blacklist,
      since,
      logger: this.options.logger,
      backoff: this.options.backoff?.(),
      ...(this.options.unixNow ? { unixNow: this.options.unixNow } : {}),
      onFlow: this.options.onFlow,
    });
    this.stream.start();
  }

  private closeStream(): void {
    const stream = this.stream;
    if (stream === undefined) return;

    stream.stop();
    for (const name of Object.keys(this.totals) as (keyof FlowStreamStats)[]) this.totals[name] += stream.stats[name];
    this.stream = undefined;
  }
}
