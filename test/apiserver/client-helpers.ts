// Helpers for the API server tests: reading the metav1.Status out of a
// client-node error and waiting for asynchronous state.

import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';

import { ApiException, type KubeConfig, Watch } from '@kubernetes/client-node';

import type { Status } from './status.js';

// Returns the Status that a failed client-node call carried. client-node 1.4
// throws ApiException with the raw response text as `body`.
export function statusOf(err: unknown): Status {
  assert.ok(err instanceof ApiException, `got ${String(err)}, want an ApiException`);
  const body = typeof err.body === 'string' ? JSON.parse(err.body) : err.body;
  assert.equal(body.kind, 'Status', `got body ${JSON.stringify(body)}, want a Status`);
  return body as Status;
}

// Runs `call`, which must fail, and returns the Status of its failure.
export async function rejection(call: Promise<unknown>): Promise<Status> {
  try {
    await call;
  } catch (err) {
    return statusOf(err);
  }
  assert.fail('got success, want an API error');
}

// Polls `condition` every 10 ms until it returns true; fails after timeoutMs.
export async function waitUntil(description: string, condition: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out after ${timeoutMs} ms waiting for ${description}`);
    await sleep(10);
  }
}

export interface RecordedEvent {
  type: string;
  // The event's object: a Kubernetes object, or a Status for ERROR.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  object: any;
}

// A client-node Watch that records its events and how it ended.
export class WatchRecorder {
  readonly events: RecordedEvent[] = [];
  // Resolves with the error passed to the watch's done callback (null for a clean end).
  readonly ended: Promise<unknown>;
  #controller: AbortController | undefined;
  #resolveEnded!: (err: unknown) => void;

  private constructor() {
    this.ended = new Promise((resolve) => (this.#resolveEnded = resolve));
  }

  static async start(kubeConfig: KubeConfig, path: string, query: Record<string, string | number | boolean>): Promise<WatchRecorder> {
    const recorder = new WatchRecorder();
    recorder.#controller = await new Watch(kubeConfig).watch(
      path,
      query,
      (type, object) => recorder.events.push({ type, object }),
      (err) => recorder.#resolveEnded(err),
    );
    return recorder;
  }

  types(): string[] {
    return this.events.map((event) => event.type);
  }

  async waitForCount(count: number): Promise<void> {
    await waitUntil(`${count} watch events (got ${JSON.stringify(this.types())})`, () => this.events.length >= count);
  }

  stop(): void {
    this.#controller?.abort();
  }
}
