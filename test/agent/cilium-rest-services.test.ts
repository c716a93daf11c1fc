// Tests of the reader of Cilium's REST API (GET /v1/service on the agent's
// unix socket) against the in-repo fake agent, which serves Cilium
// v1.18.6's JSON model.

import assert from 'node:assert/strict';
import { after, before, beforeEach, test } from 'node:test';

import { pino } from 'pino';

import type { CiliumFrontend } from '../../src/agent/cilium/frontends.js';
import { CiliumRestServices, parseCiliumServices } from '../../src/agent/cilium/rest-services.js';
import { waitFor } from '../lib/netns.js';
import { FakeCiliumApi } from './testing/fake-cilium-api.js';

const log = pino({ level: 'silent' });

let api: FakeCiliumApi;
const readers: CiliumRestServices[] = [];

function openReader(pollMs = 1000, socketPath = api.socketPath): CiliumRestServices {
  const reader = new CiliumRestServices({ socketPath, pollMs, log });
  readers.push(reader);
  return reader;
}

before(async () => {
  api = await FakeCiliumApi.start();
});

beforeEach(() => {
  for (const reader of readers.splice(0)) reader.close();
  api.services = [];
  api.mode = 'ok';
});

after(async () => {
  for (const reader of readers) reader.close();
  await api?.close();
});

test('REST lists frontends', async () => {
  api.services = [
    { id: 7, ip: '198.19.0.10', port: 80, protocol: 'TCP' },
    { id: 8, ip: '198.19.0.11', port: 53, protocol: 'UDP', backends: [{ ip: '198.18.1.1', port: 53 }, { ip: '198.18.1.2', port: 53 }] },
    { id: 9, ip: '198.19.0.12', port: 8080, protocol: 'ANY', backends: [{ ip: '198.18.1.3', port: 8080 }] },
    { id: 11, ip: '198.19.0.13', port: 80, protocol: 'TCP', scope: 'internal', backends: [{ ip: '198.18.1.4', port: 8080 }] },
    { id: 300, ip: 'fd5a:0::10', port: 443, protocol: 'TCP', backends: [{ ip: 'fd5a:18::1', port: 8443 }] },
    { id: 12, ip: '198.19.0.14', port: 9, protocol: 'SCTP', backends: [{ ip: '198.18.1.5', port: 9 }] },
  ];
  const reader = openReader();
  await reader.start();

  assert.deepEqual(reader.frontends(), [
    { address: '198.19.0.10', protocol: 'tcp', port: 80, scope: 'external', revNatId: 7, backends: 0 },
    { address: '198.19.0.11', protocol: 'udp', port: 53, scope: 'external', revNatId: 8, backends: 2 },
    { address: '198.19.0.12', protocol: 'any', port: 8080, scope: 'external', revNatId: 9, backends: 1 },
    { address: '198.19.0.13', protocol: 'tcp', port: 80, scope: 'internal', revNatId: 11, backends: 1 },
    { address: 'fd5a::10', protocol: 'tcp', port: 443, scope: 'external', revNatId: 300, backends: 1 },
  ]);
});

test('REST counts selectable backends', () => {
  const frontends = parseCiliumServices([
    {
      spec: {
        id: 1,
        'frontend-address': { ip: '198.19.0.10', port: 80, protocol: 'TCP' },
        'backend-addresses': [
          { ip: '198.18.1.1', state: 'active' },
          { ip: '198.18.1.2', state: 'quarantined' },
          { ip: '198.18.1.3', state: 'terminating' },
        ],
      },
    },
    {
      spec: {
        id: 2,
        'frontend-address': { ip: '198.19.0.11', port: 80, protocol: 'TCP' },
        'backend-addresses': [
          { ip: '198.18.1.4', state: 'terminating' },
          { ip: '198.18.1.5', state: 'terminating-not-serving' },
          { ip: '198.18.1.6', state: 'maintenance' },
        ],
      },
    },
  ]);

  assert.deepEqual(
    frontends.map((f: CiliumFrontend) => [f.revNatId, f.backends]),
    [
      [1, 1],
      [2, 1],
    ],
  );
});

test('REST strips cluster id', () => {
  const [frontend] = parseCiliumServices([{ spec: { id: 4, 'frontend-address': { ip: '198.19.0.10@2', port: 80, protocol: 'TCP' }, 'backend-addresses': null } }]);

  assert.equal(frontend?.address, '198.19.0.10');
});

test('REST accepts null body', () => {
  assert.deepEqual(parseCiliumServices(null), []);
});

test('REST rejects other shape', () => {
  assert.throws(() => parseCiliumServices({ services: [] }), /does not match Cilium's Service model/);
});

test('REST rejects invalid address', () => {
  assert.throws(() => parseCiliumServices([{ spec: { id: 4, 'frontend-address': { ip: 'cluster.local', port: 80 } } }]), /invalid frontend address "cluster.local"/);
});

test('REST reports missing socket', async () => {
  const reader = openReader(1000, '/nonexistent/cilium.sock');

  await assert.rejects(reader.start(), /GET \/v1\/service on unix:\/nonexistent\/cilium.sock failed: the socket \/nonexistent\/cilium.sock does not exist/);
});

test('REST reports HTTP 500', async () => {
  api.mode = 'error';
  const reader = openReader();

  await assert.rejects(reader.start(), /failed with HTTP 500 Internal Server Error: \{"message":"statedb: table frontends not initialized"\}/);
});

test('REST reports invalid JSON', async () => {
  api.mode = 'invalid-json';
  const reader = openReader();

  await assert.rejects(reader.start(), /returned invalid JSON .*: \[\{"spec": \{"id": 1,/);
});

test('REST keeps list on failed read', async () => {
  api.services = [{ id: 7, ip: '198.19.0.10', port: 80, protocol: 'TCP' }];
  const reader = openReader();
  await reader.start();

  api.mode = 'error';
  await assert.rejects(reader.refresh(), /HTTP 500/);
  assert.equal(reader.frontends().length, 1);
});

test('REST poll reports backends added later', async () => {
  api.services = [{ id: 7, ip: '198.19.0.10', port: 80, protocol: 'TCP' }];
  const reader = openReader(10);
  const changes: (readonly CiliumFrontend[])[] = [];
  reader.onChange((frontends) => changes.push(frontends));
  await reader.start();

  api.services = [{ id: 7, ip: '198.19.0.10', port: 80, protocol: 'TCP', backends: [{ ip: '198.18.1.1', port: 8080 }] }];
  await waitFor('a poll that sees the backend', () => (reader.frontends()[0]?.backends === 1 ? true : undefined), 2000);

  assert.equal(changes.length, 2);
});

test('REST shares request in flight', async () => {
  // An API of its own, so that no poll of an earlier test adds a request.
  const own = await FakeCiliumApi.start();
  const reader = openReader(1000, own.socketPath);
  try {
    await Promise.all([reader.refresh(), reader.refresh(), reader.refresh()]);
    assert.equal(own.requests, 1);
  } finally {
    reader.close();
    await own.close();
  }
});
