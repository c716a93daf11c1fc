// The storage of a workload's status, and its conditions. A ScaleToZero keeps
// it in its status subresource. A workload declared by the Service
// annotation keeps it as JSON in the Service annotation zerohold.dev/status,
// because a Service's own status has no room for it. Either way the agents
// share the scale-down decision through it, so both kinds of workload scale
// down the same way.

import {
  ApiException,
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  type KubernetesObject,
  PatchStrategy,
  setHeaderOptions,
  type V1Service,
} from '@kubernetes/client-node';

import type { Phase } from './phase.js';
import type { WorkloadSpec } from './workloads.js';

export const SCALE_TO_ZERO = { group: 'zerohold.dev', version: 'v1alpha1', plural: 'scaletozeros' };
export const STATUS_ANNOTATION = 'zerohold.dev/status';

const MERGE_PATCH = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

// A read-modify-write of the annotation retries this often on a conflict.
const ANNOTATION_ATTEMPTS = 3;

export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  lastTransitionTime?: string;
  observedGeneration?: number;
}

export interface WorkloadStatus {
  phase?: Phase;
  scaleDownId?: string | null;
  lastActivityTime?: string;
  lastWakeTime?: string;
  lastColdStartSeconds?: number;
  heldFlows?: number;
  conditions?: Condition[];
}

// Reads the status of the object that declared the workload.
export function readStatus(source: WorkloadSpec['source'], object: KubernetesObject): WorkloadStatus {
  if (source === 'ScaleToZero') return (object as { status?: WorkloadStatus }).status ?? {};

  const text = object.metadata?.annotations?.[STATUS_ANNOTATION];
  if (!text) return {};
  try {
    const parsed: unknown = JSON.parse(text);
    return parsed !== null && typeof parsed === 'object' ? (parsed as WorkloadStatus) : {};
  } catch {
    // Someone edited the annotation by hand. The next write replaces it.
    return {};
  }
}

// The Ready condition of a phase: True while the workload serves new
// connections without holding them.
export function readyCondition(phase: Phase): Pick<Condition, 'type' | 'status' | 'reason' | 'message'> {
  switch (phase) {
    case 'Warm':
      return { type: 'Ready', status: 'True', reason: 'Warm', message: 'backends are Ready and new flows pass' };
    case 'Idle':
      return { type: 'Ready', status: 'True', reason: 'Idle', message: 'backends are Ready, the workload is idle and may be scaled to zero' };
    case 'ScalingDown':
      return { type: 'Ready', status: 'False', reason: 'ScalingDown', message: 'scaling to zero, new flows are held' };
    case 'Cold':
      return { type: 'Ready', status: 'False', reason: 'ScaledToZero', message: 'scaled to zero, the first new flow wakes the workload' };
    case 'Waking':
      return { type: 'Ready', status: 'False', reason: 'Waking', message: 'scaling up, new flows are held until a backend is Ready' };
  }
}

// Replaces or adds a condition, keeping lastTransitionTime when the status
// did not change, as the Kubernetes API conventions ask.
export function setCondition(conditions: Condition[] | undefined, next: Condition, now: Date): Condition[] {
  const list = [...(conditions ?? [])];
  const index = list.findIndex((c) => c.type === next.type);
  const previous = index >= 0 ? list[index] : undefined;
  const lastTransitionTime = previous && previous.status === next.status && previous.lastTransitionTime ? previous.lastTransitionTime : now.toISOString();
  const merged = { ...next, lastTransitionTime };
  if (index >= 0) list[index] = merged;
  else list.push(merged);
  return list;
}

// Writes status fields. Fields left out keep their value and null removes
// one, as in a JSON merge patch.
export class StatusWriter {
  private readonly custom: CustomObjectsApi;
  private readonly core: CoreV1Api;

  constructor(kc: KubeConfig) {
    this.custom = kc.makeApiClient(CustomObjectsApi);
    this.core = kc.makeApiClient(CoreV1Api);
  }

  async patch(source: WorkloadSpec['source'], object: KubernetesObject, status: Record<string, unknown>): Promise<void> {
    const namespace = object.metadata!.namespace!;
    const name = object.metadata!.name!;
    if (source === 'ScaleToZero') {
      await this.custom.patchNamespacedCustomObjectStatus({ ...SCALE_TO_ZERO, namespace, name, body: { status } }, MERGE_PATCH);
      return;
    }
    await this.patchAnnotation(namespace, name, object as V1Service, status);
  }

  // A read-modify-write guarded by resourceVersion: a merge patch of one
  // annotation replaces the whole JSON, so without the guard two agents
  // writing different fields would lose one of them.
  private async patchAnnotation(namespace: string, name: string, cached: V1Service, status: Record<string, unknown>): Promise<void> {
    let service = cached;
    for (let attempt = 1; ; attempt++) {
      const merged: Record<string, unknown> = { ...readStatus('annotation', service) };
      for (const [field, value] of Object.entries(status)) {
        if (value === null) delete merged[field];
        else merged[field] = value;
      }
      const body = { metadata: { resourceVersion: service.metadata?.resourceVersion, annotations: { [STATUS_ANNOTATION]: JSON.stringify(merged) } } };

      try {
        await this.core.patchNamespacedService({ namespace, name, body }, MERGE_PATCH);
        return;
      } catch (err) {
        if (!(err instanceof ApiException && err.code === 409) || attempt === ANNOTATION_ATTEMPTS) throw err;
        service = await this.core.readNamespacedService({ namespace, name });
      }
    }
  }
}
