// The hold program's attachments to the interfaces of one network
// namespace, by ifindex. With a pinDir, each XDP or tcx link is pinned
// under the interface's name (see pinned-links.ts), so the pins follow
// renames, and a pin whose interface is gone is removed with the
// attachment.

import { readdirSync, renameSync } from 'node:fs';
import path from 'node:path';

import { type ClsactSweep, loadNative, type NativeLink, type NativeProgram, type NativeTcAttachment } from './native.js';
import {
  type Attachment,
  attachPinnedTc,
  attachPinnedXdp,
  detachAttachment,
  linkPinPath,
  openPinnedLinkIfExists,
  parseLinkPinPath,
  removeUnlistedClsactFilters,
  removeUnlistedLinks,
  temporaryPinPath,
} from './pinned-links.js';

export type AttachHook =
  | { hook: 'xdp'; mode?: 'native' | 'generic' | 'auto' }
  | { hook: 'tc'; kind?: 'auto' | 'tcx' | 'clsact' };

// Link types of devices whose frames start with an Ethernet header, from
// <linux/if_arp.h>. Loopback frames carry a zeroed one.
const ARPHRD_ETHER = 1;
const ARPHRD_LOOPBACK = 772;

export class InterfaceAttachments {
  // Names of the attached interfaces by ifindex, for reports of held flows.
  readonly names = new Map<number, string>();

  private readonly attachments = new Map<number, Attachment>();
  // The pin kind of each attachment, for the pin path of a new name.
  private readonly pinHooks = new Map<number, 'xdp' | 'tcx'>();
  // Interfaces where a re-injected frame does not pass the hold program
  // again, so a release may send their frames with the gate closed.
  private readonly reinjectionBypasses = new Set<number>();
  // Devices where a clsact filter sits at CLSACT_FILTER.
  private readonly clsactIfindexes = new Set<number>();
  // Numbers the pins that claimPinnedLink() moves aside.
  private asideCount = 0;

  constructor(
    private readonly programs: { xdp: () => NativeProgram; tc: () => NativeProgram },
    private readonly netns: string | undefined,
    private readonly pinDir: string | undefined,
  ) {}

  // Attaches the hold program to an interface. With a pinDir, the XDP or
  // tcx link is pinned there and a link that a previous process pinned
  // for the interface is taken over with an atomic program swap. Returns
  // the interface's ifindex. Rejects for an interface that has an
  // attachment here already.
  async attach(ifname: string, how: AttachHook = { hook: 'xdp' }): Promise<number> {
    const native = loadNative();
    const ifindex = await native.ifNameToIndex(ifname, this.netns);
    if (this.attachments.has(ifindex)) throw new Error(`interface ${ifname} (ifindex ${ifindex}) already has the hold program of this agent`);
    await checkEthernet(ifname, this.netns);

    let attachment: Attachment;
    let bypass: boolean;
    if (how.hook === 'xdp') {
      const mode = how.mode ?? 'auto';
      if (this.pinDir) {
        const pinPath = linkPinPath(this.pinDir, 'xdp', ifname);
        this.claimPinnedLink(ifindex, 'xdp', pinPath);
        attachment = await attachPinnedXdp(this.programs.xdp(), ifindex, mode, this.netns, pinPath);
      } else {
        attachment = { handle: await native.attachXdp(this.programs.xdp(), ifindex, mode, this.netns) };
      }

      // Only generic XDP runs on the stack's receive path, where a
      // re-injected frame would meet the hold program again. A failed
      // query leaves the program attached but unrecorded, so it is
      // detached before the error goes up.
      try {
        const query = await native.queryXdp(ifindex, this.netns);
        bypass = query.nativeProgId !== 0 && query.nativeProgId === (attachment.handle as NativeLink).info().progId;
      } catch (err) {
        await detachAttachment(attachment).catch(() => {});
        throw err;
      }
    } else {
      const kind = how.kind ?? 'auto';
      if (this.pinDir) {
        const pinPath = linkPinPath(this.pinDir, 'tcx', ifname);
        this.claimPinnedLink(ifindex, 'tcx', pinPath);
        attachment = await attachPinnedTc(this.programs.tc(), ifindex, kind, this.netns, pinPath);
      } else {
        attachment = { handle: await native.attachTc(this.programs.tc(), ifindex, 'ingress', kind, this.netns) };
      }
      if (this.pinDir && (attachment.handle as NativeTcAttachment).kind === 'clsact') this.clsactIfindexes.add(ifindex);
      // The tc program passes frames that carry the re-injection mark.
      bypass = true;
    }

    this.attachments.set(ifindex, attachment);
    this.pinHooks.set(ifindex, how.hook === 'xdp' ? 'xdp' : 'tcx');
    if (bypass) this.reinjectionBypasses.add(ifindex);
    else this.reinjectionBypasses.delete(ifindex);
    this.names.set(ifindex, ifname);
    return ifindex;
  }

  // Detaches the hold program from the interface ifindex and removes its
  // link pin. With gone, the interface was deleted or moved away, and its
  // ifindex may already name another one. The kernel then ended the XDP
  // or tcx link and removed the clsact filter, and a clsact detach by
  // ifindex would act on that other interface, so only the pin and the
  // descriptor are released.
  async detach(ifindex: number, options: { gone?: boolean } = {}): Promise<void> {
    const attachment = this.attachments.get(ifindex);
    if (attachment === undefined) return;

    // A gone interface is forgotten even when the release fails, so that
    // a new interface with its ifindex can be attached.
    const clsact = 'kind' in attachment.handle && attachment.handle.kind === 'clsact';
    try {
      if (!(options.gone && clsact)) await detachAttachment(attachment);
    } catch (err) {
      if (!options.gone) throw err;
      this.forget(ifindex);
      throw err;
    }
    this.forget(ifindex);
  }

  private forget(ifindex: number): void {
    this.attachments.delete(ifindex);
    this.pinHooks.delete(ifindex);
    this.names.delete(ifindex);
    this.reinjectionBypasses.delete(ifindex);
    this.clsactIfindexes.delete(ifindex);
  }

  // Records that the interface ifindex is now called ifname, and moves its
  // link pin to the pin path of the new name, so that the next agent
  // takes the link over under that name. When two attached interfaces
  // swap names, the pin in the way moves to a temporary path until its
  // own rename, so that no rename replaces another link's pin.
  rename(ifindex: number, ifname: string): void {
    const attachment = this.attachments.get(ifindex);
    if (attachment === undefined) return;

    if (attachment.pinPath !== undefined && this.pinDir !== undefined) {
      const pinPath = linkPinPath(this.pinDir, this.pinHooks.get(ifindex)!, ifname);
      for (const [other, otherAttachment] of this.attachments) {
        if (other === ifindex || otherAttachment.pinPath !== pinPath) continue;
        const aside = temporaryPinPath(pinPath, `rename${other}_`);
        renameSync(pinPath, aside);
        otherAttachment.pinPath = aside;
      }
      renameSync(attachment.pinPath, pinPath);
      attachment.pinPath = pinPath;
    }
    this.names.set(ifindex, ifname);
  }

  // Returns whether the attachment of ifindex still runs on a device: false
  // once that device is gone, also when a new device has taken its
  // ifindex. undefined for a clsact filter, which cannot tell.
  live(ifindex: number): boolean | undefined {
    const attachment = this.attachments.get(ifindex);
    if (attachment === undefined) return false;

    try {
      if ('info' in attachment.handle) return attachment.handle.info().ifindex === ifindex;
      if (attachment.handle.kind === 'clsact' || attachment.pinPath === undefined) return undefined;
      const link = openPinnedLinkIfExists(attachment.pinPath);
      if (link === null) return undefined;
      try {
        return link.info().ifindex === ifindex;
      } finally {
        link.close();
      }
    } catch {
      // A closed handle or a pin that cannot be opened gives no answer.
      return undefined;
    }
  }

  // Returns whether a frame re-injected on ifindex skips the hold program.
  bypassesReinjection(ifindex: number): boolean {
    return this.reinjectionBypasses.has(ifindex);
  }

  // Detaches the programs that a previous agent pinned in pinDir for
  // interfaces or hooks that have no attachment here, and returns the
  // removed pin paths. Without a pinDir there is nothing to find.
  removeUnlistedLinks(): string[] {
    if (this.pinDir === undefined) return [];
    const attachedPins = new Set([...this.attachments.values()].flatMap((attachment) => (attachment.pinPath === undefined ? [] : [attachment.pinPath])));
    return removeUnlistedLinks(this.pinDir, attachedPins);
  }

  // Detaches the clsact filters, which tc uses on kernels before 6.6, that
  // a previous agent left on devices of this netns where no clsact filter
  // is attached here, and returns them. Without a pinDir the filters have
  // no fixed position to find.
  async removeUnlistedClsactFilters(): Promise<ClsactSweep> {
    if (this.pinDir === undefined) return { detached: [], errors: [] };
    return removeUnlistedClsactFilters(this.clsactIfindexes, this.netns);
  }

  // Detaches every program and removes the link pins, unless keepAttached
  // leaves the programs attached through their pins and clsact filters
  // for the next agent. Each detach is tried, and the failures are
  // thrown together, so one failure does not leave the others attached.
  async close(options: { keepAttached?: boolean } = {}): Promise<void> {
    const attachments = [...this.attachments.values()];
    this.attachments.clear();
    this.pinHooks.clear();
    if (options.keepAttached) return;

    const failures: Error[] = [];
    for (const attachment of attachments) {
      await detachAttachment(attachment).catch((err: Error) => failures.push(err));
    }
    if (failures.length === 1) throw failures[0];
    if (failures.length > 1) throw new AggregateError(failures, `detaching ${failures.length} programs failed: ${failures.map((err) => err.message).join('; ')}`);
  }

  // Puts at pinPath the link that a previous agent pinned for the device
  // ifindex under another name, as after a rename while no agent ran, so
  // that attachPinnedXdp() or attachPinnedTc() takes it over instead of
  // attaching a second program. A link of another device pinned at
  // pinPath moves aside first, under a name that no interface can have
  // (":" is not allowed in one, and bpffs rejects "." in pin names), where
  // that device's own attach finds it.
  // The start-up removal of an earlier agent's links (removeUnlistedLinks())
  // detaches what no attach claimed. A pin that an attachment here owns is
  // never moved.
  private claimPinnedLink(ifindex: number, hook: 'xdp' | 'tcx', pinPath: string): void {
    const owned = new Set([...this.attachments.values()].map((attachment) => attachment.pinPath));
    if (owned.has(pinPath)) throw new Error(`the pin ${pinPath} belongs to another interface of this agent; the next pass attaches again`);

    const atPath = this.pinnedLinkDevice(pinPath, hook);
    if (atPath === ifindex) return;
    if (atPath !== null) renameSync(pinPath, linkPinPath(this.pinDir!, hook, `:aside${process.pid}-${this.asideCount++}`));

    for (const name of readdirSync(this.pinDir!)) {
      const candidate = path.join(this.pinDir!, name);
      if (parseLinkPinPath(name)?.hook !== hook || owned.has(candidate)) continue;
      if (this.pinnedLinkDevice(candidate, hook) === ifindex) {
        renameSync(candidate, pinPath);
        return;
      }
    }
  }

  // Returns the ifindex that the link pinned at pinPath runs on, 0 for a
  // link whose device is gone, or null without a link of that hook there.
  private pinnedLinkDevice(pinPath: string, hook: 'xdp' | 'tcx'): number | null {
    const { constants } = loadNative();
    let link: NativeLink | null;
    try {
      link = openPinnedLinkIfExists(pinPath);
    } catch {
      return null;
    }
    if (link === null) return null;
    try {
      const info = link.info();
      const type = hook === 'xdp' ? constants.BPF_LINK_TYPE_XDP : constants.BPF_LINK_TYPE_TCX;
      if (info.type !== type || (hook === 'tcx' && info.attachType !== constants.BPF_TCX_INGRESS)) return null;
      return info.ifindex ?? 0;
    } finally {
      link.close();
    }
  }
}

// Rejects a device without an Ethernet header, such as tun, ipip or
// WireGuard. The programs parse Ethernet frames, so on such a device they
// would classify nothing: its Services would pass unheld and count no
// warm traffic.
async function checkEthernet(ifname: string, netns: string | undefined): Promise<void> {
  const linkType = await loadNative().interfaceLinkType(ifname, netns);
  if (linkType === ARPHRD_ETHER || linkType === ARPHRD_LOOPBACK) return;
  throw new Error(
    `interface ${ifname} has link type ${linkType}, but zerohold parses Ethernet frames only (link type ${ARPHRD_ETHER}): list the Ethernet device that carries the Service traffic instead, such as the physical or veth device under the tunnel`,
  );
}
