// The rules of kube-proxy's iptables mode for one IP family, as
// iptables-restore input for its filter and nat tables. Chain names follow
// kube-proxy's: KUBE-SVC-, KUBE-EXT- and KUBE-SEP- followed by the first 16
// characters of the RFC 4648 base32 encoding of a SHA-256 over the Service
// port ("namespace/name:portName"), the protocol and, for an endpoint, its
// "address:port".
//
// filter: KUBE-SERVICES (from OUTPUT and FORWARD) rejects a Service port
//   without a ready endpoint, and KUBE-EXTERNAL-SERVICES (from INPUT and
//   FORWARD) its node port, each with "has no endpoints".
// nat: KUBE-SERVICES (from PREROUTING and OUTPUT) sends each cluster IP
//   port with endpoints to its KUBE-SVC chain, and local addresses to
//   KUBE-NODEPORTS, which sends node ports through a KUBE-EXT chain. A
//   KUBE-SVC chain picks a KUBE-SEP chain at random, which DNATs to the
//   endpoint. Marked traffic is masqueraded in POSTROUTING.
//
// The restore flushes the KUBE- chains that it declares, as kube-proxy's
// `iptables-restore --noflush` does, and deletes the Service and endpoint
// chains of the previous sync that are gone.

import { createHash } from 'node:crypto';

import { servicePortLabel } from './kube-proxy-names.js';
import type { IpFamily, ServicePort } from './service-ports.js';

// Set in the nat table's mark by KUBE-MARK-MASQ: packets to masquerade.
const MASQUERADE_MARK = '0x4000';
const BASE32_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

export interface IptablesFamilyRules {
  family: IpFamily;
  servicePorts: ServicePort[];
  // The cluster's pod CIDRs of this family. Service traffic from elsewhere
  // is masqueraded.
  podCidrs: string[];
}

export interface RenderedRules {
  // iptables-restore input for --noflush.
  restore: string;
  // The KUBE-SVC, KUBE-EXT and KUBE-SEP chains the input declares, for the
  // next sync to delete those that are gone.
  serviceChains: Set<string>;
}

// The jumps from the built-in chains, written once per namespace, and the
// mangle chain that kubelet creates to mark the backend it uses, which
// the agent's check reads as kube-proxy's image does.
export function renderBaseRules(): string {
  return `*mangle
:KUBE-IPTABLES-HINT - [0:0]
COMMIT
*filter
:KUBE-SERVICES - [0:0]
:KUBE-EXTERNAL-SERVICES - [0:0]
-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES
-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES
-A OUTPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
COMMIT
*nat
:KUBE-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-MARK-MASQ - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A KUBE-POSTROUTING -m mark ! --mark ${MASQUERADE_MARK}/${MASQUERADE_MARK} -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark ${MASQUERADE_MARK}
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE
-A KUBE-MARK-MASQ -j MARK --or-mark ${MASQUERADE_MARK}
COMMIT
`;
}

// Renders one sync. previousChains are the Service and endpoint chains of
// the sync before, so that those no longer needed are deleted.
export function renderServiceRules(rules: IptablesFamilyRules, previousChains: ReadonlySet<string>): RenderedRules {
  const hostBits = rules.family === 'ipv4' ? 32 : 128;
  const filter: string[] = [];
  const natChains = new Set<string>();
  const nat: string[] = [];

  for (const port of rules.servicePorts) {
    const label = servicePortLabel(port.name);
    const protocol = port.name.protocol;
    const match = `-p ${protocol} -m ${protocol} --dport`;

    if (port.endpoints.length === 0) {
      filter.push(`-A KUBE-SERVICES -d ${port.clusterIP}/${hostBits} ${match} ${port.port} -m comment --comment "${label} has no endpoints" -j REJECT`);
      if (port.nodePort !== 0) {
        filter.push(`-A KUBE-EXTERNAL-SERVICES -m addrtype --dst-type LOCAL ${match} ${port.nodePort} -m comment --comment "${label} has no endpoints" -j REJECT`);
      }
      continue;
    }

    const serviceChain = `KUBE-SVC-${portProtoHash(label, protocol)}`;
    natChains.add(serviceChain);
    nat.push(`-A KUBE-SERVICES -d ${port.clusterIP}/${hostBits} ${match} ${port.port} -m comment --comment "${label} cluster IP" -j ${serviceChain}`);
    for (const cidr of rules.podCidrs) {
      nat.push(`-A ${serviceChain} ! -s ${cidr} -d ${port.clusterIP}/${hostBits} ${match} ${port.port} -m comment --comment "${label} cluster IP" -j KUBE-MARK-MASQ`);
    }

    for (const [i, endpoint] of port.endpoints.entries()) {
      const address = rules.family === 'ipv4' ? `${endpoint.address}:${endpoint.port}` : `[${endpoint.address}]:${endpoint.port}`;
      const endpointChain = `KUBE-SEP-${portProtoHash(label, protocol, address)}`;
      natChains.add(endpointChain);

      // Each of the n endpoints gets 1/(n-i) of what the ones before left.
      const remaining = port.endpoints.length - i;
      const choice = remaining > 1 ? ` -m statistic --mode random --probability ${(1 / remaining).toFixed(10)}` : '';
      nat.push(`-A ${serviceChain} -m comment --comment "${label} -> ${address}"${choice} -j ${endpointChain}`);
      nat.push(`-A ${endpointChain} -s ${endpoint.address}/${hostBits} -m comment --comment "${label}" -j KUBE-MARK-MASQ`);
      nat.push(`-A ${endpointChain} -p ${protocol} -m ${protocol} -m comment --comment "${label}" -j DNAT --to-destination ${address}`);
    }

    if (port.nodePort !== 0) {
      const externalChain = `KUBE-EXT-${portProtoHash(label, protocol)}`;
      natChains.add(externalChain);
      nat.push(`-A KUBE-NODEPORTS ${match} ${port.nodePort} -m comment --comment "${label}" -j ${externalChain}`);
      nat.push(`-A ${externalChain} -m comment --comment "masquerade traffic for ${label} external destinations" -j KUBE-MARK-MASQ`);
      nat.push(`-A ${externalChain} -j ${serviceChain}`);
    }
  }
  nat.push('-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS');

  const deleted = [...previousChains].filter((chain) => !natChains.has(chain));
  const restore = [
    '*filter',
    ':KUBE-SERVICES - [0:0]',
    ':KUBE-EXTERNAL-SERVICES - [0:0]',
    ...filter,
    'COMMIT',
    '*nat',
    ':KUBE-SERVICES - [0:0]',
    ':KUBE-NODEPORTS - [0:0]',
    // A deleted chain is declared too, which flushes it, so that no rule
    // jumps to it when -X deletes it.
    ...[...natChains, ...deleted].map((chain) => `:${chain} - [0:0]`),
    ...nat,
    ...deleted.map((chain) => `-X ${chain}`),
    'COMMIT',
    '',
  ].join('\n');
  return { restore, serviceChains: natChains };
}

function portProtoHash(...parts: string[]): string {
  const digest = createHash('sha256').update(parts.join('')).digest();
  let output = '';
  let buffer = 0;
  let bits = 0;
  for (const byte of digest) {
    buffer = ((buffer << 8) | byte) & 0xffff;
    bits += 8;
    while (bits >= 5 && output.length < 16) {
      output += BASE32_ALPHABET[(buffer >>> (bits - 5)) & 31];
      bits -= 5;
    }
    if (output.length === 16) break;
  }
  return output;
}
