// The agent's own Hubble observer endpoint: GetFlows and ServerStatus on a
// unix socket, serving the flows that zerohold held, released and expired
// on this node, so that `hubble observe --server unix://PATH` shows them.
// GetNodes returns UNIMPLEMENTED, as a node's own Hubble does. The socket
// file gets mode 0660, so only root and the socket's group can connect.
//
// Usage:
//   const observer = new ObserverServer({ nodeName, logger });
//   await observer.listen('/run/zerohold/hubble.sock');
//   observer.record({ kind: 'held', workload, service: 'shop/web', flow, atMs });
//   await observer.close();

import { create } from '@bufbuild/protobuf';
import { timestampMs } from '@bufbuild/protobuf/wkt';
import {
  Metadata,
  Server,
  ServerCredentials,
  status,
  type sendUnaryData,
  type ServerUnaryCall,
  type ServerWritableStream,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import { chmod, mkdir, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Logger } from 'pino';

import { compileFilters, InvalidFilterError } from './flow-filter-match.js';
import { LostEventSource, type Flow } from './gen/flow/flow_pb.js';
import { GetFlowsResponseSchema, Observer, ServerStatusResponseSchema, type GetFlowsRequest, type GetFlowsResponse } from './gen/observer/observer_pb.js';
import { heldFlowMessage, type HeldFlowEvent } from './held-flow-messages.js';
import { monotonicMs, unixFromMonotonicMs } from './monotonic-time.js';
import { removeStaleSocket } from '../agent/stale-socket.js';
import { serviceDefinition } from './service-definition.js';
import { FlowRing, RingEntry } from './flow-ring.js';

export const DEFAULT_OBSERVER_SOCKET = '/run/zerohold/hubble.sock';
export const DEFAULT_OBSERVER_CAPACITY = 4096;
export const SOCKET_MODE = 0o660;
// Messages queued for one following client that does not read. Beyond
// it, the client misses flows and receives a lost_events message.
export const FOLLOW_QUEUE_LIMIT = 1024;
const VERSION = 'zerohold';

export interface ObserverServerOptions {
  nodeName: string;
  logger: Logger;
  // Flows kept for requests without follow, like Hubble's ring buffer.
  capacity?: number;
  // CLOCK_MONOTONIC and Unix time in milliseconds, replaced by tests.
  monotonicNow?: () => number;
  unixNow?: () => number;
}

interface Follower {
  call: ServerWritableStream<GetFlowsRequest, GetFlowsResponse>;
  matches: (flow: Flow) => boolean;
  untilMs: number | undefined;
  // The buffered flows that the request asked for, written before any
  // flow recorded later, and replayIndex the next one to write. They are
  // in the ring already, so they do not count against the queue limit.
  replay: RingEntry[];
  replayIndex: number;
  // Flows recorded after the request, up to FOLLOW_QUEUE_LIMIT.
  queue: GetFlowsResponse[];
  // Flows left out since the last lost_events message.
  lost: number;
  writable: boolean;
}

export class ObserverServer {
  private readonly ring: FlowRing;
  private readonly followers = new Set<Follower>();
  private readonly log: Logger;
  private readonly monotonicNow: () => number;
  private readonly unixNow: () => number;
  private readonly startedNs = process.hrtime.bigint();
  private server: Server | undefined;
  private socketPath: string | undefined;

  constructor(private readonly options: ObserverServerOptions) {
    this.ring = new FlowRing(options.capacity ?? DEFAULT_OBSERVER_CAPACITY);
    this.log = options.logger.child({ component: 'hubble-observer' });
    this.monotonicNow = options.monotonicNow ?? monotonicMs;
    this.unixNow = options.unixNow ?? Date.now;
  }

  get followerCount(): number {
    return this.followers.size;
  }

  // Listens on socketPath, creating its directory. A socket file that no
  // process listens on is removed first. Rejects when another process
  // listens on the path or the path is not a socket.
  async listen(socketPath: string): Promise<void> {
    if (this.server) throw new Error(`Hubble observer endpoint is already listening on ${this.socketPath}`);

    await mkdir(dirname(socketPath), { recursive: true });
    await removeStaleSocket(socketPath, 'Hubble observer', 'hubble.observerSocket');

    const server = new Server();
    server.addService(serviceDefinition(Observer), this.implementation());
    await new Promise<number>((resolve, reject) => server.bindAsync(`unix://${socketPath}`, ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))));
    try {
      await chmod(socketPath, SOCKET_MODE);
    } catch (err) {
      server.forceShutdown();
      throw err;
    }

    this.server = server;
    this.socketPath = socketPath;
    this.log.info({ socket: socketPath, capacity: this.ring.capacity }, 'Hubble observer endpoint listening');
  }

  // Ends the open calls, stops listening and removes the socket file.
  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;

    for (const follower of this.followers) follower.call.end();
    this.followers.clear();
    await new Promise<void>((resolve) => {
      server.tryShutdown(() => resolve());
      // A client that keeps its call open would delay the shutdown.
      setTimeout(() => server.forceShutdown(), 1000).unref();
    });
    if (this.socketPath !== undefined) await rm(this.socketPath, { force: true });
    this.log.info({ socket: this.socketPath }, 'Hubble observer endpoint stopped');
    this.socketPath = undefined;
  }

  // Adds a held, released or expired flow to the ring and sends it to the
  // following clients whose filters match.
  record(event: HeldFlowEvent): void {
    const unixMs = unixFromMonotonicMs(event.atMs, this.monotonicNow(), this.unixNow());
    const entry = new RingEntry(unixMs, () => {
      const flow = heldFlowMessage(event, unixMs, this.options.nodeName);
      return create(GetFlowsResponseSchema, { responseTypes: { case: 'flow', value: flow }, nodeName: flow.nodeName, time: flow.time });
    });
    this.ring.push(entry);

    for (const follower of this.followers) {
      // Hubble ends a follow call with `until` at the first flow after it.
      if (follower.untilMs !== undefined && unixMs > follower.untilMs) {
        this.followers.delete(follower);
        this.endWhenFlushed(follower);
        continue;
      }
      if (follower.matches(entry.response.responseTypes.value as Flow)) this.send(follower, entry.response);
    }
  }

  private implementation(): UntypedServiceImplementation {
    return {
      GetFlows: (call: ServerWritableStream<GetFlowsRequest, GetFlowsResponse>) => this.getFlows(call),
      ServerStatus: (_call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) => {
        callback(
          null,
          create(ServerStatusResponseSchema, {
            numFlows: BigInt(this.ring.size),
            maxFlows: BigInt(this.ring.capacity),
            seenFlows: BigInt(this.ring.seen),
            uptimeNs: process.hrtime.bigint() - this.startedNs,
            version: VERSION,
            flowsRate: this.ring.countSince(this.unixNow() - 60_000) / 60,
          }),
        );
      },
      GetNodes: (_call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) => {
        callback({ code: status.UNIMPLEMENTED, details: 'GetNodes is served by Hubble Relay, not by a node' });
      },
    };
  }

  private getFlows(call: ServerWritableStream<GetFlowsRequest, GetFlowsResponse>): void {
    const request = call.request;

    let matches: (flow: Flow) => boolean;
    try {
      matches = compileFilters(request.whitelist, request.blacklist);
    } catch (err) {
      if (!(err instanceof InvalidFilterError)) throw err;
      call.emit('error', { code: status.INVALID_ARGUMENT, details: err.message });
      return;
    }
    if (request.first && request.follow) {
      call.emit('error', { code: status.INVALID_ARGUMENT, details: 'invalid GetFlows request: first cannot be combined with follow' });
      return;
    }
    call.sendMetadata(new Metadata());

    const sinceMs = request.since === undefined ? undefined : timestampMs(request.since);
    const untilMs = request.until === undefined ? undefined : timestampMs(request.until);
    const follower: Follower = { call, matches, untilMs, replay: this.replayOf(request, matches, sinceMs, untilMs), replayIndex: 0, queue: [], lost: 0, writable: true };
    call.on('drain', () => {
      follower.writable = true;
      this.flush(follower);
    });
    call.on('cancelled', () => this.followers.delete(follower));
    call.on('error', (err) => {
      this.followers.delete(follower);
      this.log.debug({ err }, 'GetFlows call failed');
    });

    this.flush(follower);
    // A follow call with `until` in the future stays open until a flow
    // after that time is recorded, as on Hubble.
    if (request.follow && (untilMs === undefined || untilMs > this.unixNow())) {
      this.followers.add(follower);
      return;
    }
    this.endWhenFlushed(follower);
  }

  // Returns the buffered flows that a request selects, as Hubble selects
  // them. With `since`, those from that time on, at most `number` of them.
  // Else the last or first `number`. Else every one in the time range, or
  // none for a bare follow.
  private replayOf(request: GetFlowsRequest, matches: (flow: Flow) => boolean, sinceMs: number | undefined, untilMs: number | undefined): RingEntry[] {
    const inRange = this.ring
      .list()
      .filter((entry) => (sinceMs === undefined || entry.unixMs >= sinceMs) && (untilMs === undefined || entry.unixMs <= untilMs))
      .filter((entry) => matches(entry.response.responseTypes.value as Flow));

    if (request.number > 0n) {
      const count = Number(request.number);
      return sinceMs !== undefined || request.first ? inRange.slice(0, count) : inRange.slice(-count);
    }
    if (request.follow && sinceMs === undefined) return [];
    return inRange;
  }

  private send(follower: Follower, response: GetFlowsResponse): void {
    if (follower.queue.length >= FOLLOW_QUEUE_LIMIT) {
      follower.lost++;
      return;
    }
    follower.queue.push(response);
    this.flush(follower);
  }

  // Writes the replay, then the queued messages, until call.write returns
  // false, which means waiting for 'drain'. The lost_events message
  // follows the flows that were queued before the overflow.
  private flush(follower: Follower): void {
    while (follower.writable && follower.replayIndex < follower.replay.length) {
      follower.writable = follower.call.write(follower.replay[follower.replayIndex++]!.response);
    }
    if (follower.replayIndex < follower.replay.length) return;

    while (follower.writable && follower.queue.length > 0) {
      follower.writable = follower.call.write(follower.queue.shift()!);
    }
    if (follower.writable && follower.queue.length === 0 && follower.lost > 0) {
      follower.writable = follower.call.write(this.lostMessage(follower.lost));
      follower.lost = 0;
    }
  }

  // A lost_events message as Hubble sends when its queue for a client
  // overflows.
  private lostMessage(count: number): GetFlowsResponse {
    return create(GetFlowsResponseSchema, {
      responseTypes: { case: 'lostEvents', value: { source: LostEventSource.OBSERVER_EVENTS_QUEUE, numEventsLost: BigInt(count) } },
      nodeName: this.options.nodeName,
    });
  }

  // Ends the call once the replay, the queue and a pending lost_events
  // message are written. flush() runs on 'drain' before this listener.
  private endWhenFlushed(follower: Follower): void {
    const pending = follower.replayIndex < follower.replay.length || follower.queue.length > 0 || follower.lost > 0;
    if (!pending) {
      follower.call.end();
      return;
    }
    follower.call.once('drain', () => this.endWhenFlushed(follower));
  }
}
