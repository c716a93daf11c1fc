// The testbed's cluster network: one fabric namespace with a Linux bridge,
// one namespace per node and per external client on that bridge, and one
// namespace per pod behind its node. Addresses follow cluster-addresses.ts.
//
// Routing, per namespace:
// - node: eth0 on the bridge, with forwarding on for IPv4 and IPv6. Each
//   local pod has a /32 and a /128 route through its host-side veth, and
//   each other node's pod CIDR a route through that node's eth0 address.
// - pod: eth0 with a /32 and a /128, and default routes through the node.
//   The IPv4 gateway is 198.18.(16+i).1, which the node puts on every pod
//   veth as a /32 and answers ARP for. The IPv6 gateway is fe80::1, which
//   the node puts on every pod veth.
// - external client: eth0 on the bridge, and the Service ranges
//   198.19.0.0/16 and fd5a:19::/64 routed through one node, chosen with
//   routeServicesVia(). Node addresses are on-link, so NodePorts work too.
// - fabric: the bridge and its ports only, with IPv6 off so that it sends
//   nothing of its own.
//
// No namespace has a default route except pods, whose default route ends
// at their node, and nothing is added to the root namespace.

import { type RunResult, TestNetwork } from '../lib/netns.js';
import {
  clientAddressV4,
  clientAddressV6,
  FABRIC_PREFIX_V4,
  FABRIC_PREFIX_V6,
  FIRST_POD_SLOT,
  LAST_POD_SLOT,
  MAX_EXTERNAL_CLIENTS,
  MAX_NODES,
  nodeAddressV4,
  nodeAddressV6,
  podAddressV4,
  podAddressV6,
  podCidrV4,
  podCidrV6,
  POD_GATEWAY_V6,
  podGatewayV4,
  SERVICE_CIDR_V4,
  SERVICE_CIDR_V6,
} from './cluster-addresses.js';
import { ipBatch } from './ip-batch.js';
import type { PodAddresses, PodNetwork } from './pod-network.js';

export interface ClusterNetworkOptions {
  // A node count, named node-0, node-1, ..., or the node names in order.
  nodes: number | string[];
  // External client namespaces on the fabric, outside the cluster.
  externalClients?: number;
  // IPv6 addresses and routes next to the IPv4 ones. Defaults to true.
  // With false, every ipv6 field is an empty string.
  ipv6?: boolean;
}

export interface NodeAddresses {
  ipv4: string;
  // Empty when the network was created with ipv6: false.
  ipv6: string;
}

export interface PodCidrs {
  ipv4: string[];
  ipv6: string[];
}

interface NodeState {
  index: number;
  name: string;
  netns: string;
  // Pod slots in use on this node, the last octet of each pod's address.
  slots: Set<number>;
}

interface PodState {
  node: NodeState;
  slot: number;
  addresses: PodAddresses;
}

// The node's interface on the fabric, in every node namespace.
export const NODE_INTERFACE = 'eth0';
// Names the host end of each pod's veth pair, followed by the pod's slot.
export const POD_INTERFACE_PREFIX = 'veth';

const BRIDGE = 'br0';

export class ClusterNetwork implements PodNetwork {
  readonly nodes: readonly string[];
  // Namespace names of the external clients, in creation order.
  readonly externalClients: readonly string[];
  readonly ipv6: boolean;
  // Owns every namespace here. Tests start servers and clients through it,
  // so that close() ends them too.
  readonly testNetwork: TestNetwork;

  private readonly fabric: string;
  private readonly nodeStates: Map<string, NodeState>;
  private readonly pods = new Map<string, PodState>();
  // The tail of the queue of namespace removals, see removeNamespace().
  private namespaceRemovals: Promise<void> = Promise.resolve();

  private constructor(testNetwork: TestNetwork, fabric: string, nodeStates: NodeState[], externalClients: string[], ipv6: boolean) {
    this.testNetwork = testNetwork;
    this.fabric = fabric;
    this.nodeStates = new Map(nodeStates.map((node) => [node.name, node]));
    this.nodes = nodeStates.map((node) => node.name);
    this.externalClients = externalClients;
    this.ipv6 = ipv6;
  }

  // Builds the fabric, the nodes and the external clients. On failure it
  // removes whatever it had created before rethrowing.
  static async create(options: ClusterNetworkOptions): Promise<ClusterNetwork> {
    const names = typeof options.nodes === 'number' ? Array.from({ length: options.nodes }, (_, i) => `node-${i}`) : [...options.nodes];
    const clientCount = options.externalClients ?? 0;
    const ipv6 = options.ipv6 ?? true;
    validateSizes(names, clientCount);

    const testNetwork = new TestNetwork();
    try {
      const fabric = await createFabric(testNetwork);

      const nodeStates: NodeState[] = [];
      for (const [index, name] of names.entries()) {
        nodeStates.push({ index, name, netns: await createNode(testNetwork, fabric, index, ipv6), slots: new Set() });
      }
      await addPodCidrRoutes(nodeStates, ipv6);

      const clients: string[] = [];
      for (let j = 0; j < clientCount; j++) clients.push(await createClient(testNetwork, fabric, j, ipv6));

      const network = new ClusterNetwork(testNetwork, fabric, nodeStates, clients, ipv6);
      for (const client of clients) await network.routeServicesVia(client, names[0]!);
      return network;
    } catch (err) {
      await testNetwork.cleanup();
      throw err;
    }
  }

  nodeNetns(node: string): string {
    return this.node(node).netns;
  }

  nodeInterface(): string {
    return NODE_INTERFACE;
  }

  nodeAddresses(node: string): NodeAddresses {
    const index = this.node(node).index;
    return { ipv4: nodeAddressV4(index), ipv6: this.ipv6 ? nodeAddressV6(index) : '' };
  }

  // The pod CIDRs of all nodes, in node order: the cluster's pod range.
  podCidrs(): PodCidrs {
    const states = [...this.nodeStates.values()];
    return {
      ipv4: states.map((node) => podCidrV4(node.index)),
      ipv6: this.ipv6 ? states.map((node) => podCidrV6(node.index)) : [],
    };
  }

  // The namespace that contains the fabric bridge, for packet captures.
  fabricNetns(): string {
    return this.fabric;
  }

  // Routes the client's Service ranges through the node, replacing the
  // previous choice.
  async routeServicesVia(client: string, node: string): Promise<void> {
    if (!this.externalClients.includes(client)) throw new Error(`unknown external client namespace ${client}: expected one of ${this.externalClients.join(', ')}`);
    const addresses = this.nodeAddresses(node);

    const lines = [`route replace ${SERVICE_CIDR_V4} via ${addresses.ipv4} dev eth0`];
    if (this.ipv6) lines.push(`route replace ${SERVICE_CIDR_V6} via ${addresses.ipv6} dev eth0`);
    await ipBatch(client, lines);
  }

  pod(pod: string): PodAddresses | undefined {
    return this.pods.get(pod)?.addresses;
  }

  // The pod's veth end in its node's namespace.
  hostInterface(pod: string): string {
    const state = this.pods.get(pod);
    if (!state) throw new Error(`pod ${pod} not found in the cluster network`);
    return state.addresses.hostInterface;
  }

  async addPod(node: string, pod: string): Promise<PodAddresses> {
    const nodeState = this.node(node);
    if (this.pods.has(pod)) throw new Error(`pod ${pod} already has a network namespace`);
    const slot = freeSlot(nodeState);
    nodeState.slots.add(slot);

    const addresses: PodAddresses = {
      netns: '',
      ipv4: podAddressV4(nodeState.index, slot),
      ipv6: this.ipv6 ? podAddressV6(nodeState.index, slot) : '',
      // Unique per node because the slot is, and short of IFNAMSIZ (15).
      hostInterface: `${POD_INTERFACE_PREFIX}${slot}`,
    };
    try {
      addresses.netns = await this.testNetwork.addNamespace(namespaceRole(pod));
      await disableDad(this.testNetwork, addresses.netns);
      await this.testNetwork.addVeth(addresses.netns, 'eth0', nodeState.netns, addresses.hostInterface);
      await ipBatch(addresses.netns, podSideCommands(nodeState.index, addresses));
      await ipBatch(nodeState.netns, nodeSideCommands(nodeState.index, addresses));
    } catch (err) {
      nodeState.slots.delete(slot);
      if (addresses.netns !== '') await this.removeNamespace(addresses.netns).catch(() => {});
      throw err;
    }

    this.pods.set(pod, { node: nodeState, slot, addresses });
    return addresses;
  }

  async removePod(pod: string): Promise<void> {
    const state = this.pods.get(pod);
    if (!state) return;
    this.pods.delete(pod);

    // Deleting the host end deletes the pair. The namespace alone would
    // survive its deletion while a process still runs in it, and its veth
    // with it.
    await this.testNetwork.exec(state.node.netns, 'ip', ['link', 'del', state.addresses.hostInterface]).catch(() => {});
    await this.removeNamespace(state.addresses.netns);
    state.node.slots.delete(state.slot);
  }

  // Runs a command in one of this network's namespaces.
  exec(ns: string, command: string, args: string[], options: { timeoutMs?: number } = {}): Promise<RunResult> {
    return this.testNetwork.exec(ns, command, args, options);
  }

  // Ends the processes started through testNetwork and deletes every
  // namespace. TestNetwork's exit handler does the same if a test crashes.
  async close(): Promise<void> {
    this.pods.clear();
    await this.testNetwork.cleanup();
  }

  // Removes one namespace after the removals queued before it.
  // TestNetwork.removeNamespace() looks up the namespace's index before it
  // awaits `ip netns del` and splices at that index afterwards, so two
  // concurrent calls can splice each other's entry.
  private removeNamespace(ns: string): Promise<void> {
    const removal = this.namespaceRemovals.then(() => this.testNetwork.removeNamespace(ns));
    this.namespaceRemovals = removal.catch(() => undefined);
    return removal;
  }

  private node(node: string): NodeState {
    const state = this.nodeStates.get(node);
    if (!state) throw new Error(`node ${node} not found: expected one of ${this.nodes.join(', ')}`);
    return state;
  }
}

function validateSizes(names: string[], clientCount: number): void {
  if (names.length < 1 || names.length > MAX_NODES) throw new RangeError(`invalid node count ${names.length}: expected 1 to ${MAX_NODES}`);
  if (new Set(names).size !== names.length) throw new RangeError(`node names must be unique: ${names.join(', ')}`);
  if (!Number.isInteger(clientCount) || clientCount < 0 || clientCount > MAX_EXTERNAL_CLIENTS) {
    throw new RangeError(`invalid external client count ${clientCount}: expected 0 to ${MAX_EXTERNAL_CLIENTS}`);
  }
}

async function createFabric(testNetwork: TestNetwork): Promise<string> {
  const fabric = await testNetwork.addNamespace('fabric');
  await testNetwork.exec(fabric, 'sysctl', ['-q', '-w', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
  // Multicast snooping off, so the bridge floods IPv6 neighbour
  // solicitations to every port instead of waiting for MLD reports.
  await ipBatch(fabric, [`link add ${BRIDGE} type bridge mcast_snooping 0`, `link set ${BRIDGE} up`]);
  return fabric;
}

// Connects ns to the bridge with a veth pair: eth0 in ns, port in fabric.
async function attachToFabric(testNetwork: TestNetwork, fabric: string, ns: string, port: string): Promise<void> {
  await testNetwork.addVeth(ns, 'eth0', fabric, port);
  await ipBatch(fabric, [`link set ${port} master ${BRIDGE}`]);
}

// DAD would keep new IPv6 addresses tentative for about a second, so every
// namespace with IPv6 addresses turns it off before its interfaces exist.
async function disableDad(testNetwork: TestNetwork, ns: string): Promise<void> {
  await testNetwork.exec(ns, 'sysctl', ['-q', '-w', 'net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0']);
}

async function createNode(testNetwork: TestNetwork, fabric: string, index: number, ipv6: boolean): Promise<string> {
  const ns = await testNetwork.addNamespace(`node${index}`);
  await disableDad(testNetwork, ns);
  await testNetwork.exec(ns, 'sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1']);
  await attachToFabric(testNetwork, fabric, ns, `n${index}`);

  const lines = [`addr add ${nodeAddressV4(index)}/${FABRIC_PREFIX_V4} dev eth0`];
  if (ipv6) lines.push(`addr add ${nodeAddressV6(index)}/${FABRIC_PREFIX_V6} dev eth0 nodad`);
  await ipBatch(ns, lines);
  return ns;
}

// Gives every node a route to each other node's pod CIDR through that
// node's fabric address, as a flat routed network (no overlay) would.
async function addPodCidrRoutes(nodeStates: NodeState[], ipv6: boolean): Promise<void> {
  for (const node of nodeStates) {
    const lines: string[] = [];
    for (const other of nodeStates) {
      if (other === node) continue;
      lines.push(`route add ${podCidrV4(other.index)} via ${nodeAddressV4(other.index)} dev eth0`);
      if (ipv6) lines.push(`route add ${podCidrV6(other.index)} via ${nodeAddressV6(other.index)} dev eth0`);
    }
    await ipBatch(node.netns, lines);
  }
}

async function createClient(testNetwork: TestNetwork, fabric: string, index: number, ipv6: boolean): Promise<string> {
  const ns = await testNetwork.addNamespace(`client${index}`);
  await disableDad(testNetwork, ns);
  await attachToFabric(testNetwork, fabric, ns, `c${index}`);

  const lines = [`addr add ${clientAddressV4(index)}/${FABRIC_PREFIX_V4} dev eth0`];
  if (ipv6) lines.push(`addr add ${clientAddressV6(index)}/${FABRIC_PREFIX_V6} dev eth0 nodad`);
  await ipBatch(ns, lines);
  return ns;
}

function freeSlot(node: NodeState): number {
  for (let slot = FIRST_POD_SLOT; slot <= LAST_POD_SLOT; slot++) {
    if (!node.slots.has(slot)) return slot;
  }
  throw new Error(`node ${node.name} has no free pod address: all ${LAST_POD_SLOT - FIRST_POD_SLOT + 1} slots are in use`);
}

// Namespace names become file names under /run/netns, so the pod name keeps
// only characters that are safe there, and a bounded length.
function namespaceRole(pod: string): string {
  return `pod-${pod.replace(/[^A-Za-z0-9.-]/g, '-').slice(0, 40)}`;
}

function podSideCommands(node: number, pod: PodAddresses): string[] {
  const lines = [
    `addr add ${pod.ipv4}/32 dev eth0`,
    `route add ${podGatewayV4(node)} dev eth0 scope link`,
    `route add default via ${podGatewayV4(node)} dev eth0`,
  ];
  if (pod.ipv6 !== '') {
    lines.push(`addr add ${pod.ipv6}/128 dev eth0 nodad`, `route add ::/0 via ${POD_GATEWAY_V6} dev eth0`);
  }
  return lines;
}

function nodeSideCommands(node: number, pod: PodAddresses): string[] {
  const lines = [`addr add ${podGatewayV4(node)}/32 dev ${pod.hostInterface}`, `route add ${pod.ipv4}/32 dev ${pod.hostInterface}`];
  if (pod.ipv6 !== '') {
    lines.push(`addr add ${POD_GATEWAY_V6}/64 dev ${pod.hostInterface} nodad`, `route add ${pod.ipv6}/128 dev ${pod.hostInterface}`);
  }
  return lines;
}
