// Flow fixtures for the Hubble tests and the benchmark. Addresses are
// from the test ranges: 198.18.0.0/16 for pods, 198.19.0.0/16 for
// Service IPs.

import type { MessageInitShape } from '@bufbuild/protobuf';
import type { Timestamp } from '@bufbuild/protobuf/wkt';

import { DropReason, IPVersion, Verdict, type FlowSchema } from '../../src/hubble/gen/flow/flow_pb.js';

export type FlowInit = MessageInitShape<typeof FlowSchema>;

export interface FlowFixture {
  namespace: string;
  service: string;
  serviceIp: string;
  clientIp?: string;
  port?: number;
  verdict?: Verdict;
  time?: Timestamp;
  uuid?: string;
}

// A TCP SYN from a client pod to a Service, as Hubble reports it at the
// trace point after the service translation.
export function serviceFlow(fixture: FlowFixture): FlowInit {
  const verdict = fixture.verdict ?? Verdict.FORWARDED;
  return {
    time: fixture.time,
    uuid: fixture.uuid ?? crypto.randomUUID(),
    verdict,
    dropReasonDesc: verdict === Verdict.DROPPED ? DropReason.SERVICE_BACKEND_NOT_FOUND : DropReason.DROP_REASON_UNKNOWN,
    IP: { source: fixture.clientIp ?? '198.18.1.10', destination: fixture.serviceIp, ipVersion: IPVersion.IPv4 },
    l4: { protocol: { case: 'TCP', value: { sourcePort: 40000, destinationPort: fixture.port ?? 80, flags: { SYN: true } } } },
    source: { namespace: 'clients', podName: 'client-0', labels: ['k8s:app=client'] },
    destination: { namespace: fixture.namespace, podName: '', labels: [] },
    destinationService: { namespace: fixture.namespace, name: fixture.service },
    eventType: { type: verdict === Verdict.DROPPED ? 1 : 4, subType: 0 },
    isReply: false,
  };
}
