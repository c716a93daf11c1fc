// Builds ring buffer records byte for byte as the BPF programs write them,
// for unit tests that run without the kernel.

import { HeldFlags, HeldHeader, Hook } from '../../src/datapath/layout.js';
import { decodeHeldRecord, type HeldRecord } from '../../src/datapath/records.js';
import { buildFrame, headerOffsets, type FrameSpec } from './packets.js';

export function heldRecordBytes(spec: FrameSpec, serviceId: number, timestampNs: bigint, ifindex = 2): Buffer {
  const frame = buildFrame(spec);
  const offsets = headerOffsets(spec);
  const m = HeldHeader.members;

  const header = Buffer.alloc(HeldHeader.size);
  header.writeBigUInt64LE(timestampNs, m.timestamp_ns);
  header.writeUInt32LE(serviceId, m.service_id);
  header.writeUInt32LE(ifindex, m.ifindex);
  header.writeUInt16LE(frame.length, m.frame_len);
  header[m.hook!] = Hook.Xdp;
  header[m.l4_proto!] = spec.tcp ? 6 : 17;
  header.writeUInt16LE(offsets.l3, m.l3_offset);
  header.writeUInt16LE(offsets.l4, m.l4_offset);
  header.writeUInt16LE(spec.dst.includes(':') ? HeldFlags.Ipv6 : 0, m.flags);

  // Records are reserved in size classes, so trailing bytes are normal.
  return Buffer.concat([header, frame, Buffer.alloc(16, 0xaa)]);
}

export function heldRecord(spec: FrameSpec, serviceId: number, timestampNs: bigint): HeldRecord {
  return decodeHeldRecord(heldRecordBytes(spec, serviceId, timestampNs));
}
