// Chain names checked against the examples in kube-proxy's own comments
// (kubernetes/kubernetes pkg/proxy/nftables/proxier.go, commit b0f823e6).

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { endpointChainName, externalChainName, serviceChainName, servicePortLabel } from './kube-proxy-names.js';

const PORT = { namespace: 'ns1', name: 'svc1', protocol: 'tcp', portName: 'p80' };

test('service chain name matches kube-proxy', () => {
  assert.equal(serviceChainName(PORT), 'service-ULMVA6XW-ns1/svc1/tcp/p80');
});

test('external chain name shares the hash', () => {
  assert.equal(externalChainName(PORT), 'external-ULMVA6XW-ns1/svc1/tcp/p80');
});

test('endpoint chain name matches kube-proxy', () => {
  assert.equal(endpointChainName(PORT, '10.180.0.1', 80), 'endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80');
});

test('endpoint chain name replaces IPv6 colons', () => {
  assert.match(endpointChainName(PORT, 'fd5a:18:16::2', 8080), /^endpoint-[A-Z2-7]{8}-ns1\/svc1\/tcp\/p80__fd5a\.18\.16\.\.2\/8080$/);
});

test('long chain name is truncated', () => {
  const name = serviceChainName({ ...PORT, name: 'x'.repeat(250) });
  assert.equal(name.length, 'service-'.length + 240);
  assert.ok(name.endsWith('...'), name);
});

test('service port label', () => {
  assert.equal(servicePortLabel(PORT), 'ns1/svc1:p80');
  assert.equal(servicePortLabel({ ...PORT, portName: '' }), 'ns1/svc1');
});
