// The Services that zerohold manages, as Hubble GetFlows filters and as an
// exact client-side check. Hubble matches destination_service by name
// prefix ("default/web" also matches "default/web-canary", see Cilium
// pkg/hubble/filters/k8s.go), so the server-side filter only narrows the
// stream and the client keeps the flows whose Service or address is
// managed.

import { create, type MessageInitShape } from '@bufbuild/protobuf';

import { FlowFilterSchema, type Flow, type FlowFilter } from './gen/flow/flow_pb.js';

export interface ServiceName {
  namespace: string;
  name: string;
}

// Fields that every whitelist filter adds, such as verdict or event_type.
export type FilterConditions = Pick<
  MessageInitShape<typeof FlowFilterSchema>,
  'verdict' | 'dropReasonDesc' | 'eventType' | 'trafficDirection' | 'protocol' | 'destinationPort' | 'reply' | 'nodeName'
>;

export class ManagedServices {
  private readonly names: Set<string>;
  // Namespace to Service name to "namespace/name", so that match() finds a
  // flow's Service without building a string per flow.
  private readonly byNamespace = new Map<string, Map<string, string>>();
  private readonly addresses: Set<string>;

  // frontendAddresses are the Services' ClusterIPs and other frontend IPs,
  // which also match a flow that Hubble could not attribute to a Service,
  // such as a drop before the service lookup.
  constructor(services: Iterable<ServiceName>, frontendAddresses: Iterable<string> = []) {
    this.names = new Set();
    for (const service of services) {
      const name = `${service.namespace}/${service.name}`;
      this.names.add(name);

      let names = this.byNamespace.get(service.namespace);
      if (names === undefined) {
        names = new Map();
        this.byNamespace.set(service.namespace, names);
      }
      names.set(service.name, name);
    }
    this.addresses = new Set(frontendAddresses);
  }

  get size(): number {
    return this.names.size + this.addresses.size;
  }

  // The GetFlows whitelist: one filter by Service name, one by frontend
  // address, each with the given conditions. Empty when nothing is
  // managed, and an empty whitelist matches every flow, so callers must
  // not open a stream then.
  whitelist(conditions: FilterConditions = {}): FlowFilter[] {
    const filters: FlowFilter[] = [];
    if (this.names.size > 0) filters.push(create(FlowFilterSchema, { ...conditions, destinationService: [...this.names] }));
    if (this.addresses.size > 0) filters.push(create(FlowFilterSchema, { ...conditions, destinationIp: [...this.addresses] }));
    return filters;
  }

  // Returns "namespace/name" of the flow's managed Service, the destination
  // address for a flow matched by address alone, or undefined.
  match(flow: Flow): string | undefined {
    const service = flow.destinationService;
    if (service !== undefined) {
      const name = this.byNamespace.get(service.namespace)?.get(service.name);
      if (name !== undefined) return name;
    }

    const destination = flow.IP?.destination;
    if (destination !== undefined && this.addresses.has(destination)) return destination;
    return undefined;
  }
}
