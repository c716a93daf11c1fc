// zerohold-agent: the node agent. Usage: node dist/src/agent/main.js
// --config /etc/zerohold/agent.yaml. It loads the datapath and, in
// standalone mode, attaches it to the configured interfaces as they
// appear, or in chained mode inserts it into the host datapath's prog
// arrays. It runs the
// controller until SIGTERM or SIGINT. Then it detaches its programs and
// exits, unless a SIGTERM with shutdown.handover leaves them to the next
// agent.

import { mkdirSync } from 'node:fs';
import { parseArgs } from 'node:util';

import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';

import { ensureBpffs } from '../datapath/bpffs.js';
import { frontendToString } from '../datapath/frontends.js';
import type { ClsactSweep } from '../datapath/native.js';
import { parseLinkPinPath, removeUnlistedClsactFilters, removeUnlistedLinks } from '../datapath/pinned-links.js';
import { HubbleActivity } from '../hubble/activity.js';
import type { HubbleEndpoint } from '../hubble/endpoint.js';
import { ObserverServer } from '../hubble/observer-server.js';
import { RepeatLimiter } from '../hubble/repeat-limiter.js';
import { SignalDatapath } from '../hubble/signal-wakes.js';
import { LatestActivity } from './activity-sources.js';
import { ObservedDatapath } from './observed-datapath.js';
import { Datapath, type DatapathOptions } from '../datapath/datapath.js';
import { ChainedDatapath } from './chained/ports.js';
import { CiliumBackendCheck } from './cilium/backend-check.js';
import type { CiliumServiceSource } from './cilium/frontends.js';
import { openCiliumServiceSource } from './cilium/open-service-source.js';
import { CiliumServiceIds } from './cilium/service-ids.js';
import { ConfigError, loadConfig, type AgentConfig } from './config.js';
import { formatDuration } from './duration.js';
import { Controller } from './controller.js';
import { DatapathDrops } from './datapath-drops.js';
import { EndpointReadiness } from './endpoint-readiness.js';
import { EventRecorder } from './events.js';
import { HeldRejections, UNKNOWN_WORKLOAD } from './held-rejections.js';
import { InterfaceAttacher } from './interface-attacher.js';
import { KeepAliveKubeConfig } from './kube-config.js';
import { KubeProxyAuto, type RunningCheck, startKubeProxyCheck } from './kube-proxy-auto.js';
import { LeaderElector } from './leader.js';
import { ListenCheck, listenProbe } from './listen-check.js';
import { Liveness } from './liveness.js';
import { LocalApi } from './local-api.js';
import { LocalState } from './local-state.js';
import type { DatapathPort } from './ports.js';
import { componentLogger, createLogger, parseLogLevel } from './log.js';
import { AgentMetrics } from './metrics.js';
import { NodeDatapath } from './node-datapath.js';
import { NodeReports } from './node-reports.js';
import { KubeScaler } from './scaler.js';
import { udpBoundProbe } from './udp-bound-probe.js';

// The node's addresses, for NodePort frontends, and the uid of its Node
// object, for the owner of its report Lease.
async function readNode(kc: KubeConfig, nodeName: string): Promise<{ addresses: string[]; uid?: string }> {
  try {
    const node = await kc.makeApiClient(CoreV1Api).readNode({ name: nodeName });
    const addresses = (node.status?.addresses ?? []).filter((a) => a.type === 'InternalIP' || a.type === 'ExternalIP').map((a) => a.address);
    return { addresses, ...(node.metadata?.uid ? { uid: node.metadata.uid } : {}) };
  } catch {
    // Without a Node object (a test cluster), NodePorts get no frontends.
    return { addresses: [] };
  }
}

function hubbleEndpoint(config: AgentConfig): HubbleEndpoint {
  const keepalive = { intervalMs: config.hubble.keepalive.interval, timeoutMs: config.hubble.keepalive.timeout };
  const relay = config.hubble.relay;
  if (!relay) return { kind: 'socket', path: config.hubble.socket, keepalive };
  if (!relay.tls) return { kind: 'relay', address: relay.address, keepalive };
  const { ca, cert, key, serverName } = relay.tls;
  const tls = { caFile: ca, ...(cert ? { certFile: cert } : {}), ...(key ? { keyFile: key } : {}), ...(serverName ? { serverName } : {}) };
  return { kind: 'relay', address: relay.address, tls, keepalive };
}

const USAGE = `usage: zerohold-agent [--config FILE]

Runs zerohold's node agent. FILE is the agent's YAML configuration,
/etc/zerohold/agent.yaml by default; docs/configuration.md describes
every field. ZEROHOLD_LOG_LEVEL sets the log level (default info).
`;

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { config: { type: 'string', default: '/etc/zerohold/agent.yaml' }, help: { type: 'boolean', short: 'h' } } });
  if (values.help) {
    process.stdout.write(USAGE);
    return;
  }
  const config = await loadConfig(values.config!);
  const nodeName = config.nodeName ?? process.env.NODE_NAME;
  if (!nodeName) {
    throw new ConfigError(values.config!, ['nodeName: missing, set it or the NODE_NAME environment variable (the DaemonSet sets it from spec.nodeName)']);
  }

  const root = createLogger(parseLogLevel(process.env.ZEROHOLD_LOG_LEVEL), nodeName);
  const log = componentLogger(root, 'agent');
  const kc = new KeepAliveKubeConfig();
  if (config.kubernetes.kubeconfig) kc.loadFromFile(config.kubernetes.kubeconfig);
  else kc.loadFromCluster();

  const hubble = hubbleEndpoint(config);
  const datapathOptions: DatapathOptions = {
    ...(config.netns ? { netns: config.netns } : {}),
    ...(config.bpf.objectPath ? { objectPath: config.bpf.objectPath } : {}),
    pinDir: config.bpf.pinDir,
    maxServices: config.bpf.maxServices,
    maxFrontends: config.bpf.maxFrontends,
    indexBuckets: config.bpf.indexBuckets,
    heldRingBytes: config.bpf.heldRingBytes,
    wakeRingBytes: config.bpf.wakeRingBytes,
    heldLimits: { total: config.limits.heldFlowsTotal, perService: config.limits.heldFlowsPerService, perSource: config.limits.heldFlowsPerClient },
    reinjectLate: config.release.heldPackets === 'reinject',
  };

  // Lets a component ask for a restart before stop() below exists.
  const restart = new RestartRequest();
  let node: NodeDatapath | ChainedDatapath | SignalDatapath;
  let datapath: Datapath | undefined;
  let ciliumServices: CiliumServiceSource | undefined;
  let liveness: Liveness | undefined;
  let attacher: InterfaceAttacher | undefined;
  // Reports the pins that the load replaced and starts renewing the
  // deadline, before the new programs run: without a deadline, they would
  // hold for an agent that died.
  const startLiveness = (opened: Datapath) => {
    logReplacedPins(log, opened);
    liveness = new Liveness(opened, config.liveness.failOpenAfter, componentLogger(root, 'datapath'));
    liveness.start();
  };
  if (config.mode === 'signal') {
    // Stock Cilium drops the first packet; its Hubble drop event wakes the
    // workload and the client's retransmission connects.
    node = new SignalDatapath({ endpoint: hubble, logger: componentLogger(root, 'datapath'), wakeIntervalMs: config.limits.wakeInterval });
    // A standalone agent that used this pinDir before left its links, whose
    // programs would hold flows that no signal-mode agent reads. Signal
    // mode needs no BPF otherwise, so a failure here does not stop it.
    try {
      logDetachedLinks(log, removeUnlistedLinks(config.bpf.pinDir, new Set()));
      await sweepClsactFilters(log, removeUnlistedClsactFilters([], undefined));
    } catch (err) {
      log.warn({ err, pinDir: config.bpf.pinDir }, 'could not detach the programs that an earlier standalone agent attached; remove them as docs/deploy.md describes');
    }
  } else if (config.mode === 'chained') {
    ensureBpffs();
    mkdirSync(config.bpf.pinDir, { recursive: true });
    // Read before the datapath opens: it drops ids that no workload claims.
    ciliumServices = await openCiliumServiceSource({ pinDir: config.cilium.bpfPinDir, socketPath: config.cilium.apiSocket, log: componentLogger(root, 'datapath') });
    // The host normally creates its pin directory; zh_chain_meta is pinned
    // there when the agent loads first.
    mkdirSync(config.chained.hostPinDir, { recursive: true });
    const chained = await ChainedDatapath.open(datapathOptions, new CiliumServiceIds(ciliumServices), {
      hostPinDir: config.chained.hostPinDir,
      reinsertIntervalMs: config.chained.reinsertInterval,
      wakeIntervalMs: config.limits.wakeInterval,
      reinject: config.release.heldPackets === 'reinject',
      onHostMetaReplaced: () => restart.request(),
      log: componentLogger(root, 'datapath'),
    });
    node = chained;
    startLiveness(chained.datapath);
    // A standalone agent that used this pinDir before left its links.
    await detachLeftovers(log, chained.datapath);
  } else {
    ensureBpffs();
    mkdirSync(config.bpf.pinDir, { recursive: true });
    datapath = await Datapath.open(datapathOptions);
    startLiveness(datapath);
    const opened = datapath;
    attacher = new InterfaceAttacher({
      datapath,
      selectors: config.interfaces,
      ...(config.netns ? { netns: config.netns } : {}),
      log: componentLogger(root, 'datapath'),
      // After the first pass, which took over the links that the previous
      // agent pinned for the interfaces present now.
      afterFirstPass: () => detachLeftovers(log, opened),
    });
    await attacher.start();
    node = new NodeDatapath(datapath, config.limits.wakeInterval, config.release.heldPackets === 'reinject');
  }
  // The loaded object, none in signal mode.
  const holding = node instanceof ChainedDatapath ? node.datapath : datapath;
  const metrics = new AgentMetrics(
    node instanceof SignalDatapath || holding === undefined
      ? { held: () => new Map() }
      : {
          held: () => node.heldTotals(),
          datapath: () => node.datapathCounters(),
          datapathGlobal: () => holding.services.readGlobalCounters(),
          ...(attacher ? { interfaces: () => interfaceCounts(attacher!) } : {}),
        },
  );

  // Flow openers over a held flow bound are dropped by the datapath and
  // retransmitted by their clients; they are counted and logged here.
  const heldRejections = node instanceof SignalDatapath ? undefined : new HeldRejections({ log: componentLogger(root, 'datapath'), metrics, workloadOf: (id) => node.workloadOf(id) });
  holding?.on('rejected', (serviceId, reason, clientOf) => heldRejections?.record(serviceId, reason, clientOf));
  // A record that could not be decoded or handled may be a lost flow
  // opener. A late record raced a release, and its re-injection may fail.
  const recordErrors = new RepeatLimiter(10_000);
  const owner = node instanceof SignalDatapath ? undefined : node;
  holding?.on('record-error', (err) => {
    metrics.heldDropped.inc({ workload: UNKNOWN_WORKLOAD, reason: 'record-error' });
    const suppressed = recordErrors.record();
    if (suppressed !== null) log.warn({ err, suppressed }, 'a ring buffer record could not be decoded or handled, and its flow may be lost; its client retransmits');
  });
  holding?.on('late-release', (result) => {
    for (const flow of result.discarded ?? []) {
      metrics.heldDropped.inc({ workload: owner?.workloadOf(flow.record.serviceId) ?? UNKNOWN_WORKLOAD, reason: 'drop-mode' });
    }
    if (result.failed.length === 0) return;
    for (const { flow } of result.failed) {
      metrics.heldDropped.inc({ workload: owner?.workloadOf(flow.record.serviceId) ?? UNKNOWN_WORKLOAD, reason: 'reinject-failed' });
    }
    // One line per batch, as for a release: the first error usually
    // explains the others.
    const first = result.failed[0]!;
    log.warn({ serviceId: first.flow.record.serviceId, failed: result.failed.length, error: first.error }, 're-injecting flows that arrived during their release failed; their clients retransmit');
  });
  // Flow openers that the datapath dropped before they reached the agent
  // are in its counters, logged from there.
  const datapathDrops = node instanceof SignalDatapath ? undefined : new DatapathDrops({ log: componentLogger(root, 'datapath'), counters: () => node.datapathCounters() });

  // Hubble flows are the activity source where zerohold's counters see no
  // warm traffic: in chained mode, where warm traffic never reaches it, and
  // in signal mode, where nothing is loaded.
  let hubbleActivity: HubbleActivity | undefined;
  if (config.mode !== 'standalone' || config.hubble.activity) {
    hubbleActivity = new HubbleActivity({ endpoint: hubble, logger: componentLogger(root, 'activity') });
  }
  const activity = new LatestActivity([...(node instanceof SignalDatapath ? [] : [node]), ...(hubbleActivity ? [hubbleActivity] : [])]);

  // The agent's own observer endpoint, for `hubble observe` on held flows.
  let observer: ObserverServer | undefined;
  let port: DatapathPort = node;
  if (!(node instanceof SignalDatapath)) {
    observer = new ObserverServer({ nodeName, logger: root });
    await observer.listen(config.hubble.observerSocket);
    const inner = node;
    port = new ObservedDatapath({ inner, datapath: holding, observer, serviceOf: (workload) => controller.serviceNames(workload)[0] });
  }
  const metricsPort = await metrics.listen(config.metrics.host, config.metrics.port);

  const nodeObject = await readNode(kc, nodeName);

  // A release waits until this node's load balancer has a backend: Cilium's
  // datapath in chained mode, and in standalone mode kube-proxy's rules
  // with release.kubeProxy auto (the default), nftables or iptables.
  let backendCheck: RunningCheck | undefined;
  const kubeProxyCheckOptions = { ...(config.netns ? { netns: config.netns } : {}), nodeAddresses: nodeObject.addresses, log: componentLogger(root, 'readiness') };
  if (ciliumServices) {
    const cilium = new CiliumBackendCheck({ source: ciliumServices, log: componentLogger(root, 'readiness') });
    backendCheck = { waitProgrammed: (frontends, timeoutMs) => cilium.waitProgrammed(frontends, timeoutMs), stop: async () => cilium.close() };
  } else if (config.mode === 'standalone' && (config.release.kubeProxy === 'nftables' || config.release.kubeProxy === 'iptables')) {
    backendCheck = await startKubeProxyCheck(config.release.kubeProxy, kubeProxyCheckOptions);
  } else if (config.mode === 'standalone' && config.release.kubeProxy === 'auto') {
    const auto = new KubeProxyAuto(kubeProxyCheckOptions);
    await auto.start();
    backendCheck = auto;
  }

  // Signal mode holds nothing, so it never releases.
  let listenCheck: ListenCheck | undefined;
  if (holding !== undefined && config.release.checkListening) {
    const probe = listenProbe(udpBoundProbe(holding.program('zh_tc_udp_bound')));
    listenCheck = new ListenCheck({ probe, log: componentLogger(root, 'readiness'), ...(config.netns ? { netns: config.netns } : {}) });
  }

  const readiness = new EndpointReadiness(kc, componentLogger(root, 'readiness'));
  const reports = new NodeReports(
    kc,
    { namespace: config.kubernetes.namespace, nodeName, ...(nodeObject.uid ? { nodeUid: nodeObject.uid } : {}), staleAfterMs: 3 * config.idle.reportInterval },
    componentLogger(root, 'controller'),
  );
  const leader = new LeaderElector(
    kc,
    {
      namespace: config.kubernetes.namespace,
      leaseName: config.leaderElection.leaseName,
      identity: nodeName,
      leaseDurationMs: config.leaderElection.leaseDuration,
      renewDeadlineMs: config.leaderElection.renewDeadline,
      retryPeriodMs: config.leaderElection.retryPeriod,
    },
    componentLogger(root, 'leader'),
  );
  const controller = new Controller({
    kc,
    nodeAddresses: nodeObject.addresses,
    datapath: port,
    readiness,
    scaler: new KubeScaler(kc),
    events: new EventRecorder(kc, nodeName, componentLogger(root, 'events')),
    activity,
    ...(backendCheck ? { backendCheck, backendCheckTimeoutMs: config.release.timeout } : {}),
    ...(listenCheck ? { listenCheck } : {}),
    isLeader: () => leader.isLeader,
    log: componentLogger(root, 'controller'),
    metrics,
    reports,
    reportIntervalMs: config.idle.reportInterval,
  });

  await readiness.start();
  await reports.start();
  leader.start();
  await controller.start();
  // The controller installed every workload, so ids that no workload
  // claims can leave zh_chain_svcs before the programs go in, and pinned
  // frontends that none claims can leave the table.
  if (node instanceof ChainedDatapath) node.start();
  if (node instanceof NodeDatapath) {
    const pruned = node.pruneUnclaimed();
    if (pruned.length > 0) log.info({ frontends: pruned.map(frontendToString) }, 'removed pinned frontends that no workload claims');
  }
  // The ring is read from now on. Records that waited in it during the
  // start, a restart's among them, find the controller listening and
  // every workload's service id assigned.
  datapath?.start();
  datapathDrops?.start();
  // The new programs are in place, so nothing writes to the rings that a
  // size change replaced any more. What the previous agent's programs left
  // there is read now, like the records of a restart.
  let drained = 0;
  if (node instanceof ChainedDatapath) {
    if (node.programsInPlace()) drained = node.datapath.drainReplacedRings();
    else if (node.datapath.unreadReplacedRings > 0) log.warn({ rings: node.datapath.unreadReplacedRings }, 'left the replaced rings pinned, because the chained programs are not in the host prog arrays; the next start reads them');
  } else {
    drained = datapath?.drainReplacedRings() ?? 0;
  }
  if (drained > 0) log.info({ records: drained }, 'read the records left in the replaced rings');

  // Hubble follows the Services of the tracked workloads, which change as
  // the controller reconciles.
  const followServices = () => {
    const services = new Map(controller.snapshot().map((w) => [w.key, controller.serviceNames(w.key)]));
    hubbleActivity?.setWorkloads(services);
    if (node instanceof SignalDatapath) for (const [workload, names] of services) node.setServices(workload, names);
  };
  followServices();
  const followTimer = setInterval(followServices, 1000);
  hubbleActivity?.start();
  if (node instanceof SignalDatapath) node.start();

  // LocalState reads only heldFlows() and interfaceName(), which every
  // datapath port provides.
  const api = new LocalApi(new LocalState(nodeName, controller, node as NodeDatapath, () => ({ entries: config.interfaces.map((entry) => entry.name), interfaces: attacher?.report() ?? [] })), componentLogger(root, 'api'));
  await api.listen(config.api.socket);
  log.info({ metricsPort, socket: config.api.socket, mode: config.mode }, 'agent ready');

  let stopping = false;
  // reason is the signal, or "restart" for an exit with code 1 that the
  // DaemonSet's restart policy follows with a new start.
  const stop = async (reason: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ reason }, 'stopping');
    // A step that fails is logged and the others still run, so that the
    // programs are always detached or handed over.
    let failed = false;
    const attempt = async (step: string, work: () => unknown) => {
      try {
        await work();
      } catch (err) {
        failed = true;
        log.error({ err, step }, 'a shutdown step failed, going on with the others');
      }
    };

    // On a hand-over, records from now on wait in the pinned ring for the
    // next agent instead of reaching this one, which is about to exit.
    let handover = reason === 'SIGTERM' && config.shutdown.handover > 0 && !restart.requested;
    if (handover) holding?.stopReading();
    await attempt('local API', () => api.close());
    clearInterval(followTimer);
    await attempt('Hubble activity', () => hubbleActivity?.stop());
    await attempt('observer', () => observer?.close());
    await attempt('controller', () => controller.stop());
    await attempt('leader election', () => leader.stop());
    await attempt('node reports', () => reports.stop());
    await attempt('readiness', () => readiness.stop());
    await attempt('backend check', () => backendCheck?.stop());
    await attempt('metrics', () => metrics.close());
    await attempt('held flow rejections', () => heldRejections?.close());
    await attempt('datapath drops', () => datapathDrops?.stop());
    await attempt('interface attacher', () => attacher?.stop());
    // Flows read from the ring exist in this process only, so the clients
    // of the ones still held retransmit to the next agent.
    const stillHeld = owner?.heldTotals() ?? new Map();
    if (stillHeld.size > 0) {
      const heldFlows = Object.fromEntries([...stillHeld].map(([workload, totals]) => [workload, totals.flows]));
      log.warn({ heldFlows }, 'stopping with flows held; their clients retransmit to the next agent');
    }

    // Detaches the programs or empties the host's slots; the pinned maps
    // stay for the next start. A hand-over leaves the programs holding
    // until the next agent takes over or the hand-over ends, unless a
    // restart was requested meanwhile, because the host replaced a map
    // that those programs read.
    if (restart.requested) handover = false;
    if (handover) {
      liveness?.handOver(config.shutdown.handover);
      const until = new Date(Date.now() + config.shutdown.handover).toISOString();
      log.info({ handover: formatDuration(config.shutdown.handover), until }, `leaving the programs attached and holding for the next agent until ${until}; after that they let flow openers pass`);
    } else {
      liveness?.stop();
      if (!(node instanceof SignalDatapath)) log.info({ interfaces: [...(attacher?.interfaces().values() ?? [])].map((iface) => iface.name) }, 'detaching the programs');
    }
    if (node instanceof ChainedDatapath) await attempt('chained datapath', () => node.close({ keepAttached: handover }));
    else if (node instanceof SignalDatapath) await attempt('signal datapath', () => node.stop());
    else await attempt('datapath', () => datapath?.close({ keepAttached: handover }));
    await attempt('Cilium services', () => ciliumServices?.close());
    kc.destroyAgents();
    log.info('stopped');
    process.exit(reason === 'restart' || failed ? 1 : 0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
  restart.listen(() => void stop('restart'));
}

// A request to stop the agent so that it starts again, which may come
// before the agent can stop and then waits for it.
class RestartRequest {
  private isRequested = false;
  private handler: (() => void) | undefined;

  get requested(): boolean {
    return this.isRequested;
  }

  request(): void {
    this.isRequested = true;
    this.handler?.();
  }

  listen(handler: () => void): void {
    this.handler = handler;
    if (this.isRequested) handler();
  }
}

function interfaceCounts(attacher: InterfaceAttacher): { attached: { xdp: number; tc: number }; failures: { xdp: number; tc: number } } {
  const attached = { xdp: 0, tc: 0 };
  for (const { hook } of attacher.interfaces().values()) attached[hook]++;
  return { attached, failures: attacher.attachFailures() };
}

// Detaches what an earlier configuration attached to interfaces or hooks
// that this datapath did not attach, and logs it.
async function detachLeftovers(log: Logger, opened: Datapath): Promise<void> {
  logDetachedLinks(log, opened.removeUnlistedLinks());
  await sweepClsactFilters(log, opened.removeUnlistedClsactFilters());
}

// Logs the links that an earlier configuration attached and this one
// detached.
function logDetachedLinks(log: Logger, pins: string[]): void {
  for (const pin of pins) {
    const link = parseLinkPinPath(pin);
    log.info({ interface: link?.ifname, hook: link?.hook, pin }, 'detached a program that an earlier configuration attached to an interface and hook that this configuration does not list');
  }
}

// Detaches the clsact filters that an earlier configuration attached and
// this one does not, and logs each. A device that could not be swept gets
// a warning, because the agent works without the sweep.
async function sweepClsactFilters(log: Logger, sweep: Promise<ClsactSweep>): Promise<void> {
  let result: ClsactSweep;
  try {
    result = await sweep;
  } catch (err) {
    log.warn({ err }, 'could not look for clsact filters that an earlier configuration attached; remove any with tc filter del as docs/deploy.md describes');
    return;
  }

  for (const { ifname, ifindex, progId } of result.detached) {
    log.info({ interface: ifname, ifindex, progId }, 'detached a clsact filter that an earlier configuration attached to an interface that this configuration does not attach it to');
  }
  for (const err of result.errors) {
    log.warn({ err, interface: err.ifname }, 'could not check the interface for a clsact filter that an earlier configuration attached');
  }
}

// A pinned map stops matching after a size in bpf.* changed or an upgrade
// changed its type, sizes, flags or entry layout, and the load replaced it
// with an empty one.
function logReplacedPins(log: Logger, datapath: Datapath): void {
  for (const { map, path, pinned, defined } of datapath.replacedPins) {
    const setting = Object.keys(pinned).length === 1 && 'maxEntries' in pinned ? SIZE_SETTINGS[map] : undefined;
    const layoutOnly = Object.keys(pinned).every((field) => field === 'keyLayout' || field === 'valueLayout');
    let cause = 'its definition changed, as after an upgrade';
    if (setting !== undefined) cause = `${setting} changed`;
    else if (layoutOnly) cause = 'the layout of its entries changed, as after an upgrade';
    const effect = REPLACED_PIN_EFFECTS[map] ?? 'it starts empty';
    log.warn({ map, path, setting, pinned, defined }, `replaced the pinned map ${map} because ${cause}: ${effect}`);
  }
}

// The setting that sizes each map's entries.
const SIZE_SETTINGS: Record<string, string> = {
  zh_held_ring: 'bpf.heldRingBytes',
  zh_wake_ring: 'bpf.wakeRingBytes',
  zh_frontends: 'bpf.maxFrontends',
  zh_fe_index: 'bpf.indexBuckets',
  zh_services: 'bpf.maxServices',
  zh_svc_stats: 'bpf.maxServices',
  zh_wake_state: 'bpf.maxServices',
  zh_hold_budget: 'bpf.maxServices',
};

const REPLACED_PIN_EFFECTS: Record<string, string> = {
  zh_held_ring: 'the agent reads the packets that the old ring still holds once its programs are attached',
  zh_wake_ring: 'the agent reads the wake signals that the old ring still holds once its programs are attached',
  zh_frontends: 'Services pass unheld until the controller writes their frontends again',
  zh_fe_index: 'the agent rebuilt it from zh_frontends',
  zh_services: 'Services pass unheld until the controller writes their gates again',
  zh_svc_stats: 'the per-Service datapath counters start from zero',
  zh_stats: 'the node-wide datapath counters start from zero',
  zh_wake_state: 'the next flow opener of each Service signals a wake',
  zh_hold_budget: "each Service's hold budget starts full",
  zh_chain_meta: 'it is used in chained mode only and holds nothing between packets',
};

main().catch((err: Error & { code?: string }) => {
  const hint = err.code?.startsWith('ERR_PARSE_ARGS_') ? '\nzerohold-agent --help lists the options' : '';
  process.stderr.write(`zerohold-agent: ${err.message}${hint}\n`);
  process.exit(1);
});
