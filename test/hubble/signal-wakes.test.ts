import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { create } from '@bufbuild/protobuf';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';

import type { WakeSignal } from '../../src/agent/ports.js';
import { Backoff } from '../../src/hubble/backoff.js';
import { CiliumEventTypeSchema, DropReason, FlowSchema, Verdict, type Flow } from '../../src/hubble/gen/flow/flow_pb.js';
import { serviceNameOf, SignalDatapath } from '../../src/hubble/signal-wakes.js';
import { waitFor } from '../lib/netns.js';
import { serviceFlow } from './flows.js';
import { captureLog } from './log-capture.js';
import { TestHubbleServer } from './test-server.js';

const UNIX_NOW = 1_000_000;
const OFFSET = 500_000;

let dir: string;

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'zerohold-signal-'));
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

interface Setup {
  server: TestHubbleServer;
  datapath: SignalDatapath;
  wakes: WakeSignal[];
  clock: { monotonicMs: number };
}

async function setup(name: string): Promise<Setup> {
  const socket = path.join(dir, `${name}.sock`);
  const server = new TestHubbleServer({ address: { kind: 'socket', path: socket } });
  await server.start();
  const clock = { monotonicMs: UNIX_NOW - OFFSET };
  const datapath = new SignalDatapath({
    endpoint: { kind: 'socket', path: socket },
    logger: captureLog().logger,
    backoff: () => new Backoff({ initialMs: 20, maxMs: 200 }),
    since: new Date(0),
    wakeIntervalMs: 1000,
    monotonicNow: () => clock.monotonicMs,
    unixNow: () => clock.monotonicMs + OFFSET,
  });
  const wakes: WakeSignal[] = [];
  datapath.onWake((signal) => wakes.push(signal));
  datapath.setFrontends('shop/web', [{ address: '198.19.0.10', protocol: 'tcp', port: 80 }], true);
  datapath.setFrontends('shop/api', [{ address: '198.19.0.11', protocol: 'tcp', port: 'any' }], true);
  datapath.start();
  await waitFor('the stream', () => (datapath.state === 'streaming' && server.openStreams === 1 ? true : undefined));
  return { server, datapath, wakes, clock };
}

async function teardown({ server, datapath }: Setup): Promise<void> {
  datapath.stop();
  await server.stop();
}

// A drop of a client's SYN to a Service without backends, as Cilium
// reports it with serviceNoBackendResponse=drop.
function noBackendDrop(serviceIp: string, port: number, uuid: string, service = 'web'): Flow {
  const flow = create(FlowSchema, serviceFlow({ namespace: 'shop', service, serviceIp, port, verdict: Verdict.DROPPED, uuid, time: timestampFromMs(UNIX_NOW - 200) }));
  flow.eventType = create(CiliumEventTypeSchema, { type: 1, subType: DropReason.SERVICE_BACKEND_NOT_FOUND });
  return flow;
}

test('signal drop wakes workload once', async () => {
  const context = await setup('wake');
  const { server, datapath, wakes } = context;

  try {
    server.publish(noBackendDrop('198.19.0.10', 80, 'first'));
    // A retransmission within the wake interval.
    server.publish(noBackendDrop('198.19.0.10', 80, 'retransmit'));
    await waitFor('both drops', () => (datapath.stats.flows >= 2 ? true : undefined));

    assert.equal(wakes.length, 1);
    assert.equal(wakes[0]!.workload, 'shop/web');
    assert.deepEqual(wakes[0]!.flow, { protocol: 'tcp', source: '198.18.1.10', sourcePort: 40000, destination: '198.19.0.10', destinationPort: 80 });
    assert.equal(wakes[0]!.atMs, UNIX_NOW - 200 - OFFSET);
    assert.equal(datapath.suppressedWakes, 1);
  } finally {
    await teardown(context);
  }
});

test('signal wakes again after interval', async () => {
  const context = await setup('interval');
  const { server, datapath, wakes, clock } = context;

  try {
    server.publish(noBackendDrop('198.19.0.10', 80, 'first'));
    await waitFor('the first wake', () => (wakes.length >= 1 ? true : undefined));

    clock.monotonicMs += 1000;
    server.publish(noBackendDrop('198.19.0.10', 80, 'later'));
    await waitFor('the second wake', () => (wakes.length >= 2 ? true : undefined));

    assert.equal(datapath.suppressedWakes, 0);
  } finally {
    await teardown(context);
  }
});

test('signal matches any-port frontend', async () => {
  const context = await setup('any-port');
  const { server, wakes } = context;

  try {
    server.publish(noBackendDrop('198.19.0.11', 8443, 'api', 'api'));
    await waitFor('the wake', () => (wakes.length >= 1 ? true : undefined));

    assert.equal(wakes[0]!.workload, 'shop/api');
  } finally {
    await teardown(context);
  }
});

test('signal ignores other drops', async () => {
  const context = await setup('ignore');
  const { server, datapath, wakes } = context;

  try {
    // Another drop reason to a managed frontend.
    const policy = noBackendDrop('198.19.0.10', 80, 'policy');
    policy.dropReasonDesc = DropReason.POLICY_DENIED;
    server.publish(policy);
    // A forwarded flow to a managed frontend.
    server.publish(serviceFlow({ namespace: 'shop', service: 'web', serviceIp: '198.19.0.10', uuid: 'forwarded' }));
    // A drop to an address that no workload has.
    server.publish(noBackendDrop('198.19.0.99', 80, 'unmanaged', 'cart'));
    // A drop to a managed address on a port that is not a frontend.
    server.publish(noBackendDrop('198.19.0.10', 8080, 'other-port'));
    // Sent last: the wake shows that the stream delivered the flows before it.
    server.publish(noBackendDrop('198.19.0.11', 80, 'marker', 'api'));
    await waitFor('the marker wake', () => (wakes.length >= 1 ? true : undefined));
    await new Promise((resolve) => setTimeout(resolve, 50));

    assert.deepEqual(
      wakes.map((wake) => wake.workload),
      ['shop/api'],
    );
    assert.equal(datapath.stats.flows, 2, 'the server sends only the two drops with reason 158 to managed addresses');
  } finally {
    await teardown(context);
  }
});

test('signal matches service name', async () => {
  const context = await setup('names');
  const { server, datapath, wakes } = context;

  try {
    datapath.setServices('shop/web', ['shop/web']);
    await waitFor('a call with the name filter', () => (server.requests.length >= 2 && server.openStreams === 1 ? true : undefined));
    // A LoadBalancer address that the workload's frontends do not list.
    server.publish(noBackendDrop('198.19.5.5', 443, 'lb'));
    await waitFor('the wake', () => (wakes.length >= 1 ? true : undefined));

    assert.equal(wakes[0]!.workload, 'shop/web');
    assert.deepEqual(server.requests[1]!.whitelist[1]!.destinationService, ['shop/web']);
    assert.deepEqual(server.requests[1]!.whitelist[1]!.dropReasonDesc, [DropReason.SERVICE_BACKEND_NOT_FOUND]);
  } finally {
    await teardown(context);
  }
});

test('signal datapath holds nothing', async () => {
  const datapath = new SignalDatapath({ endpoint: { kind: 'socket', path: '/nonexistent/hubble.sock' }, logger: captureLog().logger });
  datapath.setFrontends('shop/web', [{ address: '198.19.0.10', protocol: 'tcp', port: 80 }], true);

  datapath.closeGate('shop/web');
  const outcome = await datapath.release('shop/web');

  assert.deepEqual(outcome, { released: [], failed: [] });
  assert.deepEqual(datapath.heldFlows(), []);
  assert.deepEqual(datapath.expireHeld('shop/web', 0), []);
});

test('service name of flow', () => {
  assert.equal(serviceNameOf(create(FlowSchema, { destinationService: { namespace: 'shop', name: 'web' } })), 'shop/web');
  assert.equal(serviceNameOf(create(FlowSchema, {})), undefined);
});
