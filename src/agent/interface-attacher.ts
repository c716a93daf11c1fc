// Keeps the hold program attached to the interfaces that the `interfaces`
// setting selects in standalone mode, as they come and go. An entry names
// one interface, or with a trailing "+" every interface whose name starts
// with the rest, such as veth+ for the host ends of the pods' veth pairs.
// Those appear with each new pod, and the agent attaches to them when the
// kernel reports them, which is before the pod's first packet in the usual
// case.
//
// The kernel's link notifications only trigger a pass. Each pass lists the
// interfaces and compares them with the attachments, so a lost
// notification, an overrun or a pass that fails is repaired by the next
// pass, and a periodic pass retries attachments that failed.

import type { Logger } from 'pino';

import type { AttachHook } from '../datapath/datapath.js';
import { loadNative, type InterfaceInfo, type NativeInterfaceMonitor } from '../datapath/native.js';

// ARPHRD_ETHER in <linux/if_arp.h>. The programs parse Ethernet frames, so
// a pattern selects Ethernet interfaces only.
const ARPHRD_ETHER = 1;

const DEFAULT_RESYNC_INTERVAL_MS = 60_000;

// Delay before the pass that follows a failed one.
const RETRY_AFTER_PASS_FAILURE_MS = 1_000;

export interface InterfaceSelector {
  // An interface name, or a prefix followed by "+".
  name: string;
  hook: 'xdp' | 'tc';
  xdpMode: 'native' | 'generic' | 'auto';
}

// The part of Datapath that attaching needs.
export interface AttachPort {
  attach(ifname: string, how: AttachHook): Promise<number>;
  detach(ifindex: number): Promise<void>;
  rename(ifindex: number, ifname: string): void;
}

export interface InterfaceAttacherOptions {
  datapath: AttachPort;
  selectors: readonly InterfaceSelector[];
  // Network namespace of the interfaces; the agent's own when unset.
  netns?: string;
  log: Logger;
  resyncIntervalMs?: number;
}

interface Attached {
  name: string;
  selector: InterfaceSelector;
}

export class InterfaceAttacher {
  private readonly attached = new Map<number, Attached>();
  // Interfaces whose attachment failed, with the error message, so that
  // each failure is logged once and retried only by the periodic pass.
  private readonly failed = new Map<number, string>();
  // Interfaces that a pattern selects but that are not Ethernet, logged
  // once each.
  private readonly skipped = new Set<number>();
  private readonly failures = { xdp: 0, tc: 0 };
  private monitor: NativeInterfaceMonitor | undefined;
  private resyncTimer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private passRequested = false;
  private retryFailed = false;
  private stopped = false;

  constructor(private readonly options: InterfaceAttacherOptions) {}

  // Attaches to the interfaces present now, then follows changes. Rejects
  // when an interface that an entry names exactly is missing or fails to
  // attach, because the operator asked for that one. A failure on an
  // interface that a pattern selects is logged and retried later.
  async start(): Promise<void> {
    const { log, netns } = this.options;

    // The monitor starts first, so that no change between the listing and
    // the subscription goes unseen.
    this.monitor = new (loadNative().InterfaceMonitor)(netns, (events, overrun) => {
      if (overrun) log.warn('the kernel dropped interface notifications because the agent read them too slowly; listing the interfaces again');
      log.debug({ events }, 'interface notifications');
      this.requestPass();
    });
    this.monitor.start();

    // Notifications during the first pass wait for it, as during any pass.
    const first = this.startingPass();
    this.running = first.then(
      () => undefined,
      () => undefined,
    );
    try {
      await first;
    } catch (err) {
      await this.stop();
      throw err;
    } finally {
      this.running = undefined;
    }
    if (this.passRequested) this.requestPass();

    const interval = this.options.resyncIntervalMs ?? DEFAULT_RESYNC_INTERVAL_MS;
    this.resyncTimer = setInterval(() => {
      this.retryFailed = true;
      this.requestPass();
    }, interval);
    this.resyncTimer.unref();
  }

  // Stops following changes and waits for a running pass. The
  // attachments stay, for Datapath.close() to detach or keep.
  async stop(): Promise<void> {
    this.stopped = true;
    this.monitor?.close();
    this.monitor = undefined;
    clearInterval(this.resyncTimer);
    clearTimeout(this.retryTimer);
    await this.running;
  }

  // The interfaces with the hold program, by ifindex.
  interfaces(): Map<number, { name: string; hook: 'xdp' | 'tc' }> {
    return new Map([...this.attached].map(([ifindex, { name, selector }]) => [ifindex, { name, hook: selector.hook }]));
  }

  // Failed attachments since the start, by hook.
  attachFailures(): { xdp: number; tc: number } {
    return { ...this.failures };
  }

  // The entry for an interface name: the one that names it exactly, or
  // else the first pattern that matches it.
  private selectorFor(name: string): InterfaceSelector | undefined {
    const { selectors } = this.options;
    return selectors.find((selector) => selector.name === name) ?? selectors.find((selector) => isPattern(selector) && name.startsWith(selector.name.slice(0, -1)));
  }

  private async startingPass(): Promise<void> {
    const present = await loadNative().listInterfaces(this.options.netns);
    const names = new Set(present.map((iface) => iface.name));
    for (const selector of this.options.selectors) {
      if (!isPattern(selector) && !names.has(selector.name)) {
        throw new Error(`interface ${selector.name} not found${this.options.netns ? ` in ${this.options.netns}` : ''}: list an interface of the node (ip link shows them), or end the name with "+" to attach to interfaces with that prefix as they appear`);
      }
    }
    await this.apply(present, { strict: true });
  }

  // Runs a pass now, or after the running one. Requests that arrive during
  // a pass share the next one.
  private requestPass(): void {
    if (this.stopped) return;
    if (this.running) {
      this.passRequested = true;
      return;
    }
    this.running = this.runPasses().finally(() => {
      this.running = undefined;
    });
  }

  private async runPasses(): Promise<void> {
    const { log, netns } = this.options;

    do {
      this.passRequested = false;
      try {
        const present = await loadNative().listInterfaces(netns);
        if (this.stopped) return;
        await this.apply(present, { strict: false });
      } catch (err) {
        log.warn({ err, netns }, 'a pass over the interfaces failed; trying again in 1 s');
        clearTimeout(this.retryTimer);
        this.retryTimer = setTimeout(() => this.requestPass(), RETRY_AFTER_PASS_FAILURE_MS);
        return;
      }
    } while (this.passRequested && !this.stopped);
  }

  // Detaches from interfaces that are gone or no longer selected, follows
  // renames, and attaches to selected interfaces without the program.
  private async apply(present: InterfaceInfo[], { strict }: { strict: boolean }): Promise<void> {
    const byIndex = new Map(present.map((iface) => [iface.ifindex, iface]));

    for (const [ifindex, attached] of [...this.attached]) {
      const current = byIndex.get(ifindex);
      if (current === undefined) {
        await this.detach(ifindex, attached, 'the interface is gone');
      } else if (current.name !== attached.name) {
        await this.followRename(ifindex, attached, current.name);
      }
    }

    for (const ifindex of [...this.failed.keys()]) {
      if (!byIndex.has(ifindex)) this.failed.delete(ifindex);
    }
    for (const ifindex of [...this.skipped]) {
      if (!byIndex.has(ifindex)) this.skipped.delete(ifindex);
    }

    const retryFailed = this.retryFailed;
    this.retryFailed = false;
    for (const iface of present) {
      if (this.stopped) return;
      if (this.attached.has(iface.ifindex)) continue;
      if (this.failed.has(iface.ifindex) && !retryFailed && !strict) continue;

      const selector = this.selectorFor(iface.name);
      if (selector === undefined) continue;
      if (isPattern(selector) && iface.linkType !== ARPHRD_ETHER) {
        if (!this.skipped.has(iface.ifindex)) this.options.log.info({ interface: iface.name, pattern: selector.name, linkType: iface.linkType }, 'not attaching to an interface that the pattern matches, because it is not Ethernet');
        this.skipped.add(iface.ifindex);
        continue;
      }
      await this.attach(iface, selector, strict && !isPattern(selector));
    }
  }

  private async attach(iface: InterfaceInfo, selector: InterfaceSelector, required: boolean): Promise<void> {
    const { datapath, log } = this.options;
    const attachHook: AttachHook = selector.hook === 'xdp' ? { hook: 'xdp', mode: selector.xdpMode } : { hook: 'tc' };

    let ifindex: number;
    try {
      ifindex = await datapath.attach(iface.name, attachHook);
    } catch (err) {
      if (required) throw err;
      // The interface went away between the listing and the attach, and
      // the next pass finds it gone.
      if ((err as NodeJS.ErrnoException).code === 'ENODEV') return;

      this.failures[selector.hook]++;
      const message = (err as Error).message;
      if (this.failed.get(iface.ifindex) !== message) {
        log.warn({ err, interface: iface.name, ifindex: iface.ifindex, hook: selector.hook, entry: selector.name }, 'attaching the hold program failed, so clients behind this interface are not held; retrying every minute');
      }
      this.failed.set(iface.ifindex, message);
      return;
    }

    if (this.failed.delete(iface.ifindex)) log.info({ interface: iface.name, ifindex }, 'attaching succeeded after an earlier failure');
    this.attached.set(ifindex, { name: iface.name, selector });
    log.info({ interface: iface.name, ifindex, hook: selector.hook, entry: selector.name }, 'attached');
  }

  private async detach(ifindex: number, attached: Attached, reason: string): Promise<void> {
    const { datapath, log } = this.options;
    try {
      await datapath.detach(ifindex);
    } catch (err) {
      // Kept, so that the next pass tries again.
      log.warn({ err, interface: attached.name, ifindex }, 'detaching the hold program failed; trying again at the next pass');
      return;
    }
    this.attached.delete(ifindex);

    // An interface named exactly is expected to stay.
    const level = isPattern(attached.selector) ? 'info' : 'warn';
    log[level]({ interface: attached.name, ifindex, reason }, 'detached');
  }

  // Keeps the program on a renamed interface that its entry, or another
  // entry with the same hook, still selects, and detaches it otherwise.
  private async followRename(ifindex: number, attached: Attached, name: string): Promise<void> {
    const selector = this.selectorFor(name);
    if (selector === undefined || !sameHook(selector, attached.selector)) {
      await this.detach(ifindex, attached, `renamed to ${name}, which ${selector === undefined ? 'no entry selects' : `entry ${selector.name} selects with another hook`}`);
      return;
    }

    try {
      this.options.datapath.rename(ifindex, name);
    } catch (err) {
      this.options.log.warn({ err, interface: name, ifindex }, 'moving the link pin of a renamed interface failed; the next agent attaches it again');
    }
    this.options.log.info({ interface: name, previous: attached.name, ifindex }, 'followed a rename of an attached interface');
    this.attached.set(ifindex, { name, selector });
  }
}

function isPattern(selector: InterfaceSelector): boolean {
  return selector.name.endsWith('+');
}

function sameHook(a: InterfaceSelector, b: InterfaceSelector): boolean {
  return a.hook === b.hook && (a.hook === 'tc' || a.xdpMode === b.xdpMode);
}
