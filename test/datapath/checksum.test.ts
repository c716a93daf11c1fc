import assert from 'node:assert/strict';
import { test } from 'node:test';

import { computeL4Checksum, fixL4Checksum } from '../../src/datapath/checksum.js';
import { buildFrame, headerOffsets, TCP_SYN } from '../lib/packets.js';

// Frames captured with tcpdump between two namespaces, sent with checksum
// offload off so the kernel computed every checksum: the ground truth.
const CAPTURED = [
  {
    name: 'IPv4 TCP SYN',
    hex: '820af8a32b76ceedaaf75c4008004500003ccd8640004006cf0dc6120901c6120902a3041f90c1fe2d3900000000a002faf071950000020405b40402080ad3ebb796000000000103030a',
    loc: { l3Offset: 14, l4Offset: 34, l4Proto: 6, ipv6: false },
    checksum: 0x7195,
  },
  {
    name: 'IPv6 TCP SYN',
    hex: '820af8a32b76ceedaaf75c4086dd6007e8f100280640fd5a0000000000000000000000090001fd5a000000000000000000000009000299ca1f903e7bf27300000000a002fd2032260000020405a00402080ad86e5b47000000000103030a',
    loc: { l3Offset: 14, l4Offset: 54, l4Proto: 6, ipv6: true },
    checksum: 0x3226,
  },
  {
    name: 'IPv4 UDP',
    hex: '820af8a32b76ceedaaf75c4008004500002653f34000401148acc6120901c6120902c7d614e900125b7468656c6c6f2d7564700a',
    loc: { l3Offset: 14, l4Offset: 34, l4Proto: 17, ipv6: false },
    checksum: 0x5b74,
  },
  {
    name: 'IPv6 UDP',
    hex: '820af8a32b76ceedaaf75c4086dd600b2f3600131140fd5a0000000000000000000000090001fd5a0000000000000000000000090002a55b14e90013171f68656c6c6f2d756470360a',
    loc: { l3Offset: 14, l4Offset: 54, l4Proto: 17, ipv6: true },
    checksum: 0x171f,
  },
];

for (const c of CAPTURED) {
  test(`checksum matches kernel: ${c.name}`, () => {
    const frame = Buffer.from(c.hex, 'hex');
    assert.equal(computeL4Checksum(frame, c.loc), c.checksum);
  });

  test(`checksum repairs partial: ${c.name}`, () => {
    const frame = Buffer.from(c.hex, 'hex');
    const field = c.loc.l4Offset + (c.loc.l4Proto === 6 ? 16 : 6);
    frame.writeUInt16BE(0x1234, field);

    fixL4Checksum(frame, c.loc);

    assert.equal(frame.readUInt16BE(field), c.checksum);
  });
}

test('checksum ignores Ethernet padding', () => {
  const frame = Buffer.from(CAPTURED[2]!.hex, 'hex');
  const padded = Buffer.concat([frame, Buffer.alloc(18, 0xee)]);
  assert.equal(computeL4Checksum(padded, CAPTURED[2]!.loc), CAPTURED[2]!.checksum);
});

test('checksum rejects length past frame', () => {
  const frame = Buffer.from(CAPTURED[0]!.hex, 'hex');
  assert.throws(() => computeL4Checksum(frame.subarray(0, 50), CAPTURED[0]!.loc), /IP length field points past the 50-byte frame/);
});

test('checksum rejects other protocols', () => {
  const frame = Buffer.from(CAPTURED[0]!.hex, 'hex');
  assert.throws(() => computeL4Checksum(frame, { ...CAPTURED[0]!.loc, l4Proto: 1 }), /L4 protocol 1 has no checksum/);
});

test('checksum agrees with frame builder', () => {
  const spec = {
    src: '198.18.0.1',
    dst: '198.19.0.10',
    ipv4Options: Buffer.from([1, 1, 1, 0]),
    tcp: { srcPort: 40000, dstPort: 80, flags: TCP_SYN },
  };
  const offsets = headerOffsets(spec);
  const full = buildFrame(spec);
  const partial = buildFrame({ ...spec, partialChecksum: true });
  const loc = { l3Offset: offsets.l3, l4Offset: offsets.l4, l4Proto: 6, ipv6: false };

  assert.notDeepEqual(partial, full);
  fixL4Checksum(partial, loc);
  assert.deepEqual(partial, full);
});
