// Cilium's services from its agent's REST API until Cilium pins its
// load-balancer maps, then from the maps. On a node that boots, the
// zerohold agent can start before Cilium has pinned them, and the REST
// API lists NodePorts only as 0.0.0.0, so a source chosen once would stay
// on the weaker one until the next restart.

import type { Logger } from 'pino';

import type { CiliumFrontend, CiliumServiceSource } from './frontends.js';
import { CiliumServiceMaps, pinnedFamilies } from './service-maps.js';

export interface RestUntilPinnedOptions {
  rest: CiliumServiceSource;
  pinDir: string;
  // Poll interval for the maps once they are read, in milliseconds.
  mapsPollMs?: number;
  // How often to look for the pinned maps, in milliseconds.
  checkIntervalMs?: number;
  log: Logger;
}

const DEFAULT_CHECK_INTERVAL_MS = 10_000;

export class RestUntilPinned implements CiliumServiceSource {
  private current: CiliumServiceSource;
  private removeCurrentListener: () => void;
  private readonly listeners = new Set<(frontends: readonly CiliumFrontend[]) => void>();
  private timer: NodeJS.Timeout | undefined;
  // Whether opening the pinned maps failed, logged once.
  private openFailed = false;
  // Whether pinned maps without all of the API's ids were logged, once.
  private incompleteLogged = false;

  constructor(private readonly options: RestUntilPinnedOptions) {
    this.current = options.rest;
    this.removeCurrentListener = this.current.onChange((frontends) => this.notify(frontends));
    this.timer = setInterval(() => this.check(), options.checkIntervalMs ?? DEFAULT_CHECK_INTERVAL_MS);
    this.timer.unref();
  }

  get kind(): 'maps' | 'rest' {
    return this.current.kind;
  }

  frontends(): readonly CiliumFrontend[] {
    return this.current.frontends();
  }

  refresh(): Promise<void> {
    return this.current.refresh();
  }

  onChange(listener: (frontends: readonly CiliumFrontend[]) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  close(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.removeCurrentListener();
    this.current.close();
  }

  // Switches to the maps once they are pinned, open, and contain every
  // rev-NAT id that the API lists. Cilium pins its maps before it fills
  // them, and the maps of a family pinned later would never be read, so a
  // switch to maps that lack some of the API's ids waits for the next
  // check. A pinned set that cannot be opened, such as another Cilium
  // version's layout, is tried again at each check, because a Cilium
  // upgrade pins new maps.
  private check(): void {
    if (this.timer === undefined || this.current.kind === 'maps') return;
    if (pinnedFamilies(this.options.pinDir).length === 0) return;

    let maps: CiliumServiceMaps | undefined;
    try {
      maps = new CiliumServiceMaps({ pinDir: this.options.pinDir, pollMs: this.options.mapsPollMs, log: this.options.log });
      maps.start();
    } catch (err) {
      maps?.close();
      if (!this.openFailed) this.options.log.warn({ err, pinDir: this.options.pinDir }, 'Cilium pinned its service maps, but they cannot be read, so services still come from the Cilium agent API');
      this.openFailed = true;
      return;
    }
    const inMaps = new Set(maps.frontends().map((frontend) => frontend.revNatId));
    const missing = [...new Set(this.current.frontends().map((frontend) => frontend.revNatId))].filter((id) => !inMaps.has(id));
    if (missing.length > 0) {
      maps.close();
      if (!this.incompleteLogged) this.options.log.info({ pinDir: this.options.pinDir, missing: missing.slice(0, 20) }, "Cilium's pinned maps lack services that its API lists, so services still come from the API");
      this.incompleteLogged = true;
      return;
    }

    this.removeCurrentListener();
    this.current.close();
    this.current = maps;
    this.removeCurrentListener = maps.onChange((frontends) => this.notify(frontends));
    clearInterval(this.timer);
    this.options.log.info({ source: 'maps', pinDir: this.options.pinDir, families: maps.families, frontends: maps.frontends().length }, 'Cilium pinned its service maps, reading services from them now');
    this.notify(maps.frontends());
  }

  private notify(frontends: readonly CiliumFrontend[]): void {
    for (const listener of this.listeners) listener(frontends);
  }
}
