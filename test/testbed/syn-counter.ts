// An nftables counter of the TCP SYNs (SYN set, ACK clear) to one address
// and port that enter a node's network stack, in its own table next to the
// service proxy's kube-proxy tables.
//
// The counter sits in the prerouting hook at priority raw (-300), which
// runs after XDP and before the DNAT of kube-proxy (dstnat, -100). A SYN
// that the agent holds in XDP is not counted when it arrives, and it is
// counted once when the agent re-injects it. So after a cold start with N
// client connections the counter reads N, unless a client had to
// retransmit its SYN after the gate opened: a re-injected SYN that found
// no DNAT rule, or one that was lost, shows up as a count above N.

import { randomBytes } from 'node:crypto';

import { runNft } from '../lib/topology.js';
import type { TestNetwork } from '../lib/netns.js';

export interface SynTarget {
  // An IPv4 or IPv6 address, usually a ClusterIP.
  address: string;
  port: number;
}

export class SynCounter {
  private constructor(
    private readonly network: TestNetwork,
    private readonly netns: string,
    private readonly table: string,
  ) {}

  // Adds the counter table to the node's namespace, starting at zero.
  static async create(network: TestNetwork, netns: string, target: SynTarget): Promise<SynCounter> {
    const table = `zh_syn_${randomBytes(4).toString('hex')}`;
    const match = target.address.includes(':') ? `ip6 daddr ${target.address}` : `ip daddr ${target.address}`;
    await runNft(
      netns,
      `table inet ${table} {
  chain prerouting {
    type filter hook prerouting priority raw; policy accept;
    ${match} tcp dport ${target.port} tcp flags & (syn | ack) == syn counter
  }
}
`,
    );
    return new SynCounter(network, netns, table);
  }

  // Returns the SYNs counted since create().
  async read(): Promise<number> {
    const { stdout } = await this.network.exec(this.netns, 'nft', ['-j', 'list', 'table', 'inet', this.table]);
    const entries = (JSON.parse(stdout) as { nftables: Record<string, unknown>[] }).nftables;
    for (const entry of entries) {
      const rule = entry.rule as { expr?: Record<string, unknown>[] } | undefined;
      const counter = rule?.expr?.find((expression) => 'counter' in expression)?.counter as { packets: number } | undefined;
      if (counter) return counter.packets;
    }
    throw new Error(`nft table inet ${this.table} in ${this.netns} has no counter rule: ${stdout}`);
  }

  async remove(): Promise<void> {
    await runNft(this.netns, `delete table inet ${this.table}\n`);
  }
}
