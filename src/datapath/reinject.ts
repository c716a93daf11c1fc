// Turns a held record back into the frame to re-inject with
// BPF_F_TEST_XDP_LIVE_FRAMES: the VLAN tag that the device stripped goes
// back in, the L4 checksum is made complete, and metadata in front of the
// frame carries the service id for the re-injection program to mark.

import { fixL4Checksum } from './checksum.js';
import { MAX_FRAME, ReinjectMeta } from './layout.js';
import type { HeldRecord } from './records.js';

export interface LiveFrame {
  frame: Buffer;
  meta: Buffer;
  ifindex: number;
  rxQueue: number;
}

const ETH_ADDRS_LEN = 12;
const VLAN_TAG_LEN = 4;

export function buildLiveFrame(record: HeldRecord): LiveFrame {
  let frame = Buffer.from(record.frame);
  let shift = 0;

  // tc saw the frame after the device moved the tag into skb metadata. The
  // stack delivers it to the VLAN device only with the tag in the frame.
  if (record.vlan) {
    const tag = Buffer.alloc(VLAN_TAG_LEN);
    tag.writeUInt16BE(record.vlan.proto, 0);
    tag.writeUInt16BE(record.vlan.tci, 2);
    frame = Buffer.concat([frame.subarray(0, ETH_ADDRS_LEN), tag, frame.subarray(ETH_ADDRS_LEN)]);
    shift = VLAN_TAG_LEN;
  }
  if (frame.length > MAX_FRAME) {
    throw new RangeError(`frame of ${frame.length} bytes exceeds the ${MAX_FRAME}-byte re-injection limit`);
  }

  fixL4Checksum(frame, {
    l3Offset: record.l3Offset + shift,
    l4Offset: record.l4Offset + shift,
    l4Proto: record.l4Proto,
    ipv6: record.ipv6,
  });

  const meta = Buffer.alloc(ReinjectMeta.size);
  meta.writeUInt32LE(record.serviceId, ReinjectMeta.members.service_id);
  return { frame, meta, ifindex: record.ifindex, rxQueue: record.rxQueue };
}
