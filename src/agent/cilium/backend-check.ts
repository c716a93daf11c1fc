// The release check for chained mode: before zerohold re-injects held
// packets, Cilium's datapath on this node must have a backend for the
// Service, or the packet meets Cilium's no-backend handling again.
// waitProgrammed() re-reads the service source (pinned maps or REST API)
// every recheckMs while any wait is pending, and also resolves waits on
// the source's own polls.

import type { Logger } from 'pino';

import { type Frontend, frontendToString } from '../../datapath/frontends.js';
import type { BackendCheck } from '../ports.js';
import { canonicalAddress, CiliumFrontendIndex, type CiliumFrontend, type CiliumServiceSource } from './frontends.js';

export interface CiliumBackendCheckOptions {
  source: CiliumServiceSource;
  log: Logger;
  // Interval between re-reads while a wait is pending, in milliseconds.
  // Defaults to 5 for the pinned maps, and to 100 for the REST API, whose
  // every read returns all of Cilium's Services.
  recheckMs?: number;
}

interface Waiter {
  frontends: Frontend[];
  resolve: (programmed: boolean) => void;
  timer: NodeJS.Timeout;
}

export class CiliumBackendCheck implements BackendCheck {
  private readonly source: CiliumServiceSource;
  private readonly log: Logger;
  // When undefined, the interval follows the source's kind, which changes
  // when a REST source switches to the maps.
  private readonly recheckMs: number | undefined;
  private readonly waiters = new Set<Waiter>();
  private readonly removeListener: () => void;
  private index: CiliumFrontendIndex;
  private indexed: readonly CiliumFrontend[];
  private recheckTimer: NodeJS.Timeout | undefined;
  private rechecking = false;
  private closed = false;
  // Consecutive failed re-reads, so that a lasting failure logs once.
  private failedReads = 0;

  constructor(options: CiliumBackendCheckOptions) {
    this.source = options.source;
    this.log = options.log;
    this.recheckMs = options.recheckMs;
    this.indexed = this.source.frontends();
    this.index = new CiliumFrontendIndex(this.indexed);
    this.removeListener = this.source.onChange(() => this.resolveWaiters());
  }

  // Resolves true once Cilium's datapath on this node has a backend for
  // every frontend that it has an entry for, and has an entry for at least
  // one, false after timeoutMs or on close(). A frontend without an entry
  // can hold no flow, because the hooks pass the ids of Cilium's entries.
  // So waiting for it would only delay the release to the timeout. Cilium
  // programs no NodePort for a node's ExternalIP behind 1:1 NAT, and its
  // REST API lists a NodePort only as 0.0.0.0. It re-reads the
  // source before the first result instead of trusting the last poll, which
  // may predate a scale down. Rejects with a TypeError for an address that
  // is not an IP address.
  waitProgrammed(frontends: Frontend[], timeoutMs: number): Promise<boolean> {
    if (frontends.length === 0) return Promise.resolve(true);
    if (this.closed) return Promise.resolve(false);
    try {
      for (const frontend of frontends) canonicalAddress(frontend.address);
    } catch (err) {
      return Promise.reject(err);
    }

    return new Promise((resolve) => {
      const waiter: Waiter = {
        frontends,
        resolve,
        timer: setTimeout(() => {
          this.waiters.delete(waiter);
          const missing = frontends.filter((f) => !this.currentIndex().isProgrammed(f)).map(frontendToString);
          this.log.info({ missing, timeoutMs, source: this.source.kind }, 'timed out waiting for Cilium backends on this node');
          resolve(false);
        }, timeoutMs),
      };
      this.waiters.add(waiter);
      this.scheduleRecheck(0);
    });
  }

  // Resolves pending waits with false and stops re-reading. The source
  // stays open: its owner closes it.
  close(): void {
    this.closed = true;
    this.removeListener();
    clearTimeout(this.recheckTimer);
    this.recheckTimer = undefined;

    for (const waiter of this.waiters) {
      clearTimeout(waiter.timer);
      waiter.resolve(false);
    }
    this.waiters.clear();
  }

  private scheduleRecheck(delayMs: number): void {
    if (this.closed || this.rechecking || this.waiters.size === 0) return;
    if (this.recheckTimer !== undefined) {
      if (delayMs > 0) return;
      clearTimeout(this.recheckTimer);
    }
    this.recheckTimer = setTimeout(() => void this.recheck(), delayMs);
  }

  // Reads the source, resolves what it can, and schedules the next read
  // while waits remain. One read runs at a time.
  private async recheck(): Promise<void> {
    this.recheckTimer = undefined;
    this.rechecking = true;
    try {
      await this.source.refresh();
      this.failedReads = 0;
    } catch (err) {
      this.failedReads++;
      if (this.failedReads === 1) this.log.warn({ err, source: this.source.kind }, 'reading Cilium services for the backend check failed, retrying while waits are pending');
    } finally {
      this.rechecking = false;
    }

    this.resolveWaiters();
    this.scheduleRecheck(this.recheckMs ?? (this.source.kind === 'rest' ? 100 : 5));
  }

  private currentIndex(): CiliumFrontendIndex {
    const frontends = this.source.frontends();
    if (frontends !== this.indexed) {
      this.indexed = frontends;
      this.index = new CiliumFrontendIndex(frontends);
    }
    return this.index;
  }

  private resolveWaiters(): void {
    if (this.waiters.size === 0) return;

    const index = this.currentIndex();
    for (const waiter of this.waiters) {
      const present = waiter.frontends.filter((f) => index.has(f));
      if (present.length === 0 || !present.every((f) => index.isProgrammed(f))) continue;
      clearTimeout(waiter.timer);
      this.waiters.delete(waiter);
      waiter.resolve(true);
    }
  }
}
