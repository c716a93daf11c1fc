// KeepAliveKubeConfig against a plain HTTP server that counts connections:
// API calls share one connection, a closed connection is replaced, and an
// idle one is closed after the idle timeout.

import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';

import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';

import { KeepAliveKubeConfig } from '../../src/agent/kube-config.js';
import { waitFor } from '../lib/netns.js';

let server: http.Server;
let connections = 0;
let open = 0;

before(async () => {
  server = http.createServer((_req, res) => {
    res.setHeader('Content-Type', 'application/json');
    res.end(JSON.stringify({ kind: 'Namespace', apiVersion: 'v1', metadata: { name: 'shop' } }));
  });
  server.on('connection', (socket) => {
    connections += 1;
    open += 1;
    socket.on('close', () => (open -= 1));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
});

after(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

function load(kc: KubeConfig): KubeConfig {
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  kc.loadFromOptions({
    clusters: [{ name: 'test', server: url, skipTLSVerify: true }],
    users: [{ name: 'test' }],
    contexts: [{ name: 'test', cluster: 'test', user: 'test' }],
    currentContext: 'test',
  });
  return kc;
}

test('API calls share a connection', async () => {
  const kc = load(new KeepAliveKubeConfig()) as KeepAliveKubeConfig;
  const core = kc.makeApiClient(CoreV1Api);
  connections = 0;

  for (let i = 0; i < 20; i++) assert.equal((await core.readNamespace({ name: 'shop' })).metadata?.name, 'shop');

  assert.equal(connections, 1);
  kc.destroyAgents();
});

test('plain KubeConfig opens one per call', async () => {
  // The behaviour that KeepAliveKubeConfig works around, so that this test
  // fails once client-node reuses connections on its own.
  const core = load(new KubeConfig()).makeApiClient(CoreV1Api);
  connections = 0;

  for (let i = 0; i < 5; i++) await core.readNamespace({ name: 'shop' });

  assert.equal(connections, 5);
});

test('closed connection is replaced', async () => {
  const kc = load(new KeepAliveKubeConfig()) as KeepAliveKubeConfig;
  const core = kc.makeApiClient(CoreV1Api);
  await core.readNamespace({ name: 'shop' });
  connections = 0;

  server.closeAllConnections();
  await waitFor('the client to see the close', () => (open === 0 ? true : undefined));
  assert.equal((await core.readNamespace({ name: 'shop' })).metadata?.name, 'shop');

  assert.equal(connections, 1);
  kc.destroyAgents();
});

test('idle connection closes after timeout', async () => {
  const kc = load(new KeepAliveKubeConfig(200)) as KeepAliveKubeConfig;
  const core = kc.makeApiClient(CoreV1Api);
  await waitFor('no connection from earlier tests', () => (open === 0 ? true : undefined), 5000);

  await core.readNamespace({ name: 'shop' });
  assert.equal(open, 1, 'kept open after the call');
  await waitFor('the idle connection to close', () => (open === 0 ? true : undefined), 2000);
  kc.destroyAgents();
});
