// The base of the agent's Hubble consumers, HubbleActivity and
// SignalDatapath: one ManagedFlowStream with its lifecycle and counters,
// and flow times on the agent's CLOCK_MONOTONIC clock. A subclass sets the
// stream's filters and handles each flow in receive().

import { timestampMs } from '@bufbuild/protobuf/wkt';
import type { Logger } from 'pino';

import type { Backoff } from './backoff.js';
import type { HubbleEndpoint } from './endpoint.js';
import type { FlowStreamStats } from './flow-stream.js';
import type { Flow } from './gen/flow/flow_pb.js';
import type { GetFlowsResponse } from './gen/observer/observer_pb.js';
import { ManagedFlowStream } from './managed-flow-stream.js';
import { monotonicFromUnixMs, monotonicMs } from './monotonic-time.js';

export interface HubbleFollowerOptions {
  endpoint: HubbleEndpoint;
  logger: Logger;
  backoff?: () => Backoff;
  // The earliest flow time of the first call. Defaults to the time of the
  // first call, so that flows from before an agent restart do not count.
  since?: Date;
  // CLOCK_MONOTONIC and Unix time in milliseconds, replaced by tests.
  monotonicNow?: () => number;
  unixNow?: () => number;
}

export abstract class HubbleFlowFollower {
  protected readonly stream: ManagedFlowStream;
  protected readonly monotonicNow: () => number;
  private readonly unixNow: () => number;

  // use names the consumer in the stream's log lines.
  protected constructor(options: HubbleFollowerOptions, use: string) {
    this.monotonicNow = options.monotonicNow ?? monotonicMs;
    this.unixNow = options.unixNow ?? Date.now;
    this.stream = new ManagedFlowStream({
      endpoint: options.endpoint,
      logger: options.logger.child({ use }),
      backoff: options.backoff,
      since: options.since,
      unixNow: this.unixNow,
      onFlow: (flow, response) => this.receive(flow, response),
    });
  }

  get stats(): FlowStreamStats {
    return this.stream.stats;
  }

  get state(): ManagedFlowStream['state'] {
    return this.stream.state;
  }

  start(): void {
    this.stream.start();
  }

  stop(): void {
    this.stream.stop();
  }

  protected abstract receive(flow: Flow, response: GetFlowsResponse): void;

  // Returns the time of the flow, else of its response, as CLOCK_MONOTONIC
  // milliseconds, or nowMs when neither carries one.
  protected monotonicTimeOf(flow: Flow, response: GetFlowsResponse, nowMs = this.monotonicNow()): number {
    const time = flow.time ?? response.time;
    return time === undefined ? nowMs : monotonicFromUnixMs(timestampMs(time), nowMs, this.unixNow());
  }
}
