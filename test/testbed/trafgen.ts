// trafgen (netsniff-ng) arguments for a SYN flood from an external client
// namespace to an address and port behind a node's uplink.

import { macOf } from '../lib/netns.js';
import { NODE_INTERFACE } from './cluster-network.js';
import type { Testbed } from './testbed.js';

export interface SynFlood {
  // The external client namespace that sends, through its eth0.
  flooder: string;
  // The node whose uplink receives the SYNs.
  node: string;
  address: string;
  port: number;
  // The first address of a /24 that no namespace owns. Each SYN comes from
  // a random address of it and a random port, so the SYN-ACKs die at the
  // node.
  sources: string;
  ratePps: number;
  count: number;
}

// Returns trafgen's arguments. trafgen's --rate sends each second's
// packets in a burst at the start of the second, not evenly paced.
export async function synFloodArgs(testbed: Testbed, flood: SynFlood): Promise<string[]> {
  const [sourceMac, nodeMac] = await Promise.all([macOf(flood.flooder, 'eth0'), macOf(testbed.network.nodeNetns(flood.node), NODE_INTERFACE)]);
  const packet = [
    `eth(da=${nodeMac}, sa=${sourceMac})`,
    `ipv4(sa=${flood.sources}, sa[3]=drnd(), da=${flood.address}, ttl=64)`,
    `tcp(sp=drnd(1024, 65535), dp=${flood.port}, syn, seq=drnd(), window=64240)`,
  ].join(', ');
  return ['--dev', 'eth0', '--cpus', '1', '--no-sock-mem', '--rate', `${flood.ratePps}pps`, '--num', String(flood.count), `{ ${packet} }`];
}
