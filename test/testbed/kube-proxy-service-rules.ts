// The part of a kube-proxy table that follows Services and endpoints: the
// per-port service, external and endpoint chains, and the elements of the
// sets and maps that point at them. The rest of the table (base chains,
// jump rules, fixed chains, nodeport-ips) is fixed for a node and is written
// only by a full sync (kube-proxy-ruleset.ts).
//
// Both kinds of sync start from this model: a full sync writes all of it,
// and a partial sync writes the difference between the model that was last
// applied and the current one (kube-proxy-changes.ts). So both kinds write
// the same rules for the same Services.

import { endpointChainName, externalChainName, serviceChainName, servicePortLabel } from './kube-proxy-names.js';
import type { FamilyRules } from './kube-proxy-ruleset.js';
import type { IpFamily, ServicePort } from './service-ports.js';

// The sets and maps whose elements change with Services and endpoints.
// firewall-ips stays empty because the testbed has no
// LoadBalancerSourceRanges, and nodeport-ips contains the node's own
// addresses.
export const SERVICE_SETS = ['cluster-ips', 'service-ips', 'service-nodeports', 'no-endpoint-services', 'no-endpoint-nodeports'] as const;

export type ServiceSet = (typeof SERVICE_SETS)[number];

export interface ServiceRules {
  // Service, external and endpoint chains by name, each with its rules as
  // nft writes them after `add rule TABLE CHAIN`. A chain comes after every
  // chain that its rules jump to, so rendering in insertion order creates
  // the targets first.
  chains: Map<string, string[]>;
  // Elements by set or map, then by key as nft writes it (such as
  // "198.19.1.10 . tcp . 80"). The value is the rest of the element: an
  // optional comment and, in a map, ": verdict". It is empty in a set.
  elements: Map<ServiceSet, Map<string, string>>;
}

export function nftFamily(family: IpFamily): 'ip' | 'ip6' {
  return family === 'ipv4' ? 'ip' : 'ip6';
}

// Builds the chains and elements of one family's table for its Service ports.
export function buildServiceRules(rules: FamilyRules): ServiceRules {
  const result: ServiceRules = { chains: new Map(), elements: new Map(SERVICE_SETS.map((set) => [set, new Map()])) };
  const clusterIPs = result.elements.get('cluster-ips')!;

  for (const port of rules.servicePorts) {
    if (port.endpoints.length > 0) {
      addServicePort(result, rules, port);
      clusterIPs.set(port.clusterIP, '');
      continue;
    }

    // With 'fall-through', a port without endpoints has no element at all,
    // so its packets take the normal route. Its ClusterIP is still in
    // cluster-ips when another port of that ClusterIP has an endpoint, and
    // then cluster-ips-check rejects new connections to it, as in kube-proxy.
    if (rules.noEndpointVerdict === 'reject') {
      addNoEndpointElements(result, port);
      clusterIPs.set(port.clusterIP, '');
    }
  }
  return result;
}

function addServicePort(result: ServiceRules, rules: FamilyRules, port: ServicePort): void {
  const nft = nftFamily(rules.family);
  const serviceChain = serviceChainName(port.name);
  const endpointChains = port.endpoints.map((endpoint) => endpointChainName(port.name, endpoint.address, endpoint.port));

  // Endpoint chains: hairpin traffic (a pod reaching itself through the
  // Service) is masqueraded so that the reply comes back through this node.
  for (const [i, endpoint] of port.endpoints.entries()) {
    const destination = rules.family === 'ipv4' ? `${endpoint.address}:${endpoint.port}` : `[${endpoint.address}]:${endpoint.port}`;
    result.chains.set(endpointChains[i]!, [`${nft} saddr ${endpoint.address} jump mark-for-masquerade`, `meta l4proto ${port.name.protocol} dnat to ${destination}`]);
  }

  // Service chain: traffic from outside the pod CIDRs may leave through
  // another node, and the reply would then bypass this node's conntrack
  // entry, so it is masqueraded.
  const serviceRules: string[] = [];
  if (rules.podCidrs.length > 0) {
    serviceRules.push(`${nft} daddr ${port.clusterIP} ${port.name.protocol} dport ${port.port} ${nft} saddr != { ${rules.podCidrs.join(', ')} } jump mark-for-masquerade`);
  }
  const choices = endpointChains.map((chain, i) => `${i} : goto ${chain}`).join(' , ');
  serviceRules.push(`numgen random mod ${endpointChains.length} vmap { ${choices} }`);
  result.chains.set(serviceChain, serviceRules);
  result.elements.get('service-ips')!.set(`${port.clusterIP} . ${port.name.protocol} . ${port.port}`, ` : goto ${serviceChain}`);

  // NodePort traffic goes through the external chain, which masquerades
  // all of it under Cluster traffic policy.
  if (port.nodePort !== 0) {
    const externalChain = externalChainName(port.name);
    result.chains.set(externalChain, ['jump mark-for-masquerade', `goto ${serviceChain}`]);
    result.elements.get('service-nodeports')!.set(`${port.name.protocol} . ${port.nodePort}`, ` : goto ${externalChain}`);
  }
}

function addNoEndpointElements(result: ServiceRules, port: ServicePort): void {
  const value = ` comment "${servicePortLabel(port.name)}" : goto reject-chain`;
  result.elements.get('no-endpoint-services')!.set(`${port.clusterIP} . ${port.name.protocol} . ${port.port}`, value);
  if (port.nodePort !== 0) result.elements.get('no-endpoint-nodeports')!.set(`${port.name.protocol} . ${port.nodePort}`, value);
}
