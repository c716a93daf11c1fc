// A whole simulated cluster for end-to-end tests and demos. It contains
// the in-repo API server with the ScaleToZero CRD, a ClusterNetwork of
// node, pod and client namespaces, and the workload and EndpointSlice
// controllers. Each node gets a ServiceProxy (kube-proxy's nftables mode,
// or IptablesServiceProxy for its iptables mode),
// a Kubelet and one real zerohold agent process, attached with XDP to the
// node's eth0 and to the host-side veths of the client pods on that node.
//
// Testbed.start() builds it in that order and close() tears it down in
// reverse. A failed start tears down what it built. close() is idempotent,
// and SIGINT runs it too. If the process exits without close(), the exit
// handlers of AgentProcess, Kubelet and TestNetwork kill the processes and
// delete the namespaces, and the one here removes the work directory.

import { rmSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import {
  AppsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  type V1Deployment,
  type V1Service,
  type V1StatefulSet,
} from '@kubernetes/client-node';
import { type Logger, pino } from 'pino';

import { installScaleToZeroCrd } from '../agent/testing/objects.js';
import { kubeConfigFor } from '../apiserver/kubeconfig.js';
import { startApiServer, type TestApiServer } from '../apiserver/server.js';
import { waitFor } from '../lib/netns.js';
import { AgentProcess, type AgentLogLine, type XdpMode } from './agent-process.js';
import { type ClientResult, type ClientRunOptions, runClient } from './client-run.js';
import { ClusterNetwork, NODE_INTERFACE, POD_INTERFACE_PREFIX } from './cluster-network.js';
import { EndpointSliceController } from './endpointslice-controller.js';
import { Kubelet, type KubeletEvent } from './kubelet.js';
import type { PodAddresses } from './pod-network.js';
import { type SampleWorkload, writeWorkloadFiles } from './servers.js';
import { IptablesServiceProxy, type IptablesSyncRecord } from './iptables-service-proxy.js';
import { ServiceProxy, type SyncRecord } from './service-proxy.js';
import { SynCounter, type SynTarget } from './syn-counter.js';
import { Teardown } from './teardown.js';
import { Timeline } from './timeline.js';
import { WorkloadController } from './workload-controller.js';

export interface TestbedOptions {
  // Number of nodes, named node-0, node-1, ... Defaults to 1.
  nodes?: number;
  // External client namespaces on the fabric. Defaults to 1.
  externalClients?: number;
  // Client pod namespaces behind each node, outside the API server. The
  // agent of the node attaches to their host-side veths, as to those of
  // the workloads' pods, through the pattern veth+. Defaults to 1.
  clientPodsPerNode?: number;
  // Whether to run one agent per node. Defaults to true.
  agents?: boolean;
  // XDP attach mode of the agents' XDP interfaces. Defaults to 'native'.
  xdpMode?: XdpMode;
  // The hook on the host ends of the pods' veths. Defaults to 'tc', which
  // keeps the pods' GSO, as docs/deploy.md recommends.
  podHook?: 'xdp' | 'tc';
  // Readiness probe period of every pod, in milliseconds. Defaults to 100.
  probeIntervalMs?: number;
  // Kubernetes namespace for the workloads. Defaults to 'demo'.
  namespace?: string;
  // The agents' idle.reportInterval, a Go duration. Defaults to '1s'.
  reportInterval?: string;
  // ZEROHOLD_LOG_LEVEL of the agents. Defaults to 'info'.
  agentLogLevel?: string;
  // The mode of the nodes' kube-proxy stand-in: 'nftables' (default,
  // ServiceProxy) or 'iptables' (IptablesServiceProxy).
  kubeProxyMode?: 'nftables' | 'iptables';
  // In iptables mode, the wait between a change and the sync that writes
  // it (IptablesServiceProxy's syncDelayMs). Defaults to 0.
  kubeProxySyncDelayMs?: number;
  // The agents' release.kubeProxy. Defaults to kubeProxyMode, so that held
  // packets wait for the node's DNAT rule.
  releaseCheck?: 'nftables' | 'iptables' | 'none';
  // The agents' release.heldPackets. Defaults to 'reinject'. 'drop' makes
  // clients connect at their next SYN retransmission, for comparisons.
  releaseMode?: 'reinject' | 'drop';
  // Runs every agent inside its node's namespace with only these
  // capabilities, as the DaemonSet does (AgentProcessOptions).
  agentCapabilities?: string[];
  // The agents' bpf.heldRingBytes. Unset, the agents' default applies.
  heldRingBytes?: number;
  // The agents' liveness.failOpenAfter and shutdown.handover, as Go
  // durations. Unset, the agents' defaults apply.
  failOpenAfter?: string;
  handover?: string;
  // Logger of the in-process components. Defaults to errors on stderr,
  // because the controllers log every retried 409 Conflict as a warning.
  log?: Logger;
}

// The ScaleToZero spec without targetRef, which deploy() fills in.
export interface ScaleToZeroSpec {
  idleTimeout: string;
  minWarmTime?: string;
  wakeReplicas?: number;
  wakeTimeout?: string;
  services?: string[];
  heldFlowLimits?: { perService?: number; perClient?: number };
}

export interface DeployOptions {
  // Opts the workload in with a ScaleToZero of the same name. Without it
  // the workload is deployed without zerohold.
  scaleToZero?: ScaleToZeroSpec;
  // Initial replicas. Defaults to 0 with scaleToZero, so the workload
  // starts cold, and to the sample's own count without.
  replicas?: number;
  // Binds the workload's pods to this node instead of round-robin.
  node?: string;
}

export interface DeployedWorkload {
  namespace: string;
  name: string;
  kind: 'Deployment' | 'StatefulSet';
  // The agent's workload key, "namespace/name" of the ScaleToZero, or
  // undefined when the workload did not opt in.
  key: string | undefined;
  // The Service as the API server returned it, with its ClusterIPs.
  service: V1Service;
  clusterIPv4: string;
  // Empty when the Service got no IPv6 ClusterIP.
  clusterIPv6: string;
}

export const AGENT_NAMESPACE = 'zerohold-system';

const liveTestbeds = new Set<Testbed>();
process.on('exit', () => {
  for (const testbed of liveTestbeds) rmSync(testbed.workDir, { recursive: true, force: true });
});

export class Testbed {
  readonly server: TestApiServer;
  readonly kc: KubeConfig;
  readonly kubeconfigPath: string;
  readonly core: CoreV1Api;
  readonly apps: AppsV1Api;
  readonly custom: CustomObjectsApi;
  readonly network: ClusterNetwork;
  readonly namespace: string;
  // Temporary directory for kubeconfig, agent configurations and sockets.
  readonly workDir: string;
  // Directory for the sample workloads' files, the workDir of SampleOptions.
  readonly workloadDir: string;
  // Every component's events, see timeline.ts.
  readonly events = new Timeline();

  readonly kubelets = new Map<string, Kubelet>();
  readonly serviceProxies = new Map<string, ServiceProxy>();
  readonly agents = new Map<string, AgentProcess>();
  // Client pods per node, in creation order.
  readonly clientPods = new Map<string, PodAddresses[]>();

  private readonly teardown: Teardown;
  // Node per workload, "namespace/name". The workload controller reads it
  // whenever it binds a pod, so deploy() can add to it later.
  private readonly pins: Record<string, string>;

  private constructor(init: {
    server: TestApiServer;
    kc: KubeConfig;
    kubeconfigPath: string;
    network: ClusterNetwork;
    namespace: string;
    workDir: string;
    teardown: Teardown;
    pins: Record<string, string>;
  }) {
    this.server = init.server;
    this.kc = init.kc;
    this.kubeconfigPath = init.kubeconfigPath;
    this.network = init.network;
    this.namespace = init.namespace;
    this.workDir = init.workDir;
    this.workloadDir = join(init.workDir, 'workloads');
    this.teardown = init.teardown;
    this.pins = init.pins;
    this.core = init.kc.makeApiClient(CoreV1Api);
    this.apps = init.kc.makeApiClient(AppsV1Api);
    this.custom = init.kc.makeApiClient(CustomObjectsApi);
  }

  static async start(options: TestbedOptions = {}): Promise<Testbed> {
    const namespace = options.namespace ?? 'demo';
    const log = options.log ?? pino({ level: 'error' }, pino.destination(2));
    const teardown = new Teardown();
    let testbed: Testbed | undefined;

    try {
      // Traversable by everyone (0711), because inside workloadDir
      // PostgreSQL runs as user postgres and nginx workers as user nobody.
      const workDir = await mkdtemp(join(tmpdir(), 'zh-testbed-'));
      await chmod(workDir, 0o711);
      teardown.add('work directory', () => rm(workDir, { recursive: true, force: true }));

      const server = await startApiServer({ namespaces: [namespace, AGENT_NAMESPACE] });
      teardown.add('API server', () => server.close());
      const kc = kubeConfigFor(server.url);
      const kubeconfigPath = join(workDir, 'kubeconfig');
      // exportConfig() writes JSON, which is also valid YAML.
      await writeFile(kubeconfigPath, kc.exportConfig(), { mode: 0o600 });
      await installScaleToZeroCrd(kc);

      const network = await ClusterNetwork.create({ nodes: options.nodes ?? 1, externalClients: options.externalClients ?? 1 });
      teardown.add('cluster network', () => network.close());

      const pins: Record<string, string> = {};
      testbed = new Testbed({ server, kc, kubeconfigPath, network, namespace, workDir, teardown, pins });
      liveTestbeds.add(testbed);
      teardown.add('exit handler', async () => liveTestbeds.delete(testbed!));
      await mkdir(testbed.workloadDir, { mode: 0o755 });
      await chmod(testbed.workloadDir, 0o755);

      await testbed.addClientPods(options.clientPodsPerNode ?? 1);
      await testbed.createNodeObjects();
      if (options.kubeProxyMode === 'iptables') await testbed.startIptablesServiceProxies(log, options.kubeProxySyncDelayMs ?? 0);
      else await testbed.startServiceProxies(log);
      await testbed.startControlPlane(log, options.probeIntervalMs ?? 100);
      if (options.agents ?? true) await testbed.startAgents(options);

      const onSigint = () => {
        void testbed!.close().finally(() => process.exit(130));
      };
      process.once('SIGINT', onSigint);
      teardown.add('SIGINT handler', async () => process.off('SIGINT', onSigint));
      return testbed;
    } catch (err) {
      await teardown.run().catch((cleanupErr: Error) => log.error({ err: cleanupErr }, 'testbed teardown after a failed start failed'));
      throw err;
    }
  }

  get nodes(): readonly string[] {
    return this.network.nodes;
  }

  // Namespace name of external client `index`.
  externalClient(index = 0): string {
    const ns = this.network.externalClients[index];
    if (ns === undefined) throw new Error(`external client ${index} not found: the testbed has ${this.network.externalClients.length}`);
    return ns;
  }

  // Namespace name of client pod `index` on the node.
  clientPod(node: string, index = 0): string {
    const pod = this.clientPods.get(node)?.[index];
    if (pod === undefined) throw new Error(`client pod ${index} on node ${node} not found: it has ${this.clientPods.get(node)?.length ?? 0}`);
    return pod.netns;
  }

  agent(node: string): AgentProcess {
    const agent = this.agents.get(node);
    if (!agent) throw new Error(`agent of node ${node} not found: the testbed runs agents on ${[...this.agents.keys()].join(', ') || 'no node'}`);
    return agent;
  }

  kubelet(node: string): Kubelet {
    const kubelet = this.kubelets.get(node);
    if (!kubelet) throw new Error(`node ${node} not found: expected one of ${this.nodes.join(', ')}`);
    return kubelet;
  }

  // Writes the sample's files, then creates its Service, its workload and,
  // with options.scaleToZero, a ScaleToZero of the same name.
  async deploy(sample: SampleWorkload, options: DeployOptions = {}): Promise<DeployedWorkload> {
    const workload = structuredClone(sample.workload);
    const name = workload.metadata!.name!;
    const kind = workload.kind === 'StatefulSet' ? 'StatefulSet' : 'Deployment';
    const replicas = options.replicas ?? (options.scaleToZero ? 0 : workload.spec!.replicas);
    workload.spec!.replicas = replicas;
    if (options.node !== undefined) {
      if (!this.nodes.includes(options.node)) throw new Error(`node ${options.node} not found: expected one of ${this.nodes.join(', ')}`);
      this.pins[`${this.namespace}/${name}`] = options.node;
    }

    await writeWorkloadFiles(this.workloadDir, sample);
    const service = await this.core.createNamespacedService({ namespace: this.namespace, body: sample.service });
    if (kind === 'StatefulSet') await this.apps.createNamespacedStatefulSet({ namespace: this.namespace, body: workload as V1StatefulSet });
    else await this.apps.createNamespacedDeployment({ namespace: this.namespace, body: workload as V1Deployment });

    if (options.scaleToZero) {
      await this.custom.createNamespacedCustomObject({
        group: 'zerohold.dev',
        version: 'v1alpha1',
        namespace: this.namespace,
        plural: 'scaletozeros',
        body: {
          apiVersion: 'zerohold.dev/v1alpha1',
          kind: 'ScaleToZero',
          metadata: { name },
          spec: { targetRef: { apiVersion: 'apps/v1', kind, name }, ...options.scaleToZero },
        },
      });
    }

    const clusterIPs = service.spec?.clusterIPs ?? [];
    return {
      namespace: this.namespace,
      name,
      kind,
      key: options.scaleToZero ? `${this.namespace}/${name}` : undefined,
      service,
      clusterIPv4: clusterIPs.find((ip) => !ip.includes(':')) ?? '',
      clusterIPv6: clusterIPs.find((ip) => ip.includes(':')) ?? '',
    };
  }

  // Waits until every agent, or those of `nodes`, reports the workload in
  // the phase. With gateClosed, the gate must be in that state too.
  async waitForPhase(key: string, phase: string, options: { nodes?: readonly string[]; gateClosed?: boolean; timeoutMs?: number } = {}): Promise<void> {
    const nodes = options.nodes ?? [...this.agents.keys()];
    let last = 'nothing yet';
    await waitFor(
      `workload ${key} in phase ${phase} on ${nodes.join(', ')}`,
      async () => {
        const summaries = await Promise.all(nodes.map(async (node) => (await this.agent(node).workloads()).find((workload) => workload.workload === key)));
        last = summaries.map((summary, i) => `${nodes[i]}: ${summary ? `${summary.phase}, gate ${summary.gateClosed ? 'closed' : 'open'}` : 'not tracked'}`).join('; ');
        const matches = summaries.every((summary) => summary?.phase === phase && (options.gateClosed === undefined || summary.gateClosed === options.gateClosed));
        return matches ? true : undefined;
      },
      options.timeoutMs ?? 20_000,
      50,
    ).catch((err: Error) => {
      throw new Error(`${err.message} (agents reported ${last})`);
    });
  }

  // Waits for the agent of every node, or of one node, to be ready.
  async waitForAgentReady(node?: string, timeoutMs?: number): Promise<void> {
    const agents = node === undefined ? [...this.agents.values()] : [this.agent(node)];
    await Promise.all(agents.map((agent) => agent.waitForReady(timeoutMs)));
  }

  // Sends the signal to the node's agent and waits for it to exit.
  killAgent(node: string, signal: NodeJS.Signals = 'SIGTERM'): ReturnType<AgentProcess['kill']> {
    return this.agent(node).kill(signal);
  }

  // Starts the node's agent again with the same configuration and pinned
  // maps, stopping it first if it still runs, and waits until it is ready.
  restartAgent(node: string): Promise<void> {
    return this.agent(node).restart();
  }

  // Runs a client command to completion in a namespace of the testbed and
  // records a 'client-exited' event.
  async run(ns: string, command: string, args: string[], options: ClientRunOptions = {}): Promise<ClientResult> {
    const result = await runClient(this.network.testNetwork, ns, command, args, options);
    this.events.record({
      unixMs: result.endedUnixMs,
      source: 'client',
      type: 'client-exited',
      fields: { ns, command, code: result.code, signal: result.signal, durationMs: Math.round(result.durationMs) },
    });
    return result;
  }

  // Adds a counter of the SYNs to target that enter the node's stack, see
  // syn-counter.ts. close() removes the node's namespace and the counter.
  synCounter(node: string, target: SynTarget): Promise<SynCounter> {
    return SynCounter.create(this.network.testNetwork, this.network.nodeNetns(node), target);
  }

  // Returns the Ready pods of the workload, found by its app label.
  async readyPods(workload: DeployedWorkload): Promise<string[]> {
    const pods = await this.core.listNamespacedPod({ namespace: workload.namespace, labelSelector: `app=${workload.name}` });
    return pods.items
      .filter((pod) => !pod.metadata?.deletionTimestamp && pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'))
      .map((pod) => pod.metadata!.name!);
  }

  // Returns the time of the first 'pod-ready' kubelet event of the
  // workload's pods at or after sinceUnixMs, or undefined.
  podReadyUnixMs(workload: DeployedWorkload, sinceUnixMs = 0): number | undefined {
    const podName = new RegExp(`^${workload.name}-[a-z0-9]+$`);
    const event = this.events.find(
      (e) => e.source === 'kubelet' && e.type === 'pod-ready' && e.unixMs >= sinceUnixMs && e.fields.namespace === workload.namespace && podName.test(String(e.fields.pod)),
    );
    return event?.unixMs;
  }

  // Returns the spec.replicas of the workload.
  async replicas(workload: DeployedWorkload): Promise<number> {
    const object =
      workload.kind === 'StatefulSet'
        ? await this.apps.readNamespacedStatefulSet({ name: workload.name, namespace: workload.namespace })
        : await this.apps.readNamespacedDeployment({ name: workload.name, namespace: workload.namespace });
    return object.spec?.replicas ?? 0;
  }

  // Stops the agents, controllers, kubelets and service proxies, then
  // removes the namespaces, the API server and the work directory.
  close(): Promise<void> {
    return this.teardown.run();
  }

  // Adds a client pod behind node, as a pod that starts after the agents,
  // and returns its index for clientPod().
  async addClientPod(node: string): Promise<number> {
    const pods = this.clientPods.get(node) ?? [];
    pods.push(await this.network.addPod(node, `client/${node}/${pods.length}`));
    this.clientPods.set(node, pods);
    return pods.length - 1;
  }

  private async addClientPods(perNode: number): Promise<void> {
    for (const node of this.nodes) {
      const pods: PodAddresses[] = [];
      // A slash keeps these names apart from the kubelet's "namespace.name"
      // pod keys, because Kubernetes names cannot contain one.
      for (let i = 0; i < perNode; i++) pods.push(await this.network.addPod(node, `client/${node}/${i}`));
      this.clientPods.set(node, pods);
    }
  }

  // Creates a Node object per node, then writes its InternalIP addresses,
  // one per IP family, through the status subresource as a kubelet's
  // status updates do. The agents read them for NodePort frontends.
  private async createNodeObjects(): Promise<void> {
    for (const node of this.nodes) {
      const addresses = this.network.nodeAddresses(node);
      const internal = [addresses.ipv4, addresses.ipv6].filter((address) => address !== '').map((address) => ({ type: 'InternalIP', address }));

      const created = await this.core.createNode({ body: { metadata: { name: node, labels: { 'kubernetes.io/hostname': node } } } });
      await this.core.replaceNodeStatus({ name: node, body: { ...created, status: { ...created.status, addresses: internal } } });
    }
  }

  private async startServiceProxies(log: Logger): Promise<void> {
    const podCidrs = this.network.podCidrs();
    for (const node of this.nodes) {
      const proxy = new ServiceProxy({
        kubeConfig: this.kc,
        nodeName: node,
        netns: this.network.nodeNetns(node),
        nodeAddresses: this.network.nodeAddresses(node),
        podCidrs,
        log,
      });
      proxy.on('sync', (record: SyncRecord) => this.events.record({ unixMs: Date.now(), source: 'service-proxy', node, type: 'sync', fields: { ...record } }));
      this.serviceProxies.set(node, proxy);
      this.teardown.add(`service proxy of ${node}`, () => proxy.stop());
      await proxy.start();
    }
  }

  // Records each sync as the event 'iptables-sync' of source
  // 'service-proxy', with the Services whose ports have endpoints.
  private async startIptablesServiceProxies(log: Logger, syncDelayMs: number): Promise<void> {
    const podCidrs = this.network.podCidrs();
    for (const node of this.nodes) {
      const proxy = new IptablesServiceProxy({ kubeConfig: this.kc, nodeName: node, netns: this.network.nodeNetns(node), nodeAddresses: this.network.nodeAddresses(node), podCidrs, syncDelayMs, log });
      proxy.on('sync', (record: IptablesSyncRecord) => this.events.record({ unixMs: Date.now(), source: 'service-proxy', node, type: 'iptables-sync', fields: { ...record } }));
      this.teardown.add(`iptables service proxy of ${node}`, () => proxy.stop());
      await proxy.start();
    }
  }

  private async startControlPlane(log: Logger, probeIntervalMs: number): Promise<void> {
    // The EndpointSlice controller watches first, so it reads a Pod's Ready
    // before the workload controller does. A cold start waits for its slice
    // write, and nothing waits for the Deployment's status write after it.
    // NOTE: this order is kept while both first watches last. The API server
    // sends an event to its watches in the order they were opened, and a
    // watch that reconnects goes to the end.
    const slices = new EndpointSliceController(this.kc, { log });
    this.teardown.add('EndpointSlice controller', () => slices.stop());
    await slices.start();

    const workloads = new WorkloadController(this.kc, { nodes: this.nodes, pins: this.pins, log });
    this.teardown.add('workload controller', () => workloads.stop());
    await workloads.start();

    for (const node of this.nodes) {
      const kubelet = new Kubelet(this.kc, { node, network: this.network, probeIntervalMs, stopGraceMs: 2000, log });
      for (const type of ['pod-started', 'pod-ready', 'pod-unready', 'container-exited', 'pod-terminated']) {
        kubelet.on(type, (event: KubeletEvent) => {
          const { unixMs, node: eventNode, monotonicMs: _monotonic, ...fields } = event;
          this.events.record({ unixMs, source: 'kubelet', node: eventNode, type, fields });
        });
      }
      this.kubelets.set(node, kubelet);
      this.teardown.add(`kubelet of ${node}`, () => kubelet.stop());
      await kubelet.start();
    }
  }

  private async startAgents(options: TestbedOptions): Promise<void> {
    for (const node of this.nodes) {
      const agent = new AgentProcess({
        nodeName: node,
        netns: this.network.nodeNetns(node),
        interfaces: [
          { name: NODE_INTERFACE, hook: 'xdp' },
          { name: `${POD_INTERFACE_PREFIX}+`, hook: options.podHook ?? 'tc' },
        ],
        xdpMode: options.xdpMode ?? 'native',
        kubeconfigPath: this.kubeconfigPath,
        workDir: this.workDir,
        pinDir: `/sys/fs/bpf/zh-testbed-${process.pid}-${node}`,
        reportInterval: options.reportInterval ?? '1s',
        // Short leases, so that a killed leader is replaced within seconds.
        leaseDuration: '4s',
        renewDeadline: '3s',
        retryPeriod: '500ms',
        logLevel: options.agentLogLevel ?? 'info',
        releaseCheck: options.releaseCheck ?? options.kubeProxyMode ?? 'nftables',
        releaseMode: options.releaseMode ?? 'reinject',
        heldRingBytes: options.heldRingBytes,
        failOpenAfter: options.failOpenAfter,
        handover: options.handover,
        capabilities: options.agentCapabilities,
        apiServerUrl: this.server.url,
      });
      agent.on('log', (line: AgentLogLine) => {
        const { time: _time, pid: _pid, hostname: _hostname, node: _node, msg: _msg, ...fields } = line.fields;
        this.events.record({ unixMs: line.unixMs, source: 'agent', node, type: line.msg, fields });
      });
      this.agents.set(node, agent);
      this.teardown.add(`agent of ${node}`, () => agent.close());
      await agent.start();
    }
    await this.waitForAgentReady();
  }
}
