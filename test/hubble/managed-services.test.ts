import assert from 'node:assert/strict';
import { test } from 'node:test';

import { create } from '@bufbuild/protobuf';

import { FlowSchema, Verdict } from '../../src/hubble/gen/flow/flow_pb.js';
import { ManagedServices } from '../../src/hubble/managed-services.js';

const services = new ManagedServices([{ namespace: 'shop', name: 'web' }], ['198.19.0.10']);

test('managed whitelist has name and address filters', () => {
  const whitelist = services.whitelist({ verdict: [Verdict.DROPPED] });

  assert.equal(whitelist.length, 2);
  assert.deepEqual(whitelist[0]!.destinationService, ['shop/web']);
  assert.deepEqual(whitelist[0]!.verdict, [Verdict.DROPPED]);
  assert.deepEqual(whitelist[1]!.destinationIp, ['198.19.0.10']);
  assert.deepEqual(whitelist[1]!.verdict, [Verdict.DROPPED]);
});

test('managed whitelist empty without services', () => {
  assert.deepEqual(new ManagedServices([]).whitelist(), []);
});

test('managed match is exact', () => {
  const web = create(FlowSchema, { destinationService: { namespace: 'shop', name: 'web' } });
  const canary = create(FlowSchema, { destinationService: { namespace: 'shop', name: 'web-canary' } });
  const byAddress = create(FlowSchema, { IP: { destination: '198.19.0.10' } });
  const other = create(FlowSchema, { IP: { destination: '198.19.0.11' } });

  assert.equal(services.match(web), 'shop/web');
  assert.equal(services.match(canary), undefined);
  assert.equal(services.match(byAddress), '198.19.0.10');
  assert.equal(services.match(other), undefined);
});
