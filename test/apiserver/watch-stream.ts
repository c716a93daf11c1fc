// WATCH requests: newline-delimited JSON events over a chunked response,
// started from a resourceVersion out of the store's bounded history, with
// periodic BOOKMARK events and kube-apiserver's selector semantics.
//
// An event moves an object across the selector boundary the way the watch
// cache reports it: an object that starts matching arrives as ADDED, and
// one that stops matching leaves as DELETED with its previous content.

import type { IncomingMessage, ServerResponse } from 'node:http';

import type { ApiContext } from './api-context.js';
import { parseResourceVersion } from './list.js';
import { matchesFilter, type ObjectFilter } from './object-filter.js';
import { present } from './object-writes.js';
import type { KubeObject } from './objects.js';
import { apiVersionOf, type ResourceType } from './resource-type.js';
import { ApiError, tooLargeResourceVersion, tooOldResourceVersion } from './status.js';
import type { StoreEvent } from './store.js';

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';

// Encoded event lines per object, keyed by event type and served version.
// Every watch of a resource receives the same line for a store event, so
// it is encoded once rather than copied and encoded per watcher, as
// kube-apiserver's watch cache does. Stored objects are frozen, so a line
// stays valid as long as its object lives.
const encodedLines = new WeakMap<KubeObject, Map<string, string>>();

// The object that a DELETED event carries when an update moves an object
// out of a watch's selector: its previous content at the update's version.
// Keyed by the updated object, so that every watch the update leaves gets
// one shared object, and with it one encoded line.
const leavingObjects = new WeakMap<KubeObject, KubeObject>();

export interface WatchRequest {
  type: ResourceType;
  filter: ObjectFilter;
  query: URLSearchParams;
  bookmarkIntervalMs: number;
}

// The annotation on the BOOKMARK that ends the initial events of a
// sendInitialEvents=true watch.
const INITIAL_EVENTS_END = 'k8s.io/initial-events-end';

export class WatchHub {
  readonly #streams = new Set<WatchStream>();

  get openCount(): number {
    return this.#streams.size;
  }

  // Starts a watch on `res`. Throws an ApiError for a request that fails
  // before the stream starts; that error goes out as a plain HTTP response.
  open(context: ApiContext, req: IncomingMessage, res: ServerResponse, request: WatchRequest): void {
    const { store } = context;
    const { query } = request;
    const resourceVersion = query.get('resourceVersion') ?? '';
    const sendInitialEvents = parseBool(query.get('sendInitialEvents'));
    const allowBookmarks = parseBool(query.get('allowWatchBookmarks'));
    const timeoutSeconds = parseTimeout(query.get('timeoutSeconds'));

    if (sendInitialEvents && (!allowBookmarks || query.get('resourceVersionMatch') !== 'NotOlderThan')) {
      throw new ApiError(422, 'Invalid', 'ListOptions.meta.k8s.io "" is invalid: sendInitialEvents requires allowWatchBookmarks=true and resourceVersionMatch=NotOlderThan');
    }
    const requested = resourceVersion && resourceVersion !== '0' ? parseResourceVersion(resourceVersion) : undefined;
    if (requested !== undefined && requested > store.revision) throw tooLargeResourceVersion(requested, store.revision);

    const stream = new WatchStream(res, request.type, request.filter);
    this.#streams.add(stream);
    res.on('close', () => {
      stream.stop();
      this.#streams.delete(stream);
    });
    req.socket.setNoDelay(true);

    // Everything from here to subscribe() runs without yielding, so no
    // write can fall between the replayed events and the live ones.
    if (requested !== undefined && !sendInitialEvents) {
      if (requested < store.oldestRevision) {
        // kube-apiserver reports an expired start in the stream and ends it.
        stream.sendError(tooOldResourceVersion(requested, store.oldestRevision));
        stream.end();
        return;
      }
      for (const event of store.eventsAfter(requested)) stream.deliver(event);
    } else {
      // Without a resourceVersion (or with "0") a watch starts with
      // synthetic ADDED events for the current objects.
      for (const [, object] of store.list(request.type.storageKey)) stream.sendObject('ADDED', object);
      if (sendInitialEvents) stream.sendBookmark(store.revision, { [INITIAL_EVENTS_END]: 'true' });
    }

    stream.subscribe(context, allowBookmarks ? request.bookmarkIntervalMs : undefined, timeoutSeconds);
  }

  // Ends every open watch: gracefully (the chunked response completes, as
  // at a watch timeout) or abruptly (the socket is destroyed mid-stream, as
  // when an apiserver or load balancer dies). Returns the number ended.
  dropAll(abrupt: boolean): number {
    const streams = [...this.#streams];
    for (const stream of streams) {
      if (abrupt) stream.destroy();
      else stream.end();
    }
    return streams.length;
  }
}

class WatchStream {
  readonly #res: ServerResponse;
  readonly #type: ResourceType;
  readonly #filter: ObjectFilter;
  #unsubscribe: (() => void) | undefined;
  #timers: NodeJS.Timeout[] = [];
  #stopped = false;

  constructor(res: ServerResponse, type: ResourceType, filter: ObjectFilter) {
    this.#res = res;
    this.#type = type;
    this.#filter = filter;
    res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-cache, private' });
    // client-node's Watch resolves once the headers arrive, before any event.
    res.flushHeaders();
  }

  subscribe(context: ApiContext, bookmarkIntervalMs: number | undefined, timeoutSeconds: number | undefined): void {
    if (this.#stopped) return;
    this.#unsubscribe = context.store.subscribe((event) => this.deliver(event));
    if (bookmarkIntervalMs !== undefined) {
      this.#timers.push(setInterval(() => this.sendBookmark(context.store.revision), bookmarkIntervalMs));
    }
    if (timeoutSeconds !== undefined) this.#timers.push(setTimeout(() => this.end(), timeoutSeconds * 1000));
  }

  // Sends the watch event that a store event means for this watch, if any.
  deliver(event: StoreEvent): void {
    if (event.resource !== this.#type.storageKey) return;
    const matchesNow = event.type !== 'DELETED' && matchesFilter(this.#filter, event.object);
    const matchedBefore = event.previous !== undefined && matchesFilter(this.#filter, event.previous);

    if (event.type === 'DELETED') {
      if (matchedBefore) this.sendObject('DELETED', event.object);
    } else if (matchesNow && matchedBefore) {
      this.sendObject('MODIFIED', event.object);
    } else if (matchesNow) {
      this.sendObject('ADDED', event.object);
    } else if (matchedBefore) {
      this.sendObject('DELETED', leavingObject(event));
    }
  }

  sendObject(type: 'ADDED' | 'MODIFIED' | 'DELETED', object: KubeObject): void {
    if (this.#stopped || this.#res.writableEnded) return;
    let lines = encodedLines.get(object);
    if (!lines) {
      lines = new Map();
      encodedLines.set(object, lines);
    }
    const key = `${type} ${apiVersionOf(this.#type)} ${this.#type.kind}`;
    let line = lines.get(key);
    if (line === undefined) {
      line = encodeEvent(type, present(this.#type, object));
      lines.set(key, line);
    }
    this.#res.write(line);
  }

  sendBookmark(revision: number, annotations?: Record<string, string>): void {
    const metadata: Record<string, unknown> = { resourceVersion: String(revision) };
    if (annotations) metadata.annotations = annotations;
    this.#send('BOOKMARK', { kind: this.#type.kind, apiVersion: apiVersionOf(this.#type), metadata });
  }

  sendError(error: ApiError): void {
    this.#send('ERROR', error.toStatus());
  }

  #send(type: WatchEventType, object: unknown): void {
    if (this.#stopped || this.#res.writableEnded) return;
    this.#res.write(encodeEvent(type, object));
  }

  end(): void {
    this.stop();
    if (!this.#res.writableEnded) this.#res.end();
  }

  destroy(): void {
    this.stop();
    this.#res.socket?.destroy();
  }

  stop(): void {
    this.#stopped = true;
    this.#unsubscribe?.();
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers = [];
  }
}

// Accepts the boolean forms Go's strconv.ParseBool does.
export function parseBool(value: string | null): boolean {
  return value !== null && ['1', 't', 'T', 'true', 'TRUE', 'True'].includes(value);
}

function parseTimeout(value: string | null): number | undefined {
  if (value === null || value === '') return undefined;
  const seconds = Number(value);
  if (!Number.isInteger(seconds) || seconds < 0) throw new ApiError(400, 'BadRequest', `invalid timeoutSeconds "${value}"`);
  return seconds;
}

function leavingObject(event: StoreEvent): KubeObject {
  let object = leavingObjects.get(event.object);
  if (object === undefined) {
    const previous = event.previous!;
    object = Object.freeze({ ...previous, metadata: Object.freeze({ ...previous.metadata, resourceVersion: String(event.resourceVersion) }) });
    leavingObjects.set(event.object, object);
  }
  return object;
}

function encodeEvent(type: WatchEventType, object: unknown): string {
  return `${JSON.stringify({ type, object })}\n`;
}
