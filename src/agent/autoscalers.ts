// The autoscalers that may share a workload with zerohold: Kubernetes
// HorizontalPodAutoscalers and KEDA ScaledObjects. The leader asks before
// every scale-down whether one of them keeps the workload above zero for
// reasons other than traffic. While one does, the workload stays up.

import {
  ADD,
  ApiException,
  AutoscalingV2Api,
  CustomObjectsApi,
  DELETE,
  type Informer,
  type KubeConfig,
  type KubernetesObject,
  makeInformer,
  UPDATE,
  type V2HorizontalPodAutoscaler,
} from '@kubernetes/client-node';
import type { Logger } from 'pino';

import { restartOnError } from './informers.js';
import type { TargetRef } from './ports.js';

const KEDA = { group: 'keda.sh', version: 'v1alpha1', plural: 'scaledobjects' };

// A cluster without KEDA returns 404 for ScaledObjects. The agent asks
// again at this interval, so a KEDA installed later is picked up.
const KEDA_DISCOVERY_INTERVAL_MS = 60_000;

// The ScaledObject fields that matter here, from KEDA's keda.sh/v1alpha1
// API: scaleTargetRef defaults to apps/v1 Deployment, minReplicaCount to 0.
export interface ScaledObject extends KubernetesObject {
  spec?: {
    scaleTargetRef?: { apiVersion?: string; kind?: string; name?: string };
    minReplicaCount?: number;
  };
}

export interface AutoscalersOptions {
  kedaDiscoveryIntervalMs?: number;
}

export class Autoscalers {
  private readonly hpas = new Map<string, V2HorizontalPodAutoscaler>();
  private readonly scaledObjects = new Map<string, ScaledObject>();
  private readonly informers: Informer<KubernetesObject>[] = [];
  private readonly custom: CustomObjectsApi;
  private kedaTimer: NodeJS.Timeout | null = null;
  private stopped = false;

  constructor(
    private readonly kc: KubeConfig,
    private readonly log: Logger,
    private readonly options: AutoscalersOptions = {},
  ) {
    this.custom = kc.makeApiClient(CustomObjectsApi);
  }

  async start(): Promise<void> {
    const autoscaling = this.kc.makeApiClient(AutoscalingV2Api);
    await this.follow(
      makeInformer(this.kc, '/apis/autoscaling/v2/horizontalpodautoscalers', () => autoscaling.listHorizontalPodAutoscalerForAllNamespaces()),
      this.hpas,
      'HorizontalPodAutoscaler',
    );
    await this.discoverKeda();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.kedaTimer) clearTimeout(this.kedaTimer);
    for (const informer of this.informers) await informer.stop();
  }

  // Returns why an autoscaler keeps the workload above zero, or null when
  // none does.
  //
  // An HPA objects while it wants more replicas than its minimum: then its
  // own metrics (a queue length, the CPU of background work), not traffic,
  // keep the workload up. An HPA at its minimum does not object, because at
  // zero replicas it stays inactive and resumes after a wake.
  //
  // A ScaledObject objects whenever its minReplicaCount is above zero: its
  // owner asked KEDA for that floor, and KEDA's HPA would restore it anyway.
  heldAboveZeroBy(namespace: string, target: TargetRef): string | null {
    for (const hpa of this.hpas.values()) {
      const ref = hpa.spec?.scaleTargetRef;
      if (hpa.metadata?.namespace !== namespace || ref?.kind !== target.kind || ref?.name !== target.name) continue;
      const desired = hpa.status?.desiredReplicas ?? 0;
      const minimum = hpa.spec?.minReplicas ?? 1;
      if (desired > minimum) return `HorizontalPodAutoscaler ${hpa.metadata?.name} wants ${desired} replicas, above its minimum of ${minimum}`;
    }

    for (const scaledObject of this.scaledObjects.values()) {
      const ref = scaledObject.spec?.scaleTargetRef ?? {};
      const kind = ref.kind ?? 'Deployment';
      if (scaledObject.metadata?.namespace !== namespace || kind !== target.kind || ref.name !== target.name) continue;
      const minimum = scaledObject.spec?.minReplicaCount ?? 0;
      if (minimum > 0) return `KEDA ScaledObject ${scaledObject.metadata?.name} sets minReplicaCount ${minimum}`;
    }
    return null;
  }

  // Starts the ScaledObject informer once the API serves ScaledObjects.
  private async discoverKeda(): Promise<void> {
    if (this.stopped) return;
    try {
      await this.custom.listClusterCustomObject({ ...KEDA, limit: 1 });
    } catch (err) {
      if (!(err instanceof ApiException && err.code === 404)) {
        this.log.warn({ err }, 'checking for KEDA ScaledObjects failed, retrying');
      }
      const interval = this.options.kedaDiscoveryIntervalMs ?? KEDA_DISCOVERY_INTERVAL_MS;
      this.kedaTimer = setTimeout(() => void this.discoverKeda(), interval);
      return;
    }

    const path = `/apis/${KEDA.group}/${KEDA.version}/${KEDA.plural}`;
    const list = async () => (await this.custom.listClusterCustomObject(KEDA)) as never;
    await this.follow(makeInformer(this.kc, path, list), this.scaledObjects, 'ScaledObject');
    this.log.info('following KEDA ScaledObjects');
  }

  private async follow<T extends KubernetesObject>(informer: Informer<T>, cache: Map<string, T>, kind: string): Promise<void> {
    const keyOf = (o: T) => `${o.metadata?.namespace ?? ''}/${o.metadata?.name ?? ''}`;
    informer.on(ADD, (o) => cache.set(keyOf(o), o));
    informer.on(UPDATE, (o) => cache.set(keyOf(o), o));
    informer.on(DELETE, (o) => cache.delete(keyOf(o)));
    restartOnError(informer, this.log, kind, () => this.stopped);
    this.informers.push(informer as unknown as Informer<KubernetesObject>);
    await informer.start();
  }
}
