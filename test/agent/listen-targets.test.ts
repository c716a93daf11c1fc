// listenTargetsOf(): which Ready endpoints a release probes for its held
// flows, over Services and EndpointSlices written as the API returns them.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import type { V1Service } from '@kubernetes/client-node';

import type { ReadyBackends } from '../../src/agent/endpoint-readiness.js';
import { listenTargetsOf } from '../../src/agent/listen-targets.js';
import type { Flow } from '../../src/datapath/records.js';

const WEB: V1Service = {
  metadata: { name: 'web' },
  spec: {
    type: 'LoadBalancer',
    clusterIP: '198.19.0.10',
    clusterIPs: ['198.19.0.10', 'fd5a:19::a'],
    externalIPs: ['198.19.5.5'],
    ports: [
      { name: 'http', port: 80, nodePort: 30080 },
      { name: 'metrics', port: 9100, protocol: 'TCP' },
      { name: 'dns', port: 53, protocol: 'UDP' },
    ],
  },
  status: { loadBalancer: { ingress: [{ ip: '198.19.9.9' }] } },
};

// The node's addresses, where NodePorts are served.
const NODE_ADDRESSES = ['198.18.0.1', 'fd5a:18::1'];

const V4: ReadyBackends = {
  addressType: 'IPv4',
  addresses: ['198.18.7.1', '198.18.7.2'],
  ports: [
    { name: 'http', port: 8080 },
    { name: 'metrics', port: 9101, protocol: 'TCP' },
    { name: 'dns', port: 5353, protocol: 'UDP' },
  ],
};
const V6: ReadyBackends = { addressType: 'IPv6', addresses: ['fd5a:18::7:1'], ports: [{ name: 'http', port: 8080, protocol: 'TCP' }] };
const FQDN: ReadyBackends = { addressType: 'FQDN', addresses: ['web.example.com'], ports: [{ name: 'http', port: 8080 }] };

function tcp(destination: string, destinationPort: number): Flow {
  return { protocol: 'tcp', source: destination.includes(':') ? 'fd5a:18::100' : '198.18.0.100', sourcePort: 40000, destination, destinationPort };
}

function udp(destination: string, destinationPort: number): Flow {
  return { ...tcp(destination, destinationPort), protocol: 'udp' };
}

function targets(flows: Flow[], services = [{ service: WEB, backends: [V4, V6, FQDN] }]): string[] {
  return listenTargetsOf(flows, services, NODE_ADDRESSES)
    .map((t) => `${t.address}:${t.port}${t.protocol === 'udp' ? '/udp' : ''}`)
    .sort();
}

test('ClusterIP flow probes its family', () => {
  assert.deepEqual(targets([tcp('198.19.0.10', 80)]), ['198.18.7.1:8080', '198.18.7.2:8080']);
  assert.deepEqual(targets([tcp('fd5a:19::a', 80)]), ['fd5a:18::7:1:8080']);
});

test('external and load balancer IPs count', () => {
  assert.deepEqual(targets([tcp('198.19.5.5', 80)]), ['198.18.7.1:8080', '198.18.7.2:8080']);
  assert.deepEqual(targets([tcp('198.19.9.9', 80)]), ['198.18.7.1:8080', '198.18.7.2:8080']);
});

test('NodePort flow on a node address', () => {
  assert.deepEqual(targets([tcp('198.18.0.1', 30080)]), ['198.18.7.1:8080', '198.18.7.2:8080']);
});

test('port of another address is no match', () => {
  // Port 80 on an address that is not the Service's, and the nodePort on
  // the ClusterIP, which kube-proxy does not serve.
  assert.deepEqual(targets([tcp('198.19.0.99', 80)]), []);
  assert.deepEqual(targets([tcp('198.19.0.10', 30080)]), []);
});

test('target port comes from the slice', () => {
  assert.deepEqual(targets([tcp('198.19.0.10', 9100)]), ['198.18.7.1:9101', '198.18.7.2:9101']);
});

test('UDP flow probes the UDP endpoint port', () => {
  assert.deepEqual(targets([udp('198.19.0.10', 53)]), ['198.18.7.1:5353/udp', '198.18.7.2:5353/udp']);
});

test('protocol separates ports of one number', () => {
  // DNS serves port 53 over both protocols, with one endpoint port each.
  const service: V1Service = {
    metadata: { name: 'dns' },
    spec: { clusterIPs: ['198.19.0.53'], ports: [{ name: 'dns', port: 53, protocol: 'UDP' }, { name: 'dns-tcp', port: 53, protocol: 'TCP' }] },
  };
  const backends: ReadyBackends = { addressType: 'IPv4', addresses: ['198.18.8.5'], ports: [{ name: 'dns', port: 5353, protocol: 'UDP' }, { name: 'dns-tcp', port: 5354, protocol: 'TCP' }] };
  const both = [{ service, backends: [backends] }];

  assert.deepEqual(targets([udp('198.19.0.53', 53)], both), ['198.18.8.5:5353/udp']);
  assert.deepEqual(targets([tcp('198.19.0.53', 53)], both), ['198.18.8.5:5354']);
});

test('slice port of another protocol is skipped', () => {
  const service: V1Service = { metadata: { name: 'dns' }, spec: { clusterIPs: ['198.19.0.53'], ports: [{ name: 'dns', port: 53, protocol: 'UDP' }] } };
  const backends: ReadyBackends = { addressType: 'IPv4', addresses: ['198.18.8.5'], ports: [{ name: 'dns', port: 5353, protocol: 'TCP' }] };

  assert.deepEqual(targets([udp('198.19.0.53', 53)], [{ service, backends: [backends] }]), []);
});

test('unnamed single port matches', () => {
  const service: V1Service = { metadata: { name: 'one' }, spec: { clusterIPs: ['198.19.0.20'], ports: [{ port: 443 }] } };
  const backends: ReadyBackends = { addressType: 'IPv4', addresses: ['198.18.8.1'], ports: [{ port: 8443 }] };

  assert.deepEqual(targets([tcp('198.19.0.20', 443)], [{ service, backends: [backends] }]), ['198.18.8.1:8443']);
});

test('non-canonical addresses match', () => {
  const service: V1Service = { metadata: { name: 'six' }, spec: { clusterIPs: ['FD5A:19:0::0B'], ports: [{ name: 'http', port: 80 }] } };

  assert.deepEqual(targets([tcp('fd5a:19::b', 80)], [{ service, backends: [V6] }]), ['fd5a:18::7:1:8080']);
});

test('SCTP Service port is skipped', () => {
  const service: V1Service = { metadata: { name: 'sctp' }, spec: { clusterIPs: ['198.19.0.30'], ports: [{ name: 'http', port: 80, protocol: 'SCTP' }] } };

  assert.deepEqual(targets([tcp('198.19.0.30', 80)], [{ service, backends: [V4] }]), []);
});
