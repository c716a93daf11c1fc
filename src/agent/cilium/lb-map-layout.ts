// Byte layouts of the load-balancer maps of Cilium v1.18.6 (commit
// 95896696119f33a0f5d21019182192fcdab3600f): struct lb4_key, lb4_service,
// lb4_backend, lb4_reverse_nat and their lb6 twins in bpf/lib/common.h,
// and the byte orders that the agent writes (the ToNetwork() methods in
// pkg/loadbalancer/maps/types.go):
//
//   services   key   address (network), dport (network), backend_slot
//                    (host), proto, scope, 2 bytes pad
//              value backend_id (host), count (host), rev_nat_index
//                    (network), flags, flags2, qcount (host)
//   backends   key   backend id, u32 host order
//              value address (network), port (network), proto, flags
//                    (state), cluster_id (host), zone, 1 byte pad
//   reverse    key   rev-NAT index, u16 network order
//   NAT        value address (network), port (network), packed
//
// Slot 0 of a service is its master entry, whose count and qcount number
// the backend slots 1..count (selectable) and count+1..count+qcount
// (quarantined). Slot n > 0 stores the backend id in backend_id.

import { endianness } from 'node:os';

import ipaddr from 'ipaddr.js';

export type IpFamily = 'ipv4' | 'ipv6';

export const LB_MAP_NAMES: Record<IpFamily, { services: string; backends: string; reverseNat: string }> = {
  ipv4: { services: 'cilium_lb4_services_v2', backends: 'cilium_lb4_backends_v3', reverseNat: 'cilium_lb4_reverse_nat' },
  ipv6: { services: 'cilium_lb6_services_v2', backends: 'cilium_lb6_backends_v3', reverseNat: 'cilium_lb6_reverse_nat' },
};

const ADDRESS_SIZE: Record<IpFamily, number> = { ipv4: 4, ipv6: 16 };

// Key and value sizes in bytes, which openPinnedMap reports and the reader
// checks before it trusts a pinned map.
export const LB_MAP_SIZES: Record<IpFamily, Record<'services' | 'backends' | 'reverseNat', { key: number; value: number }>> = {
  ipv4: { services: { key: 12, value: 12 }, backends: { key: 4, value: 12 }, reverseNat: { key: 2, value: 6 } },
  ipv6: { services: { key: 24, value: 12 }, backends: { key: 4, value: 24 }, reverseNat: { key: 2, value: 18 } },
};

// IPPROTO_ANY in bpf/lib/common.h: the entry matches every protocol.
export const IPPROTO_ANY = 0;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;

// LB_LOOKUP_SCOPE_EXT and LB_LOOKUP_SCOPE_INT.
export const SCOPE_EXTERNAL = 0;
export const SCOPE_INTERNAL = 1;

// enum BE_STATE_* in bpf/lib/common.h, stored in the backend's flags.
export const BACKEND_STATES = ['active', 'terminating', 'quarantined', 'maintenance'] as const;
export type BackendState = (typeof BACKEND_STATES)[number] | 'unknown';

export interface ServiceKey {
  address: string;
  port: number;
  backendSlot: number;
  protocol: number;
  scope: number;
}

export interface ServiceValue {
  // Backend id in a slot entry, and the affinity timeout or L7 proxy port
  // in a master entry.
  backendId: number;
  count: number;
  revNatId: number;
  flags: number;
  flags2: number;
  qcount: number;
}

export interface BackendValue {
  address: string;
  port: number;
  protocol: number;
  state: BackendState;
  clusterId: number;
  zone: number;
}

export interface ReverseNatValue {
  address: string;
  port: number;
}

// Fields marked "host" are in the byte order of the CPU that runs both the
// agent and the datapath.
const LITTLE_ENDIAN = endianness() === 'LE';

function readHost16(buffer: Buffer, offset: number): number {
  return LITTLE_ENDIAN ? buffer.readUInt16LE(offset) : buffer.readUInt16BE(offset);
}

function readHost32(buffer: Buffer, offset: number): number {
  return LITTLE_ENDIAN ? buffer.readUInt32LE(offset) : buffer.readUInt32BE(offset);
}

function writeHost16(buffer: Buffer, value: number, offset: number): void {
  if (LITTLE_ENDIAN) buffer.writeUInt16LE(value, offset);
  else buffer.writeUInt16BE(value, offset);
}

function writeHost32(buffer: Buffer, value: number, offset: number): void {
  if (LITTLE_ENDIAN) buffer.writeUInt32LE(value, offset);
  else buffer.writeUInt32BE(value, offset);
}

function readAddress(family: IpFamily, buffer: Buffer, offset: number): string {
  const bytes = Array.from(buffer.subarray(offset, offset + ADDRESS_SIZE[family]));
  return ipaddr.fromByteArray(bytes).toString();
}

function writeAddress(family: IpFamily, address: string, buffer: Buffer, offset: number): void {
  const parsed = ipaddr.parse(address);
  const expected = family === 'ipv4' ? 'ipv4' : 'ipv6';
  if (parsed.kind() !== expected) {
    throw new TypeError(`invalid address ${JSON.stringify(address)} for an ${family} map: expected an ${family} address`);
  }
  Buffer.from(parsed.toByteArray()).copy(buffer, offset);
}

export function encodeServiceKey(family: IpFamily, key: ServiceKey): Buffer {
  const size = ADDRESS_SIZE[family];
  const buffer = Buffer.alloc(LB_MAP_SIZES[family].services.key);
  writeAddress(family, key.address, buffer, 0);
  buffer.writeUInt16BE(key.port, size);
  writeHost16(buffer, key.backendSlot, size + 2);
  buffer[size + 4] = key.protocol;
  buffer[size + 5] = key.scope;
  return buffer;
}

export function decodeServiceKey(family: IpFamily, buffer: Buffer): ServiceKey {
  const size = ADDRESS_SIZE[family];
  return {
    address: readAddress(family, buffer, 0),
    port: buffer.readUInt16BE(size),
    backendSlot: readHost16(buffer, size + 2),
    protocol: buffer[size + 4]!,
    scope: buffer[size + 5]!,
  };
}

// The backend_slot field of a key, without decoding the rest.
export function serviceKeySlot(family: IpFamily, buffer: Buffer): number {
  return readHost16(buffer, ADDRESS_SIZE[family] + 2);
}

export function decodeServiceValue(buffer: Buffer): ServiceValue {
  return {
    backendId: readHost32(buffer, 0),
    count: readHost16(buffer, 4),
    revNatId: buffer.readUInt16BE(6),
    flags: buffer[8]!,
    flags2: buffer[9]!,
    qcount: readHost16(buffer, 10),
  };
}

export function encodeBackendKey(id: number): Buffer {
  const buffer = Buffer.alloc(4);
  writeHost32(buffer, id, 0);
  return buffer;
}

export function decodeBackendValue(family: IpFamily, buffer: Buffer): BackendValue {
  const size = ADDRESS_SIZE[family];
  const flags = buffer[size + 3]!;
  return {
    address: readAddress(family, buffer, 0),
    port: buffer.readUInt16BE(size),
    protocol: buffer[size + 2]!,
    state: BACKEND_STATES[flags] ?? 'unknown',
    clusterId: readHost16(buffer, size + 4),
    zone: buffer[size + 6]!,
  };
}

export function encodeReverseNatKey(revNatId: number): Buffer {
  const buffer = Buffer.alloc(2);
  buffer.writeUInt16BE(revNatId, 0);
  return buffer;
}

export function decodeReverseNatValue(family: IpFamily, buffer: Buffer): ReverseNatValue {
  return {
    address: readAddress(family, buffer, 0),
    port: buffer.readUInt16BE(ADDRESS_SIZE[family]),
  };
}
