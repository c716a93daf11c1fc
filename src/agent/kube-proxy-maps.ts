// A copy, in memory, of the nftables maps with which kube-proxy's nftables
// mode dispatches Service traffic on this node, built from the JSON that
// `nft -j list` and `nft -j monitor` print (nft 1.0.6). kube-proxy
// (kubernetes/kubernetes pkg/proxy/nftables/proxier.go, commit b0f823e6)
// keeps one table `kube-proxy` per family, ip and ip6, where:
//
//   service-ips        address . protocol . port : goto a Service chain,
//                      for a ClusterIP port while it has endpoints for
//                      internal traffic, and for an ExternalIP or
//                      LoadBalancer IP port while it has any endpoint
//   service-nodeports  protocol . nodePort : goto a Service chain, while
//                      the port has any endpoint
//   nodeport-ips       the node addresses that accept NodePorts. It is
//                      missing when --nodeport-addresses matches every
//                      address, and then every local address accepts them.
//
// A port without endpoints gets a no-endpoint-services element instead,
// which this copy ignores. So an element in service-ips means that
// kube-proxy has programmed the DNAT for that address and port.
// NOTE: with externalTrafficPolicy Local and only remote endpoints,
// kube-proxy keeps the service-ips and service-nodeports elements and
// adds a drop to no-endpoint-services or no-endpoint-nodeports for
// external traffic. This copy counts such a frontend as programmed, so a
// held external flow is released into that drop.

import ipaddr from 'ipaddr.js';

import type { Frontend } from '../datapath/frontends.js';

export const KUBE_PROXY_TABLE = 'kube-proxy';
export const NFT_FAMILIES = ['ip', 'ip6'] as const;
export type NftFamily = (typeof NFT_FAMILIES)[number];

export const SERVICE_IPS = 'service-ips';
export const SERVICE_NODEPORTS = 'service-nodeports';
export const NODEPORT_IPS = 'nodeport-ips';

// The `nft -j list` output of each tracked set and map of one family, null
// for one that does not exist.
export interface FamilyListing {
  serviceIps: Record<string, unknown> | null;
  serviceNodePorts: Record<string, unknown> | null;
  nodePortIps: Record<string, unknown> | null;
}

// nft prints known protocols by name, and others as these numbers.
const PROTOCOL_NAMES: Record<number, string> = { 6: 'tcp', 17: 'udp', 132: 'sctp' };

class FamilyMaps {
  // service-ips keys as "address|protocol|port".
  readonly serviceIps = new Set<string>();
  // Number of service-ips keys per "address|protocol", for port 'any'.
  readonly addressProtocols = new Map<string, number>();
  // service-nodeports keys as "protocol|port".
  readonly nodePorts = new Set<string>();
  // Addresses in nodeport-ips, or null while the set does not exist.
  nodePortIps: Set<string> | null = null;

  addServiceIp(address: string, protocol: string, port: number): void {
    const key = `${address}|${protocol}|${port}`;
    if (this.serviceIps.has(key)) return;
    this.serviceIps.add(key);
    const addressProtocol = `${address}|${protocol}`;
    this.addressProtocols.set(addressProtocol, (this.addressProtocols.get(addressProtocol) ?? 0) + 1);
  }

  deleteServiceIp(address: string, protocol: string, port: number): void {
    if (!this.serviceIps.delete(`${address}|${protocol}|${port}`)) return;
    const addressProtocol = `${address}|${protocol}`;
    const count = this.addressProtocols.get(addressProtocol)! - 1;
    if (count === 0) this.addressProtocols.delete(addressProtocol);
    else this.addressProtocols.set(addressProtocol, count);
  }

  clearServiceIps(): void {
    this.serviceIps.clear();
    this.addressProtocols.clear();
  }
}

export class KubeProxyMaps {
  // Elements whose key had a form this copy does not read. They are
  // skipped, so a frontend they would match stays unprogrammed.
  ignoredElements = 0;

  private families: Record<NftFamily, FamilyMaps> = { ip: new FamilyMaps(), ip6: new FamilyMaps() };

  // Replaces one family's contents with what `nft -j list` printed.
  replaceFamily(family: NftFamily, listing: FamilyListing): void {
    const maps = new FamilyMaps();
    this.families[family] = maps;

    for (const element of listedElements(listing.serviceIps)) this.applyElement(maps, SERVICE_IPS, element, 'add');
    for (const element of listedElements(listing.serviceNodePorts)) this.applyElement(maps, SERVICE_NODEPORTS, element, 'add');
    if (listing.nodePortIps !== null) {
      maps.nodePortIps = new Set();
      for (const element of listedElements(listing.nodePortIps)) this.applyElement(maps, NODEPORT_IPS, element, 'add');
    }
  }

  // Applies one object that `nft -j monitor` printed. Objects about other
  // tables, families or sets are ignored.
  applyEvent(event: unknown): void {
    if (!isRecord(event)) return;
    let operation: 'add' | 'delete';
    if ('add' in event) operation = 'add';
    else if ('delete' in event) operation = 'delete';
    else return;
    if (!isRecord(event[operation])) return;
    const body = event[operation] as Record<string, unknown>;

    const [objectType] = Object.keys(body);
    const object = body[objectType!];
    if (!isRecord(object) || !isNftFamily(object.family)) return;
    const tableName = objectType === 'table' ? object.name : object.table;
    if (tableName !== KUBE_PROXY_TABLE) return;
    const maps = this.families[object.family];

    switch (objectType) {
      case 'table':
        // A new table is empty, and a deleted one takes its sets along
        // without a line per element.
        if (operation === 'delete') this.families[object.family] = new FamilyMaps();
        return;
      case 'set':
      case 'map':
        this.applySetChange(maps, String(object.name), operation);
        return;
      case 'element': {
        const elements = isRecord(object.elem) && Array.isArray(object.elem.set) ? object.elem.set : [];
        for (const element of elements) this.applyElement(maps, String(object.name), element, operation);
        return;
      }
    }
  }

  // Whether this family's maps send traffic for the frontend to a Service
  // chain. A frontend with port 'any' counts once its address has a
  // service-ips element of its protocol on any port.
  isProgrammed(frontend: Frontend): boolean {
    const address = normalizeAddress(frontend.address);
    if (address === null) throw new RangeError(`invalid address ${JSON.stringify(frontend.address)} in frontend: expected an IPv4 or IPv6 address`);
    const maps = this.families[address.includes(':') ? 'ip6' : 'ip'];

    if (frontend.port === 'any') return maps.addressProtocols.has(`${address}|${frontend.protocol}`);
    if (maps.serviceIps.has(`${address}|${frontend.protocol}|${frontend.port}`)) return true;

    // kube-proxy matches NodePorts on the addresses in nodeport-ips or, when
    // that set does not exist, on every local address.
    // NOTE: without nodeport-ips, a ClusterIP port that equals a programmed
    // nodePort of the same protocol counts as programmed.
    const acceptsNodePorts = maps.nodePortIps === null || maps.nodePortIps.has(address);
    return acceptsNodePorts && maps.nodePorts.has(`${frontend.protocol}|${frontend.port}`);
  }

  // Whether kube-proxy matches NodePorts on address: nodeport-ips lists
  // it, or that set does not exist. kube-proxy in nftables mode fills it
  // with the node's primary address per family by default
  // (--nodeport-addresses primary). Throws a RangeError for an address
  // that is not an IP address.
  servesNodePortsOn(address: string): boolean {
    const normalized = normalizeAddress(address);
    if (normalized === null) throw new RangeError(`invalid address ${JSON.stringify(address)}: expected an IPv4 or IPv6 address`);
    const maps = this.families[normalized.includes(':') ? 'ip6' : 'ip'];
    return maps.nodePortIps === null || maps.nodePortIps.has(normalized);
  }

  // Element counts per family, for logs.
  sizes(): Record<NftFamily, { serviceIps: number; serviceNodePorts: number }> {
    return {
      ip: { serviceIps: this.families.ip.serviceIps.size, serviceNodePorts: this.families.ip.nodePorts.size },
      ip6: { serviceIps: this.families.ip6.serviceIps.size, serviceNodePorts: this.families.ip6.nodePorts.size },
    };
  }

  // A set or map is new and empty when it is added, because any earlier one
  // was deleted first, and that deletion already cleared its copy. So an
  // add only marks nodeport-ips as existing.
  private applySetChange(maps: FamilyMaps, name: string, operation: 'add' | 'delete'): void {
    if (operation === 'add') {
      if (name === NODEPORT_IPS) maps.nodePortIps ??= new Set();
      return;
    }

    if (name === SERVICE_IPS) maps.clearServiceIps();
    if (name === SERVICE_NODEPORTS) maps.nodePorts.clear();
    if (name === NODEPORT_IPS) maps.nodePortIps = null;
  }

  private applyElement(maps: FamilyMaps, setName: string, element: unknown, operation: 'add' | 'delete'): void {
    const values = elementKey(element);
    if (values === null) return;

    if (setName === SERVICE_IPS) {
      const [address, port] = [values[0], values[2]];
      const protocol = protocolName(values[1]);
      if (values.length !== 3 || !isAddress(address) || protocol === null || !isPort(port)) {
        this.ignoredElements += 1;
        return;
      }
      if (operation === 'add') maps.addServiceIp(address, protocol, port);
      else maps.deleteServiceIp(address, protocol, port);
    } else if (setName === SERVICE_NODEPORTS) {
      const port = values[1];
      const protocol = protocolName(values[0]);
      if (values.length !== 2 || protocol === null || !isPort(port)) {
        this.ignoredElements += 1;
        return;
      }
      if (operation === 'add') maps.nodePorts.add(`${protocol}|${port}`);
      else maps.nodePorts.delete(`${protocol}|${port}`);
    } else if (setName === NODEPORT_IPS) {
      const [address] = values;
      if (values.length !== 1 || !isAddress(address)) {
        this.ignoredElements += 1;
        return;
      }
      // An element line can come before its set's add line only if a
      // line was lost, so the set is created here rather than dropped.
      maps.nodePortIps ??= new Set();
      if (operation === 'add') maps.nodePortIps.add(address);
      else maps.nodePortIps.delete(address);
    }
  }
}

// Returns the key of a set or map element as its normalized parts:
// addresses in canonical form, protocols by name, ports as numbers. nft
// prints a map element as [key, value], an element with a comment or
// timeout as {"elem": {"val": key, ...}}, and a concatenation as
// {"concat": [...]}. Returns null for any other form.
function elementKey(element: unknown): (string | number)[] | null {
  let key = Array.isArray(element) ? element[0] : element;
  if (isRecord(key) && isRecord(key.elem)) key = key.elem.val;
  const parts = isRecord(key) && Array.isArray(key.concat) ? (key.concat as unknown[]) : [key];

  const values: (string | number)[] = [];
  for (const part of parts) {
    if (typeof part === 'number') {
      values.push(part);
    } else if (typeof part === 'string') {
      values.push(normalizeAddress(part) ?? (/^\d+$/.test(part) ? Number(part) : part));
    } else {
      return null;
    }
  }
  return values;
}

function listedElements(listing: Record<string, unknown> | null): unknown[] {
  return listing !== null && Array.isArray(listing.elem) ? listing.elem : [];
}

// Returns an IPv4 address as it is and an IPv6 address in its shortest
// form, or null for anything else.
export function normalizeAddress(text: string): string | null {
  if (ipaddr.IPv4.isValidFourPartDecimal(text)) return text;
  if (ipaddr.IPv6.isValid(text)) return ipaddr.IPv6.parse(text).toString();
  return null;
}

function isAddress(value: unknown): value is string {
  return typeof value === 'string' && normalizeAddress(value) === value;
}

function protocolName(value: string | number | undefined): string | null {
  if (typeof value === 'number') return PROTOCOL_NAMES[value] ?? null;
  return value !== undefined && Object.values(PROTOCOL_NAMES).includes(value) ? value : null;
}

function isPort(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= 65535;
}

function isNftFamily(value: unknown): value is NftFamily {
  return value === 'ip' || value === 'ip6';
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
