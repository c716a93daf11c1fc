// A simulated kubelet for one testbed node. It watches Pods through the API
// server and runs each Pod bound to its node: a network namespace from the
// PodNetwork, the containers' commands as real processes inside it, and the
// Pod status written through the /status subresource.
//
// Deletion: the test API server removes a Pod at once unless a finalizer
// keeps it, and it does not implement graceful deletion. So the kubelet puts
// its own finalizer on every Pod that it admits, stops the processes when
// the Pod gets a deletionTimestamp (SIGTERM, terminationGracePeriodSeconds,
// SIGKILL), removes the namespace and only then removes the finalizer, which
// deletes the Pod. The grace period comes from the Pod spec because this
// server always sets deletionGracePeriodSeconds to 0.
//
// Events for the demo timeline, each with a KubeletEvent: 'pod-started'
// once every container of a pod is spawned, 'pod-ready' and 'pod-unready'
// when the Ready condition flips, 'container-exited', and 'pod-terminated'
// once the processes are gone and the namespace is removed.

import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';

import {
  ADD,
  ApiException,
  CoreV1Api,
  DELETE,
  type Informer,
  type KubeConfig,
  makeInformer,
  PatchStrategy,
  setHeaderOptions,
  UPDATE,
  type V1Pod,
} from '@kubernetes/client-node';
import { pino, type Logger } from 'pino';

import { restartOnError } from '../../src/agent/informers.js';
import { type ContainerExit, KUBELET_RESTART_BACKOFF, type RestartBackoff } from './container-process.js';
import type { PodNetwork } from './pod-network.js';
import { PodRuntime } from './pod-runtime.js';
import { TcpProber } from './tcp-prober.js';

export const KUBELET_FINALIZER = 'testbed.zerohold.dev/kubelet';

const DEFAULT_GRACE_SECONDS = 30;
const DEFAULT_LOG_LIMIT_BYTES = 1 << 20;
const STATUS_RETRY_DELAY_MS = 200;

export interface KubeletOptions {
  node: string;
  network: PodNetwork;
  // Replaces every readiness probe's periodSeconds, in milliseconds. Unset,
  // probes run at their periodSeconds as in Kubernetes.
  probeIntervalMs?: number;
  restartBackoff?: RestartBackoff;
  // Bytes of output kept per container.
  logLimitBytes?: number;
  // The grace period stop() gives each process, in milliseconds.
  stopGraceMs?: number;
  log?: Logger;
}

export interface KubeletEvent {
  node: string;
  namespace: string;
  pod: string;
  // Date.now() and performance.now() when the event happened.
  unixMs: number;
  monotonicMs: number;
  // PIDs of the containers' main processes, on 'pod-started'.
  pids?: number[];
  container?: string;
  exit?: ContainerExit;
}

interface PodEntry {
  key: string;
  namespace: string;
  name: string;
  uid: string;
  runtime?: PodRuntime;
  // Settles when admission has finished, whether it succeeded or not.
  admitted: Promise<void>;
  terminating?: Promise<void>;
  statusWrite?: Promise<void>;
  statusDirty: boolean;
}

const liveKubelets = new Set<Kubelet>();
process.on('exit', () => {
  for (const kubelet of liveKubelets) kubelet.killAllSync();
});

export class Kubelet extends EventEmitter {
  readonly node: string;
  private readonly core: CoreV1Api;
  private readonly informer: Informer<V1Pod>;
  // Pods by uid: a StatefulSet pod recreated under the same name is a
  // separate entry while the old one terminates.
  private readonly pods = new Map<string, PodEntry>();
  // The tcpSocket probes of every pod on the node.
  private readonly tcpProber: TcpProber;
  private readonly log: Logger;
  private stopped = false;

  constructor(
    kc: KubeConfig,
    private readonly options: KubeletOptions,
  ) {
    super();
    this.node = options.node;
    if (!options.network.nodes.includes(options.node)) {
      throw new Error(`node ${JSON.stringify(options.node)} is not in the pod network (nodes: ${options.network.nodes.join(', ')})`);
    }
    this.log = (options.log ?? pino({ level: 'silent' })).child({ component: 'kubelet', node: options.node });
    this.core = kc.makeApiClient(CoreV1Api);
    this.tcpProber = new TcpProber(options.network.nodeNetns(options.node));

    // client-node 1.4's makeInformer takes no field selector, so the
    // kubelet watches every Pod and ignores those bound to other nodes.
    this.informer = makeInformer(kc, '/api/v1/pods', () => this.core.listPodForAllNamespaces());
    this.informer.on(ADD, (pod) => this.onPod(pod));
    this.informer.on(UPDATE, (pod) => this.onPod(pod));
    this.informer.on(DELETE, (pod) => this.onPodRemoved(pod));
    restartOnError(this.informer, this.log, 'Pod', () => this.stopped);
  }

  async start(): Promise<void> {
    this.stopped = false;
    liveKubelets.add(this);
    this.tcpProber.start();
    await this.informer.start();
    this.log.info('kubelet started');
  }

  // Stops watching, then stops every pod's processes and removes its
  // namespace. Pod objects stay as they are in the API server.
  async stop(): Promise<void> {
    this.stopped = true;
    await this.informer.stop();

    const graceMs = this.options.stopGraceMs ?? 2000;
    await Promise.all(
      [...this.pods.values()].map(async (entry) => {
        await entry.admitted;
        await entry.runtime?.stop(graceMs);
        await this.options.network.removePod(networkKey(entry));
      }),
    );
    this.pods.clear();
    await this.tcpProber.stop();
    liveKubelets.delete(this);
    this.log.info('kubelet stopped');
  }

  // Returns a container's output so far, as `kubectl logs` does: the
  // current run, or with previous the run before the last restart. The
  // container defaults to the pod's first one.
  logs(namespace: string, pod: string, options: { container?: string; previous?: boolean } = {}): string {
    const process = this.runningEntry(namespace, pod).runtime?.container(options.container);
    if (!process) throw new Error(`pod ${namespace}/${pod} has no container ${JSON.stringify(options.container ?? '(first)')} on node ${this.node}`);
    if (!options.previous) return process.logs.text();
    if (!process.previousLogs) throw new Error(`container ${process.command.name} of pod ${namespace}/${pod} has not restarted, so it has no previous logs`);
    return process.previousLogs.text();
  }

  // Returns the PIDs of the pod's running container processes.
  pids(namespace: string, pod: string): number[] {
    const containers = this.runningEntry(namespace, pod).runtime?.containers ?? [];
    return containers.flatMap((container) => (container.pid === undefined ? [] : [container.pid]));
  }

  killAllSync(): void {
    for (const entry of this.pods.values()) entry.runtime?.killSync();
    this.tcpProber.killSync();
  }

  private runningEntry(namespace: string, pod: string): PodEntry {
    for (const entry of this.pods.values()) {
      if (entry.namespace === namespace && entry.name === pod && !entry.terminating) return entry;
    }
    throw new Error(`pod ${namespace}/${pod} is not running on node ${this.node}`);
  }

  private onPod(pod: V1Pod): void {
    if (this.stopped || pod.spec?.nodeName !== this.node) return;
    const uid = pod.metadata!.uid!;
    const entry = this.pods.get(uid);

    if (pod.metadata?.deletionTimestamp) {
      if (entry && !entry.terminating) entry.terminating = this.terminate(entry, pod);
      // A pod that an earlier kubelet admitted has nothing left to stop here.
      else if (!entry && pod.metadata.finalizers?.includes(KUBELET_FINALIZER)) this.releaseOrphan(pod);
      return;
    }
    if (!entry && !isTerminal(pod)) this.admit(pod);
  }

  // The Pod is gone from the API server without the kubelet's finalizer
  // step, because the kubelet had not added it yet or someone removed it.
  private onPodRemoved(pod: V1Pod): void {
    const entry = this.pods.get(pod.metadata?.uid ?? '');
    if (!entry || entry.terminating) return;
    entry.terminating = this.terminate(entry, pod, { removeFinalizer: false });
  }

  private admit(pod: V1Pod): void {
    const namespace = pod.metadata!.namespace!;
    const name = pod.metadata!.name!;
    const entry: PodEntry = { key: `${namespace}/${name}`, namespace, name, uid: pod.metadata!.uid!, admitted: Promise.resolve(), statusDirty: false };
    this.pods.set(entry.uid, entry);
    // NOTE: a pod that fails to start is not retried. It keeps its
    // finalizer, and its deletion still runs the normal teardown.
    entry.admitted = this.startPod(entry, pod).catch((err) => {
      this.log.error({ err, pod: entry.key }, 'pod failed to start');
    });
  }

  private async startPod(entry: PodEntry, pod: V1Pod): Promise<void> {
    // The finalizer goes on first, so that a deletion from now on waits
    // for the processes to stop.
    const finalizers = pod.metadata?.finalizers ?? [];
    if (!finalizers.includes(KUBELET_FINALIZER)) {
      const added = await this.patchPod(entry, { metadata: { finalizers: [...finalizers, KUBELET_FINALIZER] } });
      if (!added) {
        this.pods.delete(entry.uid);
        return;
      }
    }
    if (entry.terminating) return;

    const addresses = await this.options.network.addPod(this.node, networkKey(entry));
    const runtime = new PodRuntime(pod, addresses, {
      probeIntervalMs: this.options.probeIntervalMs,
      tcpProber: this.tcpProber,
      restartBackoff: this.options.restartBackoff ?? KUBELET_RESTART_BACKOFF,
      logLimitBytes: this.options.logLimitBytes ?? DEFAULT_LOG_LIMIT_BYTES,
    });
    runtime.on('changed', () => this.writeStatus(entry));
    runtime.on('ready-changed', (ready: boolean) => {
      this.log.info({ pod: entry.key, ready }, ready ? 'pod ready' : 'pod not ready');
      this.emitEvent(ready ? 'pod-ready' : 'pod-unready', entry);
    });
    runtime.on('container-exited', (container: string, exit: ContainerExit) => {
      this.log.info({ pod: entry.key, container, code: exit.code, signal: exit.signal }, 'container exited');
      this.emitEvent('container-exited', entry, { container, exit });
    });

    // Setting runtime before start() lets a deletion that arrives from now
    // on stop whatever start() spawned.
    entry.runtime = runtime;
    runtime.start();
    const pids = runtime.containers.flatMap((container) => (container.pid === undefined ? [] : [container.pid]));
    this.log.info({ pod: entry.key, pids, ipv4: addresses.ipv4, ipv6: addresses.ipv6 }, 'pod started');
    this.emitEvent('pod-started', entry, { pids });
    this.writeStatus(entry);
  }

  private async terminate(entry: PodEntry, pod: V1Pod, options = { removeFinalizer: true }): Promise<void> {
    await entry.admitted;

    const graceSeconds = pod.spec?.terminationGracePeriodSeconds ?? DEFAULT_GRACE_SECONDS;
    this.log.info({ pod: entry.key, graceSeconds }, 'stopping pod');
    try {
      await entry.runtime?.stop(graceSeconds * 1000);
      await this.options.network.removePod(networkKey(entry));
      this.emitEvent('pod-terminated', entry);

      if (options.removeFinalizer) {
        const finalizers = (pod.metadata?.finalizers ?? []).filter((finalizer) => finalizer !== KUBELET_FINALIZER);
        await this.patchPod(entry, { metadata: { finalizers } });
      }
    } catch (err) {
      this.log.error({ err, pod: entry.key }, 'pod failed to stop');
    } finally {
      this.pods.delete(entry.uid);
    }
  }

  private releaseOrphan(pod: V1Pod): void {
    const entry: PodEntry = { key: `${pod.metadata!.namespace}/${pod.metadata!.name}`, namespace: pod.metadata!.namespace!, name: pod.metadata!.name!, uid: pod.metadata!.uid!, admitted: Promise.resolve(), statusDirty: false };
    this.pods.set(entry.uid, entry);
    entry.terminating = this.terminate(entry, pod);
  }

  // Writes the runtime's status. Writes to one pod never overlap, and
  // changes during a write are sent by one more write after it.
  private writeStatus(entry: PodEntry): void {
    entry.statusDirty = true;
    if (entry.statusWrite) return;

    entry.statusWrite = (async () => {
      while (entry.statusDirty && entry.runtime && !entry.terminating && !this.stopped) {
        entry.statusDirty = false;
        try {
          await this.core.patchNamespacedPodStatus(
            { name: entry.name, namespace: entry.namespace, body: { status: entry.runtime.status() } },
            setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
          );
        } catch (err) {
          if (err instanceof ApiException && err.code === 404) return;
          this.log.warn({ err, pod: entry.key }, 'pod status write failed, retrying');
          entry.statusDirty = true;
          await new Promise((resolve) => setTimeout(resolve, STATUS_RETRY_DELAY_MS));
        }
      }
    })().finally(() => (entry.statusWrite = undefined));
  }

  // Merge-patches the Pod and returns false when it no longer exists.
  private async patchPod(entry: PodEntry, body: object): Promise<boolean> {
    try {
      await this.core.patchNamespacedPod({ name: entry.name, namespace: entry.namespace, body }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
      return true;
    } catch (err) {
      if (err instanceof ApiException && err.code === 404) return false;
      throw err;
    }
  }

  private emitEvent(type: string, entry: PodEntry, extra: Partial<KubeletEvent> = {}): void {
    const event: KubeletEvent = { node: this.node, namespace: entry.namespace, pod: entry.name, unixMs: Date.now(), monotonicMs: performance.now(), ...extra };
    this.emit(type, event);
  }
}

// The PodNetwork's name for a pod. Kubernetes namespace names cannot
// contain dots, so "namespace.name" is unique.
function networkKey(entry: PodEntry): string {
  return `${entry.namespace}.${entry.name}`;
}

function isTerminal(pod: V1Pod): boolean {
  return pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed';
}
