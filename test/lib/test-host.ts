// Loader of test/bpf/test_host.c, a host datapath that calls zerohold in
// chained mode the way the patched Cilium does. It pins the chained-mode
// maps and its service table in a test directory, attaches its XDP
// program to a device in a test namespace, and can be reloaded like a
// Cilium datapath whose pinned prog arrays were replaced.

import { rmSync } from 'node:fs';
import path from 'node:path';

import { encodeFrontendKey, type Frontend } from '../../src/datapath/frontends.js';
import { loadNative, type NativeLink, type NativeObject, type XdpMode } from '../../src/datapath/native.js';
import { repoRoot } from '../../src/paths.js';

export const TEST_HOST_OBJECT = path.join(repoRoot, 'build/bpf/test/test_host.o');

// Indexes of host_stats, as enum test_host_stat in test_host.c.
export const HostStat = {
  PassBackends: 0,
  ChainCalls: 1,
  Fallback: 2,
} as const;

// Maps pinned by name, as the host's loader does. zh_chain_meta and
// host_services survive a reload: Cilium reuses a pin whose spec matches.
const CHAIN_MAPS = ['zh_chain_xdp', 'zh_chain_tc', 'zh_chain_svcs'];
const KEPT_MAPS = ['zh_chain_meta', 'host_services'];
const PINNED_MAPS = [...CHAIN_MAPS, ...KEPT_MAPS];

function u32(value: number): Buffer {
  const buffer = Buffer.alloc(4);
  buffer.writeUInt32LE(value);
  return buffer;
}

async function loadObject(pinDir: string): Promise<NativeObject> {
  const native = loadNative();
  const object = new native.BpfObject(TEST_HOST_OBJECT);
  try {
    // Cilium's loader gives its programs expected attach type 0, and the
    // owner of a prog array fixes it for every member.
    object.setExpectedAttachType('test_host_xdp', 0);
    for (const map of PINNED_MAPS) object.setPinPath(map, path.join(pinDir, map));
    await object.load();
    return object;
  } catch (err) {
    object.close();
    throw err;
  }
}

export class TestHost {
  private link: NativeLink | undefined;

  private constructor(
    readonly pinDir: string,
    private object: NativeObject,
  ) {}

  // Loads the host with its maps pinned in pinDir, which must be a
  // directory in bpffs.
  static async load(pinDir: string): Promise<TestHost> {
    return new TestHost(pinDir, await loadObject(pinDir));
  }

  // The loaded object, for running its programs with BPF_PROG_RUN.
  get bpfObject(): NativeObject {
    return this.object;
  }

  // Attaches test_host_xdp to ifname in the namespace at netns.
  async attach(ifname: string, netns: string, mode: XdpMode): Promise<void> {
    const native = loadNative();
    const ifindex = await native.ifNameToIndex(ifname, netns);
    this.link = await native.attachXdp(this.object.program('test_host_xdp'), ifindex, mode, netns);
  }

  // Adds or updates a frontend of a service with revNatId and a backend
  // count.
  setService(frontend: Frontend, revNatId: number, backends: number): void {
    const value = Buffer.alloc(8);
    value.writeUInt32LE(revNatId, 0);
    value.writeUInt32LE(backends, 4);
    this.object.map('host_services').update(encodeFrontendKey(frontend), value);
  }

  // Lists a service id in zh_chain_svcs, as the zerohold agent would.
  listed(id: number): boolean {
    return this.object.map('zh_chain_svcs').lookup(u32(id)) !== null;
  }

  // Returns the id of the program in slot 0 of a chained prog array, or
  // null for an empty slot.
  slot(array: 'zh_chain_xdp' | 'zh_chain_tc'): number | null {
    const value = this.object.map(array).lookup(u32(0));
    return value === null ? null : value.readUInt32LE(0);
  }

  mapId(name: string): number {
    return this.object.map(name).id;
  }

  // Sums a host_stats counter over the CPUs.
  stat(index: number): bigint {
    const values = this.object.map('host_stats').lookup(u32(index))!;
    let total = 0n;
    for (let offset = 0; offset < values.length; offset += 8) total += values.readBigUInt64LE(offset);
    return total;
  }

  // Replaces the datapath with a fresh load: new programs and new pinned
  // zh_chain_xdp, zh_chain_tc and zh_chain_svcs, so whatever zerohold
  // inserted or listed is gone. replaceMeta pins a new zh_chain_meta too,
  // as Cilium does when it starts on a cleared bpffs. The attachment
  // swaps to the new program atomically.
  async reload(options: { replaceMeta?: boolean } = {}): Promise<void> {
    const replaced = options.replaceMeta ? [...CHAIN_MAPS, 'zh_chain_meta'] : CHAIN_MAPS;
    for (const map of replaced) rmSync(path.join(this.pinDir, map), { force: true });
    const fresh = await loadObject(this.pinDir);

    this.link?.update(fresh.program('test_host_xdp'));
    this.object.close();
    this.object = fresh;
  }

  // Detaches the program and removes every pin.
  close(): void {
    this.link?.detach();
    this.link = undefined;
    this.object.close();
    for (const map of PINNED_MAPS) rmSync(path.join(this.pinDir, map), { force: true });
  }
}
