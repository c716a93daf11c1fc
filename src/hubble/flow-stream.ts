// A GetFlows stream in follow mode that survives restarts of Hubble or
// Relay. After the call ends for any reason other than stop(), it waits an
// exponential backoff with jitter. Then it opens a new call whose `since`
// is the time of the last flow received, and the cursor drops the flows
// that the new call sends again. A message that fails to decode is
// counted, logged and skipped without ending the call.

import type { StatusObject } from '@grpc/grpc-js';
import { status as grpcStatus } from '@grpc/grpc-js';
import { timestampDate, timestampFromDate } from '@bufbuild/protobuf/wkt';
import type { Logger } from 'pino';

import { Backoff } from './backoff.js';
import { describeEndpoint, type HubbleEndpoint } from './endpoint.js';
import { FlowCursor, flowKey } from './flow-cursor.js';
import type { Flow, FlowFilter } from './gen/flow/flow_pb.js';
import { NodeState } from './gen/relay/relay_pb.js';
import type { GetFlowsResponse } from './gen/observer/observer_pb.js';
import { isGarbled, ObserverClient, type FlowsCall, type FlowsMessage } from './observer-client.js';
import { RepeatLimiter } from './repeat-limiter.js';

// At most one log line per interval for repeated garbled messages, lost
// events and listener errors.
const REPEAT_LOG_INTERVAL_MS = 10_000;

// How far back the call after a filter change resumes at most. It covers
// the switch from the old call to the new one and the delay of Relay's
// sorting. It leaves out the flows of a quiet hour that the new filters
// would match, such as old drops to a workload that just opted in.
export const FILTER_CHANGE_LOOKBACK_MS = 10_000;

export interface FlowStreamOptions {
  endpoint: HubbleEndpoint;
  whitelist: FlowFilter[];
  blacklist?: FlowFilter[];
  // The earliest flow time to request. Defaults to the time of start() on
  // this host's clock, so that flows during a first reconnect are not lost.
  since?: Date;
  // Called once for every flow, in the order the server sends them.
  onFlow: (flow: Flow, response: GetFlowsResponse) => void;
  logger: Logger;
  backoff?: Backoff;
  // Unix time in milliseconds, replaced by tests.
  unixNow?: () => number;
}

// idle: before start(). connecting: a call is open and has received
// neither headers nor a message. streaming: the server sent headers or a
// message. waiting: backoff before the next call. stopped: after stop().
export type FlowStreamState = 'idle' | 'connecting' | 'streaming' | 'waiting' | 'stopped';

export interface FlowStreamStats {
  flows: number;
  // Flows sent again after a resume and dropped.
  duplicates: number;
  garbled: number;
  // Sum of num_events_lost over the lost_events messages.
  lostEvents: number;
  // Calls that ended other than by stop() or setFilters().
  disconnects: number;
}

export class FlowStream {
  readonly stats: FlowStreamStats = { flows: 0, duplicates: 0, garbled: 0, lostEvents: 0, disconnects: 0 };

  private readonly log: Logger;
  private readonly backoff: Backoff;
  private cursor: FlowCursor | undefined;
  private whitelist: FlowFilter[];
  private blacklist: FlowFilter[];
  private currentState: FlowStreamState = 'idle';
  // Incremented by every new call and by stop(), so that events of an
  // abandoned call or a connect() that finished late are ignored.
  private generation = 0;
  private client: ObserverClient | undefined;
  private call: FlowsCall | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private readonly garbledLog = new RepeatLimiter(REPEAT_LOG_INTERVAL_MS);
  private readonly lostLog = new RepeatLimiter(REPEAT_LOG_INTERVAL_MS);
  private readonly listenerErrorLog = new RepeatLimiter(REPEAT_LOG_INTERVAL_MS);

  constructor(private readonly options: FlowStreamOptions) {
    this.log = options.logger.child({ component: 'hubble', endpoint: describeEndpoint(options.endpoint) });
    this.backoff = options.backoff ?? new Backoff();
    this.whitelist = options.whitelist;
    this.blacklist = options.blacklist ?? [];
  }

  get state(): FlowStreamState {
    return this.currentState;
  }

  start(): void {
    if (this.currentState !== 'idle') throw new Error(`FlowStream.start: already started (state ${this.currentState})`);

    const unixNow = this.options.unixNow ?? Date.now;
    this.cursor = new FlowCursor(timestampFromDate(this.options.since ?? new Date(unixNow())), unixNow);
    void this.open();
  }

  // Replaces the filters and opens a new call at once, resuming after the
  // last flow received, or FILTER_CHANGE_LOOKBACK_MS ago if that is later.
  setFilters(whitelist: FlowFilter[], blacklist: FlowFilter[] = []): void {
    this.whitelist = whitelist;
    this.blacklist = blacklist;
    if (this.currentState === 'idle' || this.currentState === 'stopped') return;

    this.cursor!.raiseFloor((this.options.unixNow ?? Date.now)() - FILTER_CHANGE_LOOKBACK_MS);
    this.abandonCall();
    void this.open();
  }

  stop(): void {
    if (this.currentState === 'stopped') return;

    this.generation++;
    this.abandonCall();
    this.setState('stopped');
  }

  private async open(): Promise<void> {
    const generation = ++this.generation;
    this.setState('connecting');

    let client: ObserverClient;
    try {
      client = await ObserverClient.connect(this.options.endpoint);
    } catch (err) {
      // Unreadable TLS files or an invalid address: retry, because a
      // mounted Secret may appear later.
      if (generation === this.generation) this.retry(generation, err as Error);
      return;
    }
    if (generation !== this.generation) {
      client.close();
      return;
    }

    const since = this.cursor!.since();
    const request = { follow: true, whitelist: this.whitelist, blacklist: this.blacklist, since };
    const call = client.streamFlows(request, {
      onMetadata: () => {
        if (generation === this.generation) this.connected();
      },
      onMessage: (message) => {
        if (generation === this.generation) this.receive(message);
      },
      onStatus: (status) => {
        if (generation === this.generation) this.ended(generation, status);
      },
    });
    this.client = client;
    this.call = call;
    this.log.debug({ since: since && timestampDate(since).toISOString(), filters: this.whitelist.length }, 'GetFlows call opened');
  }

  private connected(): void {
    if (this.currentState !== 'connecting') return;

    this.backoff.reset();
    this.setState('streaming');
  }

  private receive(message: FlowsMessage): void {
    this.connected();

    if (isGarbled(message)) {
      this.stats.garbled++;
      const suppressed = this.garbledLog.record();
      if (suppressed !== null) {
        this.log.warn({ err: message.error, bytes: message.bytes, suppressed }, 'skipped a GetFlows message that failed to decode');
      }
      return;
    }

    const response = message.responseTypes;
    switch (response.case) {
      case 'flow':
        this.deliver(response.value, message);
        return;
      case 'lostEvents': {
        this.stats.lostEvents += Number(response.value.numEventsLost);
        const suppressed = this.lostLog.record();
        if (suppressed !== null) {
          this.log.warn({ lost: Number(response.value.numEventsLost), source: response.value.source, node: message.nodeName, suppressed }, 'Hubble lost events');
        }
        return;
      }
      case 'nodeStatus':
        this.log.info(
          { state: NodeState[response.value.stateChange], nodes: response.value.nodeNames, message: response.value.message || undefined },
          'Relay node status changed',
        );
        return;
      default:
        return;
    }
  }

  private deliver(flow: Flow, response: GetFlowsResponse): void {
    // Hubble filters `since` on the response time, which equals flow.time.
    if (!this.cursor!.advance(response.time ?? flow.time, flowKey(flow))) {
      this.stats.duplicates++;
      return;
    }

    this.stats.flows++;
    try {
      this.options.onFlow(flow, response);
    } catch (err) {
      const suppressed = this.listenerErrorLog.record();
      if (suppressed !== null) this.log.error({ err, suppressed }, 'flow listener failed');
    }
  }

  private ended(generation: number, status: StatusObject): void {
    this.stats.disconnects++;
    const code = grpcStatus[status.code] ?? String(status.code);
    this.closeClient();
    this.retry(generation, new Error(`GetFlows ended with ${code}: ${status.details}`));
  }

  private retry(generation: number, cause: Error): void {
    const delayMs = this.backoff.next();
    this.setState('waiting');
    this.log.warn({ err: cause, delayMs, attempt: this.backoff.attempts }, 'Hubble stream failed, reconnecting');

    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (generation === this.generation) void this.open();
    }, delayMs);
  }

  private abandonCall(): void {
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;

    // Increment first, so the CANCELLED status of this call is ignored.
    this.generation++;
    this.call?.cancel();
    this.closeClient();
  }

  private closeClient(): void {
    this.call = undefined;
    this.client?.close();
    this.client = undefined;
  }

  private setState(next: FlowStreamState): void {
    if (next === this.currentState) return;

    this.log.info(`${this.currentState} -> ${next}`);
    this.currentState = next;
  }
}
