// Turns a Kubernetes Service into the datapath frontends that receive its
// traffic on this node: every ClusterIP (both families), every port and
// protocol, NodePorts on the node's addresses, LoadBalancer ingress IPs and
// externalIPs. Anything the datapath cannot hold is reported, not dropped.

import type { V1Service } from '@kubernetes/client-node';
import ipaddr from 'ipaddr.js';

import type { Frontend, L4Protocol } from '../datapath/frontends.js';

export interface ResolvedFrontends {
  frontends: Frontend[];
  // Parts of the Service that get no frontend, with the reason.
  skipped: string[];
}

function family(address: string): 4 | 6 | null {
  if (ipaddr.IPv4.isValidFourPartDecimal(address)) return 4;
  if (ipaddr.IPv6.isValid(address)) return 6;
  return null;
}

export function resolveFrontends(service: V1Service, nodeAddresses: string[] = []): ResolvedFrontends {
  const spec = service.spec ?? {};
  const frontends = new Map<string, Frontend>();
  const skipped: string[] = [];

  const add = (address: string, protocol: L4Protocol, port: number, origin: string) => {
    if (family(address) === null) {
      skipped.push(`${origin} ${JSON.stringify(address)} is not an IP address`);
      return;
    }
    const normalized = ipaddr.parse(address).toString();
    frontends.set(`${protocol}|${normalized}|${port}`, { address: normalized, protocol, port });
  };

  let clusterIPs: string[] = [];
  if (spec.clusterIPs?.length) clusterIPs = spec.clusterIPs;
  else if (spec.clusterIP) clusterIPs = [spec.clusterIP];
  const headless = clusterIPs.length === 0 || clusterIPs.includes('None');
  if (headless && spec.type !== 'ExternalName') {
    skipped.push('headless Service: clients resolve pod addresses directly, so no virtual IP exists to hold');
  }
  if (spec.type === 'ExternalName') {
    skipped.push('ExternalName Service: traffic goes to an outside name, not to this cluster');
    return { frontends: [], skipped };
  }

  const serviceFamilies = new Set(clusterIPs.map(family));
  // kube-proxy sends no traffic for a load balancer IP whose ipMode is
  // Proxy, which the load balancer itself rewrites, nor for an external or
  // load balancer IP of a family the Service has no ClusterIP in.
  const ingressIPs: string[] = [];
  for (const ingress of service.status?.loadBalancer?.ingress ?? []) {
    if (!ingress.ip) continue;
    if (ingress.ipMode === 'Proxy') skipped.push(`load balancer ingress ${ingress.ip} has ipMode Proxy: the load balancer forwards to node addresses, not to this IP`);
    else ingressIPs.push(ingress.ip);
  }
  const servedFamily = (ip: string, origin: string): boolean => {
    if (headless || !ipaddr.isValid(ip) || serviceFamilies.has(family(ip))) return true;
    skipped.push(`${origin} ${ip} is of an IP family the Service has no ClusterIP in, and kube-proxy serves none of its traffic`);
    return false;
  };
  const externalIPs = (spec.externalIPs ?? []).filter((ip) => servedFamily(ip, 'externalIP'));
  const servedIngressIPs = ingressIPs.filter((ip) => servedFamily(ip, 'load balancer ingress'));

  for (const port of spec.ports ?? []) {
    const protocol = (port.protocol ?? 'TCP').toLowerCase();
    if (protocol !== 'tcp' && protocol !== 'udp') {
      skipped.push(`port ${port.name ?? port.port}/${port.protocol}: only TCP and UDP can be held`);
      continue;
    }
    const l4 = protocol as L4Protocol;

    if (!headless) {
      for (const ip of clusterIPs) add(ip, l4, port.port, 'clusterIP');
    }
    for (const ip of externalIPs) add(ip, l4, port.port, 'externalIP');
    if (spec.type === 'LoadBalancer') {
      for (const ip of servedIngressIPs) add(ip, l4, port.port, 'load balancer ingress');
    }

    // A NodePort receives traffic on every node address of the Service's families.
    if ((spec.type === 'NodePort' || spec.type === 'LoadBalancer') && port.nodePort) {
      for (const address of nodeAddresses) {
        if (serviceFamilies.has(family(address))) add(address, l4, port.nodePort, 'node address');
      }
    }
  }

  return { frontends: [...frontends.values()], skipped };
}
