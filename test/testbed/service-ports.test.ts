// Unit tests of the Service and EndpointSlice reading behind the
// kube-proxy stand-in.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import type { V1EndpointSlice, V1Service } from '@kubernetes/client-node';

import { servicePorts } from './service-ports.js';

function service(name: string, spec: V1Service['spec']): V1Service {
  return { metadata: { name, namespace: 'demo' }, spec };
}

function slice(serviceName: string, addressType: string, endpoints: V1EndpointSlice['endpoints'], portName = 'http'): V1EndpointSlice {
  return {
    metadata: { name: `${serviceName}-${addressType}`, namespace: 'demo', labels: { 'kubernetes.io/service-name': serviceName } },
    addressType,
    ports: [{ name: portName, protocol: 'TCP', port: 8080 }],
    endpoints,
  };
}

const DUAL: V1Service['spec'] = { clusterIP: '198.19.0.10', clusterIPs: ['198.19.0.10', 'fd5a:19::10'], ports: [{ name: 'http', port: 80, protocol: 'TCP' }] };

test('service ports pick the family ClusterIP', () => {
  assert.equal(servicePorts([service('web', DUAL)], [], 'ipv4')[0]?.clusterIP, '198.19.0.10');
  assert.equal(servicePorts([service('web', DUAL)], [], 'ipv6')[0]?.clusterIP, 'fd5a:19::10');
});

test('service ports skip single-stack family', () => {
  const single = service('web', { clusterIP: '198.19.0.10', ports: [{ name: 'http', port: 80 }] });
  assert.deepEqual(servicePorts([single], [], 'ipv6'), []);
});

test('service ports skip headless and ExternalName', () => {
  const headless = service('headless', { clusterIP: 'None', ports: [{ port: 80 }] });
  const external = service('external', { type: 'ExternalName', externalName: 'example.invalid', ports: [{ port: 80 }] });
  assert.deepEqual(servicePorts([headless, external], [], 'ipv4'), []);
});

test('service ports keep ready and unset endpoints', () => {
  const slices = [
    slice('web', 'IPv4', [
      { addresses: ['198.18.16.3'], conditions: { ready: true } },
      { addresses: ['198.18.16.2'], conditions: {} },
      { addresses: ['198.18.16.4'], conditions: { ready: false } },
    ]),
  ];
  const [port] = servicePorts([service('web', DUAL)], slices, 'ipv4');
  assert.deepEqual(port?.endpoints, [
    { address: '198.18.16.2', port: 8080 },
    { address: '198.18.16.3', port: 8080 },
  ]);
});

test('service ports match slices by family and port name', () => {
  const slices = [slice('web', 'IPv6', [{ addresses: ['fd5a:18:16::2'] }]), slice('web', 'IPv4', [{ addresses: ['198.18.16.2'] }], 'metrics')];
  assert.deepEqual(servicePorts([service('web', DUAL)], slices, 'ipv4')[0]?.endpoints, [], 'IPv4 slice has another port name');
  assert.deepEqual(servicePorts([service('web', DUAL)], slices, 'ipv6')[0]?.endpoints, [{ address: 'fd5a:18:16::2', port: 8080 }]);
});

test('service ports read NodePort only for NodePort type', () => {
  const ports = [{ name: 'http', port: 80, nodePort: 30080 }];
  assert.equal(servicePorts([service('np', { ...DUAL, type: 'NodePort', ports })], [], 'ipv4')[0]?.nodePort, 30080);
  assert.equal(servicePorts([service('cip', { ...DUAL, type: 'ClusterIP', ports })], [], 'ipv4')[0]?.nodePort, 0);
});
