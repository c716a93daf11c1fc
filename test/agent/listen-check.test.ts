// ListenCheck with connectProbe() against real sockets, from the client
// namespace of test/lib/probe-targets.ts to its node namespace, where one
// test starts a server during the wait. test/agent/udp-bound-probe.test.ts
// checks UDP targets.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { pino } from 'pino';

import { connectProbe } from '../../src/agent/connect-probe.js';
import { ListenCheck, type ListenProbe, type ListenTarget } from '../../src/agent/listen-check.js';
import { netnsPath } from '../lib/netns.js';
import { buildProbeTargets, CLOSED_PORT, DROPPED_PORT, LISTENING_PORT } from '../lib/probe-targets.js';
import { startHttpServer } from '../lib/servers.js';
import { NODE_V4, NODE_V6, type Topology } from '../lib/topology.js';

const log = pino({ level: process.env.ZH_TEST_LOG ?? 'silent' });

const LATE_PORT = 8081;
const SHARED_PORT = 8085;

let topology: Topology;
let check: ListenCheck;

const tcpProbe: ListenProbe = (target, timeoutMs, netns) => connectProbe(target.address, target.port, timeoutMs, netns);

function tcp(address: string, port: number): ListenTarget {
  return { address, port, protocol: 'tcp' };
}

before(async () => {
  topology = await buildProbeTargets();
  check = new ListenCheck({ probe: tcpProbe, log, netns: netnsPath(topology.client), probeTimeoutMs: 100 });
});

after(() => topology?.network.cleanup());

test('listening endpoints pass at once', async () => {
  const startedMs = performance.now();

  const outcome = await check.wait([tcp(NODE_V4, LISTENING_PORT), tcp(NODE_V6, LISTENING_PORT)], 5000);

  assert.equal(outcome.listening.length, 2);
  assert.deepEqual([outcome.unknown, outcome.refusing], [[], []]);
  assert.ok(performance.now() - startedMs < 100);
});

test('wait ends once the server listens', async () => {
  const startedMs = performance.now();
  const late = new Promise<number>((resolve) => {
    setTimeout(() => void startHttpServer(topology.network, topology.node, NODE_V4, LATE_PORT, 'late').then(() => resolve(performance.now())), 300);
  });

  const outcome = await check.wait([tcp(NODE_V4, LATE_PORT)], 5000);
  const endedMs = performance.now();
  const listeningMs = await late;

  assert.deepEqual(outcome.listening, [tcp(NODE_V4, LATE_PORT)]);
  assert.ok(endedMs - startedMs >= 300, `ended ${(endedMs - startedMs).toFixed(0)} ms after the start, before the server listened`);
  // The server's "listening" line reaches this process a little after its
  // listen(), so the wait may end before the line arrives.
  assert.ok(endedMs - listeningMs < 100, `ended ${(endedMs - listeningMs).toFixed(0)} ms after the server listened`);
});

test('refusing port reported at timeout', async () => {
  const startedMs = performance.now();

  const outcome = await check.wait([tcp(NODE_V4, CLOSED_PORT)], 300);

  const elapsedMs = performance.now() - startedMs;
  assert.deepEqual(outcome.refusing, [tcp(NODE_V4, CLOSED_PORT)]);
  assert.ok(elapsedMs >= 280, `refusing reported after ${elapsedMs.toFixed(0)} ms, before the 300 ms timeout`);
  assert.ok(elapsedMs < 600, `refusing reported after ${elapsedMs.toFixed(0)} ms, want about 300`);
});

test('unanswered probe cannot tell', async () => {
  const startedMs = performance.now();

  const outcome = await check.wait([tcp(NODE_V4, DROPPED_PORT), tcp(NODE_V4, LISTENING_PORT)], 5000);

  assert.deepEqual(outcome.unknown, [{ target: tcp(NODE_V4, DROPPED_PORT), error: 'ETIMEDOUT' }]);
  assert.deepEqual(outcome.listening, [tcp(NODE_V4, LISTENING_PORT)]);
  assert.ok(performance.now() - startedMs < 500, 'one probe timeout, not the wait timeout');
});

test('cancelled wait stops probing', async () => {
  let cancelled = false;
  setTimeout(() => (cancelled = true), 100);
  const startedMs = performance.now();

  const outcome = await check.wait([tcp(NODE_V4, CLOSED_PORT)], 5000, () => cancelled);

  assert.deepEqual(outcome.refusing, [tcp(NODE_V4, CLOSED_PORT)]);
  assert.ok(performance.now() - startedMs < 500, 'ended soon after the cancellation');
});

test('probe failing to start is unknown', async () => {
  const broken = new ListenCheck({ probe: tcpProbe, log, netns: '/run/netns/zh-no-such-netns' });

  const outcome = await broken.wait([tcp(NODE_V4, LISTENING_PORT)], 5000);

  assert.deepEqual(outcome.unknown, [{ target: tcp(NODE_V4, LISTENING_PORT), error: 'ENOENT' }]);
});

test('one listener shortens the others\' wait', async () => {
  // Two endpoints on the same port: one listens, the other refuses.
  const second = '198.18.1.3';
  await topology.network.exec(topology.node, 'ip', ['addr', 'add', `${second}/24`, 'dev', 'n0']);
  await startHttpServer(topology.network, topology.node, NODE_V4, SHARED_PORT, 'one');
  const graced = new ListenCheck({ probe: tcpProbe, log, netns: netnsPath(topology.client), graceMs: 300 });
  const startedMs = performance.now();

  const outcome = await graced.wait([tcp(NODE_V4, SHARED_PORT), tcp(second, SHARED_PORT)], 5000);

  const elapsedMs = performance.now() - startedMs;
  assert.deepEqual(outcome.listening, [tcp(NODE_V4, SHARED_PORT)]);
  assert.deepEqual(outcome.refusing, [tcp(second, SHARED_PORT)]);
  assert.ok(elapsedMs >= 280, `ended after ${elapsedMs.toFixed(0)} ms, before the 300 ms grace`);
  assert.ok(elapsedMs < 1000, `ended after ${elapsedMs.toFixed(0)} ms, want about 300`);
});

test('attempts share one rate limit', async () => {
  // 200 endpoints that all refuse: each is tried at least once, and all
  // together no more than the burst plus 1,000 a second.
  let attempts = 0;
  const counting = new ListenCheck({
    probe: (...args) => {
      attempts++;
      return tcpProbe(...args);
    },
    log,
    netns: netnsPath(topology.client),
  });
  const targets = Array.from({ length: 200 }, (_, i) => tcp(NODE_V4, 20000 + i));
  const startedMs = performance.now();

  const outcome = await counting.wait(targets, 500);

  const elapsedMs = performance.now() - startedMs;
  assert.equal(outcome.refusing.length, 200);
  assert.ok(attempts >= 200, `${attempts} attempts`);
  assert.ok(attempts <= 64 + elapsedMs + 50, `${attempts} attempts in ${elapsedMs.toFixed(0)} ms, want at most 64 plus 1 per ms`);
});

