// Attachments of the hold programs that outlive the agent process. With a
// pinDir, each XDP or tcx bpf_link is pinned next to the maps, so a
// SIGKILLed agent leaves its program attached and the gate closed. The
// next agent opens the pin and swaps its own program in with
// bpf_link_update, so no packet meets a device without a program.
//
// Pin layout in pinDir, one network namespace per pinDir because a device
// name is unique only within its namespace:
//   link_xdp_<ifname>          XDP link of the device
//   link_tcx_ingress_<ifname>  tcx ingress link of the device
//   tmp_link_...               a new link during replacePin(); only a crash
//                              between its pin and its rename leaves one
// A clsact filter is a netlink object and needs no pin. It sits at a fixed
// handle and priority instead, so a restart replaces it in place, and a
// start finds the filters of devices it no longer attaches to by querying
// that position on every device.

import { readdirSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';

import {
  type ClsactSweep,
  loadNative,
  type NativeLink,
  type NativeProgram,
  type NativeTcAttachment,
  type TcFilterOptions,
  type TcKind,
  type XdpMode,
} from './native.js';

const LINK_PREFIX = 'link_';
const TEMPORARY_PREFIX = 'tmp_link_';

// Position of zerohold's clsact filter when a pinDir is set. Priority 1 is
// the lowest value, so the filter runs before filters of any other
// priority. The handle is "zh" in ASCII.
export const CLSACT_FILTER: TcFilterOptions = { handle: 0x7a68, priority: 1 };

// The programs that zerohold attaches as clsact filters. A filter at
// CLSACT_FILTER that runs another program is not zerohold's.
const CLSACT_PROGRAMS = ['zh_tc_hold'];

// An attached hold program and, for a pinned link, the pin to remove when
// it is detached.
export interface Attachment {
  handle: NativeLink | NativeTcAttachment;
  pinPath?: string;
}

export function linkPinPath(pinDir: string, hook: 'xdp' | 'tcx', ifname: string): string {
  const name = hook === 'xdp' ? `xdp_${ifname}` : `tcx_ingress_${ifname}`;
  return path.join(pinDir, LINK_PREFIX + name);
}

// Returns a temporary pin path next to pinPath, for a link on its way to
// or from pinPath. tag keeps the paths of concurrent moves apart. A crash
// can leave such a pin, which the next removeDefunctLinks() removes.
export function temporaryPinPath(pinPath: string, tag = ''): string {
  return path.join(path.dirname(pinPath), TEMPORARY_PREFIX + tag + path.basename(pinPath).slice(LINK_PREFIX.length));
}

// Returns the hook and interface that linkPinPath() encoded in a pin's
// name, or null for another name.
export function parseLinkPinPath(pinPath: string): { hook: 'xdp' | 'tcx'; ifname: string } | null {
  const name = path.basename(pinPath);
  if (name.startsWith(`${LINK_PREFIX}xdp_`)) return { hook: 'xdp', ifname: name.slice(`${LINK_PREFIX}xdp_`.length) };
  if (name.startsWith(`${LINK_PREFIX}tcx_ingress_`)) return { hook: 'tcx', ifname: name.slice(`${LINK_PREFIX}tcx_ingress_`.length) };
  return null;
}

// Opens the link pinned at pinPath, or returns null when nothing is pinned
// there.
export function openPinnedLinkIfExists(pinPath: string): NativeLink | null {
  try {
    return loadNative().openPinnedLink(pinPath);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

// Detaches the program and removes the pin. The pin goes last, so a failed
// detach leaves the link for the next agent to take over.
export async function detachAttachment(attachment: Attachment): Promise<void> {
  await attachment.handle.detach();
  if (attachment.pinPath !== undefined) rmSync(attachment.pinPath, { force: true });
}

// Detaches and unpins the links in pinDir whose device is gone, and the
// temporary pins of a replacement that a crash interrupted. Returns the
// paths removed. Pins that are no links are left alone.
export function removeDefunctLinks(pinDir: string): string[] {
  // The kernel reports ifindex 0 for a link whose device was removed.
  return removeLinks(pinDir, (name, link) => name.startsWith(TEMPORARY_PREFIX) || link.info().ifindex === 0);
}

// Detaches and unpins the links in pinDir other than those at keep, such
// as the link of an interface that a previous agent's configuration listed
// and this one's does not, or of a hook that changed from XDP to tc.
// Returns the paths removed.
export function removeUnlistedLinks(pinDir: string, keep: ReadonlySet<string>): string[] {
  return removeLinks(pinDir, (name) => name.startsWith(LINK_PREFIX) && !keep.has(path.join(pinDir, name)));
}

// Detaches the clsact filters that a previous agent placed at
// CLSACT_FILTER on the devices of netns other than those in keep, such as
// a device that the configuration no longer lists or whose hook changed.
// Returns them, and the devices that could not be swept.
export function removeUnlistedClsactFilters(keep: Iterable<number>, netns: string | undefined): Promise<ClsactSweep> {
  return loadNative().detachClsactFilters(CLSACT_PROGRAMS, [...keep], CLSACT_FILTER, netns);
}

// Detaches and unpins the links and temporary links in pinDir that select
// returns true for, and returns their paths. A missing pinDir has none,
// and pins that are no links are left alone.
function removeLinks(pinDir: string, select: (name: string, link: NativeLink) => boolean): string[] {
  let names: string[];
  try {
    names = readdirSync(pinDir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }

  const removed: string[] = [];
  for (const name of names) {
    if (!name.startsWith(TEMPORARY_PREFIX) && !name.startsWith(LINK_PREFIX)) continue;

    const pinPath = path.join(pinDir, name);
    let link: NativeLink | null;
    try {
      link = openPinnedLinkIfExists(pinPath);
    } catch (err) {
      // A pin of another kind under a link's name: left alone, as above.
      if ((err as NodeJS.ErrnoException).code === 'EINVAL') continue;
      throw err;
    }
    if (link === null) continue;

    if (select(name, link)) {
      retireLink(link);
      rmSync(pinPath, { force: true });
      removed.push(pinPath);
    } else {
      link.close();
    }
  }
  return removed;
}

// Attaches prog to ifindex in XDP mode `mode` and pins the link at
// pinPath. A link pinned there before on the same device and in a fitting
// mode keeps its place, and only its program is swapped. A link of another
// device is detached after the new link is attached. A link of this
// device in the other mode is detached first, because the kernel rejects a
// native and a generic XDP program on one device (EEXIST), so the device
// has no program between the two steps.
export async function attachPinnedXdp(
  prog: NativeProgram,
  ifindex: number,
  mode: XdpMode,
  netns: string | undefined,
  pinPath: string,
): Promise<Attachment> {
  const native = loadNative();
  const existing = openPinnedLinkIfExists(pinPath);

  let placement = existing === null ? 'other-device' : await placeXdpLink(existing, ifindex, mode, netns);
  if (existing !== null && placement === 'fits') {
    adoptLink(existing, prog);
    // Every link of one agent runs the same program, so the check of
    // placeXdpLink() also passes for its link of a device that moved to
    // another namespace and left its ifindex to this device. After the
    // swap, only the right link makes the device run prog.
    const query = await native.queryXdp(ifindex, netns);
    if (query.nativeProgId === prog.id || query.genericProgId === prog.id) return { handle: existing, pinPath };
    placement = 'other-device';
  }

  // NOTE: if the attach below fails after this detach, the device has no
  // program and the pin names a detached link, which the next
  // removeDefunctLinks() removes.
  let old = existing;
  if (old !== null && placement === 'other-mode') {
    retireLink(old);
    old = null;
  }

  let link: NativeLink;
  try {
    link = await native.attachXdp(prog, ifindex, mode, netns);
  } catch (err) {
    old?.close();
    throw err;
  }
  await replacePinOrDetach(link, pinPath, old);
  return { handle: link, pinPath };
}

// Attaches prog to the ingress of ifindex with tc, as attachPinnedXdp does
// for XDP. A tcx link is pinned at pinPath. A clsact filter takes the
// CLSACT_FILTER position, which replaces the filter of a previous agent,
// and any link pinned at pinPath is detached.
export async function attachPinnedTc(
  prog: NativeProgram,
  ifindex: number,
  kind: TcKind,
  netns: string | undefined,
  pinPath: string,
): Promise<Attachment> {
  const native = loadNative();
  const existing = openPinnedLinkIfExists(pinPath);

  if (existing !== null && kind !== 'clsact' && tcxLinkFits(existing, ifindex)) {
    adoptLink(existing, prog);
    return { handle: existing, pinPath };
  }

  const tc = await native.attachTc(prog, ifindex, 'ingress', kind, netns, CLSACT_FILTER);
  if (tc.kind === 'tcx') {
    await replacePinOrDetach(tc, pinPath, existing);
    return { handle: tc, pinPath };
  }

  if (existing !== null) {
    rmSync(pinPath, { force: true });
    retireLink(existing);
  }
  return { handle: tc };
}

// Returns where an XDP link runs relative to the device ifindex of netns:
// there in a mode that `mode` accepts ('auto' accepts either), there in
// the other mode, or elsewhere. XDP link info has no attach mode, so the
// mode comes from a query of the device.
async function placeXdpLink(
  link: NativeLink,
  ifindex: number,
  mode: XdpMode,
  netns: string | undefined,
): Promise<'fits' | 'other-mode' | 'other-device'> {
  const native = loadNative();
  const info = link.info();
  if (linkIfindex(link, 'xdp') !== ifindex) return 'other-device';

  const query = await native.queryXdp(ifindex, netns);
  let attachedMode: 'native' | 'generic' | undefined;
  if (query.nativeProgId === info.progId) attachedMode = 'native';
  else if (query.genericProgId === info.progId) attachedMode = 'generic';

  if (attachedMode === undefined) return 'other-device';
  return mode === 'auto' || mode === attachedMode ? 'fits' : 'other-mode';
}

// NOTE: a tcx link reports only ifindex and attach type, so a link of a
// device with the same ifindex in another namespace would pass this check.
// A pinDir must serve one namespace.
function tcxLinkFits(link: NativeLink, ifindex: number): boolean {
  return linkIfindex(link, 'tcx') === ifindex;
}

// Returns the ifindex that a link of hook (an XDP link, or a tcx ingress
// link) runs on, 0 once its device is gone, or null for another link.
export function linkIfindex(link: NativeLink, hook: 'xdp' | 'tcx'): number | null {
  const { constants } = loadNative();
  const info = link.info();
  if (hook === 'xdp' && info.type !== constants.BPF_LINK_TYPE_XDP) return null;
  if (hook === 'tcx' && (info.type !== constants.BPF_LINK_TYPE_TCX || info.attachType !== constants.BPF_TCX_INGRESS)) return null;
  return info.ifindex ?? 0;
}

// Swaps prog into a pinned link. bpf_link_update is atomic: every packet
// runs either the old or the new program.
function adoptLink(link: NativeLink, prog: NativeProgram): void {
  try {
    link.update(prog);
  } catch (err) {
    link.close();
    throw err;
  }
}

// Pins link at pinPath in place of the old link, then detaches the old
// one. The pin goes to a temporary name first and is renamed over
// pinPath, so a pin is there at every moment. On failure the new link is
// detached and the old one stays attached and pinned.
async function replacePinOrDetach(link: NativeLink | NativeTcAttachment, pinPath: string, old: NativeLink | null): Promise<void> {
  const temporary = temporaryPinPath(pinPath);

  try {
    rmSync(temporary, { force: true });
    link.pin(temporary);
    renameSync(temporary, pinPath);
  } catch (err) {
    rmSync(temporary, { force: true });
    old?.close();
    try {
      await link.detach();
    } catch {
      // The pin error is the one to report. An unpinned link also detaches
      // when its handle is garbage collected.
    }
    throw err;
  }

  if (old !== null) retireLink(old);
}

// Detaches a link that is no longer pinned, or about to be unpinned. The
// descriptor is closed either way, and closing the last descriptor of an
// unpinned link detaches it too, so an error of the detach call is moot.
function retireLink(link: NativeLink): void {
  try {
    link.detach();
  } catch {
    // Closed below, which ends the attachment.
  } finally {
    link.close();
  }
}
