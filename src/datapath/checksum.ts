// TCP and UDP checksums of held frames.
//
// A client on a veth leaves the L4 checksum partial: the sender relies on
// checksum offload, and the field holds only the pseudo-header sum. The
// re-injected skb is CHECKSUM_NONE, so conntrack would mark it invalid and
// skip DNAT. Every held frame therefore gets its checksum recomputed before
// re-injection. Frames from a physical NIC already carry a complete checksum,
// which this recomputes to the same value.

const IPPROTO_TCP = 6;
const IPPROTO_UDP = 17;

// Adds big-endian 16-bit words of data[start, end) to sum, without folding.
function sumWords(data: Uint8Array, start: number, end: number, sum: number): number {
  let i = start;
  for (; i + 1 < end; i += 2) {
    sum += (data[i]! << 8) | data[i + 1]!;
  }
  if (i < end) {
    sum += data[i]! << 8;
  }
  return sum;
}

function fold(sum: number): number {
  while (sum > 0xffff) {
    sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  }
  return sum;
}

export interface L4Location {
  l3Offset: number;
  l4Offset: number;
  l4Proto: number;
  ipv6: boolean;
}

// Returns the L4 segment length that the IP header declares, which may be
// shorter than the frame (Ethernet padding) but never longer.
function l4Length(frame: Buffer, loc: L4Location): number {
  const declaredEnd = loc.ipv6
    ? loc.l3Offset + 40 + frame.readUInt16BE(loc.l3Offset + 4)
    : loc.l3Offset + frame.readUInt16BE(loc.l3Offset + 2);
  if (declaredEnd > frame.length || declaredEnd < loc.l4Offset) {
    throw new RangeError(`IP length field points past the ${frame.length}-byte frame (end ${declaredEnd})`);
  }
  return declaredEnd - loc.l4Offset;
}

function checksumOffset(loc: L4Location): number {
  if (loc.l4Proto === IPPROTO_TCP) return loc.l4Offset + 16;
  if (loc.l4Proto === IPPROTO_UDP) return loc.l4Offset + 6;
  throw new RangeError(`L4 protocol ${loc.l4Proto} has no checksum to fix, expected TCP (6) or UDP (17)`);
}

// Computes the TCP or UDP checksum of the segment at loc, treating the
// checksum field as zero.
export function computeL4Checksum(frame: Buffer, loc: L4Location): number {
  const length = l4Length(frame, loc);
  const field = checksumOffset(loc);

  let sum = 0;
  if (loc.ipv6) {
    sum = sumWords(frame, loc.l3Offset + 8, loc.l3Offset + 40, sum);
  } else {
    sum = sumWords(frame, loc.l3Offset + 12, loc.l3Offset + 20, sum);
  }
  sum += loc.l4Proto + length;

  sum = sumWords(frame, loc.l4Offset, field, sum);
  sum = sumWords(frame, field + 2, loc.l4Offset + length, sum);

  const result = ~fold(sum) & 0xffff;
  // A computed zero is sent as all ones for UDP, where zero means "none".
  return result === 0 && loc.l4Proto === IPPROTO_UDP ? 0xffff : result;
}

// Rewrites the TCP or UDP checksum of frame in place.
export function fixL4Checksum(frame: Buffer, loc: L4Location): void {
  frame.writeUInt16BE(computeL4Checksum(frame, loc), checksumOffset(loc));
}
