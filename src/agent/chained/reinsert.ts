// Keeps zerohold in the host datapath across the host's reloads. A reload
// that reuses the pinned maps keeps zerohold's entries. One that pins new
// maps, such as a Cilium agent started on a cleared bpffs, leaves the
// slots empty and zh_chain_svcs without zerohold's ids. Each check inserts
// the programs again where a slot contains anything else, and writes the
// list again when the zh_chain_svcs pin names a new map.

import path from 'node:path';

import type { Logger } from 'pino';

import type { Datapath } from '../../datapath/datapath.js';
import { loadNative } from '../../datapath/native.js';
import type { ChainServiceList } from './chain-services.js';
import type { ChainSlots } from './slots.js';

export interface ChainReinserterOptions {
  intervalMs: number;
  log: Logger;
  // Called once when the host pinned a new zh_chain_meta. The agent
  // restarts then, so that it loads against the new map. Without it the
  // error log requests a restart.
  onMetaReplaced?: () => void;
}

export class ChainReinserter {
  private timer: NodeJS.Timeout | undefined;
  // The last error logged per step, so a failure that repeats every
  // interval is logged once, and again only when it changes or clears.
  private readonly lastErrors = new Map<string, string>();
  // The arrays found missing at the last check, so each change is logged
  // once.
  private lastMissing = '';
  private metaReplaced = false;

  constructor(
    private readonly datapath: Datapath,
    private readonly slots: ChainSlots,
    private readonly list: ChainServiceList,
    private readonly options: ChainReinserterOptions,
  ) {
    if (!Number.isFinite(options.intervalMs) || options.intervalMs <= 0) {
      throw new RangeError(`invalid re-insertion interval ${options.intervalMs} ms: expected a positive number`);
    }
  }

  // Checks once now, then every intervalMs until stop().
  start(): void {
    this.check();
    this.timer = setInterval(() => this.check(), this.options.intervalMs);
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  // Runs one check and returns true when it inserted a program or wrote
  // the list again. Errors are logged, not thrown, so the next interval
  // retries.
  check(): boolean {
    const { log } = this.options;
    let changed = false;

    // Programs that read a replaced zh_chain_meta would drop every call,
    // so they are not inserted again, and the agent's restart empties the
    // slots that still hold them.
    this.attempt('meta', () => this.checkMeta());
    if (this.metaReplaced) return false;

    const slots = this.attempt('slots', () => this.slots.ensureInserted());
    for (const slot of slots ?? []) {
      if (!slot.inserted) continue;
      changed = true;
      log.info({ array: slot.array, mapId: slot.mapId, replacedProgramId: slot.foundProgramId }, 'inserted the chained program into the host prog array');
    }

    // Cilium pins zh_chain_xdp only when it loads bpf_xdp, which its
    // loadBalancer.acceleration enables, so one missing array is normal.
    const missing = (slots ?? []).filter((slot) => slot.mapId === null).map((slot) => slot.array);
    if (missing.length > 0 && missing.join() !== this.lastMissing) {
      if (missing.length === (slots ?? []).length) {
        log.warn({ hostPinDir: this.slots.hostPinDir, missing }, 'host prog arrays are not pinned yet, waiting for the host datapath to load');
      } else {
        log.info({ hostPinDir: this.slots.hostPinDir, missing }, 'host prog array not pinned, so the host programs that would use it do not call zerohold; Cilium pins zh_chain_xdp only with loadBalancer.acceleration');
      }
    }
    this.lastMissing = missing.join();

    if (this.attempt('list', () => this.list.sync())) {
      changed = true;
      log.info({ mapId: this.list.mapId, ids: this.list.list().length }, 'wrote the managed service ids into zh_chain_svcs');
    }

    return changed;
  }

  // zh_chain_meta belongs to the loaded object: zerohold's programs read
  // the map they were loaded with. If the host pinned a new one, the host
  // writes metadata that the callee never reads, and every call drops with
  // ZH_STAT_CHAIN_BAD_META.
  private checkMeta(): void {
    const pinPath = path.join(this.slots.hostPinDir, 'zh_chain_meta');
    let pinnedId: number;
    try {
      const pinned = loadNative().openPinnedMap(pinPath);
      pinnedId = pinned.id;
      pinned.close();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }

    const loadedId = this.datapath.map('zh_chain_meta').id;
    if (pinnedId === loadedId || this.metaReplaced) return;
    this.metaReplaced = true;

    // A restart loads zerohold.o against the new pin with the startup code
    // that every start runs. Loading again in this process would have to
    // move the held flows to the new object and swap it under every user.
    const { onMetaReplaced } = this.options;
    const next = onMetaReplaced ? 'restarting the agent to load against the new map' : 'restart the agent to load against the new map';
    this.options.log.error({ pinPath, pinnedId, loadedId }, `the host replaced zh_chain_meta, so chained calls are dropped; ${next}`);
    onMetaReplaced?.();
  }

  private attempt<T>(step: string, work: () => T): T | undefined {
    try {
      const result = work();
      if (this.lastErrors.delete(step)) this.options.log.info({ step }, 'chained-mode check recovered');
      return result;
    } catch (err) {
      const message = (err as Error).message;
      if (this.lastErrors.get(step) !== message) {
        this.lastErrors.set(step, message);
        this.options.log.error({ err, step, hostPinDir: this.slots.hostPinDir }, 'chained-mode check failed, retrying at the next interval');
      }
      return undefined;
    }
  }
}
