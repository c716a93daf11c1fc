// The pending calls of BackendCheck.waitProgrammed() that a kube-proxy
// check keeps until their frontends are programmed or their timeout
// passes. The check decides when to look and what counts as programmed.

import type { Logger } from 'pino';

import { type Frontend, frontendToString } from '../datapath/frontends.js';

interface ProgrammedWaiter {
  frontends: Frontend[];
  resolve: (programmed: boolean) => void;
  timer: NodeJS.Timeout;
  onProgrammed: ((frontends: Frontend[]) => void) | undefined;
  // Frontends seen programmed, and passed to onProgrammed if set.
  reported: Set<Frontend>;
}

export class ProgrammedWaiters {
  private readonly waiters = new Set<ProgrammedWaiter>();

  constructor(private readonly log: Logger) {}

  get size(): number {
    return this.waiters.size;
  }

  // The frontends of every pending call.
  *frontends(): Generator<Frontend> {
    for (const waiter of this.waiters) yield* waiter.frontends;
  }

  // Returns a Promise that settle() resolves with true once every frontend
  // is programmed, or that resolves with false after timeoutMs. A timeout
  // is logged with the fields that timeoutFields returns for the
  // frontends that settle() has not seen programmed.
  add(frontends: Frontend[], timeoutMs: number, onProgrammed: ((frontends: Frontend[]) => void) | undefined, timeoutFields: (unreported: Frontend[]) => Record<string, unknown>): Promise<boolean> {
    return new Promise((resolve) => {
      const waiter: ProgrammedWaiter = {
        frontends,
        resolve,
        onProgrammed,
        reported: new Set(),
        timer: setTimeout(() => {
          this.waiters.delete(waiter);
          const unreported = frontends.filter((frontend) => !waiter.reported.has(frontend));
          this.log.info({ ...timeoutFields(unreported), timeoutMs }, 'kube-proxy has not programmed the frontends in time');
          resolve(false);
        }, timeoutMs),
      };
      this.waiters.add(waiter);
    });
  }

  // Resolves the calls whose frontends are all programmed, and passes each
  // other call's newly programmed frontends to its onProgrammed.
  settle(isProgrammed: (frontend: Frontend) => boolean): void {
    for (const waiter of [...this.waiters]) {
      const programmed = waiter.frontends.filter(isProgrammed);
      if (programmed.length === waiter.frontends.length) {
        clearTimeout(waiter.timer);
        this.waiters.delete(waiter);
        waiter.resolve(true);
        continue;
      }
      this.reportProgress(waiter, programmed);
    }
  }

  // Resolves every pending call with false, as when the check stops.
  cancel(): void {
    for (const waiter of this.waiters) {
      clearTimeout(waiter.timer);
      waiter.resolve(false);
    }
    this.waiters.clear();
  }

  private reportProgress(waiter: ProgrammedWaiter, programmed: Frontend[]): void {
    const fresh = programmed.filter((frontend) => !waiter.reported.has(frontend));
    if (fresh.length === 0) return;

    for (const frontend of fresh) waiter.reported.add(frontend);
    if (waiter.onProgrammed === undefined) return;
    try {
      waiter.onProgrammed(fresh);
    } catch (err) {
      this.log.error({ err, frontends: fresh.map(frontendToString) }, 'handling programmed frontends failed');
    }
  }
}
