// Fault injection for tests: failing, delaying or holding requests that
// match a method and path, ending open watches, and compacting history.

import { setTimeout as sleep } from 'node:timers/promises';

import { ApiError, REASON_FOR_CODE, type StatusReason } from './status.js';
import type { Store } from './store.js';
import type { WatchHub } from './watch-stream.js';

export interface RequestMatch {
  // HTTP method, e.g. 'GET'; any method when absent.
  method?: string;
  // A string matches pathnames that start with it; a RegExp is tested
  // against the pathname. Any path when absent.
  path?: string | RegExp;
  // true: only watch requests; false: only non-watch requests.
  watch?: boolean;
}

export interface FailureRule extends RequestMatch {
  status: number;
  // Defaults to the reason kube-apiserver uses for the status code.
  reason?: StatusReason;
  message?: string;
  // Sets the Retry-After header and details.retryAfterSeconds.
  retryAfterSeconds?: number;
  // Number of matching requests to fail; 1 when absent.
  count?: number;
}

export interface LatencyRule extends RequestMatch {
  ms: number;
  // Number of matching requests to delay; every one until clear() when absent.
  count?: number;
}

export interface HeldRequests {
  // Resolves when the first matching request is being held.
  arrived: Promise<void>;
  // Lets held and future matching requests through.
  release(): void;
}

interface Counted {
  remaining: number;
}

interface Hold {
  match: RequestMatch;
  released: Promise<void>;
  release(): void;
  arrived(): void;
}

const DEFAULT_MESSAGES: Record<number, string> = {
  429: 'Too many requests, please try again later.',
  500: 'Internal error occurred: injected fault',
  503: 'the server is currently unable to handle the request',
};

export class Faults {
  readonly #store: Store;
  readonly #watches: WatchHub;
  #failures: Array<FailureRule & Counted> = [];
  #latencies: Array<LatencyRule & Counted> = [];
  #holds: Hold[] = [];

  constructor(store: Store, watches: WatchHub) {
    this.#store = store;
    this.#watches = watches;
  }

  // Fails the next `count` matching requests with a metav1.Status.
  failNext(rule: FailureRule): void {
    this.#failures.push({ ...rule, remaining: rule.count ?? 1 });
  }

  addLatency(rule: LatencyRule): void {
    this.#latencies.push({ ...rule, remaining: rule.count ?? Infinity });
  }

  // Holds matching requests before they reach any handler until release().
  hold(match: RequestMatch): HeldRequests {
    let release!: () => void;
    let arrived!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const arrival = new Promise<void>((resolve) => (arrived = resolve));
    const hold: Hold = { match, released, release, arrived };
    this.#holds.push(hold);
    return {
      arrived: arrival,
      release: () => {
        this.#holds = this.#holds.filter((entry) => entry !== hold);
        release();
      },
    };
  }

  // Ends every open watch now and returns how many were open. Graceful ends
  // complete the chunked response; abrupt ones destroy the socket.
  dropWatches(options: { abrupt?: boolean } = {}): number {
    return this.#watches.dropAll(options.abrupt ?? false);
  }

  // Drops watch history up to `revision` (default: all), so a watch or exact
  // list from an older resourceVersion gets 410 Expired.
  compactHistory(revision?: number): void {
    this.#store.compact(revision);
  }

  // Removes every rule and releases held requests.
  clear(): void {
    this.#failures = [];
    this.#latencies = [];
    for (const hold of this.#holds) hold.release();
    this.#holds = [];
  }

  // Applies the rules to one request. Waits until matching holds are
  // released and any latency has passed, then returns the injected failure, if any.
  async apply(method: string, url: URL, isWatch: boolean): Promise<ApiError | undefined> {
    const request = { method, pathname: url.pathname, isWatch };

    for (const hold of this.#holds.filter((entry) => matches(entry.match, request))) {
      hold.arrived();
      await hold.released;
    }

    const latency = this.#latencies.find((rule) => rule.remaining > 0 && matches(rule, request));
    if (latency) {
      latency.remaining -= 1;
      await sleep(latency.ms);
    }

    const failure = this.#failures.find((rule) => rule.remaining > 0 && matches(rule, request));
    if (!failure) return undefined;
    failure.remaining -= 1;
    this.#failures = this.#failures.filter((rule) => rule.remaining > 0);
    return failureError(failure, request);
  }
}

function matches(match: RequestMatch, request: { method: string; pathname: string; isWatch: boolean }): boolean {
  if (match.method && match.method.toUpperCase() !== request.method) return false;
  if (match.watch !== undefined && match.watch !== request.isWatch) return false;
  if (typeof match.path === 'string') return request.pathname.startsWith(match.path);
  if (match.path instanceof RegExp) return match.path.test(request.pathname);
  return true;
}

function failureError(rule: FailureRule, request: { method: string; pathname: string }): ApiError {
  const reason = rule.reason ?? REASON_FOR_CODE[rule.status] ?? 'InternalError';
  const defaultMessage =
    rule.status === 403
      ? `forbidden: User "system:anonymous" cannot ${request.method.toLowerCase()} path "${request.pathname}"`
      : (DEFAULT_MESSAGES[rule.status] ?? `injected fault: HTTP ${rule.status}`);
  const details = rule.retryAfterSeconds !== undefined ? { retryAfterSeconds: rule.retryAfterSeconds } : undefined;
  return new ApiError(rule.status, reason, rule.message ?? defaultMessage, details);
}
