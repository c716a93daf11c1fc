// Prometheus metrics of the agent, served by prom-client on their own
// registry and port. Nothing here is updated per packet: the datapath's
// per-packet counts stay in BPF maps and are read, like the held-flow
// gauges, when Prometheus scrapes.

import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

import { GlobalStat, type ServiceStatField } from '../datapath/layout.js';
import type { ServiceCounters } from '../datapath/services.js';
import { UNKNOWN_WORKLOAD } from './held-rejections.js';
import type { HeldTotals, WorkloadKey } from './ports.js';

export interface MetricSources {
  // Workload to the flows held now and the bytes of their frames.
  held: () => Map<WorkloadKey, HeldTotals>;
  // Workload to its datapath counters; none in signal mode.
  datapath?: () => Map<WorkloadKey, ServiceCounters>;
  // The datapath's node-wide counters, indexed by GlobalStat; none in
  // signal mode.
  datapathGlobal?: () => bigint[];
  // The interfaces with the hold program and the failed attachments, by
  // hook; standalone mode only.
  interfaces?: () => { attached: { xdp: number; tc: number }; failures: { xdp: number; tc: number } };
}

// The outcomes of a workload's flow openers that met a closed gate, each
// with the datapath counter that records it.
const FLOW_OPENER_OUTCOMES: [string, ServiceStatField][] = [
  ['held', 'held_frames'],
  ['ring-full', 'ringbuf_full'],
  ['over-budget', 'held_limited'],
  ['too-large', 'too_large'],
  ['fragment', 'fragments'],
  ['drop-mode', 'dropped_only'],
  ['no-agent', 'no_agent'],
];

// The reasons of zerohold_datapath_errors_total, each with its node-wide
// datapath counter.
const DATAPATH_ERROR_REASONS: [string, number][] = [
  ['bad-service', GlobalStat.BadService],
  ['chain-bad-meta', GlobalStat.ChainBadMeta],
  ['chain-unmanaged', GlobalStat.ChainUnmanaged],
];

// The reasons of zerohold_held_flows_dropped_total that belong to a
// workload. record-error is counted for UNKNOWN_WORKLOAD.
const WORKLOAD_DROP_REASONS = ['wake-timeout', 'service-limit', 'source-limit', 'total-limit', 'workload-removed', 'reinject-failed', 'drop-mode'];

// The alerts look back 10 minutes, and a scrape interval may pass before
// the last value is scraped.
const UNTRACK_DELAY_MS = 15 * 60_000;

export class AgentMetrics {
  readonly registry = new Registry();

  readonly wakes = new Counter({
    name: 'zerohold_wakes_total',
    help: 'Wakes this agent started: its scale-up changed the replica count of a workload at zero. Of several agents that wake one workload at once, only one counts it.',
    labelNames: ['workload'] as const,
    registers: [this.registry],
  });

  readonly scaleDowns = new Counter({
    name: 'zerohold_scale_downs_total',
    help: 'Scale-downs to zero that this agent performed as leader.',
    labelNames: ['workload'] as const,
    registers: [this.registry],
  });

  readonly heldDropped = new Counter({
    name: 'zerohold_held_flows_dropped_total',
    help: `Held flows dropped without release, by reason (${[...WORKLOAD_DROP_REASONS, 'record-error'].join(', ')}).`,
    labelNames: ['workload', 'reason'] as const,
    registers: [this.registry],
  });

  readonly apiErrors = new Counter({
    name: 'zerohold_api_errors_total',
    help: 'Failed lifecycle actions, by operation, most of them Kubernetes API calls.',
    labelNames: ['operation'] as const,
    registers: [this.registry],
  });

  readonly coldStart = new Histogram({
    name: 'zerohold_cold_start_seconds',
    help: 'First held packet of a wake to the release of its flows.',
    labelNames: ['workload'] as const,
    buckets: [0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120],
    registers: [this.registry],
  });

  readonly releaseOverhead = new Histogram({
    name: 'zerohold_release_overhead_seconds',
    help: 'A Ready endpoint observed, or the end of the wait for it to accept connections when there was one, to the held flows re-injected.',
    labelNames: ['workload'] as const,
    // Up to release.timeout's default of 10 s, the longest wait for the
    // node's load balancer.
    buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });

  readonly listenWait = new Histogram({
    name: 'zerohold_release_listen_wait_seconds',
    help: 'Seconds from a release decision to the end of its checks of the Ready endpoints that held flows go to (TCP connections, UDP socket lookups): the time the backends took to listen after turning Ready. Releases that checked no endpoint are not observed.',
    labelNames: ['workload'] as const,
    buckets: [0.001, 0.005, 0.025, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120],
    registers: [this.registry],
  });

  readonly backendRefused = new Counter({
    name: 'zerohold_release_backend_refused_total',
    help: 'Releases whose held flows went out while a Ready endpoint still did not listen (refused TCP connections, or had no UDP socket bound), at the end of wakeTimeout or of the grace after another endpoint listened (Event BackendNotListening).',
    labelNames: ['workload'] as const,
    registers: [this.registry],
  });

  private server: Server | null = null;
  private readonly untrackTimers = new Map<string, NodeJS.Timeout>();

  // The sources are read on each scrape. untrackDelayMs is for tests.
  constructor(
    sources: MetricSources,
    private readonly untrackDelayMs = UNTRACK_DELAY_MS,
  ) {
    const { held, datapath, datapathGlobal, interfaces } = sources;
    this.heldGauge('zerohold_held_flows', 'Flows held on this node now, waiting for their workload.', held, (totals) => totals.flows);
    this.heldGauge('zerohold_held_bytes', 'Bytes of the frames held on this node now, the packet data that the held flow limits bound.', held, (totals) => totals.bytes);
    if (datapath) {
      this.datapathCounter(
        'zerohold_datapath_flow_openers_total',
        'Flow openers (TCP SYNs, UDP datagrams) that the datapath met with the gate closed, by outcome: held, or dropped unheld because the held ring was full (ring-full), the frame was over 3,408 bytes (too-large), it was a first fragment (fragment) or release.heldPackets is drop (drop-mode), or passed unheld because no agent had renewed the datapath deadline (no-agent).',
        ['outcome'],
        datapath,
        (counters) => FLOW_OPENER_OUTCOMES.map(([outcome, field]) => [{ outcome }, counters[field]]),
      );
      this.datapathCounter(
        'zerohold_datapath_wake_signals_total',
        'Wake signals from the datapath to the agent, by result: sent, or lost because the wake ring was full.',
        ['result'],
        datapath,
        (counters) => [
          [{ result: 'sent' }, counters.wake_events],
          [{ result: 'lost' }, counters.wake_lost],
        ],
      );
      this.datapathCounter('zerohold_datapath_warm_packets_total', 'Packets that the datapath passed to a workload with its gate open.', [], datapath, (counters) => [[{}, counters.warm_packets]]);
      this.datapathCounter(
        'zerohold_datapath_non_openers_total',
        'Packets that open no flow (TCP segments other than a bare SYN, and in chained mode also frames the datapath cannot parse), by outcome: passed to the node by a standalone hook with the gate closed, so that established connections keep working, or dropped in chained mode, where the host called zerohold because it has no backend for them.',
        ['outcome'],
        datapath,
        (counters) => [
          [{ outcome: 'passed' }, counters.passed_cold],
          [{ outcome: 'dropped' }, counters.dropped_cold],
        ],
      );
    }
    if (datapathGlobal) this.datapathGlobalCounters(datapathGlobal);
    if (interfaces) this.interfaceMetrics(interfaces);
    collectDefaultMetrics({ register: this.registry, prefix: 'zerohold_agent_' });
    // Like trackWorkload(), for the drops that belong to no workload.
    this.heldDropped.inc({ workload: UNKNOWN_WORKLOAD, reason: 'record-error' }, 0);
  }

  // Creates a workload's counters and histograms at 0. Prometheus takes a
  // series' first sample as its start, so a series that appeared only with
  // its first event would not count that event in rate() or increase(),
  // and the alerts and the dashboard would miss it.
  trackWorkload(workload: string): void {
    clearTimeout(this.untrackTimers.get(workload));
    this.untrackTimers.delete(workload);
    this.wakes.inc({ workload }, 0);
    this.scaleDowns.inc({ workload }, 0);
    for (const reason of WORKLOAD_DROP_REASONS) this.heldDropped.inc({ workload, reason }, 0);
    this.coldStart.zero({ workload });
    this.releaseOverhead.zero({ workload });
    this.listenWait.zero({ workload });
    this.backendRefused.inc({ workload }, 0);
  }

  // Removes the series of a workload that no longer opts in, once the
  // alerts' 10-minute windows have seen their last values, so that series
  // do not pile up as workloads come and go.
  untrackWorkload(workload: string): void {
    clearTimeout(this.untrackTimers.get(workload));
    const timer = setTimeout(() => {
      this.untrackTimers.delete(workload);
      this.wakes.remove({ workload });
      this.scaleDowns.remove({ workload });
      for (const reason of WORKLOAD_DROP_REASONS) this.heldDropped.remove({ workload, reason });
      this.coldStart.remove({ workload });
      this.releaseOverhead.remove({ workload });
      this.listenWait.remove({ workload });
      this.backendRefused.remove({ workload });
    }, this.untrackDelayMs);
    timer.unref();
    this.untrackTimers.set(workload, timer);
  }

  // Serves /metrics; port 0 picks a free port. Returns the bound port.
  async listen(host: string, port: number): Promise<number> {
    this.server = createServer((req, res) => {
      if (req.url !== '/metrics') {
        res.writeHead(404).end('not found: metrics are at /metrics\n');
        return;
      }
      this.registry.metrics().then(
        (body) => res.writeHead(200, { 'Content-Type': this.registry.contentType }).end(body),
        (err: Error) => res.writeHead(500).end(`collecting metrics failed: ${err.message}\n`),
      );
    });
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(port, host, () => resolve());
    });
    return (this.server.address() as AddressInfo).port;
  }

  async close(): Promise<void> {
    for (const timer of this.untrackTimers.values()) clearTimeout(timer);
    this.untrackTimers.clear();
    const server = this.server;
    this.server = null;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  // Registers a per-workload counter whose values are read from the
  // datapath's BPF counters on each scrape. They only grow while a
  // workload keeps its service id. A workload given a fresh id in
  // standalone mode starts from zero, which Prometheus reads as a reset.
  private datapathCounter<L extends string>(
    name: string,
    help: string,
    labelNames: L[],
    datapath: () => Map<WorkloadKey, ServiceCounters>,
    values: (counters: ServiceCounters) => [Partial<Record<L, string>>, bigint][],
  ): void {
    const counter = new Counter({
      name,
      help,
      labelNames: ['workload', ...labelNames],
      registers: [this.registry],
      collect() {
        counter.reset();
        for (const [workload, counters] of datapath()) {
          for (const [labels, value] of values(counters)) counter.inc({ workload, ...labels } as Partial<Record<L | 'workload', string>>, Number(value));
        }
      },
    });
  }

  // Registers the gauge of attached interfaces and the counter of failed
  // attachments, read from the interface attacher on each scrape.
  private interfaceMetrics(read: NonNullable<MetricSources['interfaces']>): void {
    const attached = new Gauge({
      name: 'zerohold_interfaces_attached',
      help: 'Interfaces of the node with the hold program, by hook (xdp or tc). Clients whose packets enter other interfaces are not held.',
      labelNames: ['hook'] as const,
      registers: [this.registry],
      collect() {
        const counts = read().attached;
        attached.set({ hook: 'xdp' }, counts.xdp);
        attached.set({ hook: 'tc' }, counts.tc);
      },
    });
    const failures = new Counter({
      name: 'zerohold_interface_attach_failures_total',
      help: 'Attaches of the hold program that failed on an interface that the interfaces setting selects, by hook, other than the failures at start that stop the agent. The agent retries every minute, and clients behind such an interface are not held meanwhile.',
      labelNames: ['hook'] as const,
      registers: [this.registry],
      collect() {
        const counts = read().failures;
        failures.reset();
        failures.inc({ hook: 'xdp' }, counts.xdp);
        failures.inc({ hook: 'tc' }, counts.tc);
      },
    });
  }

  // Registers the counters of frames that belong to no workload, read from
  // the datapath's node-wide BPF counters on each scrape.
  private datapathGlobalCounters(read: () => bigint[]): void {
    const errors = new Counter({
      name: 'zerohold_datapath_errors_total',
      help: 'Frames that the datapath could not handle as their service asks, by reason: bad-service (a frontend or a chained call named a service id past the size of a per-service map), chain-bad-meta (a chained call came without valid metadata from the host) or chain-unmanaged (a chained call for an id that no workload manages).',
      labelNames: ['reason'] as const,
      registers: [this.registry],
      collect() {
        const counters = read();
        errors.reset();
        for (const [reason, index] of DATAPATH_ERROR_REASONS) errors.inc({ reason }, Number(counters[index] ?? 0n));
      },
    });
    const reinjected = new Counter({
      name: 'zerohold_datapath_reinjected_frames_total',
      help: 'Held frames that the re-injection program passed into the ingress path of their interface.',
      registers: [this.registry],
      collect() {
        reinjected.reset();
        reinjected.inc(Number(read()[GlobalStat.Reinjected] ?? 0n));
      },
    });
  }

  // Registers a per-workload gauge that reads its value from the held
  // totals on each scrape.
  private heldGauge(name: string, help: string, held: () => Map<string, HeldTotals>, value: (totals: HeldTotals) => number): void {
    const gauge = new Gauge({
      name,
      help,
      labelNames: ['workload'] as const,
      registers: [this.registry],
      collect() {
        gauge.reset();
        for (const [workload, totals] of held()) gauge.set({ workload }, value(totals));
      },
    });
  }
}
