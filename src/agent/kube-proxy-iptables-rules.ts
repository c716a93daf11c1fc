// The Service frontends that kube-proxy in iptables mode has programmed,
// read from `iptables-save` or `iptables -S` output of its nat and filter
// chains, where its Service rules read like these:
//
//   nat:    -A KUBE-SERVICES -d 10.96.0.10/32 -p tcp -m comment --comment
//           "ns/svc:port cluster IP" -m tcp --dport 80 -j KUBE-SVC-<hash>
//   nat:    -A KUBE-NODEPORTS -p tcp -m comment --comment "ns/svc:port"
//           -m tcp --dport 30080 -j KUBE-EXT-<hash>
//   filter: -A KUBE-SERVICES -d 10.96.0.10/32 -p tcp -m comment --comment
//           "ns/svc:port has no endpoints" -m tcp --dport 80 -j REJECT
//
// A frontend is programmed when a nat rule sends it to a Service chain and
// no filter rule rejects or drops it. kube-proxy writes both tables in one
// iptables-restore, but the legacy backend commits them one after the
// other, so both are read. Options are matched by name, because
// iptables-save prints them in its own order.
// NOTE: the forms were taken from iptables-save output of kube-proxy in
// iptables mode, not from a tested kube-proxy release.

import type { Frontend } from '../datapath/frontends.js';
import { normalizeAddress } from './kube-proxy-maps.js';

// Chains that a Service rule jumps to: all endpoints, node-local
// endpoints, external traffic, load balancer firewall, and in older
// kube-proxy releases external traffic with a Local policy (KUBE-XLB).
const SERVICE_CHAIN = /^KUBE-(SVC|SVL|EXT|FW|XLB)-/;
// The filter chains where kube-proxy rejects or drops Services without
// endpoints, for cluster IPs and for external and node ports. Not
// KUBE-PROXY-FIREWALL, whose drops for loadBalancerSourceRanges stay while
// the Service has endpoints.
const NO_ENDPOINT_CHAINS = new Set(['KUBE-SERVICES', 'KUBE-EXTERNAL-SERVICES']);

export class IptablesFrontends {
  // "address|protocol|port" of cluster, external and load balancer IPs.
  private readonly serviceIps = new Set<string>();
  // "protocol|port" of node ports, which kube-proxy accepts on local
  // addresses.
  private readonly nodePorts = new Set<string>();
  // The same forms, for frontends that a filter rule rejects or drops.
  private readonly blockedIps = new Set<string>();
  private readonly blockedNodePorts = new Set<string>();

  // Reads the rules of one family's nat and filter chains, as
  // `iptables-save` or `iptables -S` prints them; either may be "".
  static parse(nat: string, filter: string): IptablesFrontends {
    const frontends = new IptablesFrontends();
    for (const rule of appendedRules(nat)) {
      if (!SERVICE_CHAIN.test(rule.target)) continue;
      if (rule.chain === 'KUBE-SERVICES' && rule.destination !== undefined) frontends.serviceIps.add(ipKey(rule.destination, rule.protocol, rule.port));
      else if (rule.chain === 'KUBE-NODEPORTS') frontends.nodePorts.add(`${rule.protocol}|${rule.port}`);
    }
    for (const rule of appendedRules(filter)) {
      if (!NO_ENDPOINT_CHAINS.has(rule.chain) || (rule.target !== 'REJECT' && rule.target !== 'DROP')) continue;
      if (rule.destination !== undefined) frontends.blockedIps.add(ipKey(rule.destination, rule.protocol, rule.port));
      else frontends.blockedNodePorts.add(`${rule.protocol}|${rule.port}`);
    }
    return frontends;
  }

  // Whether a packet to the frontend reaches an endpoint: a rule sends its
  // address, or its port as a node port, to a Service chain, and none
  // rejects it.
  isProgrammed(frontend: Frontend): boolean {
    const address = normalizeAddress(frontend.address);
    if (address === null) throw new RangeError(`invalid address ${JSON.stringify(frontend.address)} in frontend: expected an IPv4 or IPv6 address`);

    if (frontend.port === 'any') {
      const prefix = `${address}|${frontend.protocol}|`;
      return [...this.serviceIps].some((key) => key.startsWith(prefix)) && ![...this.blockedIps].some((key) => key.startsWith(prefix));
    }
    const ip = `${address}|${frontend.protocol}|${frontend.port}`;
    if (this.serviceIps.has(ip)) return !this.blockedIps.has(ip);

    // NOTE: node ports count on every address, as kube-proxy matches them
    // on every local address unless --nodeport-addresses narrows that.
    const nodePort = `${frontend.protocol}|${frontend.port}`;
    return this.nodePorts.has(nodePort) && !this.blockedNodePorts.has(nodePort);
  }

  // Rule counts, for logs.
  sizes(): { serviceIps: number; nodePorts: number; blocked: number } {
    return { serviceIps: this.serviceIps.size, nodePorts: this.nodePorts.size, blocked: this.blockedIps.size + this.blockedNodePorts.size };
  }
}

interface AppendedRule {
  chain: string;
  target: string;
  destination: string | undefined;
  protocol: string;
  port: string;
}

// The -A lines with a protocol and a destination port, the only form of
// the Service rules above.
function* appendedRules(saved: string): Generator<AppendedRule> {
  for (const line of saved.split('\n')) {
    if (!line.startsWith('-A ')) continue;

    const words = splitWords(line);
    const option = (name: string) => {
      const index = words.indexOf(name);
      return index < 0 ? undefined : words[index + 1];
    };
    const protocol = option('-p');
    const port = option('--dport');
    const target = option('-j');
    if (protocol === undefined || port === undefined || target === undefined) continue;

    const destination = option('-d');
    yield { chain: words[1]!, target, destination: destination === undefined ? undefined : destination.replace(/\/(32|128)$/, ''), protocol, port };
  }
}

// Splits a rule line into words, with a double-quoted comment as one word.
// iptables-save escapes a quote inside a comment with a backslash.
function splitWords(line: string): string[] {
  const words: string[] = [];
  const pattern = /"((?:[^"\\]|\\.)*)"|(\S+)/g;
  for (const match of line.matchAll(pattern)) words.push(match[1] ?? match[2]!);
  return words;
}

function ipKey(address: string, protocol: string, port: string | number): string {
  return `${normalizeAddress(address) ?? address}|${protocol}|${port}`;
}
