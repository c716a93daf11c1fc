// The endpoints that a release probes before it re-injects: those that
// kube-proxy may pick for a held flow. A flow went to one Service port of
// the workload, through one of the Service's addresses (ClusterIP,
// external IP, load balancer IP) and the port, or through a node address
// and the nodePort. kube-proxy sends it to a Ready endpoint of the same IP
// family, on the endpoint port that has the Service port's name and
// protocol. TCP and UDP ports are probed; SCTP ports are not, and the
// datapath holds no SCTP flow.

import type { V1Service } from '@kubernetes/client-node';
import ipaddr from 'ipaddr.js';

import { frontendToString } from '../datapath/frontends.js';
import type { Flow } from '../datapath/records.js';
import type { ReadyBackends } from './endpoint-readiness.js';
import type { ListenTarget } from './listen-check.js';
import { resolveFrontends } from './service-frontends.js';

// The IP family of an EndpointSlice's addressType. FQDN slices have none.
const FAMILY_OF_ADDRESS_TYPE: Record<string, 4 | 6 | undefined> = { IPv4: 4, IPv6: 6 };

export interface ServiceBackends {
  service: V1Service;
  // The Service's EndpointSlices with Ready endpoints.
  backends: ReadyBackends[];
}

// nodeAddresses are the addresses on which the agent installs NodePort
// frontends, as for resolveFrontends().
export function listenTargetsOf(flows: Flow[], services: ServiceBackends[], nodeAddresses: string[]): ListenTarget[] {
  const sent = new Set(flows.map((flow) => frontendToString({ address: normalize(flow.destination), protocol: flow.protocol, port: flow.destinationPort })));
  if (sent.size === 0) return [];

  const targets = new Map<string, ListenTarget>();
  for (const { service, backends } of services) {
    for (const servicePort of service.spec?.ports ?? []) {
      const protocol = probedProtocol(servicePort.protocol);
      if (protocol === undefined) continue;

      // The IP families of the held flows that went to this Service port,
      // through one of the frontends that the agent installs for it.
      const onePort: V1Service = { ...service, spec: { ...service.spec, ports: [servicePort] } };
      const families = new Set<4 | 6>();
      for (const frontend of resolveFrontends(onePort, nodeAddresses).frontends) {
        if (sent.has(frontendToString(frontend))) families.add(frontend.address.includes(':') ? 6 : 4);
      }
      if (families.size === 0) continue;

      for (const slice of backends) {
        const family = FAMILY_OF_ADDRESS_TYPE[slice.addressType];
        if (family === undefined || !families.has(family)) continue;
        const port = slice.ports.find((p) => (p.name ?? '') === (servicePort.name ?? '') && probedProtocol(p.protocol) === protocol)?.port;
        if (port === undefined) continue;
        for (const address of slice.addresses) targets.set(`${address}|${port}|${protocol}`, { address, port, protocol });
      }
    }
  }
  return [...targets.values()];
}

// The protocols whose endpoints a release probes, from their Kubernetes
// name; Kubernetes defaults a port's protocol to TCP.
function probedProtocol(name: string | undefined): 'tcp' | 'udp' | undefined {
  if (name === undefined || name === 'TCP') return 'tcp';
  return name === 'UDP' ? 'udp' : undefined;
}

// resolveFrontends() writes addresses in ipaddr.js's canonical form.
function normalize(address: string): string {
  return ipaddr.parse(address).toString();
}
