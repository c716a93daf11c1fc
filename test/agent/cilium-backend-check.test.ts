// Tests of chained mode's release check against both sources of Cilium's
// services: maps laid out like Cilium v1.18.6's, pinned and filled by the
// test, and the in-repo fake Cilium agent API. Each case runs once per
// source. Needs root for bpffs.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { pino } from 'pino';

import { CiliumBackendCheck } from '../../src/agent/cilium/backend-check.js';
import type { CiliumServiceSource } from '../../src/agent/cilium/frontends.js';
import { CiliumRestServices } from '../../src/agent/cilium/rest-services.js';
import { CiliumServiceMaps } from '../../src/agent/cilium/service-maps.js';
import type { Frontend } from '../../src/datapath/frontends.js';
import { CiliumLbMaps, type TestService } from './testing/cilium-lb-maps.js';
import { FakeCiliumApi, type FakeService } from './testing/fake-cilium-api.js';

const log = pino({ level: 'silent' });

// How a test sets what Cilium has programmed, whichever source reads it.
interface Backend {
  close(): Promise<void>;
  source: CiliumServiceSource;
  // Writes the service with `backends` selectable backends.
  program(service: TestService, backends: number): void;
  clear(): void;
}

async function mapsBackend(): Promise<Backend> {
  const lb = await CiliumLbMaps.create('zh-test-cilium-check');
  // A long poll interval, so only the check's own re-reads find changes.
  const source = new CiliumServiceMaps({ pinDir: lb.pinDir, pollMs: 60_000, log });
  source.start();
  let nextBackendId = 1;
  return {
    source,
    program(service, backends) {
      const ids = Array.from({ length: backends }, () => nextBackendId++);
      const ipv6 = service.address.includes(':');
      for (const id of ids) lb.addBackend(id, ipv6 ? `fd5a:18::${id}` : `198.18.2.${id}`, 8080);
      lb.addService({ ...service, backendIds: ids });
    },
    clear: () => lb.clear(),
    async close() {
      source.close();
      lb.close();
    },
  };
}

async function restBackend(): Promise<Backend> {
  const api = await FakeCiliumApi.start();
  const source = new CiliumRestServices({ socketPath: api.socketPath, pollMs: 60_000, log });
  await source.start();
  const protocols: Record<TestService['protocol'], FakeService['protocol']> = { tcp: 'TCP', udp: 'UDP', any: 'ANY', sctp: 'SCTP' };
  return {
    source,
    program(service, backends) {
      const entry: FakeService = {
        id: service.revNatId,
        ip: service.address,
        port: service.port,
        protocol: protocols[service.protocol],
        scope: service.scope === 1 ? 'internal' : 'external',
        backends: Array.from({ length: backends }, (_, i) => ({ ip: `198.18.3.${i + 1}`, port: 8080 })),
      };
      api.services = [...api.services.filter((s) => s.id !== service.revNatId), entry];
    },
    clear() {
      api.services = [];
    },
    async close() {
      source.close();
      await api.close();
    },
  };
}

// Counts the source's reads from now on.
function countReads(source: CiliumServiceSource): () => number {
  let reads = 0;
  const refresh = source.refresh.bind(source);
  source.refresh = () => {
    reads++;
    return refresh();
  };
  return () => reads;
}

const WEB: TestService = { address: '198.19.0.10', port: 80, protocol: 'tcp', revNatId: 7 };
const DNS: TestService = { address: '198.19.0.11', port: 53, protocol: 'udp', revNatId: 8 };
const WEB6: TestService = { address: 'fd5a::10', port: 443, protocol: 'tcp', revNatId: 300 };

const WEB_FE: Frontend = { address: '198.19.0.10', protocol: 'tcp', port: 80 };
const DNS_FE: Frontend = { address: '198.19.0.11', protocol: 'udp', port: 53 };
// A differently written form of fd5a::10.
const WEB6_FE: Frontend = { address: 'FD5A:0:0::10', protocol: 'tcp', port: 443 };

for (const [name, open] of [
  ['maps', mapsBackend],
  ['REST', restBackend],
] as const) {
  describe(`backend check on ${name}`, () => {
    let backend: Backend;
    let check: CiliumBackendCheck;

    before(async () => {
      backend = await open();
    });

    after(async () => {
      await backend?.close();
    });

    function newCheck(): CiliumBackendCheck {
      check?.close();
      backend.clear();
      check = new CiliumBackendCheck({ source: backend.source, log });
      return check;
    }

    test('empty list resolves true', async () => {
      assert.equal(await newCheck().waitProgrammed([], 10), true);
    });

    test('programmed frontend resolves true', async () => {
      const check = newCheck();
      backend.program(WEB, 1);

      assert.equal(await check.waitProgrammed([WEB_FE], 1000), true);
    });

    test('backends added later resolve', async () => {
      const check = newCheck();
      for (const service of [WEB, DNS, WEB6]) backend.program(service, 0);

      const started = performance.now();
      const wait = check.waitProgrammed([WEB_FE, DNS_FE, WEB6_FE], 5000);
      await new Promise((resolve) => setTimeout(resolve, 30));
      backend.program(WEB, 1);
      backend.program(DNS, 2);
      await new Promise((resolve) => setTimeout(resolve, 30));
      backend.program(WEB6, 1);

      assert.equal(await wait, true);
      assert.ok(performance.now() - started < 1000, 'resolved within the re-read interval, not at a poll');
    });

    test('missing backend times out', async () => {
      const check = newCheck();
      backend.program(WEB, 1);
      backend.program(DNS, 0);

      assert.equal(await check.waitProgrammed([WEB_FE, DNS_FE], 50), false);
    });

    test('unknown frontend times out', async () => {
      assert.equal(await newCheck().waitProgrammed([WEB_FE], 30), false);
    });

    test('any port needs one port', async () => {
      const check = newCheck();
      backend.program({ ...WEB, port: 8080, revNatId: 20 }, 0);
      backend.program({ ...WEB, port: 9090, revNatId: 21 }, 1);

      assert.equal(await check.waitProgrammed([{ ...WEB_FE, port: 'any' }], 1000), true);
    });

    test('any port without backends times out', async () => {
      const check = newCheck();
      backend.program({ ...WEB, port: 8080, revNatId: 20 }, 0);
      backend.program({ ...WEB, protocol: 'udp', port: 9090, revNatId: 21 }, 1);

      assert.equal(await check.waitProgrammed([{ ...WEB_FE, port: 'any' }], 30), false);
    });

    test('any-protocol entry serves TCP', async () => {
      const check = newCheck();
      backend.program({ ...WEB, protocol: 'any' }, 1);

      assert.equal(await check.waitProgrammed([WEB_FE], 1000), true);
    });

    test('exact protocol hides any entry', async () => {
      const check = newCheck();
      backend.program({ ...WEB, protocol: 'any', revNatId: 30 }, 1);
      backend.program({ ...WEB, protocol: 'tcp', revNatId: 31 }, 0);

      assert.equal(await check.waitProgrammed([WEB_FE], 30), false);
    });

    test('internal scope counts', async () => {
      const check = newCheck();
      backend.program({ ...WEB, revNatId: 40 }, 0);
      backend.program({ ...WEB, scope: 1, revNatId: 41 }, 1);

      assert.equal(await check.waitProgrammed([WEB_FE], 1000), true);
    });

    test('frontend Cilium lacks is skipped', async () => {
      // A NodePort on the node's ExternalIP behind 1:1 NAT, for which
      // Cilium writes no entry, so no hook can hold its flows.
      const check = newCheck();
      backend.program(WEB, 1);

      assert.equal(await check.waitProgrammed([WEB_FE, { address: '198.18.0.99', protocol: 'tcp', port: 30080 }], 1000), true);
    });

    test('close resolves false', async () => {
      const check = newCheck();
      const wait = check.waitProgrammed([WEB_FE], 5000);
      check.close();

      assert.equal(await wait, false);
    });

    test('invalid address rejects', async () => {
      await assert.rejects(newCheck().waitProgrammed([{ ...WEB_FE, address: 'web.demo' }], 10), TypeError);
    });

    test('re-read interval fits the source', async () => {
      const check = newCheck();
      const reads = countReads(backend.source);
      await check.waitProgrammed([WEB_FE], 500);

      // 5 ms for the pinned maps, 100 ms for the REST API.
      if (backend.source.kind === 'rest') assert.ok(reads() <= 10, `${reads()} REST reads in a 500 ms wait`);
      else assert.ok(reads() >= 20, `${reads()} map reads in a 500 ms wait`);
    });
  });
}
