import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { timestampFromMs } from '@bufbuild/protobuf/wkt';

import { HubbleActivity, MAX_FLOW_DELAY_MS } from '../../src/hubble/activity.js';
import { Backoff } from '../../src/hubble/backoff.js';
import { Verdict } from '../../src/hubble/gen/flow/flow_pb.js';
import { waitFor } from '../lib/netns.js';
import { serviceFlow } from './flows.js';
import { captureLog } from './log-capture.js';
import { TestHubbleServer } from './test-server.js';

// Fixed clocks: Unix time 1,000,000 ms is CLOCK_MONOTONIC 500,000 ms, so a
// flow at Unix time T counts as activity at T - 500,000.
const UNIX_NOW = 1_000_000;
const MONOTONIC_NOW = 500_000;
const OFFSET = UNIX_NOW - MONOTONIC_NOW;

let dir: string;

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'zerohold-activity-'));
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

interface Setup {
  server: TestHubbleServer;
  activity: HubbleActivity;
  log: ReturnType<typeof captureLog>;
}

async function setup(name: string): Promise<Setup> {
  const socket = path.join(dir, `${name}.sock`);
  const server = new TestHubbleServer({ address: { kind: 'socket', path: socket } });
  await server.start();
  const log = captureLog();
  const activity = new HubbleActivity({
    endpoint: { kind: 'socket', path: socket },
    logger: log.logger,
    backoff: () => new Backoff({ initialMs: 20, maxMs: 200 }),
    since: new Date(0),
    monotonicNow: () => MONOTONIC_NOW,
    unixNow: () => UNIX_NOW,
  });
  activity.setWorkloads(
    new Map([
      ['shop/web', ['shop/web']],
      ['shop/api', ['shop/api', 'shop/api-admin']],
    ]),
  );
  activity.start();
  return { server, activity, log };
}

async function teardown({ server, activity }: Setup): Promise<void> {
  activity.stop();
  await server.stop();
}

function publishAt(server: TestHubbleServer, service: string, unixMs: number, verdict = Verdict.FORWARDED, uuid?: string): void {
  server.publish(serviceFlow({ namespace: 'shop', service, serviceIp: '198.19.0.10', verdict, time: timestampFromMs(unixMs), uuid }));
}

test('activity follows scripted flows', async () => {
  const context = await setup('follow');
  const { server, activity } = context;

  try {
    assert.equal(activity.lastActivity('shop/web'), undefined);

    publishAt(server, 'web', 975_000);
    publishAt(server, 'web', 990_000);
    // Older than the latest flow: must not move the time back.
    publishAt(server, 'web', 980_000);
    publishAt(server, 'api-admin', 995_000);
    await waitFor('4 flows', () => (activity.stats.flows >= 4 ? true : undefined));

    assert.equal(activity.lastActivity('shop/web'), 990_000 - OFFSET);
    assert.equal(activity.lastActivity('shop/api'), 995_000 - OFFSET);
  } finally {
    await teardown(context);
  }
});

test('activity ignores drops and other services', async () => {
  const context = await setup('ignore');
  const { server, activity } = context;

  try {
    publishAt(server, 'web', 980_000);
    publishAt(server, 'web', 985_000, Verdict.DROPPED);
    // Passes Hubble's prefix filter "shop/web", but is another Service.
    publishAt(server, 'web-canary', 990_000);
    publishAt(server, 'cart', 995_000);
    await waitFor('the canary flow', () => (activity.stats.flows >= 2 ? true : undefined));
    await new Promise((resolve) => setTimeout(resolve, 50));

    assert.equal(activity.lastActivity('shop/web'), 980_000 - OFFSET);
    assert.equal(activity.stats.flows, 2, 'the server filters out the drop and shop/cart');
  } finally {
    await teardown(context);
  }
});

test('activity counts replies', async () => {
  const context = await setup('replies');
  const { server, activity } = context;

  try {
    // A reply from the Service's backend to the client.
    server.publish({
      time: timestampFromMs(970_000),
      verdict: Verdict.FORWARDED,
      IP: { source: '198.18.2.20', destination: '198.18.1.10' },
      l4: { protocol: { case: 'TCP', value: { sourcePort: 80, destinationPort: 40000 } } },
      sourceService: { namespace: 'shop', name: 'web' },
      isReply: true,
    });
    await waitFor('activity from the reply', () => activity.lastActivity('shop/web'));

    assert.equal(activity.lastActivity('shop/web'), 970_000 - OFFSET);
  } finally {
    await teardown(context);
  }
});

test('activity caps future flow times', async () => {
  const context = await setup('future');
  const { server, activity } = context;

  try {
    publishAt(server, 'web', UNIX_NOW + 60_000);
    await waitFor('activity', () => activity.lastActivity('shop/web'));

    assert.equal(activity.lastActivity('shop/web'), MONOTONIC_NOW);
  } finally {
    await teardown(context);
  }
});

test('activity bounds the age of late flows', async () => {
  // A node whose clock runs 10 minutes behind stamps a live flow 10
  // minutes in the past.
  const context = await setup('behind');
  const { server, activity } = context;

  try {
    publishAt(server, 'web', UNIX_NOW - 600_000);
    await waitFor('activity', () => activity.lastActivity('shop/web'));

    assert.equal(activity.lastActivity('shop/web'), MONOTONIC_NOW - MAX_FLOW_DELAY_MS);
  } finally {
    await teardown(context);
  }
});

test('activity forgets removed workloads', async () => {
  const context = await setup('remove');
  const { server, activity } = context;

  try {
    publishAt(server, 'api', 900_000);
    await waitFor('activity', () => activity.lastActivity('shop/api'));

    // The new call resumes at most 10 s back, so these flows come later.
    activity.setWorkloads(new Map([['shop/web', ['shop/web']]]));
    await waitFor('a second call', () => (server.requests.length >= 2 ? true : undefined));
    publishAt(server, 'api', 995_000);
    publishAt(server, 'web', 996_000);
    await waitFor('web activity', () => activity.lastActivity('shop/web'));

    assert.equal(activity.lastActivity('shop/api'), undefined);
    assert.deepEqual(server.requests[1]!.whitelist[0]!.destinationService, ['shop/web']);
  } finally {
    await teardown(context);
  }
});

test('activity closes stream without workloads', async () => {
  const context = await setup('empty');
  const { server, activity } = context;

  try {
    await waitFor('the stream', () => (server.openStreams === 1 ? true : undefined));

    activity.setWorkloads(new Map());
    await waitFor('the stream to close', () => (server.openStreams === 0 ? true : undefined));

    assert.equal(activity.state, 'idle');
    assert.equal(server.requests.length, 1);
  } finally {
    await teardown(context);
  }
});

test('activity resumes after restart', async () => {
  const context = await setup('restart');
  const { server, activity, log } = context;

  try {
    publishAt(server, 'web', 975_000, Verdict.FORWARDED, 'before');
    await waitFor('activity before the restart', () => activity.lastActivity('shop/web'));

    await server.stop();
    await waitFor('the stream to notice', () => (activity.state === 'waiting' ? true : undefined));
    publishAt(server, 'web', 985_000, Verdict.FORWARDED, 'while-down');
    await server.start();
    await waitFor('activity from the flow published while down', () => (activity.lastActivity('shop/web') === 985_000 - OFFSET ? true : undefined));
    publishAt(server, 'api', 990_000, Verdict.FORWARDED, 'after');
    await waitFor('activity after the restart', () => activity.lastActivity('shop/api'));

    assert.equal(activity.lastActivity('shop/api'), 990_000 - OFFSET);
    assert.ok(activity.stats.disconnects >= 1);
    assert.ok(log.records.some((record) => record['msg'] === 'Hubble stream failed, reconnecting'));
  } finally {
    await teardown(context);
  }
});

test('activity skips garbled message', async () => {
  const context = await setup('garbled');
  const { server, activity, log } = context;

  try {
    await waitFor('the stream', () => (activity.state === 'streaming' && server.openStreams === 1 ? true : undefined));
    publishAt(server, 'web', 975_000);
    await waitFor('the first flow', () => activity.lastActivity('shop/web'));

    // Field 1 with wire type 7, which does not exist.
    server.sendRaw(Buffer.from([0x0f, 0x01, 0x02]));
    publishAt(server, 'web', 985_000);
    await waitFor('the flow after the garbled message', () => (activity.lastActivity('shop/web') === 985_000 - OFFSET ? true : undefined));

    assert.equal(activity.stats.garbled, 1);
    assert.equal(activity.stats.disconnects, 0);
    assert.ok(log.records.some((record) => record['msg'] === 'skipped a GetFlows message that failed to decode'));
  } finally {
    await teardown(context);
  }
});
