// The timeline of one cold start, assembled from what the testbed's
// components recorded: the agent's log, the API server's request records,
// the kubelet's events, the service proxy's syncs and the client's own
// timing. Every time is Unix milliseconds, so the steps line up across
// processes on this machine.

import type { DeployedWorkload, Testbed } from '../test/testbed/testbed.js';
import type { ClientResult } from '../test/testbed/client-run.js';

export interface Step {
  unixMs: number;
  label: string;
}

export interface ColdStart {
  steps: Step[];
  // When the pod passed its readiness probe, the reference of the overhead.
  readyUnixMs: number | null;
  // When this node's kube-proxy had the Service's backend in its rules,
  // as the proxy reported once its nft transaction returned.
  programmedUnixMs: number | null;
  // Client connection established (curl) or, for other clients, the
  // response; null when the client failed.
  connectedUnixMs: number | null;
  releasedUnixMs: number | null;
}

// curl's -w format for the phase times, in seconds since curl started.
export const CURL_TIMING_FORMAT = '\\n%{http_code} %{size_download} %{time_connect} %{time_starttransfer} %{time_total}';

interface CurlTiming {
  status: number;
  bytes: number;
  connectS: number;
  firstByteS: number;
  totalS: number;
}

export function parseCurlTiming(stdout: string): CurlTiming | null {
  const last = stdout.trimEnd().split('\n').pop() ?? '';
  const fields = last.split(' ').map(Number);
  if (fields.length !== 5 || fields.some((n) => Number.isNaN(n))) return null;
  const [status, bytes, connectS, firstByteS, totalS] = fields as [number, number, number, number, number];
  return { status, bytes, connectS, firstByteS, totalS };
}

// Formats a count of packets: "1 held packet", "3 more held packets".
function packets(count: number, kind: string): string {
  return `${count} ${kind} packet${count === 1 ? '' : 's'}`;
}

// Describes what the release at the gate opening re-injected, from the
// fields of the agent's "released held flows" line. Its count includes
// the packets re-injected early.
function describeRelease(fields: Record<string, unknown>): string {
  const early = Number(fields.releasedEarly ?? 0);
  const rest = Number(fields.released) - early;
  if (early === 0) return `${packets(rest, 'held')} re-injected`;
  if (rest === 0) return 'no more held packets to re-inject';
  return `${packets(rest, 'more held')} re-injected`;
}

// The plural resource name in the scale subresource's path.
function resourceOf(workload: DeployedWorkload): string {
  return workload.kind === 'StatefulSet' ? 'statefulsets' : 'deployments';
}

export function collectColdStart(testbed: Testbed, workload: DeployedWorkload, client: ClientResult, responseLabel: string): ColdStart {
  const since = client.startedUnixMs;
  const events = testbed.events.since(since);
  const steps: Step[] = [];

  // The agent logs the transition when it reads the wake record of the
  // first held packet, within a millisecond of its arrival.
  const waking = events.find((e) => e.source === 'agent' && e.type === 'Cold -> Waking' && e.fields.workload === workload.key);
  if (waking) steps.push({ unixMs: waking.unixMs, label: `first packet held by the agent on ${waking.node}, workload waking` });

  const scalePath = `/${resourceOf(workload)}/${workload.name}/scale`;
  const scale = testbed.server.requests.find((r) => r.receivedMs >= since && (r.method === 'PUT' || r.method === 'PATCH') && r.path.startsWith(`/apis/apps/v1/namespaces/${workload.namespace}${scalePath}`) && r.status < 300);
  if (scale) steps.push({ unixMs: scale.receivedMs, label: `scale subresource written: replicas 0 -> 1 (${scale.method})` });

  const started = events.find((e) => e.source === 'kubelet' && e.type === 'pod-started' && String(e.fields.pod ?? '').startsWith(workload.name));
  if (started) steps.push({ unixMs: started.unixMs, label: `pod ${started.fields.pod} started on ${started.node}` });

  const ready = events.find((e) => e.source === 'kubelet' && e.type === 'pod-ready' && String(e.fields.pod ?? '').startsWith(workload.name));
  if (ready) steps.push({ unixMs: ready.unixMs, label: `pod ${ready.fields.pod} Ready (readiness probe passed)` });

  // Every node's agent opens its gate; the one that held the packet
  // re-injects it.
  const releases = events.filter((e) => e.source === 'agent' && e.type === 'released held flows' && e.fields.workload === workload.key);
  let programmedUnixMs: number | null = null;
  const released = releases.find((e) => Number(e.fields.released) > 0) ?? releases.find((e) => e.node === waking?.node);
  // The agent re-injects the flows to a frontend as soon as its rule
  // exists, before the gate opens for the other IP family.
  const early = events.find((e) => e.source === 'agent' && e.type === 'released held flows early' && e.fields.workload === workload.key);
  if (ready) {
    const agentNode = early?.node ?? released?.node ?? waking?.node;
    const service = `${workload.namespace}/${workload.service.metadata?.name}`;
    // Each IP family's EndpointSlice gets its own sync. The client waits
    // for the first sync with a port of the Service when the agent released
    // early, else for the first with every port.
    const portsAfter = (e: { fields: Record<string, unknown> }) => (e.fields.servicePorts as Record<string, number> | undefined)?.[service] ?? 0;
    const syncs = events.filter((e) => e.source === 'service-proxy' && e.node === agentNode && e.unixMs >= ready.unixMs && portsAfter(e) > 0);
    const allPorts = Math.max(0, ...syncs.map(portsAfter));
    const sync = early ? syncs[0] : syncs.find((e) => portsAfter(e) === allPorts);
    if (sync) {
      programmedUnixMs = sync.unixMs;
      steps.push({ unixMs: sync.unixMs, label: `kube-proxy (nftables) on ${sync.node} reported its sync (the kernel has the rule a moment earlier)` });
    }
  }
  if (early) steps.push({ unixMs: early.unixMs, label: `${packets(Number(early.fields.released), 'held')} re-injected on ${early.node} once the frontend's rule existed, gate still closed` });
  if (released) steps.push({ unixMs: released.unixMs, label: `gate opened on every frontend, ${describeRelease(released.fields)} on ${released.node}` });

  let connectedUnixMs: number | null = null;
  const timing = parseCurlTiming(client.stdout);
  if (client.ok && timing) {
    // Anchored at the exit, which the testbed observes within about a
    // millisecond, rather than at the spawn, which curl's clock starts after.
    connectedUnixMs = client.endedUnixMs - (timing.totalS - timing.connectS) * 1000;
    steps.push({ unixMs: connectedUnixMs, label: 'connection established (curl time_connect)' });
    steps.push({ unixMs: client.endedUnixMs - (timing.totalS - timing.firstByteS) * 1000, label: `${responseLabel}: HTTP ${timing.status}, ${timing.bytes} bytes` });
  } else if (client.ok) {
    connectedUnixMs = client.endedUnixMs;
    steps.push({ unixMs: client.endedUnixMs, label: responseLabel });
  } else {
    steps.push({ unixMs: client.endedUnixMs, label: `client failed (exit ${client.code ?? client.signal}): ${client.stderr.trim().split('\n').pop() ?? ''}` });
  }

  steps.sort((a, b) => a.unixMs - b.unixMs);
  return { steps, readyUnixMs: ready?.unixMs ?? null, programmedUnixMs, connectedUnixMs, releasedUnixMs: early?.unixMs ?? released?.unixMs ?? null };
}
