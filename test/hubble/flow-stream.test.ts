import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { type AddressInfo, connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { timestampFromMs, timestampMs } from '@bufbuild/protobuf/wkt';

import { Backoff } from '../../src/hubble/backoff.js';
import type { HubbleEndpoint } from '../../src/hubble/endpoint.js';
import { FlowStream } from '../../src/hubble/flow-stream.js';
import { Verdict, type Flow } from '../../src/hubble/gen/flow/flow_pb.js';
import { ManagedServices } from '../../src/hubble/managed-services.js';
import { ObserverClient } from '../../src/hubble/observer-client.js';
import { waitFor } from '../lib/netns.js';
import { serviceFlow } from './flows.js';
import { captureLog } from './log-capture.js';
import { createTestCertificates, SERVER_NAME, type TestCertificates } from './test-certificates.js';
import { TestHubbleServer } from './test-server.js';

const managed = new ManagedServices([
  { namespace: 'shop', name: 'web' },
  { namespace: 'shop', name: 'api' },
]);

// Backoff short enough for tests, with the jitter still in use.
const fastBackoff = () => new Backoff({ initialMs: 20, maxMs: 200, multiplier: 2, jitter: 0.2 });

let dir: string;
let certificates: TestCertificates;

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'zerohold-hubble-'));
  certificates = await createTestCertificates();
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
  await certificates.remove();
});

interface Collected {
  stream: FlowStream;
  flows: Flow[];
}

function follow(endpoint: HubbleEndpoint, logger = captureLog().logger, since = new Date(0)): Collected {
  const flows: Flow[] = [];
  const stream = new FlowStream({
    endpoint,
    whitelist: managed.whitelist({ verdict: [Verdict.FORWARDED] }),
    since,
    logger,
    backoff: fastBackoff(),
    onFlow: (flow) => {
      if (managed.match(flow) !== undefined) flows.push(flow);
    },
  });
  stream.start();
  return { stream, flows };
}

// Follows every flow to the named Services of namespace shop, with no
// verdict filter and no client-side match.
function followServices(endpoint: HubbleEndpoint, names: string[]): Collected {
  const flows: Flow[] = [];
  const stream = new FlowStream({
    endpoint,
    whitelist: new ManagedServices(names.map((name) => ({ namespace: 'shop', name }))).whitelist(),
    since: new Date(0),
    logger: captureLog().logger,
    backoff: fastBackoff(),
    onFlow: (flow) => flows.push(flow),
  });
  stream.start();
  return { stream, flows };
}

function publishMix(server: TestHubbleServer, tag: string): string[] {
  const wanted: string[] = [];
  const publish = (uuid: string, service: string, verdict = Verdict.FORWARDED) =>
    server.publish(serviceFlow({ namespace: 'shop', service, serviceIp: '198.19.0.10', verdict, uuid }));

  wanted.push(publish(`${tag}-web`, 'web').flow.uuid);
  // Matches the server's prefix filter "shop/web" but is not managed.
  publish(`${tag}-web-canary`, 'web-canary');
  publish(`${tag}-cart`, 'cart');
  publish(`${tag}-dropped`, 'api', Verdict.DROPPED);
  wanted.push(publish(`${tag}-api`, 'api').flow.uuid);
  return wanted;
}

test('flow stream filters over unix socket', async () => {
  const socket = path.join(dir, 'hubble.sock');
  const server = new TestHubbleServer({ address: { kind: 'socket', path: socket } });
  await server.start();
  const { stream, flows } = follow({ kind: 'socket', path: socket });

  try {
    const wanted = [...publishMix(server, 'a'), ...publishMix(server, 'b')];
    await waitFor('4 managed flows', () => (flows.length >= 4 ? true : undefined));
    await new Promise((resolve) => setTimeout(resolve, 50));

    assert.deepEqual(
      flows.map((flow) => flow.uuid),
      wanted,
    );
    assert.equal(stream.stats.flows, 6, 'the server sends the canary flows that match its prefix filter');
    assert.deepEqual(server.requests[0]!.whitelist[0]!.destinationService, ['shop/web', 'shop/api']);
    assert.equal(server.requests[0]!.follow, true);
    assert.equal(stream.state, 'streaming');
  } finally {
    stream.stop();
    await server.stop();
  }
});

test('flow stream reads relay over mutual TLS', async () => {
  const server = new TestHubbleServer({
    address: {
      kind: 'tcp',
      host: '127.0.0.1',
      port: 0,
      tls: {
        cert: await readFile(certificates.serverCertFile),
        key: await readFile(certificates.serverKeyFile),
        clientCa: await readFile(certificates.caFile),
      },
    },
  });
  await server.start();
  const endpoint: HubbleEndpoint = {
    kind: 'relay',
    address: `127.0.0.1:${server.port}`,
    tls: { caFile: certificates.caFile, certFile: certificates.clientCertFile, keyFile: certificates.clientKeyFile, serverName: SERVER_NAME },
  };
  const { stream, flows } = follow(endpoint);

  try {
    const wanted = publishMix(server, 'tls');
    await waitFor('2 managed flows over TLS', () => (flows.length >= 2 ? true : undefined));

    assert.deepEqual(
      flows.map((flow) => flow.uuid),
      wanted,
    );
  } finally {
    stream.stop();
    await server.stop();
  }
});

test('relay rejects client without certificate', async () => {
  const server = new TestHubbleServer({
    address: {
      kind: 'tcp',
      host: '127.0.0.1',
      port: 0,
      tls: {
        cert: await readFile(certificates.serverCertFile),
        key: await readFile(certificates.serverKeyFile),
        clientCa: await readFile(certificates.caFile),
      },
    },
  });
  await server.start();
  const client = await ObserverClient.connect({
    kind: 'relay',
    address: `127.0.0.1:${server.port}`,
    tls: { caFile: certificates.caFile, serverName: SERVER_NAME },
  });

  try {
    await assert.rejects(client.serverStatus(2_000), /UNAVAILABLE/);
  } finally {
    client.close();
    await server.stop();
  }
});

test('flow stream resumes after restart', async () => {
  const socket = path.join(dir, 'restart.sock');
  const server = new TestHubbleServer({ address: { kind: 'socket', path: socket } });
  await server.start();
  const log = captureLog();
  const { stream, flows } = follow({ kind: 'socket', path: socket }, log.logger);

  // Three flows share the last timestamp before the restart, so the
  // resumed call, whose `since` is inclusive, sends all three again.
  const sameTime = timestampFromMs(Date.now());
  const uuids: string[] = [];
  const publish = (uuid: string, time = undefined as typeof sameTime | undefined) => {
    uuids.push(uuid);
    server.publish(serviceFlow({ namespace: 'shop', service: 'web', serviceIp: '198.19.0.10', uuid, time }));
  };

  try {
    await waitFor('stream to connect', () => (stream.state === 'streaming' ? true : undefined));
    publish('before-1', timestampFromMs(Date.now() - 1000));
    publish('before-2', sameTime);
    publish('before-3', sameTime);
    publish('before-4', sameTime);
    await waitFor('4 flows before the restart', () => (flows.length >= 4 ? true : undefined));

    await server.stop();
    await waitFor('stream to notice the restart', () => (stream.state === 'waiting' ? true : undefined));
    publish('while-down-1');
    publish('while-down-2');
    await server.start();
    await waitFor('stream to reconnect', () => (server.requests.length >= 2 && stream.state === 'streaming' ? true : undefined));
    publish('after-1');
    await waitFor('7 flows', () => (flows.length >= 7 ? true : undefined));
    await new Promise((resolve) => setTimeout(resolve, 50));

    assert.deepEqual(
      flows.map((flow) => flow.uuid),
      uuids,
    );
    assert.equal(stream.stats.duplicates, 3);
    assert.equal(stream.stats.disconnects >= 1, true);
    assert.deepEqual(server.requests[1]!.since, sameTime);
    assert.ok(log.records.some((record) => record['msg'] === 'Hubble stream failed, reconnecting'));
  } finally {
    stream.stop();
    await server.stop();
  }
});

test('flow stream retries until server starts', async () => {
  const socket = path.join(dir, 'late.sock');
  const server = new TestHubbleServer({ address: { kind: 'socket', path: socket } });
  const { stream, flows } = follow({ kind: 'socket', path: socket }, captureLog().logger, new Date());

  try {
    await waitFor('a failed attempt', () => (stream.stats.disconnects >= 2 ? true : undefined));
    server.publish(serviceFlow({ namespace: 'shop', service: 'api', serviceIp: '198.19.0.11', uuid: 'early' }));
    await server.start();
    await waitFor('the flow published before the server listened', () => (flows.length >= 1 ? true : undefined));

    assert.equal(flows[0]!.uuid, 'early');
  } finally {
    stream.stop();
    await server.stop();
  }
});

test('flow stream skips garbled message', async () => {
  const socket = path.join(dir, 'garbled.sock');
  const server = new TestHubbleServer({ address: { kind: 'socket', path: socket } });
  await server.start();
  const log = captureLog();
  const { stream, flows } = follow({ kind: 'socket', path: socket }, log.logger);

  try {
    await waitFor('stream to connect', () => (stream.state === 'streaming' && server.openStreams === 1 ? true : undefined));
    server.publish(serviceFlow({ namespace: 'shop', service: 'web', serviceIp: '198.19.0.10', uuid: 'first' }));
    await waitFor('the first flow', () => (flows.length >= 1 ? true : undefined));

    // Field 1 with wire type 7, which does not exist.
    server.sendRaw(Buffer.from([0x0f, 0x01, 0x02]));
    server.publish(serviceFlow({ namespace: 'shop', service: 'web', serviceIp: '198.19.0.10', uuid: 'second' }));
    await waitFor('the flow after the garbled message', () => (flows.length >= 2 ? true : undefined));

    assert.equal(flows[1]!.uuid, 'second');
    assert.equal(stream.stats.garbled, 1);
    assert.equal(stream.stats.disconnects, 0);
    const warning = log.records.find((record) => record['msg'] === 'skipped a GetFlows message that failed to decode');
    assert.ok(warning, 'a warning names the garbled message');
    assert.equal(warning['bytes'], 3);
  } finally {
    stream.stop();
    await server.stop();
  }
});

test('flow stream applies new filters', async () => {
  const socket = path.join(dir, 'filters.sock');
  const server = new TestHubbleServer({ address: { kind: 'socket', path: socket } });
  await server.start();
  const { stream, flows } = followServices({ kind: 'socket', path: socket }, ['web']);

  try {
    await waitFor('stream to connect', () => (stream.state === 'streaming' ? true : undefined));
    // cart-1 is older than web-1, so the call with the new filters, which
    // resumes at web-1's time, does not send it.
    server.publish(serviceFlow({ namespace: 'shop', service: 'cart', serviceIp: '198.19.0.12', uuid: 'cart-1', time: timestampFromMs(Date.now() - 1000) }));
    server.publish(serviceFlow({ namespace: 'shop', service: 'web', serviceIp: '198.19.0.10', uuid: 'web-1' }));
    await waitFor('the web flow', () => (flows.length >= 1 ? true : undefined));

    stream.setFilters(new ManagedServices([{ namespace: 'shop', name: 'cart' }]).whitelist());
    await waitFor('a second call', () => (server.requests.length >= 2 ? true : undefined));
    server.publish(serviceFlow({ namespace: 'shop', service: 'cart', serviceIp: '198.19.0.12', uuid: 'cart-2' }));
    await waitFor('the new cart flow', () => (flows.length >= 2 ? true : undefined));

    assert.deepEqual(
      flows.map((flow) => flow.uuid),
      ['web-1', 'cart-2'],
    );
    assert.equal(stream.stats.disconnects, 0);
  } finally {
    stream.stop();
    await server.stop();
  }
});

test('flow stream resumes before a future flow', async () => {
  // A node whose clock runs 10 minutes ahead, seen through Relay. Hubble
  // drops followed flows older than `since`, so a resume at that node's
  // time would hide the flows of every other node.
  const socket = path.join(dir, 'ahead.sock');
  const server = new TestHubbleServer({ address: { kind: 'socket', path: socket } });
  await server.start();
  const { stream, flows } = follow({ kind: 'socket', path: socket });

  try {
    await waitFor('stream to connect', () => (stream.state === 'streaming' ? true : undefined));
    server.publish({ ...serviceFlow({ namespace: 'shop', service: 'web', serviceIp: '198.19.0.10', uuid: 'ahead', time: timestampFromMs(Date.now() + 600_000) }), nodeName: 'ahead' });
    await waitFor('the flow from the future', () => (flows.length >= 1 ? true : undefined));

    await server.stop();
    await server.start();
    await waitFor('stream to reconnect', () => (server.requests.length >= 2 && stream.state === 'streaming' ? true : undefined));
    server.publish({ ...serviceFlow({ namespace: 'shop', service: 'web', serviceIp: '198.19.0.10', uuid: 'on-time' }), nodeName: 'on-time' });
    await waitFor('the flow of the other node', () => (flows.length >= 2 ? true : undefined));
    await new Promise((resolve) => setTimeout(resolve, 50));

    assert.deepEqual(
      flows.map((flow) => flow.uuid),
      ['ahead', 'on-time'],
    );
    assert.equal(stream.stats.duplicates, 1, 'the flow from the future, sent again after the resume');
    assert.ok(timestampMs(server.requests[1]!.since!) <= Date.now(), 'the resume starts no later than this host clock');
  } finally {
    stream.stop();
    await server.stop();
  }
});

test('flow stream skips old flows on new filters', async () => {
  // After a quiet hour, new filters resume at most 10 s back, so a drop
  // from long ago does not reach a workload that just opted in.
  const socket = path.join(dir, 'lookback.sock');
  const server = new TestHubbleServer({ address: { kind: 'socket', path: socket } });
  await server.start();
  const { stream, flows } = followServices({ kind: 'socket', path: socket }, ['web']);

  try {
    await waitFor('stream to connect', () => (stream.state === 'streaming' ? true : undefined));
    server.publish(serviceFlow({ namespace: 'shop', service: 'web', serviceIp: '198.19.0.10', uuid: 'web-old', time: timestampFromMs(Date.now() - 3_600_000) }));
    server.publish(serviceFlow({ namespace: 'shop', service: 'cart', serviceIp: '198.19.0.12', uuid: 'cart-old', time: timestampFromMs(Date.now() - 1_800_000) }));
    server.publish(serviceFlow({ namespace: 'shop', service: 'cart', serviceIp: '198.19.0.12', uuid: 'cart-recent', time: timestampFromMs(Date.now() - 2_000) }));
    await waitFor('the old web flow', () => (flows.length >= 1 ? true : undefined));

    stream.setFilters(new ManagedServices([{ namespace: 'shop', name: 'web' }, { namespace: 'shop', name: 'cart' }]).whitelist());
    await waitFor('the recent cart flow', () => (flows.length >= 2 ? true : undefined));
    await new Promise((resolve) => setTimeout(resolve, 50));

    assert.deepEqual(
      flows.map((flow) => flow.uuid),
      ['web-old', 'cart-recent'],
    );
  } finally {
    stream.stop();
    await server.stop();
  }
});

test('flow stream leaves half-open connection', async () => {
  const server = new TestHubbleServer({ address: { kind: 'tcp', host: '127.0.0.1', port: 0 } });
  await server.start();

  // A loopback proxy that stops forwarding without closing, as a
  // connection through a NAT entry that expired or to a node that died.
  const pairs: { client: Socket; upstream: Socket }[] = [];
  const proxy = createServer((client) => {
    const upstream = connect(server.port, '127.0.0.1');
    client.pipe(upstream);
    upstream.pipe(client);
    client.on('error', () => {});
    upstream.on('error', () => {});
    pairs.push({ client, upstream });
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  const proxyPort = (proxy.address() as AddressInfo).port;

  const { stream, flows } = followServices({ kind: 'relay', address: `127.0.0.1:${proxyPort}`, keepalive: { intervalMs: 1000, timeoutMs: 500 } }, ['web']);

  try {
    await waitFor('stream to connect', () => (stream.state === 'streaming' ? true : undefined));
    server.publish(serviceFlow({ namespace: 'shop', service: 'web', serviceIp: '198.19.0.10', uuid: 'before' }));
    await waitFor('the first flow', () => (flows.length >= 1 ? true : undefined));

    for (const { client, upstream } of pairs) {
      client.unpipe(upstream);
      upstream.unpipe(client);
      client.pause();
      upstream.pause();
    }
    server.publish(serviceFlow({ namespace: 'shop', service: 'web', serviceIp: '198.19.0.10', uuid: 'after' }));
    await waitFor('the flow sent while the connection hung', () => (flows.length >= 2 ? true : undefined), 10_000);

    assert.deepEqual(
      flows.map((flow) => flow.uuid),
      ['before', 'after'],
    );
    assert.equal(stream.stats.disconnects, 1);
  } finally {
    stream.stop();
    for (const { client, upstream } of pairs) {
      client.destroy();
      upstream.destroy();
    }
    proxy.close();
    await server.stop();
  }
});

test('observer client reads status and nodes', async () => {
  const socket = path.join(dir, 'status.sock');
  const server = new TestHubbleServer({ address: { kind: 'socket', path: socket }, nodeName: 'worker-1', capacity: 16 });
  await server.start();
  for (let i = 0; i < 20; i++) server.publish(serviceFlow({ namespace: 'shop', service: 'web', serviceIp: '198.19.0.10' }));
  const client = await ObserverClient.connect({ kind: 'socket', path: socket });

  try {
    const status = await client.serverStatus();
    const nodes = await client.getNodes();

    assert.equal(status.seenFlows, 20n);
    assert.equal(status.maxFlows, 16n);
    assert.equal(status.version, 'zerohold-test');
    assert.deepEqual(
      nodes.nodes.map((node) => node.name),
      ['worker-1'],
    );
  } finally {
    client.close();
    await server.stop();
  }
});
