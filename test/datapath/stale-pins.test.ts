// Pinned maps across agent starts with changed map sizes: the maps whose
// definition changed are replaced with new, empty ones, and the others are
// reused with their contents. Left to libbpf, the whole load fails with
// EINVAL, and the agent cannot start until someone removes the pins.

import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { Datapath, type DatapathOptions } from '../../src/datapath/datapath.js';
import type { Frontend } from '../../src/datapath/frontends.js';
import { layoutDigest, LAYOUTS_MAP, layoutsBeforeLoad, RecordedLayouts, recordLayouts } from '../../src/datapath/map-layouts.js';
import { loadNative } from '../../src/datapath/native.js';
import type { HeldRecord, WakeRecord } from '../../src/datapath/records.js';
import { repoRoot } from '../../src/paths.js';
import { buildFrame, TCP_SYN } from '../lib/packets.js';

const XDP_DROP = 1;

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

// zh_services's value, struct zh_service in bpf/include/zerohold.h.
const SERVICE_LAYOUT = 'struct(16){state:u32@0,flags:u32@32,wake_interval_ns:u64@64}';

const SYN = buildFrame({ src: '198.18.0.1', dst: FRONTEND.address, tcp: { srcPort: 40000, dstPort: 80, flags: TCP_SYN } });

function setAsidePins(): string[] {
  return readdirSync(pinDir).filter((name) => name.startsWith('replaced_'));
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

    assert.deepEqual(replaced.map((pin) => pin.map).sort(), ['zh_held_ring', 'zh_hold_budget', 'zh_services', 'zh_svc_stats', 'zh_wake_state']);
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

  test('replaced ring records are read', async () => {
    // The previous agent's program keeps a SYN in its ring, and the agent
    // is gone before it read it.
    const syn = SYN;
    await withDatapath({ heldRingBytes: 1 << 17, maxServices: 128 }, (previous) => {
      previous.configureService(7, { state: 'cold', wakeIntervalMs: 0 });
      assert.equal(previous.program('zh_xdp_hold').testRunSync({ data: syn }).retval, XDP_DROP);
    });

    const datapath = await Datapath.open({ pinDir, heldRingBytes: 1 << 18, maxServices: 128 });
    try {
      const heldRecords: HeldRecord[] = [];
      datapath.on('held', (record) => heldRecords.push(record));
      const wakes: WakeRecord[] = [];
      datapath.on('wake', (record) => wakes.push(record));

      assert.deepEqual(datapath.replacedPins.map((pin) => pin.map), ['zh_held_ring']);
      assert.equal(datapath.drainReplacedRings(), 1);
      assert.equal(heldRecords.length, 1);
      assert.deepEqual(heldRecords[0]!.frame, syn);
      assert.equal(heldRecords[0]!.serviceId, 7);
      assert.equal(wakes.length, 0, 'the wake ring was kept, so its record is read by the datapath itself');
      assert.equal(datapath.drainReplacedRings(), 0, 'a second call finds nothing');
      assert.deepEqual(setAsidePins(), [], 'the read ring is unlinked');
      // The wake record is in the kept wake ring. The next tests start
      // with empty rings.
      datapath.drain();
    } finally {
      await datapath.close();
    }
  });

  test('replaced wake ring keeps its number', async () => {
    // Only the wake ring changes, so the reader's ring 0 is a wake ring.
    await withDatapath({ heldRingBytes: 1 << 18, maxServices: 128 }, (previous) => {
      previous.configureService(7, { state: 'cold', wakeIntervalMs: 0 });
      assert.equal(previous.program('zh_xdp_hold').testRunSync({ data: SYN }).retval, XDP_DROP);
    });

    const datapath = await Datapath.open({ pinDir, heldRingBytes: 1 << 18, wakeRingBytes: 1 << 17, maxServices: 128 });
    try {
      const wakes: WakeRecord[] = [];
      datapath.on('wake', (record) => wakes.push(record));
      datapath.on('record-error', (err) => assert.fail(err));

      assert.deepEqual(datapath.replacedPins.map((pin) => pin.map), ['zh_wake_ring']);
      assert.equal(datapath.drainReplacedRings(), 1);
      assert.equal(wakes.length, 1);
      assert.equal(wakes[0]!.serviceId, 7);
      datapath.drain();
    } finally {
      await datapath.close();
    }
  });

  test('unread ring waits for the next start', async () => {
    await withDatapath({ heldRingBytes: 1 << 18, wakeRingBytes: 1 << 17, maxServices: 128 }, (previous) => {
      previous.configureService(7, { state: 'cold', wakeIntervalMs: 3_600_000 });
      assert.equal(previous.program('zh_xdp_hold').testRunSync({ data: SYN }).retval, XDP_DROP);
    });
    // This start replaces the held ring and stops before reading it.
    await withDatapath({ heldRingBytes: 1 << 17, wakeRingBytes: 1 << 17, maxServices: 128 }, (stopped) => {
      assert.deepEqual(stopped.replacedPins.map((pin) => pin.map), ['zh_held_ring']);
    });
    assert.equal(setAsidePins().length, 1);

    const datapath = await Datapath.open({ pinDir, heldRingBytes: 1 << 17, wakeRingBytes: 1 << 17, maxServices: 128 });
    try {
      const heldRecords: HeldRecord[] = [];
      datapath.on('held', (record) => heldRecords.push(record));

      assert.deepEqual(datapath.replacedPins, []);
      assert.equal(datapath.drainReplacedRings(), 1);
      assert.deepEqual(heldRecords[0]?.frame, SYN);
      assert.deepEqual(setAsidePins(), []);
    } finally {
      await datapath.close();
    }
  });

  test('interrupted set-aside is put back', async () => {
    // A crash between the rename and the load left zh_frontends renamed.
    renameSync(path.join(pinDir, 'zh_frontends'), path.join(pinDir, 'replaced_1_zh_frontends'));

    await withDatapath({ heldRingBytes: 1 << 17, wakeRingBytes: 1 << 17, maxServices: 128 }, (datapath) => {
      assert.equal(datapath.frontends.get(FRONTEND), 7, 'the entry is back');
    });
    assert.deepEqual(setAsidePins(), []);
  });

  test('host map mismatch is an error', async () => {
    // Another map pinned where the host's zh_chain_meta goes.
    const scratch = `${pinDir}-scratch`;
    const chainDir = `${pinDir}-chain`;
    mkdirSync(scratch);
    mkdirSync(chainDir);
    try {
      await (await Datapath.open({ pinDir: scratch, maxServices: 8 })).close();
      renameSync(path.join(scratch, 'zh_stats'), path.join(chainDir, 'zh_chain_meta'));
      const before = readdirSync(pinDir).sort();

      // With changed sizes too, which must not be set aside for a start
      // that does not happen.
      await assert.rejects(Datapath.open({ pinDir, chainPinDir: chainDir, heldRingBytes: 1 << 19, maxServices: 256 }), /zh_chain_meta .*chained-mode contract/);
      assert.equal(existsSync(path.join(chainDir, 'zh_chain_meta')), true, 'the host map stays');
      assert.deepEqual(readdirSync(pinDir).sort(), before);
    } finally {
      rmSync(scratch, { recursive: true, force: true });
      rmSync(chainDir, { recursive: true, force: true });
    }
  });

  test('failed load keeps the old pins', async () => {
    const before = readdirSync(pinDir).sort();
    const ring = pinnedMaxEntries('zh_held_ring');
    assert.notEqual(ring, 1 << 19);

    // The kernel rejects an array map of 0 entries, so the load fails
    // after both changed pins were set aside.
    await assert.rejects(Datapath.open({ pinDir, heldRingBytes: 1 << 19, maxServices: 0 }), /EINVAL|Invalid argument/);

    assert.deepEqual(readdirSync(pinDir).sort(), before);
    assert.equal(pinnedMaxEntries('zh_held_ring'), ring);
    assert.equal(pinnedMaxEntries('zh_services'), 128);
  });

  test('swapped value fields replace the map', async () => {
    // Another release's zh_services: same type, sizes and flags, so libbpf
    // would reuse it, but with state and flags swapped. Its agent recorded
    // that layout.
    const layoutDir = `${pinDir}-layout`;
    mkdirSync(layoutDir);
    try {
      const other = new (loadNative().BpfObject)(path.join(repoRoot, 'build/bpf/test/swapped_layout.o'));
      let swappedLayout: string;
      try {
        other.setMaxEntries('zh_services', 64);
        other.setPinPath('zh_services', path.join(layoutDir, 'zh_services'));
        other.setPinPath(LAYOUTS_MAP, path.join(layoutDir, LAYOUTS_MAP));
        const definitions = layoutsBeforeLoad(other, ['zh_services']);
        await other.load();
        recordLayouts(other.map(LAYOUTS_MAP), definitions);
        swappedLayout = definitions.get('zh_services')!.valueLayout;
      } finally {
        other.close();
      }
      assert.equal(swappedLayout, 'struct(16){flags:u32@0,state:u32@32,wake_interval_ns:u64@64}');

      const replaced = await withDatapath({ pinDir: layoutDir, maxServices: 64 }, (datapath) => datapath.replacedPins);
      assert.deepEqual(replaced.map((pin) => pin.map), ['zh_services']);
      assert.deepEqual(replaced[0]!.pinned, { valueLayout: `recorded digest ${layoutDigest(swappedLayout).toString('hex')}` });
      assert.deepEqual(replaced[0]!.defined, { valueLayout: SERVICE_LAYOUT });

      const reused = await withDatapath({ pinDir: layoutDir, maxServices: 64 }, (datapath) => datapath.replacedPins);
      assert.deepEqual(reused, [], 'the load recorded the new layout');
    } finally {
      rmSync(layoutDir, { recursive: true, force: true });
    }
  });

  test('changed ring record layout drops the ring', async () => {
    // The previous agent's program keeps a SYN in its ring, and that
    // agent recorded another layout of zh_held_hdr for the ring.
    await withDatapath({ maxServices: 128 }, (previous) => {
      previous.configureService(7, { state: 'cold', wakeIntervalMs: 3_600_000 });
      assert.equal(previous.program('zh_xdp_hold').testRunSync({ data: SYN }).retval, XDP_DROP);
    });
    const layouts = loadNative().openPinnedMap(path.join(pinDir, LAYOUTS_MAP));
    const otherLayout = 'record zh_held_hdr {"size":40,"members":[]}';
    try {
      const key = Buffer.alloc(16);
      key.write('zh_held_ring', 'latin1');
      const value = Buffer.alloc(32);
      layoutDigest(otherLayout).copy(value, 16);
      layouts.update(key, value);
    } finally {
      layouts.close();
    }

    const datapath = await Datapath.open({ pinDir, maxServices: 128 });
    try {
      const heldRecords: HeldRecord[] = [];
      datapath.on('held', (record) => heldRecords.push(record));

      assert.deepEqual(datapath.replacedPins.map((pin) => pin.map), ['zh_held_ring']);
      assert.deepEqual(datapath.replacedPins[0]!.pinned, { valueLayout: `recorded digest ${layoutDigest(otherLayout).toString('hex')}` });
      assert.match(String(datapath.replacedPins[0]!.defined.valueLayout), /^record zh_held_hdr \{/);
      assert.equal(datapath.drainReplacedRings(), 0, 'a ring of another record layout is not read');
      assert.deepEqual(setAsidePins(), [], 'and its pin is gone');
      datapath.drain();
      assert.deepEqual(heldRecords, []);
    } finally {
      await datapath.close();
    }
    const reused = await withDatapath({ maxServices: 128 }, (datapath) => datapath.replacedPins);
    assert.deepEqual(reused, [], 'the load recorded the current record layout');
  });

  test('load records every layout', () => {
    const object = new (loadNative().BpfObject)(path.join(repoRoot, 'build/bpf/zerohold.o'));
    const recorded = RecordedLayouts.open(pinDir);
    assert.ok(recorded, 'zh_map_layouts is pinned');
    try {
      const definition = object.mapDefinition('zh_services');
      assert.equal(definition.valueLayout, SERVICE_LAYOUT);
      assert.deepEqual(recorded.differences('zh_services', definition), { recorded: {}, defined: {} });

      const swapped = { ...definition, valueLayout: 'struct(16){flags:u32@0,state:u32@32,wake_interval_ns:u64@64}' };
      assert.deepEqual(Object.keys(recorded.differences('zh_services', swapped).recorded), ['valueLayout'], 'a record exists to differ from');
      assert.equal(object.mapDefinition('zh_held_ring').valueLayout, '', 'a ring buffer has no value type');
      const rings = layoutsBeforeLoad(object, ['zh_held_ring', 'zh_wake_ring']);
      assert.match(rings.get('zh_held_ring')!.valueLayout, /^record zh_held_hdr \{"size":40,/);
      assert.match(rings.get('zh_wake_ring')!.valueLayout, /^record zh_wake_event \{"size":56,/);
      assert.deepEqual(recorded.differences('zh_held_ring', rings.get('zh_held_ring')!), { recorded: {}, defined: {} }, 'the ring record layout was recorded');
    } finally {
      recorded.close();
      object.close();
    }
  });
});
