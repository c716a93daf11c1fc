// Differential fuzzing of the hold programs: random and mutated frames go
// through BPF_PROG_RUN and through the reference model in test/lib, and the
// verdicts, records and counters must agree. ZH_FUZZ_SEED replays a run.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { Datapath } from '../../src/datapath/datapath.js';
import { addressToBytes } from '../../src/datapath/address.js';
import { MAX_FRAME } from '../../src/datapath/layout.js';
import type { ServiceCounters } from '../../src/datapath/services.js';
import { classify } from '../lib/classify.js';
import { FrameRunner, type HookName } from '../lib/harness.js';
import { buildFrame, ETH_P_8021AD, ETH_P_8021Q, TCP_ACK, TCP_RST, TCP_SYN, type FrameSpec } from '../lib/packets.js';

const COLD = 1;
const WARM = 2;
const ANY_PORT = 3;

interface FrontendEntry {
  address: string;
  protocol: 'tcp' | 'udp';
  port: number | 'any';
  service: number;
}

const FRONTENDS: FrontendEntry[] = [
  { address: '198.19.0.10', protocol: 'tcp', port: 80, service: COLD },
  { address: '198.19.0.10', protocol: 'udp', port: 53, service: COLD },
  { address: 'fd5a::10', protocol: 'tcp', port: 443, service: COLD },
  { address: 'fd5a::10', protocol: 'udp', port: 53, service: COLD },
  { address: '198.19.0.20', protocol: 'tcp', port: 80, service: WARM },
  { address: 'fd5a::20', protocol: 'udp', port: 53, service: WARM },
  { address: '198.19.0.30', protocol: 'tcp', port: 'any', service: ANY_PORT },
];
const STATES: Record<number, 'cold' | 'warm'> = { [COLD]: 'cold', [WARM]: 'warm', [ANY_PORT]: 'cold' };

// xorshift32: small, fast and reproducible from one seed.
function makeRandom(seed: number) {
  let state = seed >>> 0 || 1;
  const next = () => {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state;
  };
  return {
    int: (n: number) => next() % n,
    bytes: (n: number) => Buffer.from(Array.from({ length: n }, () => next() & 0xff)),
  };
}

type Expected = { verdict: 'pass' | 'drop'; hold: boolean; service?: number; counter?: keyof ServiceCounters };

function expectedOutcome(frame: Buffer): Expected {
  const { flow } = classify(frame);
  if (!flow) return { verdict: 'pass', hold: false };

  const protocol = flow.proto === 6 ? 'tcp' : 'udp';
  const match = (port: number | 'any') =>
    FRONTENDS.find((f) => f.protocol === protocol && f.port === port && addressToBytes(f.address).equals(flow.dst));
  const frontend = match(flow.dstPort) ?? match('any');
  if (!frontend) return { verdict: 'pass', hold: false };

  const service = frontend.service;
  if (STATES[service] === 'warm') return { verdict: 'pass', hold: false, service, counter: 'warm_packets' };
  if (!flow.opener) return { verdict: 'pass', hold: false, service, counter: 'passed_cold' };
  if (flow.firstFragment) return { verdict: 'drop', hold: false, service, counter: 'fragments' };
  if (frame.length > MAX_FRAME) return { verdict: 'drop', hold: false, service, counter: 'too_large' };
  return { verdict: 'drop', hold: true, service, counter: 'held_frames' };
}

const SEEDS: FrameSpec[] = [
  { src: '198.18.0.1', dst: '198.19.0.10', tcp: { srcPort: 40000, dstPort: 80, flags: TCP_SYN } },
  { src: '198.18.0.1', dst: '198.19.0.10', ipv4Options: Buffer.from([1, 1, 1, 0]), udp: { srcPort: 40000, dstPort: 53 }, payload: Buffer.from('q') },
  { src: '198.18.0.1', dst: '198.19.0.10', vlans: [{ tpid: ETH_P_8021Q, id: 5 }], tcp: { srcPort: 40000, dstPort: 80, flags: TCP_ACK } },
  { src: 'fd5a::1', dst: 'fd5a::10', tcp: { srcPort: 40000, dstPort: 443, flags: TCP_SYN } },
  { src: 'fd5a::1', dst: 'fd5a::10', ipv6Extensions: [{ type: 0 }, { type: 44, moreFragments: true }], udp: { srcPort: 1, dstPort: 53 } },
  { src: 'fd5a::1', dst: 'fd5a::10', vlans: [{ tpid: ETH_P_8021AD, id: 1 }, { tpid: ETH_P_8021Q, id: 2 }], ipv6Extensions: [{ type: 60 }, { type: 51 }], tcp: { srcPort: 1, dstPort: 443, flags: TCP_SYN } },
  { src: '198.18.0.1', dst: '198.19.0.20', tcp: { srcPort: 40000, dstPort: 80, flags: TCP_SYN } },
  { src: 'fd5a::1', dst: 'fd5a::20', udp: { srcPort: 1, dstPort: 53 } },
  { src: '198.18.0.1', dst: '198.19.0.30', tcp: { srcPort: 40000, dstPort: 9999, flags: TCP_SYN | TCP_RST } },
  { src: '198.18.0.1', dst: '198.19.0.30', moreFragments: true, tcp: { srcPort: 40000, dstPort: 9999, flags: TCP_SYN } },
];

function mutate(random: ReturnType<typeof makeRandom>, seeds: Buffer[]): Buffer {
  if (random.int(10) < 3) {
    return random.bytes(14 + random.int(200));
  }

  let frame = Buffer.from(seeds[random.int(seeds.length)]!);
  const mutations = 1 + random.int(4);
  for (let i = 0; i < mutations; i++) {
    switch (random.int(5)) {
      case 0: // flip bits in a random byte
        frame[random.int(frame.length)]! ^= 1 << random.int(8);
        break;
      case 1: // replace a byte
        frame[random.int(frame.length)] = random.int(256);
        break;
      case 2: // truncate, keeping the Ethernet header
        frame = frame.subarray(0, 14 + random.int(frame.length - 13));
        break;
      case 3: // append bytes
        frame = Buffer.concat([frame, random.bytes(1 + random.int(64))]);
        break;
      default: // no change: the seed itself must also agree
        break;
    }
  }
  return frame;
}

// For skb programs, test_run itself refuses an untagged IP frame without a
// whole IP header, before the program runs.
function testRunRefuses(frame: Buffer): boolean {
  const type = frame.readUInt16BE(12);
  return (type === 0x0800 && frame.length < 14 + 20) || (type === 0x86dd && frame.length < 14 + 40);
}

let dp: Datapath;
let runner: FrameRunner;

before(async () => {
  dp = await Datapath.open({ maxServices: 8 });
  runner = new FrameRunner(dp);
  for (const [id, state] of Object.entries(STATES)) {
    dp.configureService(Number(id), { state, wakeIntervalMs: 0 });
  }
  for (const f of FRONTENDS) {
    dp.frontends.set(f, f.service);
  }
});

after(() => dp.close());

function fuzz(hook: HookName, count: number, seed: number) {
  const random = makeRandom(seed);
  const seeds = SEEDS.map(buildFrame);
  const before = [COLD, WARM, ANY_PORT].map((id) => dp.services.readCounters(id));
  const expectedCounts = new Map<string, bigint>();
  let held = 0;
  let wakes = 0;

  for (let i = 0; i < count; i++) {
    const frame = mutate(random, seeds);
    if (hook === 'tc' && testRunRefuses(frame)) continue;
    const want = expectedOutcome(frame);
    const got = runner.run(hook, frame);

    const context = `frame ${i} (seed ${seed}): ${frame.toString('hex')}`;
    assert.equal(got.verdict, want.verdict, `verdict of ${context}`);
    assert.equal(got.held.length, want.hold ? 1 : 0, `held records of ${context}`);
    if (want.hold) {
      assert.deepEqual(got.held[0]!.frame, frame, `held bytes of ${context}`);
      assert.equal(got.held[0]!.serviceId, want.service, `service of ${context}`);
    }
    for (const wake of got.wakes) {
      assert.equal(wake.serviceId, want.service, `wake service of ${context}`);
    }
    if (want.counter) {
      const key = `${want.service}:${want.counter}`;
      expectedCounts.set(key, (expectedCounts.get(key) ?? 0n) + 1n);
    }
    held += got.held.length;
    wakes += got.wakes.length;
    // The frames themselves are checked; keep the store from growing.
    dp.held.take(COLD);
    dp.held.take(ANY_PORT);
  }

  const after = [COLD, WARM, ANY_PORT].map((id) => dp.services.readCounters(id));
  let heldCounted = 0n;
  let wakesCounted = 0n;
  [COLD, WARM, ANY_PORT].forEach((id, i) => {
    for (const counter of ['warm_packets', 'passed_cold', 'fragments', 'too_large', 'held_frames'] as const) {
      const delta = after[i]![counter] - before[i]![counter];
      assert.equal(delta, expectedCounts.get(`${id}:${counter}`) ?? 0n, `${counter} of service ${id}`);
    }
    heldCounted += after[i]!.held_frames - before[i]!.held_frames;
    wakesCounted += after[i]!.wake_events - before[i]!.wake_events;
    assert.equal(after[i]!.ringbuf_full - before[i]!.ringbuf_full, 0n, `ringbuf_full of service ${id}`);
  });
  assert.equal(heldCounted, BigInt(held), 'held_frames equals records read');
  assert.equal(wakesCounted, BigInt(wakes), 'wake_events equals wake records read');
}

const seed = Number(process.env.ZH_FUZZ_SEED ?? Date.now() % 0xffffffff);

test(`xdp agrees with model on 100000 frames (seed ${seed})`, () => {
  fuzz('xdp', 100_000, seed);
});

test(`tc agrees with model on 20000 frames (seed ${seed})`, () => {
  fuzz('tc', 20_000, seed + 1);
});
