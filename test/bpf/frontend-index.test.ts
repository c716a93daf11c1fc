// zh_fe_index, the call-free cache of zh_frontends: overflowing buckets,
// deletes that empty them, a write in progress, and a rebuild from pinned
// maps after a restart. Each case checks the datapath's verdicts, which
// depend on the BPF and TypeScript hash functions agreeing.

import assert from 'node:assert/strict';
import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { after, test } from 'node:test';

import { Datapath } from '../../src/datapath/datapath.js';
import { BUCKET_SIZE } from '../../src/datapath/frontend-index.js';
import { encodeFrontendKey, type Frontend } from '../../src/datapath/frontends.js';
import { loadNative } from '../../src/datapath/native.js';
import { FrameRunner } from '../lib/harness.js';
import { buildFrame, TCP_SYN } from '../lib/packets.js';

const SERVICE = 1;
const pinDir = `/sys/fs/bpf/zh-test-index-${process.pid}`;

after(() => rmSync(pinDir, { recursive: true, force: true }));

function frontend(i: number): Frontend {
  return i % 2 === 0
    ? { address: `198.19.1.${i}`, protocol: 'tcp', port: 80 }
    : { address: `fd5a:19::${i.toString(16)}`, protocol: 'tcp', port: 443 };
}

function synTo(f: Frontend): Buffer {
  const src = f.address.includes(':') ? 'fd5a::1' : '198.18.0.1';
  return buildFrame({ src, dst: f.address, tcp: { srcPort: 40000, dstPort: f.port as number, flags: TCP_SYN } });
}

async function coldDatapath(options: { indexBuckets: number; pinDir?: string }) {
  const dp = await Datapath.open({ maxServices: 4, ...options });
  dp.configureService(SERVICE, { state: 'cold', wakeIntervalMs: 0 });
  return { dp, runner: new FrameRunner(dp) };
}

test('overflowing buckets fall back to hash', async () => {
  const { dp, runner } = await coldDatapath({ indexBuckets: 4 });
  try {
    for (let i = 0; i < 40; i++) dp.frontends.set(frontend(i), SERVICE);
    assert.ok(dp.frontends.index.overflowingBuckets > 0, 'forty keys in four two-way buckets overflow');

    for (let i = 0; i < 40; i++) {
      assert.equal(runner.run('xdp', synTo(frontend(i))).verdict, 'drop', `frontend ${i} is held`);
    }
    for (let i = 40; i < 60; i++) {
      assert.equal(runner.run('xdp', synTo(frontend(i))).verdict, 'pass', `non-frontend ${i} passes`);
    }

    for (let i = 2; i < 40; i++) dp.frontends.delete(frontend(i));
    assert.equal(dp.frontends.index.overflowingBuckets, 0);
    for (let i = 0; i < 40; i++) {
      assert.equal(runner.run('xdp', synTo(frontend(i))).verdict, i < 2 ? 'drop' : 'pass', `frontend ${i} after deletes`);
    }
  } finally {
    await dp.close();
  }
});

test('bucket holds key under even seq', async () => {
  const { dp } = await coldDatapath({ indexBuckets: 1024 });
  try {
    const f = frontend(0);
    const key = encodeFrontendKey(f);
    dp.frontends.set(f, SERVICE);

    const bucket = dp.map('zh_fe_index').readMapped(dp.frontends.index.bucketOf(key));

    assert.equal(bucket.length, BUCKET_SIZE);
    assert.equal(bucket.readUInt32LE(0) % 2, 0, 'seq is even after a write');
    assert.ok(bucket.readUInt32LE(0) > 0, 'seq moved');
    assert.deepEqual(bucket.subarray(8, 27), key.subarray(0, 19));
    assert.equal(bucket[27], 1, 'slot valid');
    assert.equal(bucket.readUInt32LE(28), SERVICE);
  } finally {
    await dp.close();
  }
});

test('write in progress falls back to hash', async () => {
  const { dp, runner } = await coldDatapath({ indexBuckets: 1024 });
  try {
    const held = frontend(0);
    dp.frontends.set(held, SERVICE);
    const index = dp.map('zh_fe_index');
    const bucket = dp.frontends.index.bucketOf(encodeFrontendKey(held));

    // An odd seq, as a writer leaves it mid-write, with the slots emptied.
    // Only the hash map still contains the key.
    const value = Buffer.alloc(BUCKET_SIZE);
    value.writeUInt32LE(7, 0);
    const key = Buffer.alloc(4);
    key.writeUInt32LE(bucket);
    index.update(key, value);

    assert.equal(runner.run('xdp', synTo(held)).verdict, 'drop');
    assert.equal(runner.run('xdp', synTo(frontend(2))).verdict, 'pass');
  } finally {
    await dp.close();
  }
});

test('restart rebuilds index from pins', async () => {
  mkdirSync(pinDir, { recursive: true });
  const first = await coldDatapath({ indexBuckets: 256, pinDir });
  for (let i = 0; i < 10; i++) first.dp.frontends.set(frontend(i), SERVICE);
  await first.dp.close();

  // The pinned maps keep the frontends and the service state. Clearing
  // the index shows that the new table rebuilds it from zh_frontends.
  const pinnedIndex = loadNative().openPinnedMap(path.join(pinDir, 'zh_fe_index'));
  pinnedIndex.writeSeqlockedBatch(0, Buffer.alloc(256 * BUCKET_SIZE));
  pinnedIndex.close();

  const second = await Datapath.open({ maxServices: 4, indexBuckets: 256, pinDir });
  try {
    const runner = new FrameRunner(second);
    assert.equal(second.frontends.list().length, 10);
    for (let i = 0; i < 10; i++) {
      assert.equal(runner.run('xdp', synTo(frontend(i))).verdict, 'drop', `frontend ${i} after restart`);
    }
    assert.equal(runner.run('xdp', synTo(frontend(11))).verdict, 'pass');
  } finally {
    await second.close();
  }
});
