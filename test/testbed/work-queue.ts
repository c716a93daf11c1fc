// A keyed work queue for the testbed's controllers, modelled on client-go's
// workqueue. A key added several times before it runs is processed once,
// and one key is never processed twice at the same time. A failed key is
// retried after a delay.

import type { Logger } from 'pino';

const DEFAULT_RETRY_DELAY_MS = 200;

export class WorkQueue {
  private readonly dirty = new Set<string>();
  private readonly running = new Set<string>();
  private readonly retryTimers = new Set<NodeJS.Timeout>();
  private stopped = false;
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly process: (key: string) => Promise<void>,
    private readonly log: Logger,
    private readonly retryDelayMs = DEFAULT_RETRY_DELAY_MS,
  ) {}

  add(key: string): void {
    if (this.stopped) return;
    this.dirty.add(key);
    if (!this.running.has(key)) void this.run(key);
  }

  stop(): void {
    this.stopped = true;
    for (const timer of this.retryTimers) clearTimeout(timer);
    this.retryTimers.clear();
    this.dirty.clear();
  }

  // Resolves once no key is queued or running, for tests.
  idle(): Promise<void> {
    if (this.dirty.size === 0 && this.running.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private async run(key: string): Promise<void> {
    this.running.add(key);

    // A key added while it runs stays dirty and runs again afterwards, so
    // the last change is always seen by one complete pass.
    while (this.dirty.has(key) && !this.stopped) {
      this.dirty.delete(key);
      try {
        await this.process(key);
      } catch (err) {
        this.log.warn({ err, key }, 'reconcile failed, retrying');
        this.retryLater(key);
      }
    }

    this.running.delete(key);
    if (this.dirty.size === 0 && this.running.size === 0) {
      for (const resolve of this.idleWaiters.splice(0)) resolve();
    }
  }

  private retryLater(key: string): void {
    if (this.stopped) return;
    const timer = setTimeout(() => {
      this.retryTimers.delete(timer);
      this.add(key);
    }, this.retryDelayMs);
    this.retryTimers.add(timer);
  }
}
