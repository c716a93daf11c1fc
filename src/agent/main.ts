// zerohold-agent: the node agent. Usage: node dist/src/agent/main.js
// --config /etc/zerohold/agent.yaml. It loads the datapath, attaches it to
// the configured interfaces, and runs the controller until SIGTERM or
// SIGINT, when it detaches and exits.

import { mkdirSync } from 'node:fs';
import { parseArgs } from 'node:util';

import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';

import { ensureBpffs } from '../datapath/bpffs.js';
import { Datapath } from '../datapath/datapath.js';
import { ConfigError, loadConfig } from './config.js';
import { Controller } from './controller.js';
import { EndpointReadiness } from './endpoint-readiness.js';
import { EventRecorder } from './events.js';
import { KubeProxyNftables } from './kube-proxy-check.js';
import { LeaderElector } from './leader.js';
import { LocalApi } from './local-api.js';
import { LocalState } from './local-state.js';
import { componentLogger, createLogger, parseLogLevel } from './log.js';
import { AgentMetrics } from './metrics.js';
import { NodeDatapath } from './node-datapath.js';
import { NodeReports } from './node-reports.js';
import { KubeScaler } from './scaler.js';

async function nodeAddresses(kc: KubeConfig, nodeName: string): Promise<string[]> {
  try {
    const node = await kc.makeApiClient(CoreV1Api).readNode({ name: nodeName });
    return (node.status?.addresses ?? []).filter((a) => a.type === 'InternalIP' || a.type === 'ExternalIP').map((a) => a.address);
  } catch {
    // Without a Node object (a test cluster), NodePorts get no frontends.
    return [];
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { config: { type: 'string', default: '/etc/zerohold/agent.yaml' } } });
  const config = await loadConfig(values.config!);
  const nodeName = config.nodeName ?? process.env.NODE_NAME;
  if (!nodeName) {
    throw new ConfigError(values.config!, ['nodeName: missing, set it or the NODE_NAME environment variable (the DaemonSet sets it from spec.nodeName)']);
  }

  // TODO: chained mode (Cilium's datapath) and signal mode (Hubble drops).
  if (config.mode !== 'standalone') {
    throw new ConfigError(values.config!, [`mode: "${config.mode}" is not available in this version of the agent, use "standalone"`]);
  }

  const root = createLogger(parseLogLevel(process.env.ZEROHOLD_LOG_LEVEL), nodeName);
  const log = componentLogger(root, 'agent');
  const kc = new KubeConfig();
  if (config.kubernetes.kubeconfig) kc.loadFromFile(config.kubernetes.kubeconfig);
  else kc.loadFromCluster();

  ensureBpffs();
  mkdirSync(config.bpf.pinDir, { recursive: true });
  const datapath = await Datapath.open({
    ...(config.netns ? { netns: config.netns } : {}),
    ...(config.bpf.objectPath ? { objectPath: config.bpf.objectPath } : {}),
    pinDir: config.bpf.pinDir,
    maxServices: config.bpf.maxServices,
    maxFrontends: config.bpf.maxFrontends,
    indexBuckets: config.bpf.indexBuckets,
    heldRingBytes: config.bpf.heldRingBytes,
    wakeRingBytes: config.bpf.wakeRingBytes,
    heldLimits: { total: config.limits.heldFlowsTotal, perService: config.limits.heldFlowsPerService, perSource: config.limits.heldFlowsPerClient },
  });
  for (const iface of config.interfaces) {
    await datapath.attach(iface.name, iface.hook === 'xdp' ? { hook: 'xdp', mode: iface.xdpMode } : { hook: 'tc' });
    log.info({ interface: iface.name, hook: iface.hook }, 'attached');
  }
  datapath.start();

  const node = new NodeDatapath(datapath, config.limits.wakeInterval, config.release.heldPackets === 'reinject');
  const metrics = new AgentMetrics(() => node.heldCounts());
  const metricsPort = await metrics.listen(config.metrics.host, config.metrics.port);

  let backendCheck: KubeProxyNftables | undefined;
  if (config.release.kubeProxy === 'nftables') {
    backendCheck = new KubeProxyNftables({ ...(config.netns ? { netns: config.netns } : {}), log: componentLogger(root, 'readiness') });
    await backendCheck.start();
  }

  const readiness = new EndpointReadiness(kc, componentLogger(root, 'readiness'));
  const reports = new NodeReports(kc, { namespace: config.kubernetes.namespace, nodeName, staleAfterMs: 3 * config.idle.reportInterval }, componentLogger(root, 'controller'));
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
    nodeAddresses: await nodeAddresses(kc, nodeName),
    datapath: node,
    readiness,
    scaler: new KubeScaler(kc),
    events: new EventRecorder(kc, nodeName, componentLogger(root, 'events')),
    activity: node,
    ...(backendCheck ? { backendCheck, backendCheckTimeoutMs: config.release.timeout } : {}),
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
  const api = new LocalApi(new LocalState(nodeName, controller, node), componentLogger(root, 'api'));
  await api.listen(config.api.socket);
  log.info({ metricsPort, socket: config.api.socket, mode: config.mode }, 'agent ready');

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping');
    await api.close();
    await controller.stop();
    await leader.stop();
    await reports.stop();
    await readiness.stop();
    await backendCheck?.stop();
    await metrics.close();
    // Detaches the programs; the pinned maps stay for the next start.
    await datapath.close();
    log.info('stopped');
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}

main().catch((err: Error) => {
  process.stderr.write(`zerohold-agent: ${err.message}\n`);
  process.exit(1);
});
