// The hold program's attachments to the interfaces of one network
// namespace, by ifindex. With a pinDir, each XDP or tcx link is pinned
// under the interface's name (see pinned-links.ts), so the pins follow
// renames, and a pin whose interface is gone is removed with the
// attachment.

import { readdirSync, renameSync } from 'node:fs';
import path from 'node:path';

import { type ClsactSweep, loadNative, type NativeLink, type NativeProgram } from './native.js';
import {
  type Attachment,
  attachPinnedTc,
  attachPinnedXdp,
  detachAttachment,
  linkIfindex,
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

// An interface with the hold program.
interface AttachedInterface {
  attachment: Attachment;
  // The name at the attach or the last rename, for reports of held flows.
  name: string;
  // The pin kind, for the pin path of a new name.
  pinHook: 'xdp' | 'tcx';
  // True when a re-injected frame does not pass the hold program again,
  // so a release may send the interface's frames with the gate closed.
  bypassesReinjection: boolean;
}

export class InterfaceAttachments {
  private readonly interfaces = new Map<number, AttachedInterface>();
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
    if (this.interfaces.has(ifindex)) throw new Error(`interface ${ifname} (ifindex ${ifindex}) already has the hold program of this agent`);
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
      // The tc program passes frames that carry the re-injection mark.
      bypass = true;
    }

    this.interfaces.set(ifindex, { attachment, name: ifname, pinHook: how.hook === 'xdp' ? 'xdp' : 'tcx', bypassesReinjection: bypass });
    return ifindex;
  }

  // Returns the name of the attached interface ifindex.
  name(ifindex: number): string | undefined {
    return this.interfaces.get(ifindex)?.name;
  }

  // Returns the attached interfaces' ifindexes and names.
  names(): Map<number, string> {
    return new Map([...this.interfaces].map(([ifindex, { name }]) => [ifindex, name]));
  }

  // Detaches the hold program from the interface ifindex and removes its
  // link pin. With gone, the interface was deleted or moved away, and its
  // ifindex may already name another one. The kernel then ended the XDP
  // or tcx link and removed the clsact filter, and a clsact detach by
  // ifindex would act on that other interface, so only the pin and the
  // descriptor are released.
  async detach(ifindex: number, options: { gone?: boolean } = {}): Promise<void> {
    const attachment = this.interfaces.get(ifindex)?.attachment;
    if (attachment === undefined) return;

    // A gone interface is forgotten even when the release fails, so that
    // a new interface with its ifindex can be attached.
    try {
      if (!(options.gone && isClsact(attachment))) await detachAttachment(attachment);
    } catch (err) {
      if (options.gone) this.interfaces.delete(ifindex);
      throw err;
    }
    this.interfaces.delete(ifindex);
  }

  // Records that the interface ifindex is now called ifname, and moves its
  // link pin to the pin path of the new name, so that the next agent
  // takes the link over under that name. When two attached interfaces
  // swap names, the pin in the way moves to a temporary path until its
  // own rename, so that no rename replaces another link's pin.
  rename(ifindex: number, ifname: string): void {
    const renamed = this.interfaces.get(ifindex);
    if (renamed === undefined) return;

    const { attachment } = renamed;
    if (attachment.pinPath !== undefined && this.pinDir !== undefined) {
      const pinPath = linkPinPath(this.pinDir, renamed.pinHook, ifname);
      for (const [other, { attachment: otherAttachment }] of this.interfaces) {
        if (other === ifindex || otherAttachment.pinPath !== pinPath) continue;
        const aside = temporaryPinPath(pinPath, `rename${other}_`);
        renameSync(pinPath, aside);
        otherAttachment.pinPath = aside;
      }
      renameSync(attachment.pinPath, pinPath);
      attachment.pinPath = pinPath;
    }
    renamed.name = ifname;
  }

  // Returns whether the attachment of ifindex still runs on a device: false
  // once that device is gone, also when a new device has taken its
  // ifindex. undefined for a clsact filter, which cannot tell.
  live(ifindex: number): boolean | undefined {
    const attachment = this.interfaces.get(ifindex)?.attachment;
    if (attachment === undefined) return false;

    try {
      if ('info' in attachment.handle) return attachment.handle.info().ifindex === ifindex;
      if (isClsact(attachment) || attachment.pinPath === undefined) return undefined;
      const link = openPinnedLinkIfExists(attachment.pinPath);
      if (link === null) return undefined;
      try {
        return link.info().ifindex === ifindex;
      } finally {
        link.close();
      }
    } catch {
      // A closed handle or a pin that cannot be opened leaves it unknown.
      return undefined;
    }
  }

  // Returns whether a frame re-injected on ifindex skips the hold program.
  bypassesReinjection(ifindex: number): boolean {
    return this.interfaces.get(ifindex)?.bypassesReinjection ?? false;
  }

  // Detaches the programs that a previous agent pinned in pinDir for
  // interfaces or hooks that have no attachment here, and returns the
  // removed pin paths. Without a pinDir there is nothing to find.
  removeUnlistedLinks(): string[] {
    if (this.pinDir === undefined) return [];
    return removeUnlistedLinks(this.pinDir, this.pinPaths());
  }

  // Detaches the clsact filters, which tc uses on kernels before 6.6, that
  // a previous agent left on devices of this netns where no clsact filter
  // is attached here, and returns them. Without a pinDir the filters have
  // no fixed position to find.
  async removeUnlistedClsactFilters(): Promise<ClsactSweep> {
    if (this.pinDir === undefined) return { detached: [], errors: [] };
    const clsactIfindexes = [...this.interfaces].flatMap(([ifindex, { attachment }]) => (isClsact(attachment) ? [ifindex] : []));
    return removeUnlistedClsactFilters(clsactIfindexes, this.netns);
  }

  // Detaches every program and removes the link pins, unless keepAttached
  // leaves the programs attached through their pins and clsact filters
  // for the next agent. Each detach is tried, and the failures are
  // thrown together, so one failure does not leave the others attached.
  async close(options: { keepAttached?: boolean } = {}): Promise<void> {
    const attachments = [...this.interfaces.values()].map(({ attachment }) => attachment);
    this.interfaces.clear();
    if (options.keepAttached) return;

    const failures: Error[] = [];
    for (const attachment of attachments) {
      await detachAttachment(attachment).catch((err: Error) => failures.push(err));
    }
    if (failures.length === 1) throw failures[0];
    if (failures.length > 1) throw new AggregateError(failures, `detaching ${failures.length} programs failed: ${failures.map((err) => err.message).join('; ')}`);
  }

  // Returns the pin paths of the attachments here.
  private pinPaths(): Set<string> {
    return new Set([...this.interfaces.values()].flatMap(({ attachment }) => (attachment.pinPath === undefined ? [] : [attachment.pinPath])));
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
    const owned = this.pinPaths();
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
    let link: NativeLink | null;
    try {
      link = openPinnedLinkIfExists(pinPath);
    } catch {
      return null;
    }
    if (link === null) return null;
    try {
      return linkIfindex(link, hook);
    } finally {
      link.close();
    }
  }
}

function isClsact(attachment: Attachment): boolean {
  return 'kind' in attachment.handle && attachment.handle.kind === 'clsact';
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
