// Whether a UDP server on this node has bound its port yet, asked of the
// kernel rather than of the server: a probe datagram would reach the
// server as a request it never expected. Two steps:
//
// 1. The addon finds the network namespace that has the endpoint's
//    address: the node's own for a pod on the host network, else a pod's
//    behind one of the node's veths (endpointNetns() in native.ts).
// 2. zh_tc_udp_bound (bpf/lib/udp_bound.h), run with BPF_PROG_RUN in the
//    agent's namespace, makes the socket lookup that an arriving datagram
//    would get, in that namespace.
//
// An endpoint on another node has no namespace here, and the probe
// cannot tell: the release then goes by the endpoint's Ready condition.

import ipaddr from 'ipaddr.js';

import { UdpBoundResult } from '../datapath/layout.js';
import { loadNative, type NativeProgram } from '../datapath/native.js';
import { probeFamily } from './connect-probe.js';

const ETH_HLEN = 14;
const ETH_P_IP = 0x0800;
const ETH_P_IPV6 = 0x86dd;
const IPPROTO_UDP = 17;
const IPV4_HLEN = 20;
const IPV6_HLEN = 40;
const UDP_HLEN = 8;

// Namespace ids that earlier attempts found, by endpoint address, so
// that the next attempt of a wait reads one namespace's addresses instead
// of every pod's. A hint is checked before use, so a stale one costs one
// netlink request. The oldest are dropped beyond this many.
const MAX_HINTS = 4096;

// Resolves like a ListenProbe: null when a socket is bound, ECONNREFUSED
// when none is (a datagram would get an ICMP port unreachable, which a
// connected UDP socket reports as ECONNREFUSED), else the reason why the
// endpoint's namespace was not found. Rejects for an address that is not
// numeric, a port out of range, a namespace that cannot be entered, or a
// failed netlink request or run.
export type UdpBoundProbe = (address: string, port: number, netns?: string) => Promise<string | null>;

// program is zh_tc_udp_bound of the agent's loaded object.
export function udpBoundProbe(program: NativeProgram): UdpBoundProbe {
  const hints = new Map<string, number>();

  return async (address, port, netns) => {
    const family = probeFamily(address, port);

    const hintKey = `${netns ?? ''}|${address}`;
    const result = await loadNative().udpSocketBound(program, datagramFrame(family, address, port), address, netns, hints.get(hintKey));
    if (result.reason !== undefined) {
      hints.delete(hintKey);
      return result.reason;
    }

    hints.delete(hintKey);
    hints.set(hintKey, result.netnsId);
    if (hints.size > MAX_HINTS) hints.delete(hints.keys().next().value!);

    if (result.retval === UdpBoundResult.Bound) return null;
    if (result.retval === UdpBoundResult.Unbound) return 'ECONNREFUSED';
    throw new Error(`${program.name} returned ${result.retval} for ${address} port ${port}, which is none of its results; the agent and its BPF object do not match`);
  };
}

// An Ethernet frame with the IP and UDP headers of a datagram to the
// endpoint, from the unspecified address and port 0. The lookup matches
// sockets bound to the port and not connected to a peer, which is what a
// server's socket is.
function datagramFrame(family: 4 | 6, address: string, port: number): Buffer {
  const ipLength = family === 4 ? IPV4_HLEN : IPV6_HLEN;
  const frame = Buffer.alloc(ETH_HLEN + ipLength + UDP_HLEN);
  frame.writeUInt16BE(family === 4 ? ETH_P_IP : ETH_P_IPV6, 12);

  const ip = frame.subarray(ETH_HLEN);
  if (family === 4) {
    ip[0] = 0x45;
    ip.writeUInt16BE(IPV4_HLEN + UDP_HLEN, 2);
    ip[8] = 64;
    ip[9] = IPPROTO_UDP;
    ip.set(ipaddr.parse(address).toByteArray(), 16);
  } else {
    ip[0] = 0x60;
    ip.writeUInt16BE(UDP_HLEN, 4);
    ip[6] = IPPROTO_UDP;
    ip[7] = 64;
    ip.set(ipaddr.parse(address).toByteArray(), 24);
  }

  const udp = frame.subarray(ETH_HLEN + ipLength);
  udp.writeUInt16BE(port, 2);
  udp.writeUInt16BE(UDP_HLEN, 4);
  return frame;
}
