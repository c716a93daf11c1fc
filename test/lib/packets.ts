// Builds Ethernet frames for the BPF tests: VLAN tags, IPv4 with options and
// fragments, IPv6 with extension headers, TCP and UDP. Checksums are
// computed here independently of src/datapath/checksum.ts, so a test can
// compare the two.

import ipaddr from 'ipaddr.js';

export const ETH_P_IP = 0x0800;
export const ETH_P_IPV6 = 0x86dd;
export const ETH_P_8021Q = 0x8100;
export const ETH_P_8021AD = 0x88a8;
export const ETH_P_ARP = 0x0806;

export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_RST = 0x04;
export const TCP_PSH = 0x08;
export const TCP_ACK = 0x10;

export interface VlanTag {
  tpid: number;
  id: number;
}

export interface Ipv6Extension {
  // 0 hop-by-hop, 43 routing, 44 fragment, 60 destination options, 51 AH.
  type: number;
  // Body length in bytes, excluding the two-byte next header and length
  // fields; padded to the header's unit (8 bytes, or 4 for AH).
  bodyLength?: number;
  fragmentOffset?: number;
  moreFragments?: boolean;
}

export interface FrameSpec {
  srcMac?: string;
  dstMac?: string;
  vlans?: VlanTag[];
  // Overrides the ethertype after the tags, for non-IP frames.
  etherType?: number;
  src: string;
  dst: string;
  ipv4Options?: Buffer;
  // IPv4 fragment fields; offset in 8-byte units.
  fragmentOffset?: number;
  moreFragments?: boolean;
  ipv6Extensions?: Ipv6Extension[];
  tcp?: { srcPort: number; dstPort: number; flags: number; seq?: number; ack?: number; options?: Buffer };
  udp?: { srcPort: number; dstPort: number };
  payload?: Buffer;
  // Leave the L4 checksum as a veth sender with checksum offload does:
  // only the pseudo-header sum, not complemented.
  partialChecksum?: boolean;
}

function macBytes(mac: string): Buffer {
  return Buffer.from(mac.split(':').map((h) => parseInt(h, 16)));
}

function ipBytes(address: string): Buffer {
  return Buffer.from(ipaddr.parse(address).toByteArray());
}

function onesComplementSum(parts: Buffer[]): number {
  let sum = 0;
  for (const part of parts) {
    for (let i = 0; i < part.length; i += 2) {
      sum += (part[i]! << 8) + (i + 1 < part.length ? part[i + 1]! : 0);
    }
  }
  while (sum >> 16) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

function buildL4(spec: FrameSpec, ipv6: boolean, proto: number): Buffer {
  const payload = spec.payload ?? Buffer.alloc(0);
  let header: Buffer;
  let checksumAt: number;

  if (spec.tcp) {
    const options = spec.tcp.options ?? Buffer.alloc(0);
    if (options.length % 4 !== 0) throw new RangeError('TCP options must be a multiple of 4 bytes');
    header = Buffer.alloc(20 + options.length);
    header.writeUInt16BE(spec.tcp.srcPort, 0);
    header.writeUInt16BE(spec.tcp.dstPort, 2);
    header.writeUInt32BE(spec.tcp.seq ?? 0x1000, 4);
    header.writeUInt32BE(spec.tcp.ack ?? 0, 8);
    header[12] = ((20 + options.length) / 4) << 4;
    header[13] = spec.tcp.flags;
    header.writeUInt16BE(64240, 14);
    options.copy(header, 20);
    checksumAt = 16;
  } else if (spec.udp) {
    header = Buffer.alloc(8);
    header.writeUInt16BE(spec.udp.srcPort, 0);
    header.writeUInt16BE(spec.udp.dstPort, 2);
    header.writeUInt16BE(8 + payload.length, 4);
    checksumAt = 6;
  } else {
    return payload;
  }

  const segment = Buffer.concat([header, payload]);
  const pseudo = Buffer.alloc(ipv6 ? 40 : 12);
  if (ipv6) {
    ipBytes(spec.src).copy(pseudo, 0);
    ipBytes(spec.dst).copy(pseudo, 16);
    pseudo.writeUInt32BE(segment.length, 32);
    pseudo[39] = proto;
  } else {
    ipBytes(spec.src).copy(pseudo, 0);
    ipBytes(spec.dst).copy(pseudo, 4);
    pseudo[9] = proto;
    pseudo.writeUInt16BE(segment.length, 10);
  }

  if (spec.partialChecksum) {
    segment.writeUInt16BE(onesComplementSum([pseudo]), checksumAt);
  } else {
    const sum = ~onesComplementSum([pseudo, segment]) & 0xffff;
    segment.writeUInt16BE(sum === 0 && spec.udp ? 0xffff : sum, checksumAt);
  }
  return segment;
}

function buildIpv6Extensions(extensions: Ipv6Extension[], finalProto: number): Buffer {
  const parts: Buffer[] = [];
  extensions.forEach((ext, i) => {
    const next = i + 1 < extensions.length ? extensions[i + 1]!.type : finalProto;
    let part: Buffer;
    if (ext.type === 44) {
      part = Buffer.alloc(8);
      part[0] = next;
      part.writeUInt16BE(((ext.fragmentOffset ?? 0) << 3) | (ext.moreFragments ? 1 : 0), 2);
      part.writeUInt32BE(0xabcd, 4);
    } else if (ext.type === 51) {
      // AH length counts 4-byte units minus 2.
      const total = Math.max(12, Math.ceil((2 + (ext.bodyLength ?? 10)) / 4) * 4);
      part = Buffer.alloc(total);
      part[0] = next;
      part[1] = total / 4 - 2;
    } else {
      // Other extension headers count 8-byte units minus 1.
      const total = Math.max(8, Math.ceil((2 + (ext.bodyLength ?? 6)) / 8) * 8);
      part = Buffer.alloc(total);
      part[0] = next;
      part[1] = total / 8 - 1;
      // PadN option filling the body, valid for hop-by-hop and dest opts.
      part[2] = 1;
      part[3] = total - 4;
    }
    parts.push(part);
  });
  return Buffer.concat(parts);
}

export function buildFrame(spec: FrameSpec): Buffer {
  const ipv6 = spec.dst.includes(':');
  // 59 is IPv6's "no next header", used for frames without TCP or UDP.
  let proto = 59;
  if (spec.tcp) proto = 6;
  if (spec.udp) proto = 17;

  // Ethernet: destination, source, each tag as (TPID, TCI), then the type.
  const u16 = (value: number) => {
    const field = Buffer.alloc(2);
    field.writeUInt16BE(value);
    return field;
  };
  const l2Parts = [macBytes(spec.dstMac ?? '02:00:00:00:00:02'), macBytes(spec.srcMac ?? '02:00:00:00:00:01')];
  for (const tag of spec.vlans ?? []) {
    l2Parts.push(u16(tag.tpid), u16(tag.id));
  }
  l2Parts.push(u16(spec.etherType ?? (ipv6 ? ETH_P_IPV6 : ETH_P_IP)));
  const l2 = Buffer.concat(l2Parts);

  const l4 = buildL4(spec, ipv6, proto);
  let l3: Buffer;
  if (ipv6) {
    const ext = buildIpv6Extensions(spec.ipv6Extensions ?? [], proto);
    l3 = Buffer.alloc(40);
    l3.writeUInt32BE(0x60000000, 0);
    l3.writeUInt16BE(ext.length + l4.length, 4);
    l3[6] = spec.ipv6Extensions?.length ? spec.ipv6Extensions[0]!.type : proto;
    l3[7] = 64;
    ipBytes(spec.src).copy(l3, 8);
    ipBytes(spec.dst).copy(l3, 24);
    l3 = Buffer.concat([l3, ext]);
  } else {
    const options = spec.ipv4Options ?? Buffer.alloc(0);
    if (options.length % 4 !== 0 || options.length > 40) {
      throw new RangeError('IPv4 options must be a multiple of 4 bytes, at most 40');
    }
    l3 = Buffer.alloc(20 + options.length);
    l3[0] = 0x40 | ((20 + options.length) / 4);
    l3.writeUInt16BE(l3.length + l4.length, 2);
    l3.writeUInt16BE(0x1234, 4);
    l3.writeUInt16BE(((spec.moreFragments ? 1 : 0) << 13) | (spec.fragmentOffset ?? 0), 6);
    l3[8] = 64;
    l3[9] = proto;
    ipBytes(spec.src).copy(l3, 12);
    ipBytes(spec.dst).copy(l3, 16);
    options.copy(l3, 20);
    l3.writeUInt16BE(~onesComplementSum([l3]) & 0xffff, 10);
  }

  return Buffer.concat([l2, l3, l4]);
}

// Offsets of the headers in a frame built from spec, as the datapath
// reports them.
export function headerOffsets(spec: FrameSpec): { l3: number; l4: number } {
  const l3 = 14 + 4 * (spec.vlans?.length ?? 0);
  if (spec.dst.includes(':')) {
    const ext = buildIpv6Extensions(spec.ipv6Extensions ?? [], 6);
    return { l3, l4: l3 + 40 + ext.length };
  }
  return { l3, l4: l3 + 20 + (spec.ipv4Options?.length ?? 0) };
}
