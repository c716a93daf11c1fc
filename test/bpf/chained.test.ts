// The chained-mode contract, exercised with test/bpf/chain_caller.c standing
// in for a host datapath: shared pinned maps, the tail call into the
// chained entries, their verdicts and records, and the host's fallback
// when zerohold is absent or does not manage a service.

import assert from 'node:assert/strict';
import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { Datapath, NO_DEADLINE } from '../../src/datapath/datapath.js';
import { ChainMeta, GlobalStat, Hook } from '../../src/datapath/layout.js';
import { loadNative, type NativeObject } from '../../src/datapath/native.js';
import { repoRoot } from '../../src/paths.js';
import { FrameRunner, verdictOf } from '../lib/harness.js';
import { buildFrame, TCP_ACK, TCP_SYN } from '../lib/packets.js';

const XDP_TX = 3;
const TC_ACT_RECLASSIFY = 1;
const BPF_XDP = 37;

const SERVICE = 7;
const pinDir = `/sys/fs/bpf/zh-test-chain-${process.pid}`;
const native = loadNative();

let host: NativeObject;
let dp: Datapath;
let runner: FrameRunner;

function u32(value: number): Buffer {
  const buffer = Buffer.alloc(4);
  buffer.writeUInt32LE(value);
  return buffer;
}

function setNoBackendService(id: number): void {
  host.map('caller_config').update(u32(0), u32(id));
}

function manage(id: number, managed: boolean): void {
  const svcs = host.map('zh_chain_svcs');
  if (managed) svcs.update(u32(id), u32(0));
  else svcs.delete(u32(id));
}

// Runs the host program on a frame and drains what zerohold recorded.
function runHost(hook: 'xdp' | 'tc', frame: Buffer) {
  const prog = host.program(hook === 'xdp' ? 'chain_caller_xdp' : 'chain_caller_tc');
  const { retval } = prog.testRunSync({ data: frame });
  return { retval: retval | 0, ...runner.collect() };
}

before(async () => {
  mkdirSync(pinDir, { recursive: true });

  // Cilium's loader gives its programs expected_attach_type 0; the stand-in
  // does the same so the prog array owner matches a real host.
  host = new native.BpfObject(path.join(repoRoot, 'build/bpf/test/chain_caller.o'));
  host.setExpectedAttachType('chain_caller_xdp', 0);
  for (const map of ['zh_chain_xdp', 'zh_chain_tc', 'zh_chain_meta', 'zh_chain_svcs']) {
    host.setPinPath(map, path.join(pinDir, map));
  }
  await host.load();

  dp = await Datapath.open({ maxServices: 16, chainPinDir: pinDir });
  runner = new FrameRunner(dp);
  dp.configureService(SERVICE, { state: 'cold', wakeIntervalMs: 0 });
});

after(async () => {
  await dp?.close();
  host?.close();
  rmSync(pinDir, { recursive: true, force: true });
});

const syn = buildFrame({ src: '198.18.0.1', dst: '198.19.0.10', tcp: { srcPort: 40000, dstPort: 80, flags: TCP_SYN } });
const ack = buildFrame({ src: '198.18.0.1', dst: '198.19.0.10', tcp: { srcPort: 40000, dstPort: 80, flags: TCP_ACK } });
const syn6 = buildFrame({ src: 'fd5a::1', dst: 'fd5a::10', tcp: { srcPort: 40000, dstPort: 80, flags: TCP_SYN } });

describe('chained mode', () => {
  test('host falls back with no program installed', () => {
    setNoBackendService(SERVICE);
    manage(SERVICE, true);
    assert.equal(runHost('xdp', syn).retval, XDP_TX);
    assert.equal(runHost('tc', syn).retval, TC_ACT_RECLASSIFY);
  });

  test('entry with attach type BPF_XDP is rejected', async () => {
    // Without the override libbpf loads SEC("xdp") with BPF_XDP, which
    // the kernel refuses to put into an array owned by a type-0 program.
    const object = new native.BpfObject(path.join(repoRoot, 'build/bpf/zerohold.o'));
    try {
      await object.load();
      assert.equal(object.program('zh_xdp_chained').expectedAttachType, BPF_XDP);
      const array = native.openPinnedMap(path.join(pinDir, 'zh_chain_xdp'));
      try {
        assert.throws(() => array.setProgram(0, object.program('zh_xdp_chained')), (err: NodeJS.ErrnoException) => err.code === 'EINVAL');
      } finally {
        array.close();
      }
    } finally {
      object.close();
    }
  });

  test('installed entries carry attach type 0', () => {
    dp.installChained(pinDir);
    assert.equal(dp.program('zh_xdp_chained').expectedAttachType, 0);
  });

  for (const hook of ['xdp', 'tc'] as const) {
    test(`${hook} SYN is held by the callee`, () => {
      const before = dp.services.readCounters(SERVICE);
      const out = runHost(hook, syn);

      assert.equal(verdictOf(hook, out.retval), 'drop');
      assert.equal(out.held.length, 1);
      assert.deepEqual(out.held[0]!.frame, syn);
      assert.equal(out.held[0]!.serviceId, SERVICE);
      assert.equal(out.held[0]!.hook, hook === 'xdp' ? Hook.ChainXdp : Hook.ChainTc);
      assert.equal(out.wakes.length, 1);
      assert.equal(dp.services.readCounters(SERVICE).held_frames - before.held_frames, 1n);
    });

    test(`${hook} IPv6 SYN is held by the callee`, () => {
      const out = runHost(hook, syn6);
      assert.equal(verdictOf(hook, out.retval), 'drop');
      assert.equal(out.held[0]?.flow.destination, 'fd5a::10');
    });

    test(`${hook} ACK is dropped, not held`, () => {
      const before = dp.services.readCounters(SERVICE);
      const out = runHost(hook, ack);
      assert.equal(verdictOf(hook, out.retval), 'drop');
      assert.equal(out.held.length, 0);
      assert.equal(dp.services.readCounters(SERVICE).dropped_cold - before.dropped_cold, 1n);
      assert.equal(dp.services.readCounters(SERVICE).passed_cold, before.passed_cold);
    });

    test(`${hook} callee drops unheld past deadline`, () => {
      // The host has no backend, so the frame is dropped either way. Past
      // the agent's deadline it is not held for an agent that is gone.
      const before = dp.services.readCounters(SERVICE);
      dp.setLivenessDeadline(process.hrtime.bigint() - 1_000_000_000n);
      let out: ReturnType<typeof runHost>;
      try {
        out = runHost(hook, syn);
      } finally {
        dp.setLivenessDeadline(NO_DEADLINE);
      }

      assert.equal(verdictOf(hook, out.retval), 'drop');
      assert.equal(out.held.length, 0);
      assert.equal(out.wakes.length, 1, 'the wake signal still goes out');
      assert.equal(dp.services.readCounters(SERVICE).no_agent - before.no_agent, 1n);
    });

    test(`${hook} callee holds even when warm`, () => {
      // Being called means the host has no backend, whatever the state.
      dp.setServiceState(SERVICE, 'warm');
      try {
        const out = runHost(hook, syn);
        assert.equal(verdictOf(hook, out.retval), 'drop');
        assert.equal(out.held.length, 1);
      } finally {
        dp.setServiceState(SERVICE, 'cold');
      }
    });
  }

  test('callee clears the metadata it used', () => {
    // A host fallback earlier leaves its metadata behind, which the
    // contract allows: the host rewrites it before every tail call.
    const meta = dp.map('zh_chain_meta');
    meta.update(u32(0), Buffer.alloc(meta.valueBufferSize));

    runHost('xdp', syn);
    const perCpu = dp.map('zh_chain_meta').lookup(u32(0))!;
    const stride = (ChainMeta.size + 7) & ~7;
    for (let offset = 0; offset < perCpu.length; offset += stride) {
      assert.equal(perCpu.readUInt32LE(offset + ChainMeta.members.magic!), 0, `magic on CPU ${offset / stride}`);
    }
  });

  test('unmanaged service falls back in host', () => {
    manage(SERVICE, false);
    try {
      const out = runHost('xdp', syn);
      assert.equal(out.retval, XDP_TX);
      assert.equal(out.held.length, 0);
    } finally {
      manage(SERVICE, true);
    }
  });

  test('stale membership is dropped and counted', () => {
    manage(3, true);
    setNoBackendService(3);
    const before = dp.services.readGlobalCounters()[GlobalStat.ChainUnmanaged]!;
    try {
      const out = runHost('xdp', syn);
      assert.equal(verdictOf('xdp', out.retval), 'drop');
      assert.equal(out.held.length, 0);
      assert.equal(dp.services.readGlobalCounters()[GlobalStat.ChainUnmanaged]! - before, 1n);
    } finally {
      manage(3, false);
      setNoBackendService(SERVICE);
    }
  });

  test('callee without metadata drops and counts', () => {
    const before = dp.services.readGlobalCounters()[GlobalStat.ChainBadMeta]!;
    const { retval } = dp.program('zh_xdp_chained').testRunSync({ data: syn });
    assert.equal(verdictOf('xdp', retval), 'drop');
    assert.equal(dp.services.readGlobalCounters()[GlobalStat.ChainBadMeta]! - before, 1n);
  });
});
