// Hubble's flow filter semantics for a server of the observer API: a flow
// is sent when the whitelist is empty or one of its filters matches, and
// no blacklist filter matches. Within one FlowFilter every field that is
// set must match, and a repeated field matches when one of its values does.
// Covers the fields of proto/flow/flow.proto's FlowFilter, following
// Cilium's pkg/hubble/filters.

import ipaddr from 'ipaddr.js';

import type { Flow, FlowFilter, Service, Endpoint } from './gen/flow/flow_pb.js';

type FlowPredicate = (flow: Flow) => boolean;

// Rejects filter values that Hubble also rejects, such as an invalid CIDR
// or port, with the field name in the message.
export class InvalidFilterError extends Error {
  override name = 'InvalidFilterError';
}

function parseAddressMatcher(field: string, values: string[]): (address: string | undefined) => boolean {
  const exact = new Set<string>();
  const ranges: [ipaddr.IPv4 | ipaddr.IPv6, number][] = [];
  for (const value of values) {
    if (value.includes('/')) {
      try {
        ranges.push(ipaddr.parseCIDR(value));
      } catch {
        throw new InvalidFilterError(`invalid ${field} filter ${JSON.stringify(value)}: expected an IP address or CIDR prefix`);
      }
    } else if (ipaddr.isValid(value)) {
      exact.add(ipaddr.parse(value).toString());
    } else {
      throw new InvalidFilterError(`invalid ${field} filter ${JSON.stringify(value)}: expected an IP address or CIDR prefix`);
    }
  }

  return (address) => {
    if (address === undefined || address === '' || !ipaddr.isValid(address)) return false;
    const parsed = ipaddr.parse(address);
    if (exact.has(parsed.toString())) return true;
    return ranges.some(([network, bits]) => parsed.kind() === network.kind() && parsed.match(network, bits));
  };
}

// "namespace/name-prefix" as in Cilium's filterByNamespacedName: the
// namespace must be equal and the name must start with the prefix. A value
// without "/" is a name prefix with an empty namespace, which the hubble
// CLI never sends because it prepends the default namespace.
function parseNameMatcher(field: string, values: string[]): (namespace: string, name: string) => boolean {
  const parsed = values.map((value) => {
    const parts = value.split('/');
    if (parts.length > 2 || value === '') {
      throw new InvalidFilterError(`invalid ${field} filter ${JSON.stringify(value)}: expected "namespace/name" or a name`);
    }
    return parts.length === 2 ? { namespace: parts[0]!, prefix: parts[1]! } : { namespace: '', prefix: parts[0]! };
  });

  return (namespace, name) => {
    if (namespace === '' && name === '') return false;
    return parsed.some((filter) => filter.namespace === namespace && name.startsWith(filter.prefix));
  };
}

function parsePorts(field: string, values: string[]): Set<number> {
  return new Set(
    values.map((value) => {
      const port = Number(value);
      if (!/^\d+$/.test(value) || port > 65535) {
        throw new InvalidFilterError(`invalid ${field} filter ${JSON.stringify(value)}: expected a port from 0 to 65535`);
      }
      return port;
    }),
  );
}

function ports(flow: Flow): { source: number; destination: number } | undefined {
  const l4 = flow.l4?.protocol;
  if (l4?.case === 'TCP' || l4?.case === 'UDP' || l4?.case === 'SCTP') return { source: l4.value.sourcePort, destination: l4.value.destinationPort };
  return undefined;
}

// Hubble's protocol names (pkg/hubble/filters/protocol.go in Cilium
// 1.19.4). "icmp" matches both ICMP versions. zerohold's flows are TCP or
// UDP, so vrrp, igmp and the L7 names match none of them.
const PROTOCOLS = ['tcp', 'udp', 'sctp', 'icmp', 'icmpv4', 'icmpv6', 'vrrp', 'igmp', 'dns', 'http', 'kafka'];

function protocolMatches(wanted: string, flow: Flow): boolean {
  const l4 = flow.l4?.protocol.case;
  switch (wanted.toLowerCase()) {
    case 'tcp':
      return l4 === 'TCP';
    case 'udp':
      return l4 === 'UDP';
    case 'sctp':
      return l4 === 'SCTP';
    case 'icmp':
      return l4 === 'ICMPv4' || l4 === 'ICMPv6';
    case 'icmpv4':
      return l4 === 'ICMPv4';
    case 'icmpv6':
      return l4 === 'ICMPv6';
    default:
      return false;
  }
}

function globToRegExp(pattern: string): RegExp {
  const escaped = pattern.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*');
  return new RegExp(`^${escaped}$`);
}

const nameOf = (service: Service | Endpoint | undefined, kind: 'service' | 'pod'): [string, string] => {
  if (service === undefined) return ['', ''];
  if (kind === 'service') return [service.namespace, (service as Service).name];
  return [service.namespace, (service as Endpoint).podName];
};

// The FlowFilter fields that compileFilter reads, for the message that
// rejects the others.
const SUPPORTED_FIELDS =
  'uuid, source_ip, destination_ip, source_pod, destination_pod, source_service, destination_service, traffic_direction, verdict, drop_reason_desc, event_type, protocol, source_port, destination_port, reply, node_name and ip_version';

// Compiles one FlowFilter into a predicate. Throws InvalidFilterError,
// also for a field outside proto/flow/flow.proto's subset, which the
// decoder keeps as unknown: ignoring it would widen the filter. where
// names the filter in messages, such as "whitelist[0]".
export function compileFilter(filter: FlowFilter, where = 'filter'): FlowPredicate {
  const unknown = filter.$unknown ?? [];
  if (unknown.length > 0) {
    const numbers = [...new Set(unknown.map((field) => field.no))].join(', ');
    throw new InvalidFilterError(`unsupported FlowFilter field ${numbers} in ${where}: this endpoint filters by ${SUPPORTED_FIELDS}`);
  }
  const checks: FlowPredicate[] = [];

  if (filter.uuid.length > 0) {
    const uuids = new Set(filter.uuid);
    checks.push((flow) => uuids.has(flow.uuid));
  }
  if (filter.sourceIp.length > 0) {
    const matches = parseAddressMatcher('source_ip', filter.sourceIp);
    checks.push((flow) => matches(flow.IP?.source));
  }
  if (filter.destinationIp.length > 0) {
    const matches = parseAddressMatcher('destination_ip', filter.destinationIp);
    checks.push((flow) => matches(flow.IP?.destination));
  }
  if (filter.sourcePod.length > 0) {
    const matches = parseNameMatcher('source_pod', filter.sourcePod);
    checks.push((flow) => matches(...nameOf(flow.source, 'pod')));
  }
  if (filter.destinationPod.length > 0) {
    const matches = parseNameMatcher('destination_pod', filter.destinationPod);
    checks.push((flow) => matches(...nameOf(flow.destination, 'pod')));
  }
  if (filter.sourceService.length > 0) {
    const matches = parseNameMatcher('source_service', filter.sourceService);
    checks.push((flow) => matches(...nameOf(flow.sourceService, 'service')));
  }
  if (filter.destinationService.length > 0) {
    const matches = parseNameMatcher('destination_service', filter.destinationService);
    checks.push((flow) => matches(...nameOf(flow.destinationService, 'service')));
  }

  if (filter.trafficDirection.length > 0) {
    const directions = new Set(filter.trafficDirection);
    checks.push((flow) => directions.has(flow.trafficDirection));
  }
  if (filter.verdict.length > 0) {
    const verdicts = new Set(filter.verdict);
    checks.push((flow) => verdicts.has(flow.verdict));
  }
  if (filter.dropReasonDesc.length > 0) {
    const reasons = new Set(filter.dropReasonDesc);
    checks.push((flow) => reasons.has(flow.dropReasonDesc));
  }
  if (filter.eventType.length > 0) {
    const types = filter.eventType;
    checks.push((flow) => {
      const event = flow.eventType;
      if (event === undefined) return false;
      return types.some((type) => type.type === event.type && (!type.matchSubType || type.subType === event.subType));
    });
  }

  if (filter.protocol.length > 0) {
    const protocols = filter.protocol;
    for (const protocol of protocols) {
      if (!PROTOCOLS.includes(protocol.toLowerCase())) throw new InvalidFilterError(`unknown protocol filter ${JSON.stringify(protocol)}: expected one of ${PROTOCOLS.join(', ')}`);
    }
    checks.push((flow) => protocols.some((protocol) => protocolMatches(protocol, flow)));
  }
  if (filter.sourcePort.length > 0) {
    const wanted = parsePorts('source_port', filter.sourcePort);
    checks.push((flow) => {
      const l4 = ports(flow);
      return l4 !== undefined && wanted.has(l4.source);
    });
  }
  if (filter.destinationPort.length > 0) {
    const wanted = parsePorts('destination_port', filter.destinationPort);
    checks.push((flow) => {
      const l4 = ports(flow);
      return l4 !== undefined && wanted.has(l4.destination);
    });
  }
  if (filter.reply.length > 0) {
    const replies = filter.reply;
    // A flow of unknown direction (is_reply unset) matches no reply filter.
    checks.push((flow) => flow.isReply !== undefined && replies.includes(flow.isReply));
  }

  if (filter.nodeName.length > 0) {
    // NOTE: "*" matches any run of characters here. Hubble's own pattern
    // rules for node names (cluster prefixes, dots) are not reproduced.
    const patterns = filter.nodeName.map(globToRegExp);
    checks.push((flow) => patterns.some((pattern) => pattern.test(flow.nodeName)));
  }
  if (filter.ipVersion.length > 0) {
    const versions = new Set(filter.ipVersion);
    checks.push((flow) => flow.IP !== undefined && versions.has(flow.IP.ipVersion));
  }

  return (flow) => checks.every((check) => check(flow));
}

// Compiles a GetFlows whitelist and blacklist into one predicate. Throws
// InvalidFilterError.
export function compileFilters(whitelist: FlowFilter[], blacklist: FlowFilter[]): FlowPredicate {
  const allowed = whitelist.map((filter, i) => compileFilter(filter, `whitelist[${i}]`));
  const denied = blacklist.map((filter, i) => compileFilter(filter, `blacklist[${i}]`));
  return (flow) => (allowed.length === 0 || allowed.some((matches) => matches(flow))) && !denied.some((matches) => matches(flow));
}
