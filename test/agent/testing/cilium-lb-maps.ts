// Maps laid out like Cilium v1.18.6's load-balancer maps, from
// test/bpf/cilium_lb_maps.c, pinned in a temporary bpffs directory and
// filled the way Cilium's agent fills them. The byte encoding here is
// written out field by field and independently of
// src/agent/cilium/lb-map-layout.ts, so a layout mistake there fails the
// tests instead of cancelling out.

import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';

import ipaddr from 'ipaddr.js';

import { loadNative, type NativeMap, type NativeObject } from '../../../src/datapath/native.js';
import { repoRoot } from '../../../src/paths.js';

export const MAP_NAMES = [
  'cilium_lb4_services_v2',
  'cilium_lb4_backends_v3',
  'cilium_lb4_reverse_nat',
  'cilium_lb6_services_v2',
  'cilium_lb6_backends_v3',
  'cilium_lb6_reverse_nat',
] as const;

export const PROTO = { any: 0, tcp: 6, udp: 17, sctp: 132 } as const;

export interface TestService {
  address: string;
  port: number;
  protocol: keyof typeof PROTO;
  scope?: 0 | 1;
  revNatId: number;
  // Backend ids in slot order. The first `count` are selectable.
  backendIds?: number[];
  // Selectable slots, all of backendIds by default.
  count?: number;
  flags2?: number;
}

function addressBytes(address: string): Buffer {
  return Buffer.from(ipaddr.parse(address).toByteArray());
}

function isIpv6(address: string): boolean {
  return ipaddr.parse(address).kind() === 'ipv6';
}

export class CiliumLbMaps {
  readonly pinDir: string;
  private readonly object: NativeObject;

  private constructor(pinDir: string, object: NativeObject) {
    this.pinDir = pinDir;
    this.object = object;
  }

  // Loads the maps and pins them under /sys/fs/bpf/<name>-<pid>. only
  // limits the pinned maps, to stand for a node with one family.
  static async create(name: string, only: readonly string[] = MAP_NAMES): Promise<CiliumLbMaps> {
    const pinDir = `/sys/fs/bpf/${name}-${process.pid}`;
    mkdirSync(pinDir, { recursive: true });

    const object = new (loadNative().BpfObject)(path.join(repoRoot, 'build/bpf/test/cilium_lb_maps.o'));
    try {
      for (const map of MAP_NAMES) {
        if (only.includes(map)) object.setPinPath(map, path.join(pinDir, map));
      }
      await object.load();
    } catch (err) {
      object.close();
      rmSync(pinDir, { recursive: true, force: true });
      throw err;
    }
    return new CiliumLbMaps(pinDir, object);
  }

  map(name: (typeof MAP_NAMES)[number]): NativeMap {
    return this.object.map(name);
  }

  structSize(name: string): number | undefined {
    return this.object.structLayout(name)?.size;
  }

  // Writes a service as Cilium's reconciler does: backends, slots, reverse
  // NAT, then the master entry.
  addService(service: TestService): void {
    const ipv6 = isIpv6(service.address);
    const ids = service.backendIds ?? [];
    const count = service.count ?? ids.length;

    ids.forEach((id, i) => {
      this.map(ipv6 ? 'cilium_lb6_services_v2' : 'cilium_lb4_services_v2').update(serviceKey(service, i + 1), serviceValue(id, 0, service.revNatId, 0, 0));
    });
    this.map(ipv6 ? 'cilium_lb6_reverse_nat' : 'cilium_lb4_reverse_nat').update(reverseNatKey(service.revNatId), reverseNatValue(service.address, service.port));
    this.setMaster(service, count, ids.length - count);
  }

  // Rewrites a service's master entry, as the reconciler does last.
  setMaster(service: TestService, count: number, qcount = 0): void {
    const map = this.map(isIpv6(service.address) ? 'cilium_lb6_services_v2' : 'cilium_lb4_services_v2');
    map.update(serviceKey(service, 0), serviceValue(0, count, service.revNatId, service.flags2 ?? 0, qcount));
  }

  addBackend(id: number, address: string, port: number, state = 0): void {
    this.map(isIpv6(address) ? 'cilium_lb6_backends_v3' : 'cilium_lb4_backends_v3').update(backendKey(id), backendValue(address, port, state));
  }

  clear(): void {
    for (const name of MAP_NAMES) {
      const map = this.map(name);
      for (let key = map.nextKey(null); key !== null; key = map.nextKey(null)) map.delete(key);
    }
  }

  close(): void {
    this.object.close();
    rmSync(this.pinDir, { recursive: true, force: true });
  }
}

// struct lb4_key / lb6_key: address, be16 dport, host u16 backend_slot,
// u8 proto, u8 scope, u8 pad[2].
export function serviceKey(service: TestService, slot: number): Buffer {
  const address = addressBytes(service.address);
  const key = Buffer.alloc(address.length + 8);
  address.copy(key, 0);
  key.writeUInt16BE(service.port, address.length);
  key.writeUInt16LE(slot, address.length + 2);
  key.writeUInt8(PROTO[service.protocol], address.length + 4);
  key.writeUInt8(service.scope ?? 0, address.length + 5);
  return key;
}

// struct lb4_service / lb6_service: host u32 backend_id, host u16 count,
// be16 rev_nat_index, u8 flags, u8 flags2, host u16 qcount.
export function serviceValue(backendId: number, count: number, revNatId: number, flags2: number, qcount: number): Buffer {
  const value = Buffer.alloc(12);
  value.writeUInt32LE(backendId, 0);
  value.writeUInt16LE(count, 4);
  value.writeUInt16BE(revNatId, 6);
  value.writeUInt8(0, 8);
  value.writeUInt8(flags2, 9);
  value.writeUInt16LE(qcount, 10);
  return value;
}

export function backendKey(id: number): Buffer {
  const key = Buffer.alloc(4);
  key.writeUInt32LE(id, 0);
  return key;
}

// struct lb4_backend / lb6_backend: address, be16 port, u8 proto, u8
// flags, host u16 cluster_id, u8 zone, u8 pad.
export function backendValue(address: string, port: number, state: number): Buffer {
  const bytes = addressBytes(address);
  const value = Buffer.alloc(bytes.length + 8);
  bytes.copy(value, 0);
  value.writeUInt16BE(port, bytes.length);
  value.writeUInt8(PROTO.tcp, bytes.length + 2);
  value.writeUInt8(state, bytes.length + 3);
  return value;
}

export function reverseNatKey(revNatId: number): Buffer {
  const key = Buffer.alloc(2);
  key.writeUInt16BE(revNatId, 0);
  return key;
}

// struct lb4_reverse_nat / lb6_reverse_nat, packed: address, be16 port.
export function reverseNatValue(address: string, port: number): Buffer {
  const bytes = addressBytes(address);
  const value = Buffer.alloc(bytes.length + 2);
  bytes.copy(value, 0);
  value.writeUInt16BE(port, bytes.length);
  return value;
}
