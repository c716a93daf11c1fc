import assert from 'node:assert/strict';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { create, fromBinary, toBinary, type MessageInitShape } from '@bufbuild/protobuf';
import { BinaryReader, BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import { timestampFromMs, timestampMs } from '@bufbuild/protobuf/wkt';

import type { Flow as DatapathFlow } from '../../src/datapath/records.js';
import { DropReason, FlowFilterSchema, FlowSchema, TraceObservationPoint, Verdict, type Flow } from '../../src/hubble/gen/flow/flow_pb.js';
import type { GetFlowsRequestSchema } from '../../src/hubble/gen/observer/observer_pb.js';
import { heldFlowMessage, type HeldFlowEvent } from '../../src/hubble/held-flow-messages.js';
import { isGarbled, ObserverClient } from '../../src/hubble/observer-client.js';
import { FOLLOW_QUEUE_LIMIT, ObserverServer, SOCKET_MODE } from '../../src/hubble/observer-server.js';
import { waitFor } from '../lib/netns.js';
import { captureLog } from './log-capture.js';

// Unix time 1,000,000 ms is CLOCK_MONOTONIC 500,000 ms.
const UNIX_NOW = 1_000_000;
const OFFSET = 500_000;

const webFlow: DatapathFlow = { protocol: 'tcp', source: '198.18.1.10', sourcePort: 40000, destination: '198.19.0.10', destinationPort: 80 };
const apiFlow: DatapathFlow = { protocol: 'udp', source: '198.18.1.11', sourcePort: 5353, destination: '198.19.0.11', destinationPort: 53 };

let dir: string;

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'zerohold-observer-'));
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

interface Setup {
  observer: ObserverServer;
  client: ObserverClient;
  socket: string;
}

async function setup(name: string, capacity?: number): Promise<Setup> {
  const socket = path.join(dir, name, 'hubble.sock');
  const observer = new ObserverServer({ nodeName: 'worker-1', logger: captureLog().logger, capacity, monotonicNow: () => UNIX_NOW - OFFSET, unixNow: () => UNIX_NOW });
  await observer.listen(socket);
  const client = await ObserverClient.connect({ kind: 'socket', path: socket });
  return { observer, client, socket };
}

async function teardown({ observer, client }: Setup): Promise<void> {
  client.close();
  await observer.close();
}

function recordThree(observer: ObserverServer): void {
  observer.record({ kind: 'held', workload: 'shop/web', service: 'shop/web', flow: webFlow, atMs: 400_000, interface: { index: 7, name: 'lxc1234' } });
  observer.record({ kind: 'released', workload: 'shop/web', service: 'shop/web', flow: webFlow, atMs: 401_000, heldForMs: 1000 });
  observer.record({ kind: 'expired', workload: 'shop/api', service: 'shop/api', flow: apiFlow, atMs: 402_000, heldForMs: 30_000 });
}

// Reads a GetFlows call without follow to its end.
async function readFlows(client: ObserverClient, request: MessageInitShape<typeof GetFlowsRequestSchema>): Promise<Flow[]> {
  const flows: Flow[] = [];
  const call = client.getFlows(request);
  for await (const message of call) {
    if (!isGarbled(message) && message.responseTypes.case === 'flow') flows.push(message.responseTypes.value);
  }
  return flows;
}

test('observer serves buffered flows', async () => {
  const context = await setup('buffered');
  recordThree(context.observer);

  try {
    const flows = await readFlows(context.client, {});

    assert.deepEqual(
      flows.map((flow) => flow.verdict),
      [Verdict.TRACED, Verdict.FORWARDED, Verdict.DROPPED],
    );
    const [held, , expired] = flows;
    assert.equal(timestampMs(held!.time!), 400_000 + OFFSET);
    assert.equal(held!.nodeName, 'worker-1');
    assert.equal(held!.IP?.source, '198.18.1.10');
    assert.equal(held!.IP?.destination, '198.19.0.10');
    assert.equal(held!.l4?.protocol.case, 'TCP');
    assert.equal(held!.l4?.protocol.value?.destinationPort, 80);
    assert.deepEqual(held!.eventType, { $typeName: 'flow.CiliumEventType', type: 4, subType: TraceObservationPoint.FROM_ENDPOINT });
    assert.equal(held!.destinationService?.name, 'web');
    assert.equal(held!.isReply, false);
    assert.equal(expired!.dropReasonDesc, DropReason.SERVICE_BACKEND_NOT_FOUND);
    assert.equal(expired!.eventType?.type, 1);
    assert.equal(expired!.l4?.protocol.case, 'UDP');
  } finally {
    await teardown(context);
  }
});

test('observer applies filters', async () => {
  const context = await setup('filters');
  recordThree(context.observer);

  try {
    const web = await readFlows(context.client, { whitelist: [{ destinationService: ['shop/web'] }] });
    const notDropped = await readFlows(context.client, { blacklist: [{ verdict: [Verdict.DROPPED] }] });
    const last = await readFlows(context.client, { number: 1n });
    const first = await readFlows(context.client, { number: 1n, first: true });
    const since = await readFlows(context.client, { since: { seconds: BigInt((401_000 + OFFSET) / 1000) } });

    assert.deepEqual(
      web.map((flow) => flow.verdict),
      [Verdict.TRACED, Verdict.FORWARDED],
    );
    assert.equal(notDropped.length, 2);
    assert.equal(last[0]!.verdict, Verdict.DROPPED);
    assert.equal(first[0]!.verdict, Verdict.TRACED);
    assert.equal(since.length, 2);
  } finally {
    await teardown(context);
  }
});

test('observer rejects invalid filter', async () => {
  const context = await setup('invalid');

  try {
    await assert.rejects(readFlows(context.client, { whitelist: [{ destinationIp: ['not-an-address'] }] }), /INVALID_ARGUMENT.*destination_ip/);
    await assert.rejects(readFlows(context.client, { whitelist: [{ protocol: ['tcpp'] }] }), /INVALID_ARGUMENT: unknown protocol filter "tcpp"/);
    await assert.rejects(readFlows(context.client, { first: true, follow: true }), /INVALID_ARGUMENT: invalid GetFlows request: first cannot be combined with follow/);
  } finally {
    await teardown(context);
  }
});

test('observer rejects unsupported filter field', async () => {
  const context = await setup('unsupported');
  recordThree(context.observer);

  // FlowFilter.source_label (field 10), as `hubble observe --from-label
  // app=none` sends it, which this endpoint's proto subset lacks.
  const label = new BinaryWriter().string('app=none').finish();
  const filter = create(FlowFilterSchema, {});
  filter.$unknown = [{ no: 10, wireType: WireType.LengthDelimited, data: label }];

  try {
    await assert.rejects(readFlows(context.client, { whitelist: [filter] }), /INVALID_ARGUMENT: unsupported FlowFilter field 10 in whitelist\[0\]/);
    await assert.rejects(readFlows(context.client, { blacklist: [filter] }), /INVALID_ARGUMENT: unsupported FlowFilter field 10 in blacklist\[0\]/);
  } finally {
    await teardown(context);
  }
});

test('observer ends follow at until', async () => {
  const context = await setup('follow-until');
  const { observer, client } = context;

  try {
    // until is 100 ms after the server's clock. Flows at atMs are at Unix
    // time atMs + OFFSET.
    const reading = readFlows(client, { follow: true, until: timestampFromMs(UNIX_NOW + 100) });
    await waitFor('the follower', () => (observer.followerCount === 1 ? true : undefined));
    observer.record({ kind: 'held', workload: 'shop/web', service: 'shop/web', flow: webFlow, atMs: UNIX_NOW - OFFSET + 50 });
    observer.record({ kind: 'released', workload: 'shop/web', service: 'shop/web', flow: webFlow, atMs: UNIX_NOW - OFFSET + 200, heldForMs: 150 });

    const flows = await reading;
    assert.deepEqual(
      flows.map((flow) => flow.verdict),
      [Verdict.TRACED],
    );
    assert.equal(observer.followerCount, 0);
  } finally {
    await teardown(context);
  }
});

test('observer replays more than the queue limit', async () => {
  const context = await setup('replay', 5000);
  const total = 3 * FOLLOW_QUEUE_LIMIT;
  for (let i = 0; i < total; i++) context.observer.record({ kind: 'held', workload: 'shop/web', flow: { ...webFlow, sourcePort: 1024 + i }, atMs: 400_000 + i });

  try {
    const flows = await readFlows(context.client, { number: BigInt(total) });
    const range = await readFlows(context.client, { since: { seconds: 0n } });

    assert.equal(flows.length, total);
    assert.equal(range.length, total);
    assert.deepEqual(
      flows.slice(0, 2).map((flow) => (flow.l4?.protocol.case === 'TCP' ? flow.l4.protocol.value.sourcePort : 0)),
      [1024, 1025],
    );
  } finally {
    await teardown(context);
  }
});

test('observer takes number after since', async () => {
  const context = await setup('since-number');
  recordThree(context.observer);

  try {
    // `hubble observe --since 1h --last 2` sends both: the first two flows
    // from that time on, as Hubble's ring reader starts at since.
    const flows = await readFlows(context.client, { number: 2n, since: { seconds: 0n } });

    assert.deepEqual(
      flows.map((flow) => flow.verdict),
      [Verdict.TRACED, Verdict.FORWARDED],
    );
  } finally {
    await teardown(context);
  }
});

test('observer follows new flows', async () => {
  const context = await setup('follow');
  const { observer, client } = context;
  recordThree(observer);
  const flows: Flow[] = [];
  const call = client.getFlows({ follow: true, whitelist: [{ verdict: [Verdict.DROPPED] }] });
  call.on('data', (message) => {
    if (!isGarbled(message) && message.responseTypes.case === 'flow') flows.push(message.responseTypes.value);
  });
  call.on('error', () => {});

  try {
    await waitFor('the follower', () => (observer.followerCount === 1 ? true : undefined));
    observer.record({ kind: 'held', workload: 'shop/api', service: 'shop/api', flow: apiFlow, atMs: 403_000 });
    observer.record({ kind: 'expired', workload: 'shop/web', service: 'shop/web', flow: webFlow, atMs: 404_000, heldForMs: 30_000 });
    await waitFor('the expired flow', () => (flows.length >= 1 ? true : undefined));
    await new Promise((resolve) => setTimeout(resolve, 50));

    assert.equal(flows.length, 1, 'a bare follow starts at the end of the buffer');
    assert.equal(flows[0]!.IP?.destination, '198.19.0.10');
    assert.equal(timestampMs(flows[0]!.time!), 404_000 + OFFSET);
  } finally {
    call.cancel();
    await teardown(context);
  }
});

test('observer ring keeps newest flows', async () => {
  const context = await setup('ring', 3);
  for (let i = 0; i < 5; i++) context.observer.record({ kind: 'held', workload: 'shop/web', flow: { ...webFlow, sourcePort: 40000 + i }, atMs: 400_000 + i });

  try {
    const flows = await readFlows(context.client, {});
    const status = await context.client.serverStatus();

    assert.deepEqual(
      flows.map((flow) => (flow.l4?.protocol.case === 'TCP' ? flow.l4.protocol.value.sourcePort : 0)),
      [40002, 40003, 40004],
    );
    assert.equal(status.numFlows, 3n);
    assert.equal(status.maxFlows, 3n);
    assert.equal(status.seenFlows, 5n);
    assert.equal(status.version, 'zerohold');
  } finally {
    await teardown(context);
  }
});

test('observer get nodes unimplemented', async () => {
  const context = await setup('nodes');

  try {
    await assert.rejects(context.client.getNodes(), /UNIMPLEMENTED/);
  } finally {
    await teardown(context);
  }
});

test('observer socket mode and removal', async () => {
  const context = await setup('socket');

  assert.equal((await stat(context.socket)).mode & 0o777, SOCKET_MODE);
  await teardown(context);
  await assert.rejects(stat(context.socket), { code: 'ENOENT' });
});

test('observer replaces stale socket', async () => {
  const first = await setup('stale');
  first.client.close();
  // A second server on the same path while the first listens must fail.
  const second = new ObserverServer({ nodeName: 'worker-1', logger: captureLog().logger });
  await assert.rejects(second.listen(first.socket), /another process is listening/);
  await first.observer.close();
});

test('held flow message has summary', () => {
  const event: HeldFlowEvent = { kind: 'held', workload: 'shop/web', service: 'shop/web', flow: webFlow, atMs: 0 };

  const bytes = toBinary(FlowSchema, heldFlowMessage(event, UNIX_NOW, 'worker-1'));
  const unknown = fromBinary(FlowSchema, bytes).$unknown ?? [];
  const summary = unknown.find((field) => field.no === 100000);

  assert.ok(summary, 'field 100000 (Summary) is present');
  assert.equal(new BinaryReader(summary.data).string(), 'zerohold held: workload shop/web is scaled to zero, waking it');
});

test('observer reports lost flows to slow follower', async () => {
  const context = await setup('slow');
  const { observer, client } = context;
  let flows = 0;
  let lost = 0;
  const call = client.getFlows({ follow: true });
  call.on('data', (message) => {
    if (isGarbled(message)) return;
    if (message.responseTypes.case === 'flow') flows++;
    if (message.responseTypes.case === 'lostEvents') lost += Number(message.responseTypes.value.numEventsLost);
  });
  call.on('error', () => {});

  try {
    await waitFor('the follower', () => (observer.followerCount === 1 ? true : undefined));
    call.pause();
    const total = 20_000;
    for (let i = 0; i < total; i++) observer.record({ kind: 'held', workload: 'shop/web', flow: { ...webFlow, sourcePort: 1024 + (i % 60000) }, atMs: 400_000 });
    call.resume();
    await waitFor('every flow counted', () => (flows + lost === total ? true : undefined));

    assert.ok(lost > 0, `expected lost flows, got ${flows} flows and ${lost} lost`);
    assert.ok(flows >= FOLLOW_QUEUE_LIMIT, `expected at least the queue limit, got ${flows}`);
  } finally {
    call.cancel();
    await teardown(context);
  }
});
