// Pinned maps across agent starts with changed map sizes: the maps whose
// definition changed are replaced with new, empty ones, and the others are
// reused with their contents. Left to libbpf, the whole load fails with
// EINVAL, and the agent cannot start until someone removes the pins.

import assert from 'node:assert/strict';
import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { Datapath, type DatapathOptions } from '../../src/datapath/datapath.js';
import type { Frontend } from '../../src/datapath/frontends.js';
import { loadNative } from '../../src/datapath/native.js';

const FRONTEND: Frontend = { address: '198.19.0.30', protocol: 'tcp', port: 80 };
const pinDir = `/sys/fs/bpf/zh-test-stale-pins-${process.pid}`;

async function withDatapath<T>(options: DatapathOptions, body: (datapath: Datapath) => T): Promise<T> {
  const datapath = await Datapath.open({ pinDir, ...options });
  try {
    return body(datapath);
  } finally {
    await datapath.close();
  }
}

function pinnedMaxEntries(map: string): number {
  const pinned = loadNative().openPinnedMap(path.join(pinDir, map));
  try {
    return pinned.maxEntries;
  } finally {
    pinned.close();
  }
}

describe('stale pinned maps', () => {
  before(() => {
    mkdirSync(pinDir);
  });

  after(() => {
    rmSync(pinDir, { recursive: true, force: true });
  });

  test('same sizes reuse every map', async () => {
    await withDatapath({ heldRingBytes: 1 << 16, maxServices: 64 }, (datapath) => {
      assert.deepEqual(datapath.replacedPins, []);
      datapath.frontends.set(FRONTEND, 7);
    });

    await withDatapath({ heldRingBytes: 1 << 16, maxServices: 64 }, (datapath) => {
      assert.deepEqual(datapath.replacedPins, []);
      assert.equal(datapath.frontends.get(FRONTEND), 7);
    });
  });

  test('changed sizes replace only their maps', async () => {
    const replaced = await withDatapath({ heldRingBytes: 1 << 17, maxServices: 128 }, (datapath) => {
      assert.equal(datapath.frontends.get(FRONTEND), 7, 'zh_frontends kept its entry');
      return datapath.replacedPins;
    });

    assert.deepEqual(replaced.map((pin) => pin.map).sort(), ['zh_held_ring', 'zh_services', 'zh_svc_stats', 'zh_wake_state']);
    const ring = replaced.find((pin) => pin.map === 'zh_held_ring')!;
    assert.deepEqual(ring.pinned, { maxEntries: 1 << 16 });
    assert.deepEqual(ring.defined, { maxEntries: 1 << 17 });
    assert.equal(ring.path, path.join(pinDir, 'zh_held_ring'));
    assert.equal(pinnedMaxEntries('zh_held_ring'), 1 << 17);
    assert.equal(pinnedMaxEntries('zh_services'), 128);
  });

  test('a replaced map is reused next time', async () => {
    await withDatapath({ heldRingBytes: 1 << 17, maxServices: 128 }, (datapath) => {
      assert.deepEqual(datapath.replacedPins, []);
    });
  });
});
