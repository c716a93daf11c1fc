// Decoding of the records that the BPF programs submit to zh_held_ring and
// zh_wake_ring, as the addon delivers them: one Buffer per batch holding
// entries of {u32 ring index, u32 length, bytes padded to 8}.

import { bytesToAddress } from './address.js';
import { HeldFlags, HeldHeader, WakeEvent } from './layout.js';

export interface Flow {
  protocol: 'tcp' | 'udp';
  source: string;
  sourcePort: number;
  destination: string;
  destinationPort: number;
}

export interface HeldRecord {
  timestampNs: bigint;
  serviceId: number;
  ifindex: number;
  rxQueue: number;
  hook: number;
  l4Proto: number;
  l3Offset: number;
  l4Offset: number;
  ipv6: boolean;
  // Tag that the device stripped before tc saw the frame, if any.
  vlan: { proto: number; tci: number } | null;
  flow: Flow;
  tcpFlags: number;
  // A copy that outlives the batch buffer.
  frame: Buffer;
}

export interface WakeRecord {
  timestampNs: bigint;
  serviceId: number;
  ifindex: number;
  hook: number;
  flow: Flow;
}

export interface RawRecord {
  ring: number;
  data: Buffer;
}

const ENTRY_HEADER = 8;

// Splits a batch into its records. The returned data views share the batch.
export function splitBatch(batch: Buffer): RawRecord[] {
  const records: RawRecord[] = [];
  let offset = 0;

  while (offset + ENTRY_HEADER <= batch.length) {
    const ring = batch.readUInt32LE(offset);
    const length = batch.readUInt32LE(offset + 4);
    const start = offset + ENTRY_HEADER;
    if (start + length > batch.length) {
      throw new RangeError(`ring buffer batch truncated: record of ${length} bytes at offset ${offset}, batch is ${batch.length}`);
    }
    records.push({ ring, data: batch.subarray(start, start + length) });
    offset = start + ((length + 7) & ~7);
  }
  if (offset < batch.length) {
    throw new RangeError(`ring buffer batch has ${batch.length - offset} trailing bytes after its last record`);
  }
  return records;
}

function protocolName(l4Proto: number): 'tcp' | 'udp' {
  if (l4Proto === 6) return 'tcp';
  if (l4Proto === 17) return 'udp';
  throw new RangeError(`record has L4 protocol ${l4Proto}, expected TCP (6) or UDP (17)`);
}

function readFlowFromFrame(frame: Buffer, l3: number, l4: number, ipv6: boolean, l4Proto: number): Flow {
  const mapped = (start: number) => {
    const bytes = Buffer.alloc(16);
    bytes[10] = 0xff;
    bytes[11] = 0xff;
    frame.copy(bytes, 12, start, start + 4);
    return bytes;
  };
  const src = ipv6 ? frame.subarray(l3 + 8, l3 + 24) : mapped(l3 + 12);
  const dst = ipv6 ? frame.subarray(l3 + 24, l3 + 40) : mapped(l3 + 16);

  return {
    protocol: protocolName(l4Proto),
    source: bytesToAddress(src),
    sourcePort: frame.readUInt16BE(l4),
    destination: bytesToAddress(dst),
    destinationPort: frame.readUInt16BE(l4 + 2),
  };
}

// The fields of a held record that the held frame store needs to accept or
// reject it, read in place. A SYN flood that fills the store sends tens of
// thousands of records a second, and a rejected one should allocate no
// more than its flow key. peekHeldRecord returns undefined for a record
// that decodeHeldRecord would reject, so the caller decodes it and reports
// the error.
export interface HeldRecordPeek {
  serviceId: number;
  hook: number;
  tcp: boolean;
  key: string;
}

export function peekHeldRecord(data: Buffer): HeldRecordPeek | undefined {
  let layout: HeldLayout;
  try {
    layout = readHeldLayout(data);
  } catch {
    return undefined;
  }

  const frame = data.subarray(HeldHeader.size, HeldHeader.size + layout.frameLen);
  return {
    serviceId: data.readUInt32LE(HeldHeader.members.service_id!),
    hook: data[HeldHeader.members.hook!]!,
    tcp: layout.l4Proto === 6,
    key: flowKeyOf(frame, layout.l3Offset, layout.l4Offset, layout.ipv6, layout.l4Proto),
  };
}

// A compact key of a frame's protocol, addresses and ports: one byte per
// byte of the headers, without formatting the addresses.
export function flowKeyOf(frame: Buffer, l3Offset: number, l4Offset: number, ipv6: boolean, l4Proto: number): string {
  const addresses = ipv6 ? frame.toString('latin1', l3Offset + 8, l3Offset + 40) : frame.toString('latin1', l3Offset + 12, l3Offset + 20);
  return String.fromCharCode(l4Proto) + addresses + frame.toString('latin1', l4Offset, l4Offset + 4);
}

interface HeldLayout {
  frameLen: number;
  l3Offset: number;
  l4Offset: number;
  l4Proto: number;
  ipv6: boolean;
}

// Reads where the frame and its headers lie in a held record, and checks
// that they fit. Throws a RangeError that names the problem otherwise.
function readHeldLayout(data: Buffer): HeldLayout {
  const m = HeldHeader.members;
  if (data.length < HeldHeader.size) {
    throw new RangeError(`held record is ${data.length} bytes, shorter than its ${HeldHeader.size}-byte header`);
  }

  const frameLen = data.readUInt16LE(m.frame_len!);
  if (HeldHeader.size + frameLen > data.length) {
    throw new RangeError(`held record declares a ${frameLen}-byte frame but carries ${data.length - HeldHeader.size}`);
  }

  const l3Offset = data.readUInt16LE(m.l3_offset!);
  const l4Offset = data.readUInt16LE(m.l4_offset!);
  const l4Proto = data[m.l4_proto!]!;
  if (l4Proto !== 6 && l4Proto !== 17) throw new RangeError(`record has L4 protocol ${l4Proto}, expected TCP (6) or UDP (17)`);
  const l4HeaderLength = l4Proto === 6 ? 20 : 8;
  if (l4Offset + l4HeaderLength > frameLen || l3Offset >= l4Offset) {
    throw new RangeError(`held record has offsets l3=${l3Offset} l4=${l4Offset} that do not fit its ${frameLen}-byte frame`);
  }
  return { frameLen, l3Offset, l4Offset, l4Proto, ipv6: (data.readUInt16LE(m.flags!) & HeldFlags.Ipv6) !== 0 };
}

// Ring records carry no layout version. zh_map_layouts records the
// layouts of zh_held_hdr and zh_wake_event for their rings instead, and a
// ring whose record layout changed is replaced at start, unread
// (stale-pins.ts).
export function decodeHeldRecord(data: Buffer): HeldRecord {
  const m = HeldHeader.members;
  const { frameLen, l3Offset, l4Offset, l4Proto, ipv6 } = readHeldLayout(data);
  const frame = Buffer.from(data.subarray(HeldHeader.size, HeldHeader.size + frameLen));
  const flags = data.readUInt16LE(m.flags!);

  return {
    timestampNs: data.readBigUInt64LE(m.timestamp_ns!),
    serviceId: data.readUInt32LE(m.service_id!),
    ifindex: data.readUInt32LE(m.ifindex!),
    rxQueue: data.readUInt32LE(m.rx_queue!),
    hook: data[m.hook!]!,
    l4Proto,
    l3Offset,
    l4Offset,
    ipv6,
    vlan: (flags & HeldFlags.Vlan) !== 0
      ? { proto: data.readUInt16BE(m.vlan_proto!), tci: data.readUInt16LE(m.vlan_tci!) }
      : null,
    flow: readFlowFromFrame(frame, l3Offset, l4Offset, ipv6, l4Proto),
    tcpFlags: l4Proto === 6 ? frame[l4Offset + 13]! : 0,
    frame,
  };
}

export function decodeWakeRecord(data: Buffer): WakeRecord {
  const m = WakeEvent.members;
  if (data.length < WakeEvent.size) {
    throw new RangeError(`wake record is ${data.length} bytes, expected ${WakeEvent.size}`);
  }

  return {
    timestampNs: data.readBigUInt64LE(m.timestamp_ns!),
    serviceId: data.readUInt32LE(m.service_id!),
    ifindex: data.readUInt32LE(m.ifindex!),
    hook: data[m.hook!]!,
    flow: {
      protocol: protocolName(data[m.l4_proto!]!),
      source: bytesToAddress(data.subarray(m.src_addr!, m.src_addr! + 16)),
      sourcePort: data.readUInt16BE(m.src_port!),
      destination: bytesToAddress(data.subarray(m.dst_addr!, m.dst_addr! + 16)),
      destinationPort: data.readUInt16BE(m.dst_port!),
    },
  };
}
