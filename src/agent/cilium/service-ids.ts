// The rev-NAT ids of a workload's frontends, from Cilium's service list:
// the ids that Cilium's hooks pass to zerohold in chained mode.

import { type Frontend } from '../../datapath/frontends.js';
import type { ServiceIdSource } from '../chained/service-ids.js';
import { canonicalAddress, type CiliumFrontend, type CiliumServiceSource } from './frontends.js';

export class CiliumServiceIds implements ServiceIdSource {
  // Frontends by "address|port", rebuilt when the list changes, because
  // the agent calls revNatIdsOf on every reconcile.
  private byAddressPort = new Map<string, CiliumFrontend[]>();
  private indexed: readonly CiliumFrontend[] | null = null;

  constructor(private readonly source: CiliumServiceSource) {}

  // Every scope's entry counts: a Service with a Local traffic policy has
  // an internal and an external rev-NAT id, and a flow held at either hook
  // names one of them. A frontend with port 'any' takes the ids of every
  // port on its address.
  revNatIdsOf(frontends: Frontend[]): number[] {
    this.reindex();
    const ids = new Set<number>();
    for (const frontend of frontends) {
      const address = canonicalAddress(frontend.address);
      const candidates =
        frontend.port === 'any'
          ? [...this.byAddressPort.entries()].filter(([key]) => key.startsWith(`${address}|`)).flatMap(([, list]) => list)
          : (this.byAddressPort.get(`${address}|${frontend.port}`) ?? []);
      for (const candidate of candidates) {
        if (candidate.protocol === 'any' || candidate.protocol === frontend.protocol) ids.add(candidate.revNatId);
      }
    }
    return [...ids].sort((a, b) => a - b);
  }

  onChange(listener: () => void): void {
    this.source.onChange(() => listener());
  }

  private reindex(): void {
    const current = this.source.frontends();
    if (current === this.indexed) return;
    this.indexed = current;
    this.byAddressPort = new Map();
    for (const entry of current) {
      const key = `${entry.address}|${entry.port}`;
      const list = this.byAddressPort.get(key);
      if (list) list.push(entry);
      else this.byAddressPort.set(key, [entry]);
    }
  }
}
