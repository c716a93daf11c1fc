// Cilium's service frontends read from the load-balancer maps that the
// Cilium agent pins (layouts in lb-map-layout.ts). The maps are what this
// node's datapath uses, so a frontend with backends here is one that a
// re-injected packet reaches. Each poll reads the services maps in one
// batch per family and keeps only the master entries (slot 0). Backend and
// reverse NAT entries are read on request only.

import { existsSync } from 'node:fs';
import path from 'node:path';

import ipaddr from 'ipaddr.js';
import type { Logger } from 'pino';

import { loadNative, type NativeMap } from '../../datapath/native.js';
import { type CiliumFrontend, type CiliumProtocol, type CiliumServiceSource, sameFrontends, sortFrontends } from './frontends.js';
import {
  type BackendValue,
  decodeBackendValue,
  decodeReverseNatValue,
  decodeServiceKey,
  decodeServiceValue,
  encodeBackendKey,
  encodeReverseNatKey,
  encodeServiceKey,
  IPPROTO_ANY,
  IPPROTO_TCP,
  IPPROTO_UDP,
  type IpFamily,
  LB_MAP_NAMES,
  LB_MAP_SIZES,
  type ReverseNatValue,
  SCOPE_INTERNAL,
  serviceKeySlot,
} from './lb-map-layout.js';

// Directory of Cilium's global pinned maps: its bpf.root, /sys/fs/bpf, plus tc/globals.
export const CILIUM_PIN_DIR = '/sys/fs/bpf/tc/globals';

const PROTOCOLS = new Map<number, CiliumProtocol>([
  [IPPROTO_TCP, 'tcp'],
  [IPPROTO_UDP, 'udp'],
  [IPPROTO_ANY, 'any'],
]);

export interface CiliumServiceMapsOptions {
  // Directory of Cilium's pinned maps. Defaults to CILIUM_PIN_DIR.
  pinDir?: string;
  // Interval between polls in milliseconds. Defaults to 250.
  pollMs?: number;
  log: Logger;
}

export interface CiliumBackend extends BackendValue {
  id: number;
  slot: number;
}

interface FamilyMaps {
  services: NativeMap;
  backends: NativeMap;
  reverseNat: NativeMap;
}

// Returns the families whose services map is pinned in pinDir.
export function pinnedFamilies(pinDir: string = CILIUM_PIN_DIR): IpFamily[] {
  return (['ipv4', 'ipv6'] as const).filter((family) => existsSync(path.join(pinDir, LB_MAP_NAMES[family].services)));
}

const ROLES = ['services', 'backends', 'reverseNat'] as const;

export class CiliumServiceMaps implements CiliumServiceSource {
  readonly kind = 'maps';
  readonly pinDir: string;
  private readonly pollMs: number;
  private readonly log: Logger;
  private readonly maps = new Map<IpFamily, FamilyMaps>();
  private readonly listeners = new Set<(frontends: readonly CiliumFrontend[]) => void>();
  private list: CiliumFrontend[] = [];
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  // Consecutive failed polls, so that a lasting failure logs once.
  private failedPolls = 0;

  // Opens the maps of every family whose services map is pinned. Throws
  // when no family is pinned, when a map of a pinned family is missing, or
  // when a map's key or value size differs from Cilium v1.18.6's layout.
  constructor(options: CiliumServiceMapsOptions) {
    this.pinDir = options.pinDir ?? CILIUM_PIN_DIR;
    this.pollMs = options.pollMs ?? 250;
    this.log = options.log;

    const families = pinnedFamilies(this.pinDir);
    if (families.length === 0) {
      throw new Error(`Cilium's service maps are not pinned in ${this.pinDir}: neither ${LB_MAP_NAMES.ipv4.services} nor ${LB_MAP_NAMES.ipv6.services} exists. Mount the host's /sys/fs/bpf, or set the pin directory to Cilium's bpf root plus tc/globals`);
    }

    try {
      for (const family of families) this.maps.set(family, this.openFamily(family));
    } catch (err) {
      this.close();
      throw err;
    }
  }

  get families(): IpFamily[] {
    return [...this.maps.keys()];
  }

  // Reads the maps once, then polls them every pollMs. The timer does not
  // keep the process alive.
  start(): void {
    if (this.closed) throw new Error('Cilium service maps reader is closed');
    if (this.timer !== undefined) return;

    this.read();
    this.timer = setInterval(() => this.poll(), this.pollMs);
    this.timer.unref();
  }

  frontends(): readonly CiliumFrontend[] {
    return this.list;
  }

  refresh(): Promise<void> {
    try {
      this.read();
      return Promise.resolve();
    } catch (err) {
      return Promise.reject(err);
    }
  }

  onChange(listener: (frontends: readonly CiliumFrontend[]) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  // Reads the backend slots of frontend's service: the selectable ones
  // first, then the quarantined ones. A slot whose backend entry is
  // missing is left out, as the datapath cannot use it either.
  backends(frontend: CiliumFrontend): CiliumBackend[] {
    const family = familyOf(frontend.address);
    const maps = this.familyMaps(family);
    const master = this.masterEntry(maps.services, family, frontend);
    if (master === null) return [];

    const result: CiliumBackend[] = [];
    for (let slot = 1; slot <= master.count + master.qcount; slot++) {
      const raw = maps.services.lookup(encodeServiceKey(family, { ...this.keyOf(frontend), backendSlot: slot }));
      if (raw === null) continue;

      const id = decodeServiceValue(raw).backendId;
      const backend = maps.backends.lookup(encodeBackendKey(id));
      if (backend === null) continue;
      result.push({ id, slot, ...decodeBackendValue(family, backend) });
    }
    return result;
  }

  // Returns the reverse NAT entry of a rev-NAT id in one family, which the
  // datapath uses to rewrite replies, or null when it is missing.
  reverseNat(family: IpFamily, revNatId: number): ReverseNatValue | null {
    const raw = this.familyMaps(family).reverseNat.lookup(encodeReverseNatKey(revNatId));
    if (raw === null) return null;

    return decodeReverseNatValue(family, raw);
  }

  close(): void {
    this.closed = true;
    clearInterval(this.timer);
    this.timer = undefined;
    for (const maps of this.maps.values()) {
      maps.services.close();
      maps.backends.close();
      maps.reverseNat.close();
    }
    this.maps.clear();
    this.listeners.clear();
  }

  private openFamily(family: IpFamily): FamilyMaps {
    const native = loadNative();
    const opened: NativeMap[] = [];
    try {
      const open = (role: 'services' | 'backends' | 'reverseNat'): NativeMap => {
        const file = path.join(this.pinDir, LB_MAP_NAMES[family][role]);
        let map: NativeMap;
        try {
          map = native.openPinnedMap(file);
        } catch (err) {
          throw new Error(`cannot open Cilium's map ${file}: ${(err as Error).message}`, { cause: err });
        }
        opened.push(map);

        const expected = LB_MAP_SIZES[family][role];
        if (map.keySize !== expected.key || map.valueSize !== expected.value) {
          throw new Error(`Cilium's map ${file} has key size ${map.keySize} and value size ${map.valueSize}, expected ${expected.key} and ${expected.value} as in Cilium v1.18.6. This Cilium version is not supported`);
        }
        return map;
      };
      return { services: open('services'), backends: open('backends'), reverseNat: open('reverseNat') };
    } catch (err) {
      for (const map of opened) map.close();
      throw err;
    }
  }

  private familyMaps(family: IpFamily): FamilyMaps {
    const maps = this.maps.get(family);
    if (maps === undefined) throw new Error(`Cilium's ${family} service maps are not pinned in ${this.pinDir}`);
    return maps;
  }

  private keyOf(frontend: CiliumFrontend) {
    const protocol = [...PROTOCOLS].find(([, name]) => name === frontend.protocol)![0];
    const scope = frontend.scope === 'internal' ? SCOPE_INTERNAL : 0;
    return { address: frontend.address, port: frontend.port, backendSlot: 0, protocol, scope };
  }

  private masterEntry(services: NativeMap, family: IpFamily, frontend: CiliumFrontend) {
    const raw = services.lookup(encodeServiceKey(family, this.keyOf(frontend)));
    return raw === null ? null : decodeServiceValue(raw);
  }

  private poll(): void {
    try {
      this.read();
      if (this.failedPolls > 0) this.log.info({ pinDir: this.pinDir, failedPolls: this.failedPolls }, 'reading Cilium service maps again');
      this.failedPolls = 0;
    } catch (err) {
      this.failedPolls++;
      if (this.failedPolls === 1) this.log.error({ err, pinDir: this.pinDir }, 'reading Cilium service maps failed, keeping the previous frontends and retrying every poll');
    }
  }

  // Opens a family's maps again when a pin names another map now, as after
  // Cilium re-created a map whose size or flags changed. The old maps
  // would go on showing a frozen state.
  private followPins(family: IpFamily, maps: FamilyMaps): FamilyMaps {
    const native = loadNative();
    const replaced = ROLES.some((role) => {
      const pinned = native.openPinnedMap(path.join(this.pinDir, LB_MAP_NAMES[family][role]));
      const id = pinned.id;
      pinned.close();
      return id !== maps[role].id;
    });
    if (!replaced) return maps;

    const fresh = this.openFamily(family);
    for (const role of ROLES) maps[role].close();
    this.maps.set(family, fresh);
    this.log.info({ family, pinDir: this.pinDir }, "Cilium replaced a pinned service map, reading the new one");
    return fresh;
  }

  private read(): void {
    if (this.closed) throw new Error('Cilium service maps reader is closed');

    const next: CiliumFrontend[] = [];
    for (const family of [...this.maps.keys()]) {
      const maps = this.followPins(family, this.maps.get(family)!);
      const { keys, values, count } = maps.services.lookupBatch();
      const keySize = maps.services.keySize;
      const valueSize = maps.services.valueBufferSize;

      for (let i = 0; i < count; i++) {
        const key = keys.subarray(i * keySize, (i + 1) * keySize);
        if (serviceKeySlot(family, key) !== 0) continue;

        const fields = decodeServiceKey(family, key);
        const protocol = PROTOCOLS.get(fields.protocol);
        // SCTP and other protocols are not frontends that zerohold holds.
        if (protocol === undefined) continue;

        const value = decodeServiceValue(values.subarray(i * valueSize, (i + 1) * valueSize));
        next.push({
          address: fields.address,
          protocol,
          port: fields.port,
          scope: fields.scope === SCOPE_INTERNAL ? 'internal' : 'external',
          revNatId: value.revNatId,
          backends: value.count,
        });
      }
    }

    sortFrontends(next);
    if (sameFrontends(this.list, next)) return;
    this.list = next;
    for (const listener of this.listeners) listener(next);
  }
}

function familyOf(address: string): IpFamily {
  return ipaddr.parse(address).kind() === 'ipv6' ? 'ipv6' : 'ipv4';
}
