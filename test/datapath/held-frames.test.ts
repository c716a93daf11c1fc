import assert from 'node:assert/strict';
import { test } from 'node:test';

import { HeldFrameStore } from '../../src/datapath/held-frames.js';
import { flowKeyOf } from '../../src/datapath/records.js';
import { TCP_SYN } from '../lib/packets.js';
import { heldRecord } from '../lib/records.js';

function syn(source: string, srcPort: number, serviceId = 1, ts = 1000n, seq = 1) {
  return heldRecord({ src: source, dst: '198.19.0.10', tcp: { srcPort, dstPort: 80, flags: TCP_SYN, seq } }, serviceId, ts);
}

function datagram(source: string, srcPort: number, serviceId = 1, ts = 1000n) {
  return heldRecord({ src: source, dst: '198.19.0.53', udp: { srcPort, dstPort: 53 }, payload: Buffer.from('q') }, serviceId, ts);
}

const LIMITS = { perService: 4, perSource: 3, total: 6 };

test('store keeps newest SYN per flow', () => {
  const store = new HeldFrameStore(LIMITS);
  assert.deepEqual(store.add(syn('198.18.0.1', 40000, 1, 1000n, 1)), { result: 'held' });
  assert.deepEqual(store.add(syn('198.18.0.1', 40000, 1, 2000n, 2)), { result: 'replaced' });

  const [flow, ...rest] = store.take(1);
  assert.equal(rest.length, 0);
  assert.equal(flow!.record.timestampNs, 2000n);
  assert.equal(flow!.record.frame.readUInt32BE(flow!.record.l4Offset + 4), 2, 'newest SYN sequence number');
  assert.equal(flow!.firstTimestampNs, 1000n);
  assert.equal(flow!.frames, 2);
  assert.equal(store.size, 0);
  assert.equal(store.bytes, 0);
});

test('store keeps every UDP datagram', () => {
  const store = new HeldFrameStore(LIMITS);
  store.add(datagram('198.18.0.1', 5000));
  store.add(datagram('198.18.0.1', 5000));
  assert.equal(store.sizeOf(1), 2);
});

test('store enforces per-source limit', () => {
  const store = new HeldFrameStore(LIMITS);
  for (let port = 1; port <= 3; port++) {
    assert.equal(store.add(syn('198.18.0.1', port)).result, 'held');
  }
  assert.deepEqual(store.add(syn('198.18.0.1', 4)), { result: 'rejected', reason: 'source-limit' });
  assert.equal(store.add(syn('198.18.0.2', 4)).result, 'held');
});

test('store enforces per-service limit', () => {
  const store = new HeldFrameStore(LIMITS);
  for (let i = 1; i <= 4; i++) {
    assert.equal(store.add(syn(`198.18.0.${i}`, 1000)).result, 'held');
  }
  assert.deepEqual(store.add(syn('198.18.0.9', 1000)), { result: 'rejected', reason: 'service-limit' });
  assert.equal(store.add(syn('198.18.0.9', 1000, 2)).result, 'held');
});

test('store enforces total limit', () => {
  const store = new HeldFrameStore(LIMITS);
  for (let i = 1; i <= 6; i++) {
    store.add(syn(`198.18.1.${i}`, 1000, i));
  }
  assert.deepEqual(store.add(syn('198.18.2.1', 1000, 9)), { result: 'rejected', reason: 'total-limit' });
});

test('store replaces SYN at a full limit', () => {
  const store = new HeldFrameStore({ perService: 1, perSource: 1, total: 1 });
  store.add(syn('198.18.0.1', 40000));
  assert.equal(store.add(syn('198.18.0.1', 40000, 1, 5000n)).result, 'replaced');
});

test('store frees limits after take', () => {
  const store = new HeldFrameStore(LIMITS);
  for (let port = 1; port <= 3; port++) store.add(syn('198.18.0.1', port));
  assert.equal(store.take(1).length, 3);
  assert.equal(store.add(syn('198.18.0.1', 9)).result, 'held');
});

test('store expires only old flows', () => {
  const store = new HeldFrameStore(LIMITS);
  store.add(syn('198.18.0.1', 1, 1, 100n));
  store.add(syn('198.18.0.2', 1, 1, 900n));

  const expired = store.takeOlderThan(1, 500n);

  assert.equal(expired.length, 1);
  assert.equal(expired[0]!.record.flow.source, '198.18.0.1');
  assert.equal(store.sizeOf(1), 1);
});

test('store releases in arrival order', () => {
  const store = new HeldFrameStore(LIMITS);
  store.add(syn('198.18.0.3', 1));
  store.add(syn('198.18.0.1', 1));
  store.add(syn('198.18.0.2', 1));
  assert.deepEqual(store.take(1).map((f) => f.record.flow.source), ['198.18.0.3', '198.18.0.1', '198.18.0.2']);
});

test('store counts sources per service', () => {
  const store = new HeldFrameStore(LIMITS);
  for (let port = 1; port <= 3; port++) store.add(syn('198.18.0.1', port, 1));

  assert.deepEqual(store.add(syn('198.18.0.1', 4, 1)), { result: 'rejected', reason: 'source-limit' });
  assert.equal(store.add(syn('198.18.0.1', 4, 2)).result, 'held', 'the same client has room at another service');
});

test('service limits override defaults', () => {
  const store = new HeldFrameStore(LIMITS);
  store.setServiceLimits(1, { perService: 2, perSource: 1 });

  assert.equal(store.add(syn('198.18.0.1', 1, 1)).result, 'held');
  assert.deepEqual(store.add(syn('198.18.0.1', 2, 1)), { result: 'rejected', reason: 'source-limit' });
  assert.equal(store.add(syn('198.18.0.2', 1, 1)).result, 'held');
  assert.deepEqual(store.add(syn('198.18.0.3', 1, 1)), { result: 'rejected', reason: 'service-limit' });
  for (let port = 1; port <= 3; port++) assert.equal(store.add(syn('198.18.0.1', port, 2)).result, 'held', 'service 2 keeps the defaults');

  store.setServiceLimits(1, undefined);
  assert.equal(store.add(syn('198.18.0.3', 1, 1)).result, 'held', 'back to perService 4');
});

test('service limits above total still stop at total', () => {
  const store = new HeldFrameStore(LIMITS);
  store.setServiceLimits(1, { perService: 100, perSource: 100 });
  for (let port = 1; port <= 6; port++) assert.equal(store.add(syn('198.18.0.1', port, 1)).result, 'held');
  assert.deepEqual(store.add(syn('198.18.0.1', 7, 1)), { result: 'rejected', reason: 'total-limit' });
});

test('store rejects invalid service limits', () => {
  const store = new HeldFrameStore(LIMITS);
  assert.throws(() => store.setServiceLimits(1, { perService: 1, perSource: 0.5 }), /held frame limit perSource is 0.5, expected a positive integer/);
});

test('store rejects before decoding', () => {
  const store = new HeldFrameStore(LIMITS);
  const keyOf = (record: ReturnType<typeof syn>) => flowKeyOf(record.frame, record.l3Offset, record.l4Offset, record.ipv6, record.l4Proto);
  for (let i = 1; i <= 4; i++) store.add(syn(`198.18.0.${i}`, 1000));

  assert.equal(store.rejection(1, keyOf(syn('198.18.0.9', 1000)), true), 'service-limit');
  assert.equal(store.rejection(1, keyOf(syn('198.18.0.1', 1000)), true), undefined, 'a held flow may replace its SYN');
  assert.equal(store.rejection(2, keyOf(syn('198.18.0.9', 1000, 2)), true), undefined, 'another service has room');
  store.add(syn('198.18.0.9', 1000, 2));
  store.add(syn('198.18.0.9', 1001, 2));
  assert.equal(store.rejection(3, keyOf(syn('198.18.0.9', 1000, 3)), true), 'total-limit');
});

test('store rejects invalid limits', () => {
  assert.throws(() => new HeldFrameStore({ perService: 0, perSource: 1, total: 1 }), /held frame limit perService is 0, expected a positive integer/);
});
