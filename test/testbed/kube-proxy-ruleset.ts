// Renders the `kube-proxy` nftables tables that kube-proxy's nftables mode
// programs (kubernetes/kubernetes pkg/proxy/nftables/proxier.go at commit
// b0f823e6, which has the cluster-ips-check chain), for the features this
// testbed uses: ClusterIPs, NodePorts on the node's own
// addresses, Cluster traffic policy, and masquerading of traffic from
// outside the pod CIDRs.
//
// One table per family, `table ip kube-proxy` and `table ip6 kube-proxy`:
//
//   base chains    filter-prerouting, filter-input, filter-forward,
//                  filter-output (priority dstnat - 10, -110),
//                  filter-output-post-dnat (dstnat + 10, -90),
//                  nat-prerouting, nat-output (dstnat, -100),
//                  nat-postrouting (srcnat, 100)
//   dispatch       services: daddr . meta l4proto . th dport vmap @service-ips,
//                  then daddr @nodeport-ips and meta l4proto . th dport
//                  vmap @service-nodeports
//   maps           service-ips        { ClusterIP . proto . port : goto service-... }
//                  service-nodeports  { proto . nodePort : goto external-... }
//                  no-endpoint-services, no-endpoint-nodeports, firewall-ips
//   sets           cluster-ips, nodeport-ips
//   per port       service-HASH-ns/name/proto/portName: masquerade mark for
//                  sources outside the pod CIDRs, then
//                  numgen random mod N vmap { i : goto endpoint-... }
//                  external-HASH-ns/name/proto/portName: masquerade mark,
//                  then goto the service chain
//   per endpoint   endpoint-HASH-ns/name/proto/portName__IP/port: masquerade
//                  mark for hairpin traffic, then dnat to IP:port
//   masquerading   mark-for-masquerade sets mark 0x4000, and masquerading
//                  (nat-postrouting) clears it and runs masquerade
//                  fully-random
//
// kube-proxy names are in kube-proxy-names.ts. A port with no ready
// endpoint gets no service-ips or service-nodeports element, so its packets
// fall through to normal routing. Its ClusterIP is left out of cluster-ips
// too, unless another port of the same ClusterIP has a ready endpoint: then
// cluster-ips-check rejects the port's new connections, as kube-proxy does. With noEndpointVerdict
// 'reject' it gets kube-proxy's no-endpoint-services and
// no-endpoint-nodeports elements instead, which reject new connections.
//
// The per-port chains and the elements come from the model in
// kube-proxy-service-rules.ts, which partial syncs (kube-proxy-changes.ts)
// use too.
//
// Left out, because the testbed creates none of them: ExternalIPs,
// LoadBalancer IPs and LoadBalancerSourceRanges (firewall-ips stays empty),
// session affinity, Local traffic policies and the ServiceCIDR drop rule.

import { buildServiceRules, nftFamily, type ServiceRules } from './kube-proxy-service-rules.js';
import type { IpFamily, ServicePort } from './service-ports.js';

export const KUBE_PROXY_TABLE = 'kube-proxy';

// kube-proxy's default --masquerade-bit is 14.
const MASQUERADE_MARK = '0x00004000';

export type NoEndpointVerdict = 'fall-through' | 'reject';

export interface FamilyRules {
  family: IpFamily;
  servicePorts: ServicePort[];
  // Addresses of this family that accept NodePort traffic: the node's own.
  nodePortAddresses: string[];
  // Sources inside these CIDRs are pods and keep their address. Others
  // are masqueraded, like kube-proxy's ClusterCIDR traffic detector.
  podCidrs: string[];
  noEndpointVerdict: NoEndpointVerdict;
}

interface BaseChain {
  name: string;
  type: 'filter' | 'nat';
  hook: string;
  priority: string;
}

// kube-proxy writes the priorities as dstnat - 10, dstnat + 10, dstnat and
// srcnat. nft 1.0.6 (Debian 12) accepts those names only on the prerouting
// and postrouting hooks, so they are written as the numbers the names stand
// for: dstnat is -100 and srcnat is 100.
const BASE_CHAINS: BaseChain[] = [
  { name: 'filter-prerouting', type: 'filter', hook: 'prerouting', priority: '-110' },
  { name: 'filter-input', type: 'filter', hook: 'input', priority: '-110' },
  { name: 'filter-forward', type: 'filter', hook: 'forward', priority: '-110' },
  { name: 'filter-output', type: 'filter', hook: 'output', priority: '-110' },
  { name: 'filter-output-post-dnat', type: 'filter', hook: 'output', priority: '-90' },
  { name: 'nat-prerouting', type: 'nat', hook: 'prerouting', priority: '-100' },
  { name: 'nat-output', type: 'nat', hook: 'output', priority: '-100' },
  { name: 'nat-postrouting', type: 'nat', hook: 'postrouting', priority: '100' },
];

// Regular chains that a base chain jumps to, in kube-proxy's order.
const JUMPS: { from: string; match: string; to: string }[] = [
  { from: 'filter-input', match: 'ct state new', to: 'nodeport-endpoints-check' },
  { from: 'filter-input', match: 'ct state new', to: 'service-endpoints-check' },
  { from: 'filter-forward', match: 'ct state new', to: 'service-endpoints-check' },
  { from: 'filter-output', match: 'ct state new', to: 'service-endpoints-check' },
  { from: 'filter-prerouting', match: 'ct state new', to: 'firewall-check' },
  { from: 'filter-output', match: 'ct state new', to: 'firewall-check' },
  { from: 'nat-output', match: '', to: 'services' },
  { from: 'nat-prerouting', match: '', to: 'services' },
  { from: 'nat-postrouting', match: '', to: 'masquerading' },
  { from: 'filter-forward', match: 'ct state new', to: 'cluster-ips-check' },
  { from: 'filter-output-post-dnat', match: 'ct state new', to: 'cluster-ips-check' },
];

// Renders one nft script that replaces both families' tables in a single
// transaction: each table is created if missing, deleted, and rebuilt.
export function renderTransaction(families: FamilyRules[]): string {
  return families.map((rules) => renderTable(rules, buildServiceRules(rules))).join('');
}

// Renders an nft script that deletes the tables of the given families,
// without failing when one does not exist.
export function renderDeletion(families: IpFamily[]): string {
  return families.map((family) => `add table ${nftFamily(family)} ${KUBE_PROXY_TABLE}\ndelete table ${nftFamily(family)} ${KUBE_PROXY_TABLE}\n`).join('');
}

// Renders the commands that delete one family's table, if it exists, and
// rebuild it with the Service ports of model, for a full sync.
export function renderTable(rules: FamilyRules, model: ServiceRules): string {
  const nft = nftFamily(rules.family);
  const addressType = rules.family === 'ipv4' ? 'ipv4_addr' : 'ipv6_addr';
  const table = `${nft} ${KUBE_PROXY_TABLE}`;
  const out: string[] = [];
  const add = (line: string) => out.push(line);

  // The table's skeleton: base chains, regular chains, sets and maps.
  add(`add table ${table}`);
  add(`delete table ${table}`);
  add(`add table ${table} { comment "rules for kube-proxy" ; }`);
  for (const chain of BASE_CHAINS) {
    add(`add chain ${table} ${chain.name} { type ${chain.type} hook ${chain.hook} priority ${chain.priority} ; policy accept ; }`);
  }
  const regularChains = ['nodeport-endpoints-check', 'service-endpoints-check', 'firewall-check', 'services', 'masquerading', 'cluster-ips-check', 'mark-for-masquerade', 'reject-chain'];
  for (const chain of regularChains) add(`add chain ${table} ${chain}`);

  add(`add set ${table} cluster-ips { type ${addressType} ; comment "Active ClusterIPs" ; }`);
  add(`add set ${table} nodeport-ips { type ${addressType} ; comment "IPs that accept NodePort traffic" ; }`);
  add(`add map ${table} no-endpoint-services { type ${addressType} . inet_proto . inet_service : verdict ; comment "vmap to drop or reject packets to services with no endpoints" ; }`);
  add(`add map ${table} no-endpoint-nodeports { type inet_proto . inet_service : verdict ; comment "vmap to drop or reject packets to service nodeports with no endpoints" ; }`);
  add(`add map ${table} firewall-ips { type ${addressType} . inet_proto . inet_service : verdict ; comment "destinations that are subject to LoadBalancerSourceRanges" ; }`);
  add(`add map ${table} service-ips { type ${addressType} . inet_proto . inet_service : verdict ; comment "ClusterIP, ExternalIP and LoadBalancer IP traffic" ; }`);
  add(`add map ${table} service-nodeports { type inet_proto . inet_service : verdict ; comment "NodePort traffic" ; }`);

  // Fixed rules.
  for (const jump of JUMPS) add(`add rule ${table} ${jump.from} ${jump.match === '' ? '' : `${jump.match} `}jump ${jump.to}`);
  add(`add rule ${table} mark-for-masquerade meta mark set meta mark or ${MASQUERADE_MARK}`);
  add(`add rule ${table} masquerading meta mark and ${MASQUERADE_MARK} == 0 return`);
  add(`add rule ${table} masquerading meta mark set meta mark xor ${MASQUERADE_MARK}`);
  add(`add rule ${table} masquerading masquerade fully-random`);
  add(`add rule ${table} cluster-ips-check ${nft} daddr @cluster-ips reject comment "Reject traffic to invalid ports of ClusterIPs"`);
  add(`add rule ${table} reject-chain reject`);
  add(`add rule ${table} service-endpoints-check ${nft} daddr . meta l4proto . th dport vmap @no-endpoint-services`);
  add(`add rule ${table} nodeport-endpoints-check ${nft} daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports`);
  add(`add rule ${table} firewall-check ${nft} daddr . meta l4proto . th dport vmap @firewall-ips`);
  add(`add rule ${table} services ${nft} daddr . meta l4proto . th dport vmap @service-ips`);
  add(`add rule ${table} services ${nft} daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports`);
  addElements(add, table, 'nodeport-ips', rules.nodePortAddresses);

  // Service ports: chains first, then the elements that point at them.
  out.push(...renderServiceRules(table, model));

  return out.join('\n') + '\n';
}

function renderServiceRules(table: string, model: ServiceRules): string[] {
  const out: string[] = [];
  for (const [chain, rules] of model.chains) {
    out.push(`add chain ${table} ${chain}`);
    for (const rule of rules) out.push(`add rule ${table} ${chain} ${rule}`);
  }
  for (const [set, elements] of model.elements) {
    for (const [key, value] of elements) out.push(`add element ${table} ${set} { ${key}${value} }`);
  }
  return out;
}

function addElements(add: (line: string) => void, table: string, set: string, elements: string[]): void {
  if (elements.length > 0) add(`add element ${table} ${set} { ${[...new Set(elements)].join(', ')} }`);
}
