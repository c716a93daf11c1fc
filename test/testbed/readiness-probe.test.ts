// Privileged tests of tcpSocket readiness probes: ReadinessProbes and the
// node's TcpProber in a network namespace that each test creates, against a
// real HTTP server on the namespace's loopback address.

import assert from 'node:assert/strict';
import { readlinkSync, statSync } from 'node:fs';
import { after, test } from 'node:test';

import type { V1Probe } from '@kubernetes/client-node';

import { netnsPath, TestNetwork, waitFor } from '../lib/netns.js';
import { startHttpServer } from '../lib/servers.js';
import { ReadinessProbe } from './readiness-probe.js';
import { TcpProber } from './tcp-prober.js';

const network = new TestNetwork();
after(() => network.cleanup());

const PORT = 8080;
const PERIOD_MS = 20;

interface ProbeRun {
  probe: ReadinessProbe;
  // Every readiness change, in order.
  changes: boolean[];
}

function startProbe(prober: TcpProber, probe: V1Probe, port = PORT): ProbeRun {
  const changes: boolean[] = [];
  const container = { name: 'server', ports: [{ name: 'http', containerPort: port }] };
  const readiness = new ReadinessProbe(probe, { netns: '', podIP: '127.0.0.1', container, env: {} }, PERIOD_MS, prober, (ready) => changes.push(ready));
  readiness.start();
  return { probe: readiness, changes };
}

// A node namespace with its prober, stopped when the test ends.
async function startNode(t: { after: (fn: () => unknown) => void }): Promise<{ ns: string; prober: TcpProber }> {
  const ns = await network.addNamespace('probe');
  const prober = new TcpProber(ns);
  prober.start();
  t.after(() => prober.stop());
  return { ns, prober };
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

test('readiness probe tcpSocket turns ready after listen', async (t) => {
  const { ns, prober } = await startNode(t);
  const pid = await waitFor('a prober PID', () => prober.pid);
  const { probe, changes } = startProbe(prober, { tcpSocket: { port: 'http' } });
  t.after(() => probe.stop());

  await sleep(5 * PERIOD_MS);
  assert.deepEqual(changes, [], 'not ready before the server listens');

  await startHttpServer(network, ns, '127.0.0.1', PORT, 'ok');
  await waitFor('the probe to turn ready', () => (probe.ready ? true : undefined), 5000, 1);
  assert.deepEqual(changes, [true]);
  assert.equal(prober.pid, pid, 'one prober for the whole run');
  assert.equal(readlinkSync(`/proc/${pid}/ns/net`), `net:[${statSync(netnsPath(ns)).ino}]`, 'prober in the node namespace');
});

test('readiness probe tcpSocket failure threshold', async (t) => {
  const { ns, prober } = await startNode(t);
  const server = await startHttpServer(network, ns, '127.0.0.1', PORT, 'ok');
  const { probe, changes } = startProbe(prober, { tcpSocket: { port: PORT }, failureThreshold: 3 });
  t.after(() => probe.stop());
  await waitFor('the probe to turn ready', () => (probe.ready ? true : undefined), 5000, 1);

  const killedAt = performance.now();
  process.kill(server.pid!, 'SIGKILL');
  await waitFor('the probe to turn not ready', () => (probe.ready ? undefined : true), 5000, 1);
  const elapsedMs = performance.now() - killedAt;

  assert.deepEqual(changes, [true, false]);
  // Three failed attempts start one period apart, so the third comes at
  // least two periods after the server died.
  assert.ok(elapsedMs >= 2 * PERIOD_MS, `got not ready ${elapsedMs.toFixed(1)} ms after the kill, want at least ${2 * PERIOD_MS}`);
});

test('readiness probe stop ends only its own probe', async (t) => {
  const { ns, prober } = await startNode(t);
  const stopped = startProbe(prober, { tcpSocket: { port: PORT } });
  const running = startProbe(prober, { tcpSocket: { port: PORT } });
  t.after(() => running.probe.stop());
  const pid = await waitFor('a prober PID', () => prober.pid);

  stopped.probe.stop();
  await startHttpServer(network, ns, '127.0.0.1', PORT, 'ok');
  await waitFor('the running probe to turn ready', () => (running.probe.ready ? true : undefined), 5000, 1);
  await sleep(5 * PERIOD_MS);

  assert.deepEqual(stopped.changes, [], 'no result after stop()');
  assert.equal(stopped.probe.ready, false);
  assert.deepEqual(running.changes, [true]);
  assert.ok(isAlive(pid), 'the prober serves the other probes');

  await prober.stop();
  assert.equal(isAlive(pid), false, 'stop() kills the prober');
  assert.equal(prober.pid, undefined);
});

test('readiness probe counts a crashed prober as a failure', async (t) => {
  const { ns, prober } = await startNode(t);
  await startHttpServer(network, ns, '127.0.0.1', PORT, 'ok');
  const { probe, changes } = startProbe(prober, { tcpSocket: { port: PORT }, failureThreshold: 1 });
  t.after(() => probe.stop());
  await waitFor('the probe to turn ready', () => (probe.ready ? true : undefined), 5000, 1);
  const firstPid = prober.pid!;

  process.kill(firstPid, 'SIGKILL');
  const secondPid = await waitFor('a new prober', () => (prober.pid !== undefined && prober.pid !== firstPid ? prober.pid : undefined), 5000);
  await waitFor('the probe to turn ready again', () => (probe.ready ? true : undefined), 5000, 1);

  assert.ok(isAlive(secondPid), 'new prober alive');
  assert.deepEqual(changes, [true, false, true], 'the crash counts as a failed attempt');
});

test('tcp prober reports repeatLimit equal results in a row', async (t) => {
  const { ns, prober } = await startNode(t);
  const results: boolean[] = [];
  prober.add({ host: '127.0.0.1', port: PORT, periodMs: 2, timeoutMs: 1000, initialDelayMs: 0, repeatLimit: 3 }, (succeeded) => results.push(succeeded));

  // At a 2 ms period, 100 ms make about 50 attempts.
  await sleep(100);
  assert.deepEqual(results, [false, false, false]);

  await startHttpServer(network, ns, '127.0.0.1', PORT, 'ok');
  await waitFor('three successes', () => (results.length >= 6 ? true : undefined), 5000, 1);
  await sleep(100);
  assert.deepEqual(results, [false, false, false, true, true, true]);
});

test('tcp prober keeps the initial delay across a crash', async (t) => {
  const { ns, prober } = await startNode(t);
  await startHttpServer(network, ns, '127.0.0.1', PORT, 'ok');
  const firstPid = await waitFor('a prober PID', () => prober.pid);
  const results: { atMs: number; detail: string }[] = [];
  const addedAt = performance.now();
  prober.add({ host: '127.0.0.1', port: PORT, periodMs: PERIOD_MS, timeoutMs: 1000, initialDelayMs: 1500, repeatLimit: 1 }, (_succeeded, detail) => results.push({ atMs: performance.now() - addedAt, detail }));

  await sleep(300);
  process.kill(firstPid, 'SIGKILL');
  const success = await waitFor('a success after the restart', () => results.find((r) => r.detail === 'success'), 10_000, 5);

  assert.equal(results[0]?.detail, 'failure prober exited');
  // The new process starts about 1,300 ms after add(), and the 200 ms of
  // delay left end at 1,500 ms. Starting the delay over would give 2,800.
  assert.ok(success.atMs >= 1500, `first attempt ${success.atMs.toFixed(0)} ms after add(), want at least the 1,500 ms delay`);
  assert.ok(success.atMs < 2500, `first attempt ${success.atMs.toFixed(0)} ms after add(), want the delay not started over`);
});

test('tcp prober takes probes added during a restart', async (t) => {
  const { ns, prober } = await startNode(t);
  await startHttpServer(network, ns, '127.0.0.1', PORT, 'ok');
  const firstPid = await waitFor('a prober PID', () => prober.pid);

  process.kill(firstPid, 'SIGKILL');
  await waitFor('the prober to exit', () => (prober.pid === undefined ? true : undefined), 5000, 1);
  const results: boolean[] = [];
  prober.add({ host: '127.0.0.1', port: PORT, periodMs: PERIOD_MS, timeoutMs: 1000, initialDelayMs: 0, repeatLimit: 1 }, (succeeded) => results.push(succeeded));

  await waitFor('a success from the new prober', () => (results.includes(true) ? true : undefined), 5000, 5);
  assert.notEqual(prober.pid, firstPid);
  assert.deepEqual(results, [true], 'no failure for a probe added after the crash');
});

test('tcp prober restarts after stop and start', async (t) => {
  const { ns, prober } = await startNode(t);
  await startHttpServer(network, ns, '127.0.0.1', PORT, 'ok');
  const firstPid = await waitFor('a prober PID', () => prober.pid);

  // Not awaited, as an exit handler would not.
  void prober.stop();
  prober.start();
  const results: boolean[] = [];
  prober.add({ host: '127.0.0.1', port: PORT, periodMs: PERIOD_MS, timeoutMs: 1000, initialDelayMs: 0, repeatLimit: 1 }, (succeeded) => results.push(succeeded));

  await waitFor('a success', () => (results.includes(true) ? true : undefined), 5000, 5);
  assert.notEqual(prober.pid, firstPid, 'a new process');
  assert.deepEqual(results, [true], 'no failure from the stopped process');
});
