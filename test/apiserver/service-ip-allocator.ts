// Service ClusterIP ranges with one allocator per IP family, and the IP
// address parsing they need. Like kube-apiserver's ipallocator, an allocator
// rejects requested addresses outside its range or in use. Unlike it, it
// hands out addresses in order instead of at random.

import { isIPv4, isIPv6 } from 'node:net';

import { internalError } from './status.js';

export type IpFamily = 'IPv4' | 'IPv6';

export const IP_FAMILIES: readonly IpFamily[] = ['IPv4', 'IPv6'];

// An address as its family and its value as an unsigned integer, so that
// different spellings of one IPv6 address compare equal.
export interface ParsedIp {
  family: IpFamily;
  value: bigint;
}

// Parses an IPv4 or IPv6 address. Returns undefined for anything else,
// including CIDRs and IPv6 zone suffixes. An IPv4-mapped IPv6 address
// (::ffff:a.b.c.d) counts as IPv4, as Go's net.IP does.
export function parseIp(text: string): ParsedIp | undefined {
  if (isIPv4(text)) return { family: 'IPv4', value: ipv4Value(text) };
  if (!isIPv6(text) || text.includes('%')) return undefined;

  const value = ipv6Value(text);
  if (value >> 32n === 0xffffn) return { family: 'IPv4', value: value & 0xffffffffn };
  return { family: 'IPv6', value };
}

function ipv4Value(text: string): bigint {
  return text.split('.').reduce((value, octet) => (value << 8n) | BigInt(Number(octet)), 0n);
}

// Expects text that net.isIPv6 accepted, with or without "::" and with or
// without a dotted IPv4 tail.
function ipv6Value(text: string): bigint {
  const [head = '', tail] = text.split('::');
  const groupsOf = (part: string): number[] => {
    if (part === '') return [];
    const groups: number[] = [];
    for (const piece of part.split(':')) {
      if (piece.includes('.')) {
        const v4 = Number(ipv4Value(piece));
        groups.push(v4 >>> 16, v4 & 0xffff);
      } else {
        groups.push(parseInt(piece, 16));
      }
    }
    return groups;
  };

  const leading = groupsOf(head);
  const trailing = tail === undefined ? [] : groupsOf(tail);
  const zeros = new Array<number>(8 - leading.length - trailing.length).fill(0);
  return [...leading, ...zeros, ...trailing].reduce((value, group) => (value << 16n) | BigInt(group), 0n);
}

// Formats an address the way Go's net.IP.String does: dotted quad for IPv4,
// and for IPv6 lowercase hex groups with the longest run of two or more zero
// groups (the first one on a tie) written as "::" (RFC 5952).
export function formatIp({ family, value }: ParsedIp): string {
  if (family === 'IPv4') return [24n, 16n, 8n, 0n].map((shift) => String((value >> shift) & 0xffn)).join('.');

  const groups = [112n, 96n, 80n, 64n, 48n, 32n, 16n, 0n].map((shift) => Number((value >> shift) & 0xffffn));
  let runStart = -1;
  let runLength = 0;
  for (let i = 0; i < groups.length; ) {
    if (groups[i] !== 0) {
      i += 1;
      continue;
    }
    let end = i;
    while (end < groups.length && groups[end] === 0) end += 1;
    if (end - i > runLength) [runStart, runLength] = [i, end - i];
    i = end;
  }

  const hex = groups.map((group) => group.toString(16));
  if (runLength < 2) return hex.join(':');
  return `${hex.slice(0, runStart).join(':')}::${hex.slice(runStart + runLength).join(':')}`;
}

export interface ServiceIpRange {
  family: IpFamily;
  // The network address, e.g. "198.19.0.0".
  network: string;
  prefixLength: number;
  // Offset from the network address of the first address that
  // allocateNext() hands out; requested addresses may lie below it.
  firstOffset: number;
}

// Hands out ClusterIPs of one family in order and checks requested ones.
// The owner reports which addresses Services hold through hold() and
// release(). allocateNext() never goes back to a lower address, so it does
// not hand out a released address again, but a client may request one.
export class ServiceIpAllocator {
  readonly family: IpFamily;
  // The range in CIDR notation, e.g. "198.19.0.0/16".
  readonly cidr: string;
  // Usable addresses are [#first, #last]: the network address is reserved,
  // and in IPv4 so is the broadcast address, as in kube-apiserver.
  readonly #first: bigint;
  readonly #last: bigint;
  #next: bigint;
  // Held address -> number of holders. More than one holder happens only
  // when a test writes Services to the store directly.
  readonly #held = new Map<bigint, number>();

  constructor(range: ServiceIpRange) {
    const network = parseIp(range.network);
    if (network?.family !== range.family) throw new TypeError(`invalid ${range.family} network address ${range.network}`);

    const bits = range.family === 'IPv4' ? 32n : 128n;
    const size = 1n << (bits - BigInt(range.prefixLength));
    this.family = range.family;
    this.cidr = `${formatIp(network)}/${range.prefixLength}`;
    this.#first = network.value + 1n;
    this.#last = network.value + size - (range.family === 'IPv4' ? 2n : 1n);
    this.#next = network.value + BigInt(range.firstOffset);
  }

  // Returns the next address above the last one handed out that no Service
  // holds. The address counts as held only once a stored Service lists it.
  // Throws a 500, as kube-apiserver does, when the range has none left.
  allocateNext(): string {
    while (this.#next <= this.#last && this.#held.has(this.#next)) this.#next += 1n;
    if (this.#next > this.#last) throw internalError(`failed to allocate a serviceIP: range is full (${this.cidr})`);

    const address = formatIp({ family: this.family, value: this.#next });
    this.#next += 1n;
    return address;
  }

  // Checks that a client may take `address`, which must be of this family.
  // Returns the reason in kube-apiserver's words when it may not.
  rejectionOf(address: ParsedIp): string | undefined {
    if (address.value < this.#first || address.value > this.#last) {
      return `provided IP ${formatIp(address)} is not in the valid range. The range of valid IPs is ${this.cidr}`;
    }
    if (this.#held.has(address.value)) return 'provided IP is already allocated';
    return undefined;
  }

  // Records that a stored Service lists `address`. Addresses of the other
  // family and values that are not addresses, such as "None", are ignored.
  hold(address: string): void {
    const parsed = parseIp(address);
    if (parsed?.family !== this.family) return;
    this.#held.set(parsed.value, (this.#held.get(parsed.value) ?? 0) + 1);
  }

  // Undoes one hold() of `address`.
  release(address: string): void {
    const parsed = parseIp(address);
    if (parsed?.family !== this.family) return;
    const holders = (this.#held.get(parsed.value) ?? 0) - 1;
    if (holders > 0) this.#held.set(parsed.value, holders);
    else this.#held.delete(parsed.value);
  }
}
