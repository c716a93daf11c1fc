import assert from 'node:assert/strict';
import { test } from 'node:test';

import { addressToBytes, bytesToAddress } from '../../src/datapath/address.js';
import { decodeFrontendKey, encodeFrontendKey } from '../../src/datapath/frontends.js';
import { decodeHeldRecord, splitBatch } from '../../src/datapath/records.js';
import { buildFrame, TCP_SYN } from '../lib/packets.js';
import { heldRecordBytes } from '../lib/records.js';

test('address maps IPv4 into IPv6', () => {
  assert.equal(addressToBytes('198.19.0.10').toString('hex'), '00000000000000000000ffffc613000a');
  assert.equal(bytesToAddress(addressToBytes('198.19.0.10')), '198.19.0.10');
  assert.equal(bytesToAddress(addressToBytes('fd5a::10')), 'fd5a::10');
});

test('address rejects legacy and garbage forms', () => {
  assert.throws(() => addressToBytes('10.1'), /invalid IP address "10.1"/);
  assert.throws(() => addressToBytes('example.com'), /invalid IP address "example.com"/);
});

test('frontend key round trip', () => {
  for (const f of [
    { address: '198.19.0.10', protocol: 'tcp' as const, port: 80 },
    { address: 'fd5a::53', protocol: 'udp' as const, port: 53 },
    { address: '198.19.0.11', protocol: 'tcp' as const, port: 'any' as const },
  ]) {
    assert.deepEqual(decodeFrontendKey(encodeFrontendKey(f)), f);
  }
});

test('frontend key rejects bad port', () => {
  assert.throws(() => encodeFrontendKey({ address: '198.19.0.10', protocol: 'tcp', port: 0 }), /invalid port 0 for frontend 198.19.0.10: expected 1-65535 or "any"/);
  assert.throws(() => encodeFrontendKey({ address: '198.19.0.10', protocol: 'sctp' as 'tcp', port: 80 }), /invalid protocol "sctp"/);
});

test('held record decodes flow and frame', () => {
  const spec = { src: 'fd5a::1', dst: 'fd5a::10', vlans: [{ tpid: 0x8100, id: 7 }], tcp: { srcPort: 40001, dstPort: 443, flags: TCP_SYN } };
  const record = decodeHeldRecord(heldRecordBytes(spec, 5, 42n));

  assert.equal(record.serviceId, 5);
  assert.equal(record.timestampNs, 42n);
  assert.equal(record.ipv6, true);
  assert.deepEqual(record.flow, { protocol: 'tcp', source: 'fd5a::1', sourcePort: 40001, destination: 'fd5a::10', destinationPort: 443 });
  assert.equal(record.tcpFlags, TCP_SYN);
  assert.deepEqual(record.frame, buildFrame(spec));
});

test('held record rejects truncation', () => {
  const bytes = heldRecordBytes({ src: '198.18.0.1', dst: '198.19.0.10', udp: { srcPort: 1, dstPort: 2 } }, 1, 1n);
  assert.throws(() => decodeHeldRecord(bytes.subarray(0, 50)), /declares a \d+-byte frame but carries 10/);
  assert.throws(() => decodeHeldRecord(bytes.subarray(0, 20)), /shorter than its 40-byte header/);
});

test('batch splits padded entries', () => {
  const entry = (ring: number, data: Buffer) => {
    const head = Buffer.alloc(8);
    head.writeUInt32LE(ring, 0);
    head.writeUInt32LE(data.length, 4);
    return Buffer.concat([head, data, Buffer.alloc((8 - (data.length % 8)) % 8)]);
  };
  const batch = Buffer.concat([entry(0, Buffer.from('abc')), entry(1, Buffer.from('12345678'))]);

  const records = splitBatch(batch);

  assert.deepEqual(records.map((r) => [r.ring, r.data.toString()]), [[0, 'abc'], [1, '12345678']]);
  assert.throws(() => splitBatch(batch.subarray(0, 28)), /ring buffer batch truncated/);
  assert.throws(() => splitBatch(batch.subarray(0, 20)), /4 trailing bytes/);
});
