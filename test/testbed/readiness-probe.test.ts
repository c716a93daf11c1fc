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
