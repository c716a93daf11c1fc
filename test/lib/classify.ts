// A reference model of the hold decision, written from the specification in
// bpf/README.md without sharing code with the BPF parser. The fuzz test
// runs both on the same frames and requires the same verdict.

export type Verdict = 'pass' | 'hold' | 'drop';

export interface Classification {
  // Set when the frame parsed as TCP or UDP with its ports visible.
  flow?: {
    dst: Buffer; // 16 bytes, IPv4-mapped for IPv4
    proto: number;
    dstPort: number;
    opener: boolean;
    firstFragment: boolean;
  };
}

const MAX_VLAN_TAGS = 2;
const MAX_IPV6_EXT = 6;

function mapped(v4: Buffer): Buffer {
  return Buffer.concat([Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]), v4]);
}

function classifyL4(frame: Buffer, l4: number, end: number, proto: number, dst: Buffer, fragment: boolean): Classification {
  if (proto === 6) {
    if (l4 + 20 > end) return {};
    const doff = frame[l4 + 12]! >> 4;
    if (doff < 5 || l4 + doff * 4 > end) return {};
    const flags = frame[l4 + 13]!;
    const opener = (flags & 0x02) !== 0 && (flags & 0x14) === 0;
    return { flow: { dst, proto, dstPort: frame.readUInt16BE(l4 + 2), opener, firstFragment: fragment } };
  }
  if (proto === 17) {
    if (l4 + 8 > end) return {};
    return { flow: { dst, proto, dstPort: frame.readUInt16BE(l4 + 2), opener: true, firstFragment: fragment } };
  }
  return {};
}

export function classify(frame: Buffer): Classification {
  if (frame.length < 14) return {};
  let offset = 12;
  let type = frame.readUInt16BE(offset);
  offset += 2;

  for (let i = 0; i < MAX_VLAN_TAGS && (type === 0x8100 || type === 0x88a8); i++) {
    if (offset + 4 > frame.length) return {};
    type = frame.readUInt16BE(offset + 2);
    offset += 4;
  }

  if (type === 0x0800) {
    if (offset + 20 > frame.length) return {};
    const l3 = offset;
    if (frame[l3]! >> 4 !== 4) return {};
    const ihl = frame[l3]! & 0x0f;
    if (ihl < 5) return {};
    const total = frame.readUInt16BE(l3 + 2);
    if (total < ihl * 4 || l3 + total > frame.length) return {};
    const fragField = frame.readUInt16BE(l3 + 6);
    const fragOffset = fragField & 0x1fff;
    const more = (fragField & 0x2000) !== 0;
    if (fragOffset !== 0) return {};
    return classifyL4(frame, l3 + ihl * 4, l3 + total, frame[l3 + 9]!, mapped(frame.subarray(l3 + 16, l3 + 20)), more);
  }

  if (type === 0x86dd) {
    if (offset + 40 > frame.length) return {};
    const l3 = offset;
    if (frame[l3]! >> 4 !== 6) return {};
    const end = l3 + 40 + frame.readUInt16BE(l3 + 4);
    if (end > frame.length) return {};
    const dst = Buffer.from(frame.subarray(l3 + 24, l3 + 40));

    let next = frame[l3 + 6]!;
    let cursor = l3 + 40;
    let fragment = false;
    for (let i = 0; i < MAX_IPV6_EXT; i++) {
      if (next === 6 || next === 17) break;
      if (next !== 0 && next !== 43 && next !== 44 && next !== 60 && next !== 51) return {};
      if (cursor + 8 > end) return {};
      const following = frame[cursor]!;
      if (next === 44) {
        const fragField = frame.readUInt16BE(cursor + 2);
        if (fragField >> 3 !== 0) return {};
        fragment = (fragField & 1) !== 0 || fragment;
        cursor += 8;
      } else if (next === 51) {
        cursor += (frame[cursor + 1]! + 2) * 4;
      } else {
        cursor += (frame[cursor + 1]! + 1) * 8;
      }
      next = following;
    }
    if (next !== 6 && next !== 17) return {};
    return classifyL4(frame, cursor, end, next, dst, fragment);
  }

  return {};
}
