// Cilium's service frontends as this node's Cilium agent has programmed
// them, and the rule that decides whether one of zerohold's frontends has
// a backend there. Two sources produce the list: the pinned load-balancer
// maps (service-maps.ts) and, where they are not readable, the agent's
// REST API (rest-services.ts).

import ipaddr from 'ipaddr.js';

import { addressToBytes } from '../../datapath/address.js';
import type { Frontend } from '../../datapath/frontends.js';

// 'any' is Cilium's IPPROTO_ANY (0): the entry matches every L4 protocol.
export type CiliumProtocol = 'tcp' | 'udp' | 'any';

// Cilium's load-balancing scope. Services with externalTrafficPolicy or
// internalTrafficPolicy Local have one entry per scope, each with its own
// rev-NAT id and backends: 'internal' serves clients on this node (pods),
// 'external' everything else.
export type LbScope = 'external' | 'internal';

export interface CiliumFrontend {
  // Canonical text form, as canonicalAddress() returns it.
  address: string;
  protocol: CiliumProtocol;
  port: number;
  scope: LbScope;
  // Cilium's service id, which the chained-mode hooks pass to zerohold.
  revNatId: number;
  // Backends that the datapath selects from for a new connection: the
  // active ones, or the terminating ones while none is active.
  backends: number;
}

export interface CiliumServiceSource {
  readonly kind: 'maps' | 'rest';
  // The latest list read, empty before the first read.
  frontends(): readonly CiliumFrontend[];
  // Reads the source now. Rejects when the read fails, and the list keeps
  // the previous read.
  refresh(): Promise<void>;
  // Calls listener after every read that changed the list. Returns a
  // function that removes the listener.
  onChange(listener: (frontends: readonly CiliumFrontend[]) => void): () => void;
  // Stops polling and releases descriptors and sockets. Idempotent.
  close(): void;
}

// Formats an IPv4 or IPv6 address as CiliumFrontend.address does: dotted
// quad, or ipaddr.js's compressed IPv6 form. An IPv4-mapped IPv6 address
// stays IPv6, because Cilium keeps it in its IPv6 maps (NAT46/64). Throws a
// TypeError for anything else.
export function canonicalAddress(address: string): string {
  addressToBytes(address);
  return ipaddr.parse(address).toString();
}

export function ciliumFrontendToString(f: CiliumFrontend): string {
  const host = f.address.includes(':') ? `[${f.address}]` : f.address;
  return `${f.protocol}/${host}:${f.port}/${f.scope} (rev-NAT ${f.revNatId}, ${f.backends} backends)`;
}

// Cilium's frontends grouped by address for the programmed check.
export class CiliumFrontendIndex {
  private readonly byAddress = new Map<string, CiliumFrontend[]>();

  constructor(frontends: readonly CiliumFrontend[]) {
    for (const frontend of frontends) {
      const list = this.byAddress.get(frontend.address);
      if (list === undefined) this.byAddress.set(frontend.address, [frontend]);
      else list.push(frontend);
    }
  }

  // Whether Cilium's datapath on this node would send a new connection to
  // frontend to a backend. Per scope, the datapath of Cilium v1.18.6 looks
  // up the exact protocol first and the 'any' entry only when that is
  // missing (__lb4_lookup_service in bpf/lib/lb.h), so an exact entry
  // without backends hides an 'any' entry with some. A frontend with port
  // 'any' counts once any port of its address has a backend. Throws a
  // TypeError when frontend.address is not an IP address.
  //
  // NOTE: a frontend counts when either scope has a backend, because the
  // check does not know which hook point held the flow. For a Service with
  // externalTrafficPolicy Local and no backend on this node, a flow held
  // at the NodePort hook is then released into Cilium's no-backend path.
  isProgrammed(frontend: Frontend): boolean {
    const candidates = this.byAddress.get(canonicalAddress(frontend.address)) ?? [];
    const ports = frontend.port === 'any' ? new Set(candidates.map((c) => c.port)) : new Set([frontend.port]);

    for (const port of ports) {
      for (const scope of ['external', 'internal'] as const) {
        const entries = candidates.filter((c) => c.port === port && c.scope === scope);
        const selected = entries.find((c) => c.protocol === frontend.protocol) ?? entries.find((c) => c.protocol === 'any');
        if (selected !== undefined && selected.backends > 0) return true;
      }
    }
    return false;
  }

  // Whether Cilium has any entry for the frontend, with or without
  // backends. Throws a TypeError when frontend.address is not an IP
  // address.
  has(frontend: Frontend): boolean {
    const candidates = this.byAddress.get(canonicalAddress(frontend.address)) ?? [];
    return candidates.some((c) => (frontend.port === 'any' || c.port === frontend.port) && (c.protocol === frontend.protocol || c.protocol === 'any'));
  }
}

// Orders frontends so that two reads of the same state compare equal.
export function sortFrontends(frontends: CiliumFrontend[]): CiliumFrontend[] {
  return frontends.sort((a, b) => a.revNatId - b.revNatId || a.address.localeCompare(b.address) || a.port - b.port || a.protocol.localeCompare(b.protocol) || a.scope.localeCompare(b.scope));
}

export function sameFrontends(a: readonly CiliumFrontend[], b: readonly CiliumFrontend[]): boolean {
  if (a.length !== b.length) return false;
  return a.every((f, i) => {
    const g = b[i]!;
    return f.address === g.address && f.protocol === g.protocol && f.port === g.port && f.scope === g.scope && f.revNatId === g.revNatId && f.backends === g.backends;
  });
}
