// A test topology for TCP connection probes, from its client namespace to
// its node namespace. There one server listens on both IP families, one
// port has no listener, and nftables drops SYNs to another port, as a
// network policy that drops a node's traffic would.

import { startHttpServer } from './servers.js';
import { buildTopology, type Topology } from './topology.js';

export const LISTENING_PORT = 8080;
export const CLOSED_PORT = 8082;
export const DROPPED_PORT = 8083;

const RULES = `
table inet probe {
  chain input {
    type filter hook input priority 0; policy accept;
    tcp dport ${DROPPED_PORT} drop
  }
}
`;

export async function buildProbeTargets(): Promise<Topology> {
  const topology = await buildTopology(RULES);
  await startHttpServer(topology.network, topology.node, '::', LISTENING_PORT, 'up');
  return topology;
}
