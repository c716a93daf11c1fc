// Rev-NAT ids of zerohold frontends from Cilium's service list: exact and
// any-protocol entries, both scopes, any-port frontends, IPv6 spellings.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import type { CiliumFrontend, CiliumServiceSource } from '../../src/agent/cilium/frontends.js';
import { CiliumServiceIds } from '../../src/agent/cilium/service-ids.js';

class ListSource implements CiliumServiceSource {
  readonly kind = 'maps';
  private readonly listeners: ((frontends: readonly CiliumFrontend[]) => void)[] = [];

  constructor(private list: readonly CiliumFrontend[]) {}

  frontends(): readonly CiliumFrontend[] {
    return this.list;
  }

  async refresh(): Promise<void> {}

  onChange(listener: (frontends: readonly CiliumFrontend[]) => void): () => void {
    this.listeners.push(listener);
    return () => undefined;
  }

  close(): void {}

  replace(list: readonly CiliumFrontend[]): void {
    this.list = list;
    for (const listener of this.listeners) listener(list);
  }
}

const entry = (address: string, port: number, revNatId: number, patch: Partial<CiliumFrontend> = {}): CiliumFrontend => ({
  address,
  protocol: 'tcp',
  port,
  scope: 'external',
  revNatId,
  backends: 0,
  ...patch,
});

test('ids of exact and any-protocol entries', () => {
  const source = new ListSource([entry('198.19.0.10', 80, 3), entry('198.19.0.10', 443, 4), entry('198.19.0.11', 53, 5, { protocol: 'any' }), entry('198.19.0.12', 53, 6, { protocol: 'udp' })]);
  const ids = new CiliumServiceIds(source);

  assert.deepEqual(ids.revNatIdsOf([{ address: '198.19.0.10', protocol: 'tcp', port: 80 }]), [3]);
  assert.deepEqual(ids.revNatIdsOf([{ address: '198.19.0.11', protocol: 'udp', port: 53 }]), [5], 'an any-protocol entry matches udp');
  assert.deepEqual(ids.revNatIdsOf([{ address: '198.19.0.12', protocol: 'tcp', port: 53 }]), [], 'a udp entry does not match tcp');
  assert.deepEqual(ids.revNatIdsOf([{ address: '198.19.0.10', protocol: 'tcp', port: 'any' }]), [3, 4], 'any port takes every port');
  assert.deepEqual(ids.revNatIdsOf([{ address: '198.19.9.9', protocol: 'tcp', port: 80 }]), [], 'unknown to Cilium');
});

test('both scopes and IPv6 spellings', () => {
  const source = new ListSource([entry('fd5a:19::a', 80, 7), entry('fd5a:19::a', 80, 8, { scope: 'internal' })]);
  const ids = new CiliumServiceIds(source);

  assert.deepEqual(ids.revNatIdsOf([{ address: 'fd5a:0019:0000::000a', protocol: 'tcp', port: 80 }]), [7, 8]);
});

test('ids follow the source', () => {
  const source = new ListSource([]);
  const ids = new CiliumServiceIds(source);
  let changes = 0;
  ids.onChange(() => changes++);
  assert.deepEqual(ids.revNatIdsOf([{ address: '198.19.0.10', protocol: 'tcp', port: 80 }]), []);

  source.replace([entry('198.19.0.10', 80, 9)]);
  assert.equal(changes, 1);
  assert.deepEqual(ids.revNatIdsOf([{ address: '198.19.0.10', protocol: 'tcp', port: 80 }]), [9]);
});
