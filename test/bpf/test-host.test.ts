// The test host datapath (test_host.c) run with BPF_PROG_RUN: its verdict
// for a Service with backends, its tail call into zerohold's chained
// programs, and its drop when the slot is empty or the id is not listed.

import assert from 'node:assert/strict';
import { mkdirSync, rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';

import { Datapath } from '../../src/datapath/datapath.js';
import { Hook } from '../../src/datapath/layout.js';
import { FrameRunner } from '../lib/harness.js';
import { buildFrame, TCP_SYN } from '../lib/packets.js';
import { HostStat, TestHost } from '../lib/test-host.js';

const XDP_DROP = 1;
const XDP_PASS = 2;
const TC_ACT_OK = 0;
const TC_ACT_SHOT = 2;

const SERVICE = 9;
const FRONTEND = { address: '198.19.0.20', protocol: 'tcp', port: 80 } as const;
const pinDir = `/sys/fs/bpf/zh-test-host-unit-${process.pid}`;

let host: TestHost;
let dp: Datapath;
let runner: FrameRunner;

function u32(value: number): Buffer {
  const buffer = Buffer.alloc(4);
  buffer.writeUInt32LE(value);
  return buffer;
}

function runHost(hook: 'xdp' | 'tc', frame: Buffer) {
  const { retval } = host.bpfObject.program(hook === 'xdp' ? 'test_host_xdp' : 'test_host_tc').testRunSync({ data: frame });
  return { retval: retval | 0, ...runner.collect() };
}

before(async () => {
  mkdirSync(pinDir, { recursive: true });
  host = await TestHost.load(pinDir);
  dp = await Datapath.open({ maxServices: 16, chainPinDir: pinDir });
  runner = new FrameRunner(dp);
  dp.configureService(SERVICE, { state: 'cold', wakeIntervalMs: 0 });
  host.bpfObject.map('zh_chain_svcs').update(u32(SERVICE), u32(0));
});

after(async () => {
  await dp?.close();
  host?.close();
  rmSync(pinDir, { recursive: true, force: true });
});

const syn = buildFrame({ src: '198.18.0.1', dst: FRONTEND.address, tcp: { srcPort: 40000, dstPort: 80, flags: TCP_SYN } });
const other = buildFrame({ src: '198.18.0.1', dst: '198.19.0.99', tcp: { srcPort: 40000, dstPort: 80, flags: TCP_SYN } });

describe('test host', () => {
  test('unknown destination passes', () => {
    host.setService(FRONTEND, SERVICE, 0);
    assert.equal(runHost('xdp', other).retval, XDP_PASS);
    assert.equal(runHost('tc', other).retval, TC_ACT_OK);
  });

  test('empty slot falls back to drop', () => {
    const before = host.stat(HostStat.Fallback);
    assert.equal(runHost('xdp', syn).retval, XDP_DROP);
    assert.equal(runHost('tc', syn).retval, TC_ACT_SHOT);
    assert.equal(host.stat(HostStat.Fallback) - before, 2n);
  });

  test('service with backends passes', () => {
    host.setService(FRONTEND, SERVICE, 2);
    try {
      assert.equal(runHost('xdp', syn).retval, XDP_PASS);
      assert.equal(runHost('tc', syn).retval, TC_ACT_OK);
    } finally {
      host.setService(FRONTEND, SERVICE, 0);
    }
  });

  for (const [hook, expected] of [['xdp', Hook.ChainXdp], ['tc', Hook.ChainTc]] as const) {
    test(`${hook} tail call holds the SYN`, () => {
      dp.installChained(pinDir);
      const before = host.stat(HostStat.Fallback);
      const out = runHost(hook, syn);

      assert.equal(out.retval, hook === 'xdp' ? XDP_DROP : TC_ACT_SHOT);
      assert.equal(out.held.length, 1);
      assert.equal(out.held[0]!.hook, expected);
      assert.equal(out.held[0]!.serviceId, SERVICE);
      assert.equal(host.stat(HostStat.Fallback), before, 'the host fallback did not run');
    });
  }

  test('unlisted id skips the tail call', () => {
    host.bpfObject.map('zh_chain_svcs').delete(u32(SERVICE));
    try {
      const calls = host.stat(HostStat.ChainCalls);
      const out = runHost('xdp', syn);

      assert.equal(out.retval, XDP_DROP);
      assert.equal(out.held.length, 0);
      assert.equal(host.stat(HostStat.ChainCalls), calls);
    } finally {
      host.bpfObject.map('zh_chain_svcs').update(u32(SERVICE), u32(0));
    }
  });
});
