// Tests of the reader of Cilium's pinned load-balancer maps, against maps
// laid out like Cilium v1.18.6's (test/bpf/cilium_lb_maps.c) that each
// test fills as Cilium's agent does. Needs root for bpffs.

import assert from 'node:assert/strict';
import { after, before, beforeEach, test } from 'node:test';

import { pino } from 'pino';

import type { CiliumFrontend } from '../../src/agent/cilium/frontends.js';
import { LB_MAP_SIZES } from '../../src/agent/cilium/lb-map-layout.js';
import { openCiliumServiceSource } from '../../src/agent/cilium/open-service-source.js';
import { CiliumServiceMaps } from '../../src/agent/cilium/service-maps.js';
import { waitFor } from '../lib/netns.js';
import { CiliumLbMaps, type TestService } from './testing/cilium-lb-maps.js';
import { FakeCiliumApi } from './testing/fake-cilium-api.js';

const log = pino({ level: 'silent' });

const WEB: TestService = { address: '198.19.0.10', port: 80, protocol: 'tcp', revNatId: 7, backendIds: [] };
const DNS: TestService = { address: '198.19.0.11', port: 53, protocol: 'udp', revNatId: 8, backendIds: [101, 102] };
const WEB6: TestService = { address: 'fd5a::10', port: 443, protocol: 'tcp', revNatId: 300, backendIds: [201] };
const ANY: TestService = { address: '198.19.0.12', port: 8080, protocol: 'any', revNatId: 9, backendIds: [103] };
// The internal-scope entry of a Service with two scopes (SVC_FLAG_TWO_SCOPES
// in flags2), which has its own rev-NAT id.
const LOCAL_EXT: TestService = { address: '198.19.0.13', port: 80, protocol: 'tcp', revNatId: 10, backendIds: [], flags2: 1 << 5 };
const LOCAL_INT: TestService = { address: '198.19.0.13', port: 80, protocol: 'tcp', scope: 1, revNatId: 11, backendIds: [104], flags2: 1 << 5 };
const SCTP: TestService = { address: '198.19.0.14', port: 9, protocol: 'sctp', revNatId: 12, backendIds: [105] };

let lb: CiliumLbMaps;
const readers: CiliumServiceMaps[] = [];

function openReader(pollMs = 250, pinDir = lb.pinDir): CiliumServiceMaps {
  const reader = new CiliumServiceMaps({ pinDir, pollMs, log });
  readers.push(reader);
  return reader;
}

function fillAll(): void {
  for (const id of [101, 102, 103, 104, 105]) lb.addBackend(id, `198.18.1.${id - 100}`, 8080);
  lb.addBackend(201, 'fd5a:18::1', 8443);
  for (const service of [WEB, DNS, WEB6, ANY, LOCAL_EXT, LOCAL_INT, SCTP]) lb.addService(service);
}

function find(frontends: readonly CiliumFrontend[], revNatId: number): CiliumFrontend | undefined {
  return frontends.find((f) => f.revNatId === revNatId);
}

before(async () => {
  lb = await CiliumLbMaps.create('zh-test-cilium-maps');
});

beforeEach(() => {
  for (const reader of readers.splice(0)) reader.close();
  lb.clear();
});

after(() => {
  for (const reader of readers) reader.close();
  lb?.close();
});

test('layout sizes match test structs', () => {
  assert.equal(lb.structSize('lb4_key'), LB_MAP_SIZES.ipv4.services.key);
  assert.equal(lb.structSize('lb4_service'), LB_MAP_SIZES.ipv4.services.value);
  assert.equal(lb.structSize('lb4_backend'), LB_MAP_SIZES.ipv4.backends.value);
  assert.equal(lb.structSize('lb4_reverse_nat'), LB_MAP_SIZES.ipv4.reverseNat.value);
  assert.equal(lb.structSize('lb6_key'), LB_MAP_SIZES.ipv6.services.key);
  assert.equal(lb.structSize('lb6_service'), LB_MAP_SIZES.ipv6.services.value);
  assert.equal(lb.structSize('lb6_backend'), LB_MAP_SIZES.ipv6.backends.value);
  assert.equal(lb.structSize('lb6_reverse_nat'), LB_MAP_SIZES.ipv6.reverseNat.value);
});

test('maps list master entries', () => {
  fillAll();
  const reader = openReader();
  reader.start();

  assert.deepEqual(reader.families, ['ipv4', 'ipv6']);
  assert.deepEqual(reader.frontends(), [
    { address: '198.19.0.10', protocol: 'tcp', port: 80, scope: 'external', revNatId: 7, backends: 0 },
    { address: '198.19.0.11', protocol: 'udp', port: 53, scope: 'external', revNatId: 8, backends: 2 },
    { address: '198.19.0.12', protocol: 'any', port: 8080, scope: 'external', revNatId: 9, backends: 1 },
    { address: '198.19.0.13', protocol: 'tcp', port: 80, scope: 'external', revNatId: 10, backends: 0 },
    { address: '198.19.0.13', protocol: 'tcp', port: 80, scope: 'internal', revNatId: 11, backends: 1 },
    { address: 'fd5a::10', protocol: 'tcp', port: 443, scope: 'external', revNatId: 300, backends: 1 },
  ]);
});

test('maps skip SCTP entries', () => {
  fillAll();
  const reader = openReader();
  reader.start();

  assert.equal(find(reader.frontends(), SCTP.revNatId), undefined);
});

test('maps count only selectable slots', () => {
  for (const id of [101, 102]) lb.addBackend(id, `198.18.1.${id - 100}`, 8080, id === 102 ? 2 : 0);
  lb.addService({ ...DNS, count: 1 });
  const reader = openReader();
  reader.start();

  assert.equal(find(reader.frontends(), DNS.revNatId)?.backends, 1);
});

test('maps read backends of frontend', () => {
  lb.addBackend(101, '198.18.1.1', 8080);
  lb.addBackend(102, '198.18.1.2', 8081, 2);
  lb.addService({ ...DNS, count: 1 });
  lb.addBackend(201, 'fd5a:18::1', 8443, 1);
  lb.addService(WEB6);
  const reader = openReader();
  reader.start();

  const dns = reader.backends(find(reader.frontends(), DNS.revNatId)!);
  assert.deepEqual(dns.map((b) => [b.slot, b.id, b.address, b.port, b.state]), [
    [1, 101, '198.18.1.1', 8080, 'active'],
    [2, 102, '198.18.1.2', 8081, 'quarantined'],
  ]);
  const web6 = reader.backends(find(reader.frontends(), WEB6.revNatId)!);
  assert.deepEqual(web6.map((b) => [b.address, b.port, b.state]), [['fd5a:18::1', 8443, 'terminating']]);
});

test('maps read reverse NAT', () => {
  fillAll();
  const reader = openReader();
  reader.start();

  assert.deepEqual(reader.reverseNat('ipv4', DNS.revNatId), { address: '198.19.0.11', port: 53 });
  assert.deepEqual(reader.reverseNat('ipv6', WEB6.revNatId), { address: 'fd5a::10', port: 443 });
  assert.equal(reader.reverseNat('ipv4', 999), null);
});

test('maps poll reports backends added later', async () => {
  lb.addService(WEB);
  const reader = openReader(10);
  const changes: (readonly CiliumFrontend[])[] = [];
  reader.onChange((frontends) => changes.push(frontends));
  reader.start();
  assert.equal(find(reader.frontends(), WEB.revNatId)?.backends, 0);

  lb.addBackend(106, '198.18.1.6', 8080);
  lb.addService({ ...WEB, backendIds: [106] });
  await waitFor('a poll that sees the backend', () => (find(reader.frontends(), WEB.revNatId)?.backends === 1 ? true : undefined), 2000);

  assert.equal(changes.length, 2);
  assert.equal(find(changes[1]!, WEB.revNatId)?.backends, 1);
});

test('maps poll reports unchanged state once', async () => {
  fillAll();
  const reader = openReader(5);
  let changes = 0;
  reader.onChange(() => changes++);
  reader.start();

  await new Promise((resolve) => setTimeout(resolve, 60));
  assert.equal(changes, 1);
});

test('maps follow replaced pins', async () => {
  // Cilium re-creates a map whose size or flags changed and pins the new
  // one under the same name.
  const first = await CiliumLbMaps.create('zh-test-cilium-maps-repin');
  const reader = new CiliumServiceMaps({ pinDir: first.pinDir, pollMs: 60_000, log });
  let second: CiliumLbMaps | undefined;
  try {
    reader.start();
    first.close();
    second = await CiliumLbMaps.create('zh-test-cilium-maps-repin');
    second.addBackend(1, '198.18.3.1', 8080);
    second.addService({ address: '198.19.0.20', port: 80, protocol: 'tcp', revNatId: 11, backendIds: [1] });
    await reader.refresh();

    assert.deepEqual(
      reader.frontends().map((frontend) => [frontend.revNatId, frontend.backends]),
      [[11, 1]],
    );
  } finally {
    reader.close();
    second?.close();
  }
});

test('maps open one family', async () => {
  const v6 = await CiliumLbMaps.create('zh-test-cilium-maps-v6', ['cilium_lb6_services_v2', 'cilium_lb6_backends_v3', 'cilium_lb6_reverse_nat']);
  try {
    v6.addBackend(201, 'fd5a:18::1', 8443);
    v6.addService(WEB6);
    const reader = openReader(250, v6.pinDir);
    reader.start();

    assert.deepEqual(reader.families, ['ipv6']);
    assert.equal(reader.frontends().length, 1);
  } finally {
    v6.close();
  }
});

test('maps reject missing pins', () => {
  assert.throws(() => openReader(250, '/sys/fs/bpf/zh-test-cilium-none'), /not pinned in \/sys\/fs\/bpf\/zh-test-cilium-none/);
});

test('maps reject missing backends map', async () => {
  const partial = await CiliumLbMaps.create('zh-test-cilium-maps-partial', ['cilium_lb4_services_v2', 'cilium_lb4_reverse_nat']);
  try {
    assert.throws(() => openReader(250, partial.pinDir), /cannot open Cilium's map .*cilium_lb4_backends_v3/);
  } finally {
    partial.close();
  }
});

test('maps reject other layout', async () => {
  // A backends map pinned under the services name stands for a Cilium
  // version whose service key differs.
  const other = await CiliumLbMaps.create('zh-test-cilium-maps-other', []);
  try {
    for (const [name, source] of [
      ['cilium_lb4_services_v2', 'cilium_lb4_backends_v3'],
      ['cilium_lb4_backends_v3', 'cilium_lb4_backends_v3'],
      ['cilium_lb4_reverse_nat', 'cilium_lb4_reverse_nat'],
    ] as const) {
      other.map(source).pin(`${other.pinDir}/${name}`);
    }
    assert.throws(() => openReader(250, other.pinDir), /key size 4 and value size 12, expected 12 and 12/);
  } finally {
    other.close();
  }
});

test('source factory prefers maps', async () => {
  fillAll();
  const source = await openCiliumServiceSource({ pinDir: lb.pinDir, socketPath: '/nonexistent/cilium.sock', log });
  try {
    assert.equal(source.kind, 'maps');
    assert.equal(source.frontends().length, 6);
  } finally {
    source.close();
  }
});

test('source factory falls back to REST', async () => {
  const api = await FakeCiliumApi.start();
  api.services = [{ id: 7, ip: '198.19.0.10', port: 80, protocol: 'TCP', backends: [{ ip: '198.18.1.1', port: 8080 }] }];
  const source = await openCiliumServiceSource({ pinDir: '/sys/fs/bpf/zh-test-cilium-none', socketPath: api.socketPath, log });
  try {
    assert.equal(source.kind, 'rest');
    assert.deepEqual(source.frontends(), [{ address: '198.19.0.10', protocol: 'tcp', port: 80, scope: 'external', revNatId: 7, backends: 1 }]);
  } finally {
    source.close();
    await api.close();
  }
});

test('REST source switches to maps once pinned', async () => {
  // The agent started before Cilium pinned its maps, as on a node that
  // boots. The maps of this test stand in for the ones Cilium pins later.
  const api = await FakeCiliumApi.start();
  api.services = [{ id: 7, ip: '198.19.0.10', port: 80, protocol: 'TCP', backends: [] }];
  // The directory that CiliumLbMaps.create('zh-test-cilium-later') pins in.
  const pinDir = `/sys/fs/bpf/zh-test-cilium-later-${process.pid}`;
  const source = await openCiliumServiceSource({ pinDir, socketPath: api.socketPath, pinCheckMs: 20, log });
  const seen: (readonly CiliumFrontend[])[] = [];
  source.onChange((frontends) => seen.push(frontends));
  let pinned: CiliumLbMaps | undefined;
  try {
    assert.equal(source.kind, 'rest');

    pinned = await CiliumLbMaps.create('zh-test-cilium-later');
    assert.equal(pinned.pinDir, pinDir);
    // Pinned but empty, as before Cilium restores its services: the API's
    // id 7 is missing, so the source stays on the API.
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(source.kind, 'rest');

    pinned.addBackend(101, '198.18.1.1', 8080);
    pinned.addService(DNS);
    pinned.addService(WEB);
    await waitFor('the switch to the maps', () => (source.kind === 'maps' ? true : undefined));

    assert.deepEqual(source.frontends().map((f) => f.revNatId).sort(), [WEB.revNatId, DNS.revNatId].sort());
    assert.deepEqual(seen.at(-1)?.map((f) => f.revNatId).sort(), [WEB.revNatId, DNS.revNatId].sort(), 'listeners got the maps list');
    const requests = api.requests;
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(api.requests, requests, 'the REST API is not polled any more');
  } finally {
    source.close();
    pinned?.close();
    await api.close();
  }
});

test('source factory reports both failures', async () => {
  await assert.rejects(
    openCiliumServiceSource({ pinDir: '/sys/fs/bpf/zh-test-cilium-none', socketPath: '/nonexistent/cilium.sock', log }),
    /no Cilium service map is pinned in \/sys\/fs\/bpf\/zh-test-cilium-none, and GET \/v1\/service on unix:\/nonexistent\/cilium.sock failed: the socket \/nonexistent\/cilium.sock does not exist/,
  );
});
