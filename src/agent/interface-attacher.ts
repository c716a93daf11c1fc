// Keeps the hold program attached to the interfaces that the `interfaces`
// setting selects in standalone mode, as they come and go. An entry names
// one interface, or with a trailing "+" every interface whose name starts
// with the rest, such as veth+ for the host ends of the pods' veth pairs.
// Those appear with each new pod, and the agent attaches to them when the
// kernel reports them, which is before the pod's first packet in the usual
// case.
//
// The kernel's link notifications trigger a pass. Each pass lists the
// interfaces and compares them with the attachments, so a lost
// notification, an overrun or a pass that fails is repaired by the next
// pass, and a periodic pass retries attachments that failed. A deletion
// notification also marks its ifindex, because a new interface can take
// the ifindex of a deleted one before the pass lists them, and would
// otherwise pass for the old one or for a rename of it.

import type { Logger } from 'pino';

import type { AttachHook } from '../datapath/datapath.js';
import { loadNative, type InterfaceInfo, type NativeInterfaceMonitor } from '../datapath/native.js';
import { RepeatLimiter } from '../hubble/repeat-limiter.js';
import type { InterfaceSummary } from './local-api.js';

// ARPHRD_ETHER in <linux/if_arp.h>. The programs parse Ethernet frames, so
// a pattern selects Ethernet interfaces only.
const ARPHRD_ETHER = 1;

const DEFAULT_RESYNC_INTERVAL_MS = 60_000;

// Delay before the pass that follows a failed one, doubling with each
// failure in a row up to the maximum, and after a listing that the kernel
// kept interrupting (EAGAIN) while interfaces changed.
const RETRY_AFTER_PASS_FAILURE_MS = 1_000;
const MAX_RETRY_AFTER_PASS_FAILURE_MS = 60_000;
const RETRY_AFTER_BUSY_LISTING_MS = 50;
const START_LISTING_ATTEMPTS = 5;
// A pass that keeps failing is logged at most this often.
const PASS_FAILURE_LOG_INTERVAL_MS = 60_000;

export interface InterfaceSelector {
  // An interface name, or a prefix followed by "+".
  name: string;
  hook: 'xdp' | 'tc';
  xdpMode: 'native' | 'generic' | 'auto';
}

// The part of Datapath that attaching needs.
export interface AttachPort {
  attach(ifname: string, how: AttachHook): Promise<number>;
  detach(ifindex: number, options?: { gone?: boolean }): Promise<void>;
  rename(ifindex: number, ifname: string): void;
  attachmentLive(ifindex: number): boolean | undefined;
}

export interface InterfaceAttacherOptions {
  datapath: AttachPort;
  selectors: readonly InterfaceSelector[];
  // Network namespace of the interfaces; the agent's own when unset.
  netns?: string;
  log: Logger;
  resyncIntervalMs?: number;
  // Runs once after the first pass, before any other: the agent's removal
  // of what an earlier agent attached and this one did not, which must
  // not race a pass.
  afterFirstPass?: () => Promise<void>;
}

interface Attached {
  name: string;
  selector: InterfaceSelector;
}

export class InterfaceAttacher {
  private readonly attached = new Map<number, Attached>();
  // Interfaces whose attachment failed, with their name and the error
  // message, so that each failure is logged once and retried only by the
  // periodic pass, or when the interface is renamed.
  private readonly failed = new Map<number, { name: string; selector: InterfaceSelector; message: string }>();
  // Interfaces that a pattern selects but that are not Ethernet, logged
  // once each.
  private readonly skipped = new Set<number>();
  private readonly failures = { xdp: 0, tc: 0 };
  // Patterns that put XDP on a veth, warned about once each.
  private readonly xdpOnVethWarned = new Set<string>();
  private monitor: NativeInterfaceMonitor | undefined;
  private resyncTimer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private passRequested = false;
  private retryFailed = false;
  // Ifindexes of deletion notifications since the running pass began.
  private deleted = new Set<number>();
  // Set when notifications may have been lost, so that the next pass
  // checks with the kernel that each attachment still runs.
  private checkAll = false;
  private failedPasses = 0;
  private readonly passFailureLogs = new RepeatLimiter(PASS_FAILURE_LOG_INTERVAL_MS);
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
      log.debug({ events }, 'interface notifications');
      for (const event of events) {
        if (event.type === 'del') this.deleted.add(event.ifindex);
      }
      if (overrun) {
        log.warn('the kernel dropped interface notifications because the agent read them too slowly; listing the interfaces again');
        this.checkAll = true;
      }
      this.requestPass();
    });
    this.monitor.start();

    // Notifications during the first pass and the hook after it wait for
    // them, as during any pass.
    const first = this.startingPass();
    this.running = first.then(
      () => undefined,
      () => undefined,
    );
    try {
      await first;
    } catch (err) {
      this.running = undefined;
      await this.stop();
      throw err;
    }
    this.running = undefined;
    if (this.stopped) return;

    // Removing an earlier agent's link can free a device for the attach
    // that failed on it, as an XDP attach does next to another program.
    if (this.passRequested || this.failed.size > 0) {
      this.retryFailed = this.failed.size > 0;
      this.requestPass();
    }

    const interval = this.options.resyncIntervalMs ?? DEFAULT_RESYNC_INTERVAL_MS;
    this.resyncTimer = setInterval(() => {
      this.retryFailed = true;
      this.checkAll = true;
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

  // The attached interfaces, and those whose last attach failed, by name.
  report(): InterfaceSummary[] {
    const attached: InterfaceSummary[] = [...this.attached].map(([ifindex, { name, selector }]) => ({ name, ifindex, hook: selector.hook, entry: selector.name, state: 'attached', error: null }));
    const failed: InterfaceSummary[] = [...this.failed].map(([ifindex, { name, selector, message }]) => ({ name, ifindex, hook: selector.hook, entry: selector.name, state: 'failed', error: message }));
    return [...attached, ...failed].sort((a, b) => a.name.localeCompare(b.name));
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
    const present = await this.listAtStart();
    const names = new Set(present.map((iface) => iface.name));
    for (const selector of this.options.selectors) {
      if (!isPattern(selector) && !names.has(selector.name)) {
        throw new Error(`interface ${selector.name} not found${this.options.netns ? ` in ${this.options.netns}` : ''}: list an interface of the node (ip link shows them), or end the name with "+" to attach to interfaces with that prefix as they appear`);
      }
    }
    await this.apply(present, new Set(), { strict: true });
    if (this.stopped) return;

    // A pattern that matches nothing may be a typo, or the node has no
    // pods yet.
    for (const selector of this.options.selectors) {
      if (isPattern(selector) && !present.some((iface) => this.selectorFor(iface.name) === selector)) {
        this.options.log.info({ entry: selector.name }, 'no interface matches the pattern yet; the agent attaches to matching interfaces as they appear');
      }
    }
    await this.options.afterFirstPass?.();
  }

  // Lists the interfaces for the first pass. A listing that the kernel
  // kept interrupting while interfaces changed is tried again a few times,
  // because a failure here stops the agent.
  private async listAtStart(): Promise<InterfaceInfo[]> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await loadNative().listInterfaces(this.options.netns);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EAGAIN' || attempt >= START_LISTING_ATTEMPTS) throw err;
        await new Promise((resolve) => setTimeout(resolve, RETRY_AFTER_BUSY_LISTING_MS));
      }
    }
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
    const { netns } = this.options;

    do {
      this.passRequested = false;
      // Taken before the listing, so that a deletion it does not show yet
      // stays marked for the next pass.
      const deleted = this.deleted;
      this.deleted = new Set();
      try {
        const present = await loadNative().listInterfaces(netns);
        if (this.stopped) return;
        await this.apply(present, deleted, { strict: false });
      } catch (err) {
        for (const ifindex of deleted) this.deleted.add(ifindex);
        if (this.stopped) return;
        this.scheduleRetry(err as NodeJS.ErrnoException);
        return;
      }
      this.failedPasses = 0;
    } while (this.passRequested && !this.stopped);
  }

  private scheduleRetry(err: NodeJS.ErrnoException): void {
    const { log, netns } = this.options;
    let delayMs = RETRY_AFTER_BUSY_LISTING_MS;
    if (err.code === 'EAGAIN') {
      log.debug({ err, netns }, 'the interfaces kept changing during the listing; listing them again shortly');
    } else {
      delayMs = Math.min(MAX_RETRY_AFTER_PASS_FAILURE_MS, RETRY_AFTER_PASS_FAILURE_MS * 2 ** this.failedPasses);
      this.failedPasses++;
      const suppressed = this.passFailureLogs.record();
      if (suppressed !== null) log.warn({ err, netns, suppressed, retryInMs: delayMs }, 'a pass over the interfaces failed; trying again');
    }
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.requestPass(), delayMs);
  }

  // Detaches from interfaces that are gone or no longer selected, follows
  // renames, and attaches to selected interfaces without the program.
  // deleted lists the ifindexes of deletion notifications.
  private async apply(present: InterfaceInfo[], deleted: ReadonlySet<number>, { strict }: { strict: boolean }): Promise<void> {
    const byIndex = new Map(present.map((iface) => [iface.ifindex, iface]));
    const checkAll = this.checkAll;
    this.checkAll = false;

    // An attachment is gone with its interface. A listed ifindex may
    // belong to a new interface, after a deletion notification for it or
    // lost notifications, unless the kernel shows that the attachment
    // runs there. The new interface is attached below.
    for (const [ifindex, attached] of [...this.attached]) {
      const current = byIndex.get(ifindex);
      if (current === undefined) {
        await this.detach(ifindex, attached, 'the interface is gone', { gone: true });
        continue;
      }
      if (!deleted.has(ifindex) && !checkAll) continue;

      // A clsact filter cannot tell (undefined), so it counts as replaced
      // only after a deletion notification.
      const live = this.options.datapath.attachmentLive(ifindex);
      if (live === false || (live === undefined && deleted.has(ifindex))) {
        await this.detach(ifindex, attached, 'the interface was replaced by another with the same ifindex', { gone: true });
      }
    }
    for (const [ifindex, attached] of [...this.attached]) {
      const current = byIndex.get(ifindex);
      if (current !== undefined && current.name !== attached.name) await this.followRename(ifindex, attached, current.name);
    }

    for (const [ifindex, failure] of [...this.failed]) {
      if (byIndex.get(ifindex)?.name !== failure.name) this.failed.delete(ifindex);
    }
    for (const ifindex of [...this.skipped]) {
      if (!byIndex.has(ifindex)) this.skipped.delete(ifindex);
    }

    const retryFailed = this.retryFailed;
    this.retryFailed = false;
    for (const iface of present) {
      if (this.stopped) return;
      if (this.attached.has(iface.ifindex)) continue;
      if (this.failed.has(iface.ifindex) && !retryFailed) continue;

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
      if (this.failed.get(iface.ifindex)?.message !== message) {
        log.warn({ err, interface: iface.name, ifindex: iface.ifindex, hook: selector.hook, entry: selector.name }, 'attaching the hold program failed, so clients behind this interface are not held; retrying every minute');
      }
      this.failed.set(iface.ifindex, { name: iface.name, selector, message });
      return;
    }

    if (this.failed.delete(iface.ifindex)) log.info({ interface: iface.name, ifindex }, 'attaching succeeded after an earlier failure');
    this.attached.set(ifindex, { name: iface.name, selector });
    log.info({ interface: iface.name, ifindex, hook: selector.hook, entry: selector.name }, 'attached');

    if (selector.hook === 'xdp' && iface.kind === 'veth' && isPattern(selector) && !this.xdpOnVethWarned.has(selector.name)) {
      this.xdpOnVethWarned.add(selector.name);
      log.warn({ entry: selector.name, interface: iface.name }, "the pattern puts XDP on veths, which takes the GSO features off the pods' ends and caps their MTU; set hook: tc on this entry");
    }
  }

  private async detach(ifindex: number, attached: Attached, reason: string, options: { gone?: boolean } = {}): Promise<void> {
    const { datapath, log } = this.options;
    try {
      await datapath.detach(ifindex, options);
    } catch (err) {
      // A gone interface is forgotten anyway, as the datapath does, so
      // that a new one with its ifindex gets attached. Otherwise the next
      // pass tries again.
      if (options.gone) this.attached.delete(ifindex);
      log.warn({ err, interface: attached.name, ifindex, gone: options.gone ?? false }, options.gone ? 'releasing the link of a gone interface failed' : 'detaching the hold program failed; trying again at the next pass');
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
