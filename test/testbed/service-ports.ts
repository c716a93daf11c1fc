// Turns Services and EndpointSlices into the per-family list of service
// ports that the kube-proxy stand-in programs, with the rules kube-proxy
// applies when it reads them:
// - ExternalName and headless (clusterIP None) Services are skipped.
// - A Service is programmed in a family only if it has a ClusterIP of that
//   family, from spec.clusterIPs (or spec.clusterIP).
// - An EndpointSlice belongs to the Service named by its
//   kubernetes.io/service-name label, in the same namespace, and its
//   addressType picks the family.
// - A slice port serves a Service port when names and protocols match
//   (an unnamed port matches an unnamed one).
// - An endpoint is used when conditions.ready is true or unset, and only
//   its first address, as the EndpointSlice API documents.

import type { V1EndpointSlice, V1Service } from '@kubernetes/client-node';

import type { ServicePortName } from './kube-proxy-names.js';

export type IpFamily = 'ipv4' | 'ipv6';

export interface Endpoint {
  address: string;
  port: number;
}

export interface ServicePort {
  name: ServicePortName;
  clusterIP: string;
  port: number;
  // Zero when the Service has no NodePort for this port.
  nodePort: number;
  // Ready endpoints of this family, sorted by address and port so that
  // an unchanged input renders an unchanged ruleset.
  endpoints: Endpoint[];
}

const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';
const NODE_PORT_TYPES = new Set(['NodePort', 'LoadBalancer']);

export function familyOf(address: string): IpFamily {
  return address.includes(':') ? 'ipv6' : 'ipv4';
}

export function servicePorts(services: readonly V1Service[], slices: readonly V1EndpointSlice[], family: IpFamily): ServicePort[] {
  const slicesByService = groupSlices(slices, family);
  const result: ServicePort[] = [];

  for (const service of services) {
    const spec = service.spec;
    if (!spec || spec.type === 'ExternalName') continue;
    const clusterIP = (spec.clusterIPs ?? [spec.clusterIP ?? '']).find((ip) => ip !== '' && ip !== 'None' && familyOf(ip) === family);
    if (clusterIP === undefined) continue;

    const namespace = service.metadata?.namespace ?? 'default';
    const name = service.metadata?.name ?? '';
    const serviceSlices = slicesByService.get(`${namespace}/${name}`) ?? [];

    for (const port of spec.ports ?? []) {
      const protocol = (port.protocol ?? 'TCP').toLowerCase();
      const portName = port.name ?? '';
      result.push({
        name: { namespace, name, protocol, portName },
        clusterIP,
        port: port.port,
        nodePort: NODE_PORT_TYPES.has(spec.type ?? '') ? (port.nodePort ?? 0) : 0,
        endpoints: readyEndpoints(serviceSlices, portName, protocol),
      });
    }
  }
  return result;
}

function groupSlices(slices: readonly V1EndpointSlice[], family: IpFamily): Map<string, V1EndpointSlice[]> {
  const addressType = family === 'ipv4' ? 'IPv4' : 'IPv6';
  const groups = new Map<string, V1EndpointSlice[]>();
  for (const slice of slices) {
    const service = slice.metadata?.labels?.[SERVICE_NAME_LABEL];
    if (service === undefined || slice.addressType !== addressType) continue;
    const key = `${slice.metadata?.namespace ?? 'default'}/${service}`;
    groups.set(key, [...(groups.get(key) ?? []), slice]);
  }
  return groups;
}

function readyEndpoints(slices: V1EndpointSlice[], portName: string, protocol: string): Endpoint[] {
  const unique = new Map<string, Endpoint>();
  for (const slice of slices) {
    const slicePort = (slice.ports ?? []).find((p) => (p.name ?? '') === portName && (p.protocol ?? 'TCP').toLowerCase() === protocol);
    if (slicePort?.port === undefined) continue;

    // NOTE: kube-proxy falls back to serving, terminating endpoints when a
    // Service has no ready one. This stand-in does not, so a Service whose
    // pods are all terminating has no backend here.
    for (const endpoint of slice.endpoints ?? []) {
      const address = endpoint.addresses?.[0];
      if (address === undefined || endpoint.conditions?.ready === false) continue;
      unique.set(`${address}/${slicePort.port}`, { address, port: slicePort.port });
    }
  }
  return [...unique.values()].sort(compareEndpoints);
}

function compareEndpoints(a: Endpoint, b: Endpoint): number {
  if (a.address !== b.address) return a.address < b.address ? -1 : 1;
  return a.port - b.port;
}
