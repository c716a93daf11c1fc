// connectProbe() against real sockets, from the client namespace of
// test/lib/probe-targets.ts to its node namespace. The probe connects from
// inside the client namespace through its netns argument, while this
// process stays in its own.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { connectProbe } from '../../src/agent/connect-probe.js';
import { netnsPath } from '../lib/netns.js';
import { buildProbeTargets, CLOSED_PORT, DROPPED_PORT, LISTENING_PORT } from '../lib/probe-targets.js';
import { NODE_V4, NODE_V6, type Topology } from '../lib/topology.js';


let topology: Topology;
let clientNetns: string;

before(async () => {
  topology = await buildProbeTargets();
  clientNetns = netnsPath(topology.client);
});

after(() => topology?.network.cleanup());

test('listening server completes handshake', async () => {
  assert.equal(await connectProbe(NODE_V4, LISTENING_PORT, 1000, clientNetns), null);
  assert.equal(await connectProbe(NODE_V6, LISTENING_PORT, 1000, clientNetns), null);
});

test('closed port answers with reset', async () => {
  assert.equal(await connectProbe(NODE_V4, CLOSED_PORT, 1000, clientNetns), 'ECONNREFUSED');
  assert.equal(await connectProbe(NODE_V6, CLOSED_PORT, 1000, clientNetns), 'ECONNREFUSED');
});

test('unanswered SYN ends at timeout', async () => {
  const startedMs = performance.now();

  const outcome = await connectProbe(NODE_V4, DROPPED_PORT, 150, clientNetns);

  const elapsedMs = performance.now() - startedMs;
  assert.equal(outcome, 'ETIMEDOUT');
  assert.ok(elapsedMs >= 145, `probe returned after ${elapsedMs.toFixed(1)} ms, before its 150 ms timeout`);
  assert.ok(elapsedMs < 1000, `probe returned after ${elapsedMs.toFixed(1)} ms, want about 150`);
});

test('unroutable address fails at once', async () => {
  // The client namespace routes only its own /24 and the Service ranges.
  assert.equal(await connectProbe('198.18.99.1', LISTENING_PORT, 1000, clientNetns), 'ENETUNREACH');
});

test('probe acts in the named namespace', async () => {
  // The node's address is local inside the node namespace too, where the
  // same listener accepts. From the client namespace it is remote.
  assert.equal(await connectProbe(NODE_V4, LISTENING_PORT, 1000, netnsPath(topology.node)), null);
  assert.equal(await connectProbe('127.0.0.1', LISTENING_PORT, 1000, clientNetns), 'ECONNREFUSED');
});

test('host name is rejected unresolved', async () => {
  // A name would make net.connect() resolve it through DNS.
  await assert.rejects(connectProbe('web.demo', 80, 1000), /invalid probe address "web\.demo": expected a numeric IPv4 or IPv6 address/);
});

test('port out of range is rejected', async () => {
  await assert.rejects(connectProbe(NODE_V4, 70000, 1000), /invalid probe port 70000: expected an integer from 1 to 65535/);
});

test('missing namespace rejects with its path', async () => {
  await assert.rejects(connectProbe(NODE_V4, 80, 1000, '/run/netns/zh-no-such-netns'), (err: NodeJS.ErrnoException) => {
    assert.equal(err.code, 'ENOENT');
    assert.match(err.message, /\/run\/netns\/zh-no-such-netns/);
    return true;
  });
});
