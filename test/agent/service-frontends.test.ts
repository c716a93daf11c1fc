import assert from 'node:assert/strict';
import { test } from 'node:test';

import type { V1Service } from '@kubernetes/client-node';

import { resolveFrontends } from '../../src/agent/service-frontends.js';
import { frontendToString } from '../../src/datapath/frontends.js';

function service(spec: V1Service['spec'], status?: V1Service['status']): V1Service {
  return { metadata: { name: 'web', namespace: 'default' }, spec, ...(status ? { status } : {}) };
}

function names(s: V1Service, nodes: string[] = []): string[] {
  return resolveFrontends(s, nodes).frontends.map(frontendToString).sort();
}

const CASES: { name: string; service: V1Service; nodes?: string[]; want: string[]; skipped?: RegExp[] }[] = [
  {
    name: 'ClusterIP with two ports',
    service: service({ clusterIP: '198.19.0.10', clusterIPs: ['198.19.0.10'], ports: [{ port: 80 }, { port: 53, protocol: 'UDP' }] }),
    want: ['tcp/198.19.0.10:80', 'udp/198.19.0.10:53'],
  },
  {
    name: 'dual-stack ClusterIPs',
    service: service({ clusterIPs: ['198.19.0.10', 'fd5a:19::a'], ports: [{ port: 443 }] }),
    want: ['tcp/198.19.0.10:443', 'tcp/[fd5a:19::a]:443'],
  },
  {
    name: 'NodePort on matching families',
    service: service({ type: 'NodePort', clusterIPs: ['198.19.0.10'], ports: [{ port: 80, nodePort: 30080 }] }),
    nodes: ['198.18.0.1', 'fd5a:18::1'],
    want: ['tcp/198.18.0.1:30080', 'tcp/198.19.0.10:80'],
  },
  {
    name: 'IPs kube-proxy does not serve',
    service: service(
      { type: 'LoadBalancer', clusterIPs: ['198.19.0.10'], externalIPs: ['198.19.1.1', 'fd5a:19::7'], ports: [{ port: 80, nodePort: 30080 }] },
      { loadBalancer: { ingress: [{ ip: '198.19.2.1', ipMode: 'Proxy' }, { ip: 'fd5a:19::50' }, { ip: '198.19.2.2', ipMode: 'VIP' }] } },
    ),
    want: ['tcp/198.19.0.10:80', 'tcp/198.19.1.1:80', 'tcp/198.19.2.2:80'],
    skipped: [/load balancer ingress 198\.19\.2\.1 has ipMode Proxy/, /externalIP fd5a:19::7 is of an IP family the Service has no ClusterIP in/, /load balancer ingress fd5a:19::50 is of an IP family/],
  },
  {
    name: 'LoadBalancer ingress and externalIPs',
    service: service(
      { type: 'LoadBalancer', clusterIPs: ['198.19.0.10'], externalIPs: ['198.19.1.1'], ports: [{ port: 80, nodePort: 30080 }] },
      { loadBalancer: { ingress: [{ ip: '198.19.2.1' }, { hostname: 'lb.example.invalid' }] } },
    ),
    nodes: ['198.18.0.1'],
    want: ['tcp/198.18.0.1:30080', 'tcp/198.19.0.10:80', 'tcp/198.19.1.1:80', 'tcp/198.19.2.1:80'],
  },
  {
    name: 'headless Service is skipped',
    service: service({ clusterIP: 'None', clusterIPs: ['None'], ports: [{ port: 80 }] }),
    want: [],
    skipped: [/headless/],
  },
  {
    name: 'ExternalName is skipped',
    service: service({ type: 'ExternalName', externalName: 'db.example.invalid', ports: [{ port: 5432 }] }),
    want: [],
    skipped: [/ExternalName/],
  },
  {
    name: 'SCTP port is skipped',
    service: service({ clusterIPs: ['198.19.0.10'], ports: [{ name: 'sig', port: 3868, protocol: 'SCTP' }, { port: 80 }] }),
    want: ['tcp/198.19.0.10:80'],
    skipped: [/sig\/SCTP: only TCP and UDP/],
  },
  {
    name: 'IPv6 written in long form',
    service: service({ clusterIPs: ['fd5a:0019:0000:0000:0000:0000:0000:000a'], ports: [{ port: 80 }] }),
    want: ['tcp/[fd5a:19::a]:80'],
  },
];

for (const c of CASES) {
  test(`frontends: ${c.name}`, () => {
    assert.deepEqual(names(c.service, c.nodes), [...c.want].sort());
    const skipped = resolveFrontends(c.service, c.nodes).skipped;
    assert.equal(skipped.length, c.skipped?.length ?? 0, skipped.join('; '));
    for (const pattern of c.skipped ?? []) {
      assert.ok(skipped.some((s) => pattern.test(s)), `${pattern} in ${skipped.join('; ')}`);
    }
  });
}
