// The testbed's Deployment and StatefulSet controllers, reduced to what the
// testbed needs. They turn spec.replicas into Pods, bind each new Pod to a
// node (spec.nodeName, so no separate scheduler runs), and write the
// workloads' status through the /status subresource.
//
// Reductions from Kubernetes, each visible to a caller:
// - Deployments own their Pods directly, with no ReplicaSet in between.
// - TODO: a changed pod template is not rolled out. Running Pods keep the
//   old template, and updatedReplicas counts every Pod.
// - StatefulSets follow OrderedReady only: pod N is created once pods
//   0..N-1 are Running and Ready, and scale-down removes the highest
//   ordinal first, one Pod at a time. No PersistentVolumeClaims are made.

import { randomBytes } from 'node:crypto';

import {
  ADD,
  ApiException,
  AppsV1Api,
  CoreV1Api,
  DELETE,
  type Informer,
  type KubeConfig,
  type KubernetesObject,
  makeInformer,
  type ObjectCache,
  UPDATE,
  type V1Deployment,
  type V1OwnerReference,
  type V1Pod,
  type V1PodTemplateSpec,
  type V1StatefulSet,
} from '@kubernetes/client-node';
import { pino, type Logger } from 'pino';

import { restartOnError } from '../../src/agent/informers.js';
import { WorkQueue } from './work-queue.js';

type Kind = 'Deployment' | 'StatefulSet';
type Workload = V1Deployment | V1StatefulSet;

export interface WorkloadControllerOptions {
  // Nodes that Pods are bound to, round-robin.
  nodes: readonly string[];
  // Node per workload, keyed "namespace/name", overriding round-robin.
  pins?: Record<string, string>;
  log?: Logger;
}

export class WorkloadController {
  private readonly apps: AppsV1Api;
  private readonly core: CoreV1Api;
  private readonly deployments: Informer<V1Deployment> & ObjectCache<V1Deployment>;
  private readonly statefulSets: Informer<V1StatefulSet> & ObjectCache<V1StatefulSet>;
  private readonly pods: Informer<V1Pod> & ObjectCache<V1Pod>;
  private readonly queue: WorkQueue;
  private readonly log: Logger;
  // Pod names created or deleted whose event the pod informer has not
  // delivered yet, per workload key. Counting them avoids creating or
  // deleting twice from a cache that lags the writes.
  private readonly pendingCreates = new Map<string, Set<string>>();
  private readonly pendingDeletes = new Map<string, Set<string>>();
  private nextNode = 0;
  private stopped = false;

  constructor(
    kc: KubeConfig,
    private readonly options: WorkloadControllerOptions,
  ) {
    if (options.nodes.length === 0) throw new Error('the workload controller needs at least one node');
    for (const [workload, node] of Object.entries(options.pins ?? {})) {
      if (!options.nodes.includes(node)) throw new Error(`pin of ${workload} names unknown node ${JSON.stringify(node)} (nodes: ${options.nodes.join(', ')})`);
    }
    this.log = (options.log ?? pino({ level: 'silent' })).child({ component: 'workload-controller' });
    this.apps = kc.makeApiClient(AppsV1Api);
    this.core = kc.makeApiClient(CoreV1Api);
    this.queue = new WorkQueue((key) => this.reconcile(key), this.log);

    this.deployments = makeInformer(kc, '/apis/apps/v1/deployments', () => this.apps.listDeploymentForAllNamespaces());
    this.statefulSets = makeInformer(kc, '/apis/apps/v1/statefulsets', () => this.apps.listStatefulSetForAllNamespaces());
    this.pods = makeInformer(kc, '/api/v1/pods', () => this.core.listPodForAllNamespaces());

    this.watchWorkloads(this.deployments, 'Deployment');
    this.watchWorkloads(this.statefulSets, 'StatefulSet');
    for (const event of [ADD, UPDATE, DELETE] as const) this.pods.on(event, (pod) => this.onPod(pod, event === DELETE));
    restartOnError(this.pods, this.log, 'Pod', () => this.stopped);
  }

  async start(): Promise<void> {
    this.stopped = false;
    await this.pods.start();
    await this.deployments.start();
    await this.statefulSets.start();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.queue.stop();
    await Promise.all([this.deployments.stop(), this.statefulSets.stop(), this.pods.stop()]);
  }

  // Resolves once no reconcile is queued or running, for tests.
  idle(): Promise<void> {
    return this.queue.idle();
  }

  private watchWorkloads<T extends Workload>(informer: Informer<T>, kind: Kind): void {
    for (const event of [ADD, UPDATE, DELETE] as const) {
      informer.on(event, (object: T) => this.queue.add(workloadKey(kind, object.metadata!.namespace!, object.metadata!.name!)));
    }
    restartOnError(informer, this.log, kind, () => this.stopped);
  }

  private onPod(pod: V1Pod, removed: boolean): void {
    const owner = controllerOf(pod);
    if (!owner || (owner.kind !== 'Deployment' && owner.kind !== 'StatefulSet')) return;
    const key = workloadKey(owner.kind, pod.metadata!.namespace!, owner.name);
    this.pendingCreates.get(key)?.delete(pod.metadata!.name!);
    if (removed || pod.metadata?.deletionTimestamp) this.pendingDeletes.get(key)?.delete(pod.metadata!.name!);
    this.queue.add(key);
  }

  private async reconcile(key: string): Promise<void> {
    const [kind, namespace, name] = key.split('/') as [Kind, string, string];
    const workload = kind === 'Deployment' ? this.deployments.get(name, namespace) : this.statefulSets.get(name, namespace);
    if (!workload) {
      // NOTE: the API server has no garbage collector, so the Pods of a
      // deleted workload stay until someone deletes them.
      this.pendingCreates.delete(key);
      this.pendingDeletes.delete(key);
      return;
    }

    const pods = this.pods
      .list(namespace)
      .filter((pod) => controllerOf(pod)?.uid === workload.metadata!.uid && !this.pendingDeletes.get(key)?.has(pod.metadata!.name!));
    if (kind === 'Deployment') await this.reconcileDeployment(key, workload as V1Deployment, pods);
    else await this.reconcileStatefulSet(key, workload as V1StatefulSet, pods);
  }

  private async reconcileDeployment(key: string, deployment: V1Deployment, pods: V1Pod[]): Promise<void> {
    const name = deployment.metadata!.name!;
    const wanted = deployment.spec?.replicas ?? 1;
    const active = pods.filter((pod) => !pod.metadata?.deletionTimestamp);
    const pending = this.pendingCreates.get(key)?.size ?? 0;

    // The ReplicaSet controller's order for scale-down: Pods that are not
    // Ready first, then the youngest.
    if (active.length + pending > wanted) {
      const victims = [...active].sort((a, b) => Number(isPodReady(a)) - Number(isPodReady(b)) || creationTime(b) - creationTime(a));
      for (const pod of victims.slice(0, active.length + pending - wanted)) await this.deletePod(key, pod);
    }
    for (let i = active.length + pending; i < wanted; i++) {
      await this.createPod(key, deployment, 'Deployment', `${name}-${randomSuffix()}`, deployment.spec!.template, {});
    }

    const ready = active.filter(isPodReady).length;
    await this.writeStatus('Deployment', deployment, {
      observedGeneration: deployment.metadata!.generation,
      replicas: active.length,
      updatedReplicas: active.length,
      readyReplicas: ready,
      availableReplicas: ready,
      unavailableReplicas: Math.max(0, wanted - ready),
    });
  }

  private async reconcileStatefulSet(key: string, set: V1StatefulSet, pods: V1Pod[]): Promise<void> {
    const name = set.metadata!.name!;
    const wanted = set.spec?.replicas ?? 1;
    const byOrdinal = new Map<number, V1Pod>();
    for (const pod of pods) {
      const ordinal = ordinalOf(name, pod.metadata!.name!);
      if (ordinal !== undefined) byOrdinal.set(ordinal, pod);
    }
    const pendingCreates = this.pendingCreates.get(key)?.size ?? 0;
    const terminating = pods.some((pod) => pod.metadata?.deletionTimestamp) || (this.pendingDeletes.get(key)?.size ?? 0) > 0;

    // OrderedReady: one step at a time, and none while a Pod is still being
    // created or terminated. A step is the lowest missing ordinal below
    // replicas, once all lower ones are Ready, or else the highest ordinal
    // at or above replicas.
    if (pendingCreates === 0 && !terminating) {
      const missing = [...Array(wanted).keys()].find((ordinal) => !byOrdinal.has(ordinal));
      const lowerReady = missing !== undefined && [...Array(missing).keys()].every((ordinal) => isPodReady(byOrdinal.get(ordinal)!));
      const surplus = [...byOrdinal.keys()].filter((ordinal) => ordinal >= wanted).sort((a, b) => b - a);

      if (missing !== undefined && lowerReady) {
        const labels = { 'statefulset.kubernetes.io/pod-name': `${name}-${missing}`, 'apps.kubernetes.io/pod-index': String(missing) };
        await this.createPod(key, set, 'StatefulSet', `${name}-${missing}`, set.spec!.template, labels);
      } else if (missing === undefined && surplus.length > 0) {
        await this.deletePod(key, byOrdinal.get(surplus[0]!)!);
      }
    }

    const active = pods.filter((pod) => !pod.metadata?.deletionTimestamp);
    const ready = active.filter(isPodReady).length;
    await this.writeStatus('StatefulSet', set, {
      observedGeneration: set.metadata!.generation,
      replicas: active.length,
      currentReplicas: active.length,
      updatedReplicas: active.length,
      readyReplicas: ready,
      availableReplicas: ready,
    });
  }

  private async createPod(key: string, owner: Workload, kind: Kind, podName: string, template: V1PodTemplateSpec, extraLabels: Record<string, string>): Promise<void> {
    const namespace = owner.metadata!.namespace!;
    const ownerReference: V1OwnerReference = { apiVersion: 'apps/v1', kind, name: owner.metadata!.name!, uid: owner.metadata!.uid!, controller: true, blockOwnerDeletion: true };
    const pod: V1Pod = {
      metadata: { name: podName, namespace, labels: { ...template.metadata?.labels, ...extraLabels }, annotations: template.metadata?.annotations, ownerReferences: [ownerReference] },
      spec: { ...template.spec!, nodeName: this.nodeFor(key) },
    };
    if (kind === 'StatefulSet') pod.spec!.hostname ??= podName;

    pending(this.pendingCreates, key).add(podName);
    try {
      await this.core.createNamespacedPod({ namespace, body: pod });
      this.log.info({ workload: key, pod: podName, node: pod.spec!.nodeName }, 'pod created');
    } catch (err) {
      this.pendingCreates.get(key)?.delete(podName);
      throw err;
    }
  }

  private async deletePod(key: string, pod: V1Pod): Promise<void> {
    const name = pod.metadata!.name!;
    pending(this.pendingDeletes, key).add(name);
    try {
      await this.core.deleteNamespacedPod({ name, namespace: pod.metadata!.namespace! });
      this.log.info({ workload: key, pod: name }, 'pod deleted');
    } catch (err) {
      this.pendingDeletes.get(key)?.delete(name);
      if (err instanceof ApiException && err.code === 404) return;
      throw err;
    }
  }

  private nodeFor(key: string): string {
    const [, namespace, name] = key.split('/');
    const pinned = this.options.pins?.[`${namespace}/${name}`];
    if (pinned) return pinned;
    const node = this.options.nodes[this.nextNode % this.options.nodes.length]!;
    this.nextNode++;
    return node;
  }

  // Writes the status when it differs from the cached one. A conflict (the
  // cache is stale) fails the reconcile, so the work queue retries it.
  private async writeStatus(kind: Kind, workload: Workload, status: Record<string, number | undefined>): Promise<void> {
    const current = (workload.status ?? {}) as Record<string, unknown>;
    if (Object.entries(status).every(([field, value]) => (current[field] ?? 0) === (value ?? 0))) return;

    const body = { ...workload, status: { ...workload.status, ...status } };
    const request = { name: workload.metadata!.name!, namespace: workload.metadata!.namespace!, body };
    if (kind === 'Deployment') await this.apps.replaceNamespacedDeploymentStatus(request as never);
    else await this.apps.replaceNamespacedStatefulSetStatus(request as never);
  }
}

function workloadKey(kind: Kind, namespace: string, name: string): string {
  return `${kind}/${namespace}/${name}`;
}

function pending(map: Map<string, Set<string>>, key: string): Set<string> {
  let names = map.get(key);
  if (!names) map.set(key, (names = new Set()));
  return names;
}

function controllerOf(object: KubernetesObject): V1OwnerReference | undefined {
  return object.metadata?.ownerReferences?.find((reference) => reference.controller);
}

export function isPodReady(pod: V1Pod): boolean {
  return pod.status?.phase === 'Running' && (pod.status.conditions ?? []).some((condition) => condition.type === 'Ready' && condition.status === 'True');
}

function creationTime(pod: V1Pod): number {
  return new Date(pod.metadata?.creationTimestamp ?? 0).getTime();
}

function ordinalOf(setName: string, podName: string): number | undefined {
  const match = new RegExp(`^${setName.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}-(\\d+)$`).exec(podName);
  return match ? Number(match[1]) : undefined;
}

// Five lowercase letters and digits, like the suffix of a Deployment's Pods.
function randomSuffix(): string {
  const alphabet = 'bcdfghjklmnpqrstvwxz2456789';
  return [...randomBytes(5)].map((byte) => alphabet[byte % alphabet.length]).join('');
}
