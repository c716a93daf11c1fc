// A one-node PodNetwork for the kubelet's own tests, until the testbed's
// cluster network takes over. The node namespace contains a Linux bridge with
// the gateway addresses 198.18.16.1/24 and fd5a:18:16::1/64, and every pod
// is a namespace whose eth0 is one end of a veth pair enslaved to that
// bridge. Nothing here touches the root namespace.

import type { PodAddresses, PodNetwork } from '../pod-network.js';
import { run, TestNetwork } from '../../lib/netns.js';

const BRIDGE = 'cbr0';
const GATEWAY_IPV4 = '198.18.16.1';
const GATEWAY_IPV6 = 'fd5a:18:16::1';
// Host numbers 10..250 of the /24 are given to pods.
const FIRST_POD_HOST = 10;
const LAST_POD_HOST = 250;

export class SimplePodNetwork implements PodNetwork {
  readonly nodes: readonly string[] = ['node-0'];
  private readonly pods = new Map<string, PodAddresses>();
  private readonly usedHosts = new Set<number>();
  private nextInterface = 0;

  private constructor(
    private readonly network: TestNetwork,
    // Name of the node's namespace under /run/netns.
    private readonly netns: string,
  ) {}

  nodeNetns(node: string): string {
    if (!this.nodes.includes(node)) throw new Error(`unknown node ${JSON.stringify(node)}: this network has only ${this.nodes.join(', ')}`);
    return this.netns;
  }

  static async create(): Promise<SimplePodNetwork> {
    const network = new TestNetwork();
    try {
      const nodeNetns = await network.addNamespace('node');
      await network.exec(nodeNetns, 'ip', ['link', 'add', BRIDGE, 'type', 'bridge']);
      await network.exec(nodeNetns, 'ip', ['addr', 'add', `${GATEWAY_IPV4}/24`, 'dev', BRIDGE]);
      await network.exec(nodeNetns, 'ip', ['addr', 'add', `${GATEWAY_IPV6}/64`, 'dev', BRIDGE, 'nodad']);
      await network.exec(nodeNetns, 'ip', ['link', 'set', BRIDGE, 'up']);
      return new SimplePodNetwork(network, nodeNetns);
    } catch (err) {
      network.cleanupSync();
      throw err;
    }
  }

  async addPod(node: string, pod: string): Promise<PodAddresses> {
    if (!this.nodes.includes(node)) throw new Error(`unknown node ${JSON.stringify(node)}: this network has only ${this.nodes.join(', ')}`);
    if (this.pods.has(pod)) throw new Error(`pod ${JSON.stringify(pod)} already has a namespace`);

    const host = this.allocateHost();
    const hostInterface = `vp${this.nextInterface++}`;
    const ipv4 = `198.18.16.${host}`;
    const ipv6 = `fd5a:18:16::${host.toString(16)}`;
    try {
      const netns = await this.network.addNamespace(`pod${host}`);
      const addresses = { netns, ipv4, ipv6, hostInterface };
      this.pods.set(pod, addresses);

      await this.network.addVeth(this.netns, hostInterface, netns, 'eth0');
      await this.network.exec(this.netns, 'ip', ['link', 'set', hostInterface, 'master', BRIDGE]);
      await this.network.exec(netns, 'ip', ['addr', 'add', `${ipv4}/24`, 'dev', 'eth0']);
      // nodad: duplicate address detection would leave the address
      // unusable for about a second after every pod start.
      await this.network.exec(netns, 'ip', ['addr', 'add', `${ipv6}/64`, 'dev', 'eth0', 'nodad']);
      await this.network.exec(netns, 'ip', ['route', 'add', 'default', 'via', GATEWAY_IPV4]);
      await this.network.exec(netns, 'ip', ['-6', 'route', 'add', 'default', 'via', GATEWAY_IPV6]);
      return addresses;
    } catch (err) {
      await this.removePod(pod);
      this.usedHosts.delete(host);
      throw err;
    }
  }

  async removePod(pod: string): Promise<void> {
    const addresses = this.pods.get(pod);
    if (!addresses) return;
    this.pods.delete(pod);
    this.usedHosts.delete(Number(addresses.ipv4.split('.')[3]));

    // Deleting the namespace deletes its veth end, and the peer in the node
    // namespace goes with it.
    await run('ip', ['netns', 'del', addresses.netns]);
    const index = this.network.namespaces.indexOf(addresses.netns);
    if (index >= 0) this.network.namespaces.splice(index, 1);
  }

  // Runs a client in the node namespace and returns its stdout.
  async execInNode(command: string, args: string[]): Promise<string> {
    return (await this.network.exec(this.netns, command, args, { timeoutMs: 10_000 })).stdout;
  }

  curlFromNode(url: string): Promise<string> {
    return this.execInNode('curl', ['-sS', '--max-time', '5', url]);
  }

  // Names of the pods that have a namespace now.
  podNames(): string[] {
    return [...this.pods.keys()];
  }

  async close(): Promise<void> {
    this.pods.clear();
    await this.network.cleanup();
  }

  private allocateHost(): number {
    for (let host = FIRST_POD_HOST; host <= LAST_POD_HOST; host++) {
      if (!this.usedHosts.has(host)) {
        this.usedHosts.add(host);
        return host;
      }
    }
    throw new Error(`no free pod address in 198.18.16.0/24: ${this.usedHosts.size} pods already exist`);
  }
}
