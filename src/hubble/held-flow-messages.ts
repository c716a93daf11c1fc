// The Flow messages that the agent's observer endpoint serves for the
// flows that zerohold holds, releases and expires. Hubble has no verdict
// for a held packet, so the values are chosen for what `hubble observe`
// prints (Cilium v1.19 hubble/pkg/printer):
//
//   kind      verdict    event_type            hubble observe TYPE and VERDICT
//   held      TRACED     4 (trace), sub_type   "from-network TRACED" or "from-endpoint TRACED"
//   released  FORWARDED  4 (trace), sub_type   "from-network FORWARDED" or "from-endpoint FORWARDED"
//   expired   DROPPED    1 (drop), 158         "Service backend not found DROPPED"
//
// A held packet is neither forwarded nor dropped yet, and TRACED keeps it
// out of alerts and metrics on DROPPED flows. An expired packet is dropped
// because its Service had no backend in time, which is the meaning of
// Cilium's code 158 (SERVICE_BACKEND_NOT_FOUND). The deprecated Flow.Summary field
// (number 100000, not in proto/flow/flow.proto) carries a sentence such as
// "zerohold held: workload shop/web is scaled to zero", which the JSON
// output shows and the hubble versions that print Summary show in the
// compact output.

import { create } from '@bufbuild/protobuf';
import { BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import { randomUUID } from 'node:crypto';

import type { Flow as DatapathFlow } from '../datapath/records.js';
import type { WorkloadKey } from '../agent/ports.js';
import { DropReason, FlowSchema, FlowType, IPVersion, TraceObservationPoint, TrafficDirection, Verdict, type Flow } from './gen/flow/flow_pb.js';

export type HeldFlowEventKind = 'held' | 'released' | 'expired';

export interface HeldFlowEvent {
  kind: HeldFlowEventKind;
  workload: WorkloadKey;
  // The Service "namespace/name" whose frontend the flow was sent to, when
  // known.
  service?: string;
  flow: DatapathFlow;
  // When it happened, CLOCK_MONOTONIC ms, like WakeSignal.atMs.
  atMs: number;
  // The interface that received the first frame.
  interface?: { index: number; name?: string };
  // For released and expired flows: how long the flow was held.
  heldForMs?: number;
  // For an expired flow dropped for another reason than its wake timing
  // out, such as "no longer opts in".
  cause?: string;
}

// Cilium monitor message types (pkg/monitor/api/types.go).
const MESSAGE_TYPE_DROP = 1;
const MESSAGE_TYPE_TRACE = 4;
const SUMMARY_FIELD = 100000;

// Cilium names its pod-facing veth devices "lxc…". A frame from one came
// from a pod of this node, every other frame from the network.
// NOTE: this guess is wrong for frames that arrive through a tunnel
// device (cilium_vxlan), which Cilium would call from-overlay.
function observationPointOf(event: HeldFlowEvent): TraceObservationPoint {
  return event.interface?.name?.startsWith('lxc') ? TraceObservationPoint.FROM_ENDPOINT : TraceObservationPoint.FROM_NETWORK;
}

function summaryOf(event: HeldFlowEvent): string {
  const held = event.heldForMs === undefined ? '' : ` after ${(event.heldForMs / 1000).toFixed(3)} s`;
  switch (event.kind) {
    case 'held':
      return `zerohold held: workload ${event.workload} is scaled to zero, waking it`;
    case 'released':
      return `zerohold released${held}: workload ${event.workload} has a ready backend`;
    case 'expired':
      return `zerohold expired${held}: workload ${event.workload} ${event.cause ?? 'had no ready backend in time'}`;
  }
}

// Encodes Summary as an unknown field, which protobuf-es writes as it is.
function summaryField(text: string): { no: number; wireType: WireType; data: Uint8Array } {
  const writer = new BinaryWriter();
  writer.string(text);
  return { no: SUMMARY_FIELD, wireType: WireType.LengthDelimited, data: writer.finish() };
}

// Builds the Flow message of an event. unixMs is the event time on the
// Unix clock.
export function heldFlowMessage(event: HeldFlowEvent, unixMs: number, nodeName: string): Flow {
  const { flow } = event;
  const ports = { sourcePort: flow.sourcePort, destinationPort: flow.destinationPort };
  const [namespace, name] = event.service?.split('/') ?? [];
  const point = observationPointOf(event);
  const expired = event.kind === 'expired';

  const message = create(FlowSchema, {
    time: timestampFromMs(unixMs),
    uuid: randomUUID(),
    verdict: { held: Verdict.TRACED, released: Verdict.FORWARDED, expired: Verdict.DROPPED }[event.kind],
    dropReason: expired ? DropReason.SERVICE_BACKEND_NOT_FOUND : 0,
    dropReasonDesc: expired ? DropReason.SERVICE_BACKEND_NOT_FOUND : DropReason.DROP_REASON_UNKNOWN,
    IP: { source: flow.source, destination: flow.destination, ipVersion: flow.destination.includes(':') ? IPVersion.IPv6 : IPVersion.IPv4 },
    // Held TCP frames are SYNs: the datapath holds only a flow's first packets.
    l4: flow.protocol === 'tcp' ? { protocol: { case: 'TCP', value: { ...ports, flags: { SYN: true } } } } : { protocol: { case: 'UDP', value: ports } },
    Type: FlowType.L3_L4,
    nodeName,
    eventType: expired ? { type: MESSAGE_TYPE_DROP, subType: DropReason.SERVICE_BACKEND_NOT_FOUND } : { type: MESSAGE_TYPE_TRACE, subType: point },
    destinationService: name === undefined ? undefined : { namespace: namespace!, name },
    trafficDirection: TrafficDirection.INGRESS,
    traceObservationPoint: expired ? TraceObservationPoint.UNKNOWN_POINT : point,
    isReply: false,
    interface: event.interface === undefined ? undefined : { index: event.interface.index, name: event.interface.name ?? '' },
  });
  message.$unknown = [summaryField(summaryOf(event))];
  return message;
}
