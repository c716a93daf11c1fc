// The endpoints that a release probes before it re-injects: those that
// kube-proxy may pick for a held TCP flow. A flow went to one Service port
// of the workload, through one of the Service's addresses (ClusterIP,
// external IP, load balancer IP) and the port, or through a node address
// and the nodePort. kube-proxy sends it to a Ready endpoint of the same IP
// family, on the endpoint port that has the Service port's name.

import type { V1Service } from '@kubernetes/client-node';
import ipaddr from 'ipaddr.js';

import type { Flow } from '../datapath/records.js';
import type { ReadyBackends } from './endpoint-readiness.js';
import type { ListenTarget } from './listen-check.js';

// The IP family of an EndpointSlice's addressType. FQDN slices have none.
const FAMILY_OF_ADDRESS_TYPE: Record<string, 4 | 6 | undefined> = { IPv4: 4, IPv6: 6 };

export interface ServiceBackends {
  service: V1Service;
  // The Service's EndpointSlices with Ready endpoints.
  backends: ReadyBackends[];
}

export function listenTargetsOf(flows: Flow[], services: ServiceBackends[]): ListenTarget[] {
  const tcpFlows = flows.filter((flow) => flow.protocol === 'tcp').map((flow) => ({ address: normalize(flow.destination), port: flow.destinationPort }));
  if (tcpFlows.length === 0) return [];

  const targets = new Map<string, ListenTarget>();
  for (const { service, backends } of services) {
    const addresses = serviceAddresses(service);
    for (const servicePort of service.spec?.ports ?? []) {
      if ((servicePort.protocol ?? 'TCP') !== 'TCP') continue;

      // The IP families of the held flows that went to this Service port.
      const families = new Set<4 | 6>();
      for (const flow of tcpFlows) {
        const viaService = flow.port === servicePort.port && addresses.has(flow.address);
        const viaNode = servicePort.nodePort !== undefined && flow.port === servicePort.nodePort && !addresses.has(flow.address);
        if (viaService || viaNode) families.add(flow.address.includes(':') ? 6 : 4);
      }
      if (families.size === 0) continue;

      for (const slice of backends) {
        const family = FAMILY_OF_ADDRESS_TYPE[slice.addressType];
        if (family === undefined || !families.has(family)) continue;
        const port = slice.ports.find((p) => (p.name ?? '') === (servicePort.name ?? '') && (p.protocol ?? 'TCP') === 'TCP')?.port;
        if (port === undefined) continue;
        for (const address of slice.addresses) targets.set(`${address}|${port}`, { address, port });
      }
    }
  }
  return [...targets.values()];
}

// The addresses on which the Service itself receives traffic, in
// ipaddr.js's canonical form.
function serviceAddresses(service: V1Service): Set<string> {
  const spec = service.spec ?? {};
  let clusterIPs = spec.clusterIPs ?? [];
  if (clusterIPs.length === 0 && spec.clusterIP) clusterIPs = [spec.clusterIP];
  const ingress = (service.status?.loadBalancer?.ingress ?? []).flatMap((entry) => (entry.ip ? [entry.ip] : []));
  const addresses = new Set<string>();
  for (const address of [...clusterIPs, ...(spec.externalIPs ?? []), ...ingress]) {
    if (ipaddr.isValid(address)) addresses.add(normalize(address));
  }
  return addresses;
}

function normalize(address: string): string {
  return ipaddr.parse(address).toString();
}
