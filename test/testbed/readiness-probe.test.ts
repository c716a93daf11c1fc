// Privileged tests of tcpSocket readiness probes: a ReadinessProbe with its
// TcpProber in a network namespace that each test creates, against a real
// HTTP server on the namespace's loopback address.

import assert from 'node:assert/strict';
import { readlinkSync, statSync } from 'node:fs';
import { after, test } from 'node:test';

import type { V1Probe } from '@kubernetes/client-node';

import { netnsPath, TestNetwork, waitFor } from '../lib/netns.js';
import { startHttpServer } from '../lib/servers.js';
import { ReadinessProbe } from './readiness-probe.js';

const network = new TestNetwork();
after(() => network.cleanup());

const PORT = 8080;
const PERIOD_MS = 20;

interface ProbeRun {
  probe: ReadinessProbe;
  // Every readiness change, in order.
  changes: boolean[];
}

function startProbe(ns: string, probe: V1Probe): ProbeRun {
  const changes: boolean[] = [];
  const container = { name: 'server', ports: [{ name: 'http', containerPort: PORT }] };
  const readiness = new ReadinessProbe(probe, { netns: ns, podIP: '127.0.0.1', container, env: {} }, PERIOD_MS, (ready) => changes.push(ready));
  readiness.start();
  return { probe: readiness, changes };
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

test('readiness probe tcpSocket turns ready after listen', async (t) => {
  const ns = await network.addNamespace('probe');
  const { probe, changes } = startProbe(ns, { tcpSocket: { port: 'http' } });
  t.after(() => probe.stop());
  const pid = await waitFor('a prober PID', () => probe.proberPid);

  await new Promise((resolve) => setTimeout(resolve, 5 * PERIOD_MS));
  assert.deepEqual(changes, [], 'not ready before the server listens');

  await startHttpServer(network, ns, '127.0.0.1', PORT, 'ok');
  await waitFor('the probe to turn ready', () => (probe.ready ? true : undefined), 5000, 1);
  assert.deepEqual(changes, [true]);
  assert.equal(probe.proberPid, pid, 'one prober for the whole run');
  assert.equal(readlinkSync(`/proc/${pid}/ns/net`), `net:[${statSync(netnsPath(ns)).ino}]`, 'prober in the pod namespace');
});

test('readiness probe tcpSocket failure threshold', async (t) => {
  const ns = await network.addNamespace('probe');
  const server = await startHttpServer(network, ns, '127.0.0.1', PORT, 'ok');
  const { probe, changes } = startProbe(ns, { tcpSocket: { port: PORT }, failureThreshold: 3 });
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

test('readiness probe stop kills prober', async () => {
  const ns = await network.addNamespace('probe');
  const { probe } = startProbe(ns, { tcpSocket: { port: PORT } });
  const pid = await waitFor('a prober PID', () => probe.proberPid);

  await probe.stop();

  assert.equal(isAlive(pid), false);
  assert.equal(probe.proberPid, undefined);
});

test('readiness probe respawns crashed prober', async (t) => {
  const ns = await network.addNamespace('probe');
  await startHttpServer(network, ns, '127.0.0.1', PORT, 'ok');
  const { probe, changes } = startProbe(ns, { tcpSocket: { port: PORT }, failureThreshold: 1 });
  t.after(() => probe.stop());
  await waitFor('the probe to turn ready', () => (probe.ready ? true : undefined), 5000, 1);
  const firstPid = probe.proberPid!;

  process.kill(firstPid, 'SIGKILL');
  const secondPid = await waitFor('a new prober', () => (probe.proberPid !== undefined && probe.proberPid !== firstPid ? probe.proberPid : undefined), 5000);
  await waitFor('the probe to turn ready again', () => (probe.ready ? true : undefined), 5000, 1);

  assert.ok(isAlive(secondPid), 'new prober alive');
  assert.deepEqual(changes, [true, false, true], 'the crash counts as a failed attempt');
});
