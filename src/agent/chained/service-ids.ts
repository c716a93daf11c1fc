// The host datapath's service ids of a workload's frontends. In chained mode
// the datapath's service id is the host's id for a Service (for Cilium the
// rev-NAT id, in host byte order), so the agent reads them from the host
// instead of allocating its own.

import type { Frontend } from '../../datapath/frontends.js';

export interface ServiceIdSource {
  // Returns the distinct ids of the host's services that serve any of the
  // frontends, and no id for a frontend that the host does not know yet.
  // The agent calls this on every reconcile of a workload, so it must
  // answer from memory. The source must have read the host's services
  // before the controller starts, or workloads stay unmanaged until the
  // first onChange.
  revNatIdsOf(frontends: Frontend[]): number[];
  // Registers a listener called after the host's services changed in a
  // way that may change the result of revNatIdsOf.
  onChange(listener: () => void): void;
}
