// The hold budget (bpf/lib/hold_budget.h) through BPF_PROG_RUN: flow
// openers of several services into a small held ring that no agent reads
// meanwhile, as when the agent falls behind during a flood.

import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, test } from 'node:test';

import { Datapath } from '../../src/datapath/datapath.js';
import { HoldBudget } from '../../src/datapath/layout.js';
import { buildFrame, TCP_SYN } from '../lib/packets.js';

const XDP_DROP = 1;

// 16 pages. A SYN record takes 176 bytes with the ring's own header, so
// the ring has room for 372 of them and is more than half full after 187.
const RING_BYTES = 64 << 10;
const HALF_RING_RECORDS = 187;

const FLOODED = 1;
const OTHER = 2;
const ADDRESSES: Record<number, string> = { [FLOODED]: '198.19.0.10', [OTHER]: '198.19.0.20' };

let dp: Datapath | undefined;

afterEach(() => {
  dp?.close();
  dp = undefined;
});

async function open(holdRates: Record<number, number>): Promise<Datapath> {
  dp = await Datapath.open({ maxServices: 8, heldRingBytes: RING_BYTES });
  for (const [id, holdRate] of Object.entries(holdRates)) {
    dp.configureService(Number(id), { state: 'cold', wakeIntervalMs: 3_600_000, holdRate });
    dp.frontends.set({ address: ADDRESSES[Number(id)]!, protocol: 'tcp', port: 80 }, Number(id));
  }
  return dp;
}

// Sends count SYNs of distinct flows to the service, none of them read
// from the ring, and returns the change of its counters.
let nextPort = 10_000;
function flood(datapath: Datapath, id: number, count: number) {
  const before = datapath.services.readCounters(id);
  for (let i = 0; i < count; i++) {
    const frame = buildFrame({ src: '198.18.0.1', dst: ADDRESSES[id]!, tcp: { srcPort: nextPort++, dstPort: 80, flags: TCP_SYN } });
    assert.equal(datapath.program('zh_xdp_hold').testRunSync({ data: frame }).retval, XDP_DROP);
  }
  const after = datapath.services.readCounters(id);
  return {
    held: Number(after.held_frames - before.held_frames),
    limited: Number(after.held_limited - before.held_limited),
    ringFull: Number(after.ringbuf_full - before.ringbuf_full),
  };
}

// The tokens left in a service's bucket.
function tokensOf(datapath: Datapath, id: number): bigint {
  const key = Buffer.alloc(4);
  key.writeUInt32LE(id);
  return datapath.map('zh_hold_budget').lookup(key)!.readBigInt64LE(HoldBudget.members.tokens);
}

test('no budget: flood fills the ring', async () => {
  const datapath = await open({ [FLOODED]: 0, [OTHER]: 0 });

  const flooded = flood(datapath, FLOODED, 500);
  assert.equal(flooded.limited, 0);
  assert.ok(flooded.ringFull > 100, `ringbuf_full ${flooded.ringFull}: the ring should have filled`);

  assert.deepEqual(flood(datapath, OTHER, 5), { held: 0, limited: 0, ringFull: 5 });
});

test('flood stops at budget past half', async () => {
  const datapath = await open({ [FLOODED]: 10, [OTHER]: 10 });

  const flooded = flood(datapath, FLOODED, 500);
  // Its 10 tokens, then every opener until the ring passed half, and a
  // token or two that the coarse clock may add during the run.
  assert.ok(flooded.held >= HALF_RING_RECORDS, `held ${flooded.held}`);
  assert.ok(flooded.held <= HALF_RING_RECORDS + 2, `held ${flooded.held}`);
  assert.equal(flooded.limited, 500 - flooded.held);
  assert.equal(flooded.ringFull, 0);

  assert.deepEqual(flood(datapath, OTHER, 5), { held: 5, limited: 0, ringFull: 0 });

  // Every counted opener is in the ring, so none vanished.
  const records: number[] = [];
  datapath.on('held', (record) => records.push(record.serviceId));
  datapath.drain();
  assert.equal(records.filter((id) => id === FLOODED).length, flooded.held);
  assert.equal(records.filter((id) => id === OTHER).length, 5);
});

test('below half: held beyond budget', async () => {
  const datapath = await open({ [FLOODED]: 2 });

  assert.deepEqual(flood(datapath, FLOODED, 50), { held: 50, limited: 0, ringFull: 0 });
});

test('budget refills at hold_rate', async () => {
  const datapath = await open({ [FLOODED]: 100 });
  const first = flood(datapath, FLOODED, 400);
  assert.ok(first.limited > 0, 'the ring should be more than half full');

  await sleep(200);

  // 20 tokens in 200 ms at 100 a second, counted on a clock that
  // advances once per jiffy (1 to 10 ms).
  const later = flood(datapath, FLOODED, 100);
  assert.ok(later.held >= 15, `held ${later.held} after 200 ms`);
  assert.ok(later.held <= 25, `held ${later.held} after 200 ms`);
  assert.equal(later.limited, 100 - later.held);
});

test('budget follows held-flow bound', async () => {
  const datapath = await open({});
  datapath.configureService(FLOODED, { state: 'cold', wakeIntervalMs: 0 });
  assert.equal(datapath.services.get(FLOODED).holdRate, datapath.held.limits.perService);

  datapath.setHeldLimits(FLOODED, { perService: 300, perSource: 20 });
  assert.equal(datapath.services.get(FLOODED).holdRate, 300);
  assert.equal(datapath.services.get(FLOODED).state, 'cold', 'the gate is kept');

  // A later gate change keeps the budget.
  datapath.setServiceState(FLOODED, 'warm');
  assert.equal(datapath.services.get(FLOODED).holdRate, 300);

  datapath.setHeldLimits(FLOODED, undefined);
  assert.equal(datapath.services.get(FLOODED).holdRate, datapath.held.limits.perService);
});

test('unchanged bound keeps the bucket', async () => {
  const datapath = await open({ [FLOODED]: 10 });
  datapath.setHeldLimits(FLOODED, { perService: 10, perSource: 10 });
  flood(datapath, FLOODED, 4);
  const tokens = () => tokensOf(datapath, FLOODED);
  assert.equal(tokens(), 6n);

  // The controller sets the bounds on every reconcile.
  datapath.setHeldLimits(FLOODED, { perService: 10, perSource: 10 });
  assert.equal(tokens(), 6n);

  // A new rate restarts the bucket, full at the next opener.
  datapath.setHeldLimits(FLOODED, { perService: 20, perSource: 10 });
  assert.equal(tokens(), 0n);
  flood(datapath, FLOODED, 1);
  assert.equal(tokens(), 19n);
});

test('bound above u32 caps budget', async () => {
  dp = await Datapath.open({ maxServices: 8, heldRingBytes: RING_BYTES, heldLimits: { total: 65536, perService: 2 ** 32, perSource: 256 } });
  dp.configureService(FLOODED, { state: 'cold', wakeIntervalMs: 0 });
  assert.equal(dp.services.get(FLOODED).holdRate, 0xffffffff);

  dp.setHeldLimits(FLOODED, { perService: 2 ** 40, perSource: 20 });
  assert.equal(dp.services.get(FLOODED).holdRate, 0xffffffff);
});

test('reused id restarts the bucket', async () => {
  const datapath = await open({ [FLOODED]: 10 });
  flood(datapath, FLOODED, 4);
  const tokens = () => tokensOf(datapath, FLOODED);
  assert.equal(tokens(), 6n);

  // The next workload gets the id with the same rate.
  datapath.services.resetCounters(FLOODED);
  datapath.configureService(FLOODED, { state: 'cold', wakeIntervalMs: 0, holdRate: 10 });
  assert.equal(tokens(), 0n);
  flood(datapath, FLOODED, 1);
  assert.equal(tokens(), 9n);
});
