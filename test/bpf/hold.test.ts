// Table tests of the hold decision: crafted frames through BPF_PROG_RUN on
// the XDP and tc programs, asserting the verdict, the ring buffer record and
// the counters of every case.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { Datapath, NO_DEADLINE } from '../../src/datapath/datapath.js';
import { encodeFrontendKey } from '../../src/datapath/frontends.js';
import { GlobalStat, Hook, MAX_FRAME } from '../../src/datapath/layout.js';
import { counterDelta, FrameRunner, type HookName, type Verdict } from '../lib/harness.js';
import {
  buildFrame,
  ETH_P_8021AD,
  ETH_P_8021Q,
  ETH_P_ARP,
  headerOffsets,
  TCP_ACK,
  TCP_FIN,
  TCP_PSH,
  TCP_RST,
  TCP_SYN,
  type FrameSpec,
} from '../lib/packets.js';

const COLD = 1;
const WARM = 2;
const ANY_PORT = 3;
const RATE_LIMITED = 4;
const DROP_ONLY = 5;

let dp: Datapath;
let runner: FrameRunner;

before(async () => {
  dp = await Datapath.open({ maxServices: 16 });
  runner = new FrameRunner(dp);

  dp.configureService(COLD, { state: 'cold', wakeIntervalMs: 0 });
  dp.configureService(WARM, { state: 'warm', wakeIntervalMs: 0 });
  dp.configureService(ANY_PORT, { state: 'cold', wakeIntervalMs: 0 });
  dp.configureService(RATE_LIMITED, { state: 'cold', wakeIntervalMs: 3_600_000 });
  dp.configureService(DROP_ONLY, { state: 'cold', wakeIntervalMs: 0, dropOnly: true });

  for (const address of ['198.19.0.10', 'fd5a::10']) {
    dp.frontends.set({ address, protocol: 'tcp', port: 80 }, COLD);
    dp.frontends.set({ address, protocol: 'udp', port: 53 }, COLD);
  }
  dp.frontends.set({ address: '198.19.0.20', protocol: 'tcp', port: 80 }, WARM);
  dp.frontends.set({ address: 'fd5a::20', protocol: 'udp', port: 53 }, WARM);
  dp.frontends.set({ address: '198.19.0.30', protocol: 'tcp', port: 'any' }, ANY_PORT);
  dp.frontends.set({ address: '198.19.0.40', protocol: 'tcp', port: 80 }, RATE_LIMITED);
  dp.frontends.set({ address: '198.19.0.50', protocol: 'tcp', port: 80 }, DROP_ONLY);
  // Points past the 16-entry service tables, which FrontendTable refuses,
  // so the entry is written to the map directly.
  const pastTable = Buffer.alloc(4);
  pastTable.writeUInt32LE(99);
  const pastKey = encodeFrontendKey({ address: '198.19.0.60', protocol: 'tcp', port: 80 });
  dp.map('zh_frontends').update(pastKey, pastTable);
  dp.frontends.index.set(pastKey, 99);
});

after(() => dp.close());

const tcp = (flags: number, dstPort = 80) => ({ srcPort: 40000, dstPort, flags });
const udp = (dstPort = 53) => ({ srcPort: 40000, dstPort });
const v4 = (dst: string) => ({ src: '198.18.0.1', dst });
const v6 = (dst: string) => ({ src: 'fd5a::1', dst });

interface Case {
  name: string;
  spec: FrameSpec;
  // Truncates the built frame to this many bytes.
  truncate?: number;
  verdict: Verdict;
  hold?: boolean;
  service?: number;
  counters?: Record<string, bigint>;
}

const CASES: Case[] = [
  // IPv4 and IPv6 by TCP flags to a cold frontend.
  ...(['198.19.0.10', 'fd5a::10'] as const).flatMap((dst): Case[] => {
    const ip = dst.includes(':') ? v6(dst) : v4(dst);
    const family = dst.includes(':') ? 'IPv6' : 'IPv4';
    return [
      { name: `${family} SYN to cold is held`, spec: { ...ip, tcp: tcp(TCP_SYN) }, verdict: 'drop', hold: true, service: COLD, counters: { held_frames: 1n, wake_events: 1n } },
      { name: `${family} SYN-ACK to cold passes`, spec: { ...ip, tcp: tcp(TCP_SYN | TCP_ACK) }, verdict: 'pass', service: COLD, counters: { passed_cold: 1n } },
      { name: `${family} ACK to cold passes`, spec: { ...ip, tcp: tcp(TCP_ACK) }, verdict: 'pass', service: COLD, counters: { passed_cold: 1n } },
      { name: `${family} RST to cold passes`, spec: { ...ip, tcp: tcp(TCP_RST) }, verdict: 'pass', service: COLD, counters: { passed_cold: 1n } },
      { name: `${family} SYN-RST to cold passes`, spec: { ...ip, tcp: tcp(TCP_SYN | TCP_RST) }, verdict: 'pass', service: COLD, counters: { passed_cold: 1n } },
      { name: `${family} FIN-PSH-ACK to cold passes`, spec: { ...ip, tcp: tcp(TCP_FIN | TCP_PSH | TCP_ACK) }, verdict: 'pass', service: COLD, counters: { passed_cold: 1n } },
      { name: `${family} UDP to cold is held`, spec: { ...ip, udp: udp(), payload: Buffer.from('query') }, verdict: 'drop', hold: true, service: COLD, counters: { held_frames: 1n, wake_events: 1n } },
      { name: `${family} SYN to other port passes`, spec: { ...ip, tcp: tcp(TCP_SYN, 81) }, verdict: 'pass' },
      { name: `${family} UDP to TCP-only port passes`, spec: { ...ip, udp: udp(80) }, verdict: 'pass' },
    ];
  }),

  // An IPv6 packet to the IPv4-mapped form of an IPv4 frontend never
  // reaches the IPv4 service, so it matches no frontend.
  { name: 'IPv6 to IPv4-mapped address passes', spec: { ...v6('::ffff:198.19.0.10'), tcp: tcp(TCP_SYN) }, verdict: 'pass' },

  // VLAN tags.
  { name: 'one 802.1Q tag held', spec: { ...v4('198.19.0.10'), vlans: [{ tpid: ETH_P_8021Q, id: 7 }], tcp: tcp(TCP_SYN) }, verdict: 'drop', hold: true, service: COLD },
  { name: 'QinQ 802.1ad+802.1Q held', spec: { ...v6('fd5a::10'), vlans: [{ tpid: ETH_P_8021AD, id: 100 }, { tpid: ETH_P_8021Q, id: 7 }], tcp: tcp(TCP_SYN) }, verdict: 'drop', hold: true, service: COLD },
  { name: 'three tags not classified', spec: { ...v4('198.19.0.10'), vlans: [{ tpid: ETH_P_8021AD, id: 1 }, { tpid: ETH_P_8021Q, id: 2 }, { tpid: ETH_P_8021Q, id: 3 }], tcp: tcp(TCP_SYN) }, verdict: 'pass' },

  // IPv4 options and IPv6 extension headers.
  { name: 'IPv4 with 4-byte options held', spec: { ...v4('198.19.0.10'), ipv4Options: Buffer.from([1, 1, 1, 0]), tcp: tcp(TCP_SYN) }, verdict: 'drop', hold: true, service: COLD },
  { name: 'IPv4 with 40-byte options held', spec: { ...v4('198.19.0.10'), ipv4Options: Buffer.alloc(40, 1), udp: udp() }, verdict: 'drop', hold: true, service: COLD },
  { name: 'IPv6 hop-by-hop held', spec: { ...v6('fd5a::10'), ipv6Extensions: [{ type: 0 }], tcp: tcp(TCP_SYN) }, verdict: 'drop', hold: true, service: COLD },
  { name: 'IPv6 hbh+route+dstopts+AH held', spec: { ...v6('fd5a::10'), ipv6Extensions: [{ type: 0 }, { type: 43, bodyLength: 22 }, { type: 60 }, { type: 51 }], udp: udp() }, verdict: 'drop', hold: true, service: COLD },
  { name: 'IPv6 six extensions held', spec: { ...v6('fd5a::10'), ipv6Extensions: [0, 60, 43, 60, 51, 60].map((type) => ({ type })), tcp: tcp(TCP_SYN) }, verdict: 'drop', hold: true, service: COLD },
  { name: 'IPv6 seven extensions pass', spec: { ...v6('fd5a::10'), ipv6Extensions: [0, 60, 43, 60, 51, 60, 60].map((type) => ({ type })), tcp: tcp(TCP_SYN) }, verdict: 'pass' },
  { name: 'IPv6 atomic fragment header held', spec: { ...v6('fd5a::10'), ipv6Extensions: [{ type: 44 }], tcp: tcp(TCP_SYN) }, verdict: 'drop', hold: true, service: COLD },

  // Fragments: a first fragment is dropped and wakes; later ones pass.
  { name: 'IPv4 first fragment UDP dropped', spec: { ...v4('198.19.0.10'), moreFragments: true, udp: udp(), payload: Buffer.alloc(64) }, verdict: 'drop', service: COLD, counters: { fragments: 1n, wake_events: 1n } },
  { name: 'IPv4 later fragment passes', spec: { ...v4('198.19.0.10'), fragmentOffset: 8, udp: udp() }, verdict: 'pass', service: COLD, counters: {} },
  { name: 'IPv6 first fragment UDP dropped', spec: { ...v6('fd5a::10'), ipv6Extensions: [{ type: 44, moreFragments: true }], udp: udp() }, verdict: 'drop', service: COLD, counters: { fragments: 1n, wake_events: 1n } },
  { name: 'IPv6 later fragment passes', spec: { ...v6('fd5a::10'), ipv6Extensions: [{ type: 44, fragmentOffset: 100 }], udp: udp() }, verdict: 'pass', service: COLD, counters: {} },

  // Non-IP and misses.
  { name: 'ARP passes', spec: { ...v4('198.19.0.10'), etherType: ETH_P_ARP, payload: Buffer.alloc(28) }, verdict: 'pass' },
  { name: 'unknown address passes', spec: { ...v4('198.19.9.9'), tcp: tcp(TCP_SYN) }, verdict: 'pass' },

  // Any-port, warm, rate limiting, drop-only, bad service id.
  { name: 'any-port frontend holds port 8443', spec: { ...v4('198.19.0.30'), tcp: tcp(TCP_SYN, 8443) }, verdict: 'drop', hold: true, service: ANY_PORT, counters: { held_frames: 1n, wake_events: 1n } },
  { name: 'any-port frontend is TCP only', spec: { ...v4('198.19.0.30'), udp: udp(8443) }, verdict: 'pass', service: ANY_PORT, counters: {} },
  { name: 'warm SYN passes and counts', spec: { ...v4('198.19.0.20'), tcp: tcp(TCP_SYN) }, verdict: 'pass', service: WARM, counters: { warm_packets: 1n } },
  { name: 'warm IPv6 UDP passes and counts', spec: { ...v6('fd5a::20'), udp: udp() }, verdict: 'pass', service: WARM, counters: { warm_packets: 1n } },
  { name: 'drop-only service drops without copy', spec: { ...v4('198.19.0.50'), tcp: tcp(TCP_SYN) }, verdict: 'drop', service: DROP_ONLY, counters: { dropped_only: 1n, wake_events: 1n } },
  { name: 'service id past table passes', spec: { ...v4('198.19.0.60'), tcp: tcp(TCP_SYN) }, verdict: 'pass' },

  // Size limit.
  { name: 'UDP at frame limit held', spec: { ...v4('198.19.0.10'), udp: udp(), payload: Buffer.alloc(MAX_FRAME - 42) }, verdict: 'drop', hold: true, service: COLD, counters: { held_frames: 1n, held_bytes: BigInt(MAX_FRAME), wake_events: 1n } },
  { name: 'UDP over frame limit dropped', spec: { ...v4('198.19.0.10'), udp: udp(), payload: Buffer.alloc(MAX_FRAME - 41) }, verdict: 'drop', service: COLD, counters: { too_large: 1n, wake_events: 1n } },
];

for (const hook of ['xdp', 'tc'] as HookName[]) {
  describe(`${hook} hold program`, () => {
    for (const c of CASES) {
      test(c.name, () => {
        const frame = buildFrame(c.spec);
        const before = c.service === undefined ? null : dp.services.readCounters(c.service);

        const out = runner.run(hook, frame);

        assert.equal(out.verdict, c.verdict, 'verdict');
        assert.equal(out.held.length, c.hold ? 1 : 0, 'held records');
        if (c.hold) {
          const record = out.held[0]!;
          const offsets = headerOffsets(c.spec);
          assert.deepEqual(record.frame, frame, 'held frame bytes equal the input');
          assert.equal(record.serviceId, c.service);
          assert.equal(record.hook, hook === 'xdp' ? Hook.Xdp : Hook.Tc);
          assert.equal(record.l3Offset, offsets.l3);
          assert.equal(record.l4Offset, offsets.l4);
          assert.equal(record.ipv6, c.spec.dst.includes(':'));
          assert.equal(record.flow.destination, c.spec.dst);
        }
        if (c.counters && before) {
          const expected = c.hold ? { held_bytes: BigInt(frame.length), ...c.counters } : c.counters;
          assert.deepEqual(counterDelta(before, dp.services.readCounters(c.service!)), expected);
        }
      });
    }

    test('frames truncated at every length', () => {
      const specs: FrameSpec[] = [
        { ...v4('198.19.0.10'), vlans: [{ tpid: ETH_P_8021Q, id: 7 }], ipv4Options: Buffer.from([1, 1, 1, 0]), tcp: tcp(TCP_SYN) },
        { ...v6('fd5a::10'), ipv6Extensions: [{ type: 0 }, { type: 44 }], udp: udp(), payload: Buffer.from('x') },
      ];
      for (const spec of specs) {
        const frame = buildFrame(spec);
        const before = dp.services.readCounters(COLD);
        // test_run needs a whole Ethernet header.
        for (let length = 14; length < frame.length; length++) {
          const truncated = frame.subarray(0, length);
          // For skb programs, test_run itself refuses an untagged IP frame
          // without a whole IP header, before the program runs.
          if (hook === 'tc' && !spec.vlans && length < 14 + (spec.dst.includes(':') ? 40 : 20)) {
            assert.throws(() => runner.run(hook, truncated), (err: NodeJS.ErrnoException) => err.code === 'EINVAL');
            continue;
          }
          const out = runner.run(hook, truncated);
          assert.equal(out.verdict, 'pass', `verdict at ${length} of ${frame.length} bytes`);
          assert.equal(out.held.length, 0, `held records at ${length} bytes`);
        }
        assert.deepEqual(counterDelta(before, dp.services.readCounters(COLD)), {});
      }
    });

    test('warm records last seen time', () => {
      const start = process.hrtime.bigint();
      runner.run(hook, buildFrame({ ...v4('198.19.0.20'), tcp: tcp(TCP_ACK) }));
      const seen = dp.services.readCounters(WARM).warm_last_seen_ns;
      // The coarse clock may lag the precise one by a few milliseconds.
      assert.ok(seen > start - 50_000_000n, `last seen ${seen} before test start ${start}`);
    });

    test('wake is rate limited per service', () => {
      const before = dp.services.readCounters(RATE_LIMITED);
      const wakes = [];
      for (let port = 1; port <= 20; port++) {
        const out = runner.run(hook, buildFrame({ src: '198.18.0.1', dst: '198.19.0.40', tcp: { srcPort: 1000 + port, dstPort: 80, flags: TCP_SYN } }));
        assert.equal(out.held.length, 1);
        wakes.push(...out.wakes);
      }
      const delta = counterDelta(before, dp.services.readCounters(RATE_LIMITED));

      // One wake per hour. The xdp run opened the interval, so the tc run
      // produces none.
      assert.equal(wakes.length, hook === 'xdp' ? 1 : 0);
      assert.equal(delta.wake_events ?? 0n, hook === 'xdp' ? 1n : 0n);
      assert.equal(delta.held_frames, 20n);
    });

    test('past deadline passes flow openers', () => {
      const syn = buildFrame({ ...v4('198.19.0.10'), tcp: tcp(TCP_SYN) });
      const before = dp.services.readCounters(COLD);

      // The coarse clock lags the precise one by up to a tick, so the past
      // deadline lies a second back and the future one a minute ahead.
      dp.setLivenessDeadline(process.hrtime.bigint() - 1_000_000_000n);
      let passed: ReturnType<FrameRunner['run']>;
      try {
        passed = runner.run(hook, syn);
      } finally {
        dp.setLivenessDeadline(NO_DEADLINE);
      }
      assert.equal(passed.verdict, 'pass');
      assert.equal(passed.held.length, 0);
      assert.equal(passed.wakes.length, 1, 'the wake signal still goes out');
      assert.deepEqual(counterDelta(before, dp.services.readCounters(COLD)), { no_agent: 1n, wake_events: 1n });

      dp.setLivenessDeadline(process.hrtime.bigint() + 60_000_000_000n);
      try {
        const inTime = runner.run(hook, syn);
        assert.equal(inTime.verdict, 'drop');
        assert.equal(inTime.held.length, 1);
      } finally {
        dp.setLivenessDeadline(NO_DEADLINE);
      }
    });

    for (const [src, dst] of [['fd5a::7', 'fd5a::10'], ['198.18.0.7', '198.19.0.10']] as const) {
      test(`wake record names the flow to ${dst}`, () => {
        const out = runner.run(hook, buildFrame({ src, dst, vlans: [{ tpid: ETH_P_8021Q, id: 3 }], tcp: { srcPort: 43210, dstPort: 80, flags: TCP_SYN } }));
        assert.equal(out.wakes.length, 1);
        const wake = out.wakes[0]!;
        assert.equal(wake.serviceId, COLD);
        assert.equal(wake.hook, hook === 'xdp' ? Hook.Xdp : Hook.Tc);
        assert.deepEqual(wake.flow, { protocol: 'tcp', source: src, sourcePort: 43210, destination: dst, destinationPort: 80 });
      });
    }
  });
}

test('bad service id is counted', () => {
  const before = dp.services.readGlobalCounters()[GlobalStat.BadService]!;
  runner.run('xdp', buildFrame({ ...v4('198.19.0.60'), tcp: tcp(TCP_SYN) }));
  assert.equal(dp.services.readGlobalCounters()[GlobalStat.BadService]! - before, 1n);
});

test('any-port lookup skipped when none', async () => {
  // With the only any-port entry gone, the count drops to zero and a frame
  // for that address no longer matches.
  const frontend = { address: '198.19.0.30', protocol: 'tcp' as const, port: 'any' as const };
  assert.equal(dp.frontends.delete(frontend), true);
  try {
    const out = runner.run('xdp', buildFrame({ ...v4('198.19.0.30'), tcp: tcp(TCP_SYN, 8443) }));
    assert.equal(out.verdict, 'pass');
  } finally {
    dp.frontends.set(frontend, ANY_PORT);
  }
});
