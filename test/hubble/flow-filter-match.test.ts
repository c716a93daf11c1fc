import assert from 'node:assert/strict';
import { test } from 'node:test';

import { create, type MessageInitShape } from '@bufbuild/protobuf';

import { compileFilter, compileFilters, InvalidFilterError } from '../../src/hubble/flow-filter-match.js';
import { DropReason, FlowFilterSchema, FlowSchema, IPVersion, Verdict } from '../../src/hubble/gen/flow/flow_pb.js';

const flow = create(FlowSchema, {
  uuid: 'f-1',
  verdict: Verdict.DROPPED,
  dropReasonDesc: DropReason.SERVICE_BACKEND_NOT_FOUND,
  IP: { source: '198.18.1.10', destination: '198.19.0.10', ipVersion: IPVersion.IPv4 },
  l4: { protocol: { case: 'TCP', value: { sourcePort: 40000, destinationPort: 80 } } },
  source: { namespace: 'clients', podName: 'client-0' },
  destinationService: { namespace: 'shop', name: 'web' },
  eventType: { type: 1, subType: 158 },
  isReply: false,
  nodeName: 'kind/worker-1',
});

type FilterInit = MessageInitShape<typeof FlowFilterSchema>;

const cases: [string, FilterInit, boolean][] = [
  ['empty filter', {}, true],
  ['uuid', { uuid: ['f-1'] }, true],
  ['source ip exact', { sourceIp: ['198.18.1.10'] }, true],
  ['destination ip cidr', { destinationIp: ['198.19.0.0/24'] }, true],
  ['destination ip other', { destinationIp: ['198.19.1.0/24', '198.19.0.11'] }, false],
  ['service prefix', { destinationService: ['shop/we'] }, true],
  ['service namespace', { destinationService: ['other/web'] }, false],
  ['source pod', { sourcePod: ['clients/client-'] }, true],
  ['verdict', { verdict: [Verdict.FORWARDED, Verdict.DROPPED] }, true],
  ['verdict other', { verdict: [Verdict.FORWARDED] }, false],
  ['drop reason', { dropReasonDesc: [DropReason.SERVICE_BACKEND_NOT_FOUND] }, true],
  ['event type', { eventType: [{ type: 1 }] }, true],
  ['event sub type', { eventType: [{ type: 1, matchSubType: true, subType: 0 }] }, false],
  ['protocol', { protocol: ['TCP'] }, true],
  ['protocol other', { protocol: ['udp'] }, false],
  ['destination port', { destinationPort: ['80'] }, true],
  ['source port other', { sourcePort: ['80'] }, false],
  ['reply', { reply: [false] }, true],
  ['reply other', { reply: [true] }, false],
  ['node name glob', { nodeName: ['kind/worker-*'] }, true],
  ['ip version', { ipVersion: [IPVersion.IPv6] }, false],
  ['all fields must match', { verdict: [Verdict.DROPPED], destinationPort: ['443'] }, false],
];

for (const [name, init, expected] of cases) {
  test(`filter match: ${name}`, () => {
    assert.equal(compileFilter(create(FlowFilterSchema, init))(flow), expected);
  });
}

test('filters combine whitelist and blacklist', () => {
  const web = create(FlowFilterSchema, { destinationService: ['shop/web'] });
  const dropped = create(FlowFilterSchema, { verdict: [Verdict.DROPPED] });
  const other = create(FlowFilterSchema, { destinationService: ['shop/api'] });

  assert.equal(compileFilters([], [])(flow), true);
  assert.equal(compileFilters([other, web], [])(flow), true);
  assert.equal(compileFilters([other], [])(flow), false);
  assert.equal(compileFilters([web], [dropped])(flow), false);
});

test('filter rejects invalid values', () => {
  assert.throws(() => compileFilter(create(FlowFilterSchema, { destinationIp: ['198.19.0.0/99'] })), InvalidFilterError);
  assert.throws(() => compileFilter(create(FlowFilterSchema, { sourceIp: ['web'] })), /invalid source_ip filter "web"/);
  assert.throws(() => compileFilter(create(FlowFilterSchema, { destinationPort: ['http'] })), /invalid destination_port filter "http"/);
  assert.throws(() => compileFilter(create(FlowFilterSchema, { destinationService: ['a/b/c'] })), /invalid destination_service filter/);
});
