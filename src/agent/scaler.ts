// Scaling through the /scale subresource of any workload kind, with
// optimistic concurrency. Every agent that sees a flow opener asks for a
// scale-up at once; each reads the Scale, and only a write carrying the
// resourceVersion it read can succeed. The losers get 409 Conflict, read
// again, find the count already high enough and change nothing, so N
// agents produce one change and no error storm.

import { ApiException, CustomObjectsApi, KubeConfig, KubernetesObjectApi, type V1Scale } from '@kubernetes/client-node';

import type { KnownScale, ScalePort, TargetRef, TargetScale } from './ports.js';

const MAX_CONFLICT_RETRIES = 5;

// Exposes the kind-to-resource lookup that KubernetesObjectApi keeps to
// itself, with its per-group-version cache of discovery documents.
class ResourceDiscovery extends KubernetesObjectApi {
  async resourceName(apiVersion: string, kind: string): Promise<string | undefined> {
    return (await this.resource(apiVersion, kind))?.name;
  }
}

export class ScaleConflictError extends Error {
  constructor(readonly target: string) {
    super(`scale of ${target} changed concurrently, read it again before deciding`);
    this.name = 'ScaleConflictError';
  }
}

function isConflict(err: unknown): boolean {
  return err instanceof ApiException && err.code === 409;
}

export class KubeScaler implements ScalePort {
  private readonly objects: CustomObjectsApi;
  private readonly discovery: ResourceDiscovery;

  constructor(kc: KubeConfig) {
    this.objects = kc.makeApiClient(CustomObjectsApi);
    this.discovery = kc.makeApiClient(ResourceDiscovery);
  }

  async scaleUp(namespace: string, target: TargetRef, replicas: number, known?: KnownScale): Promise<boolean> {
    const path = await this.scalePath(namespace, target);

    // A wake is latency-bound: write at once with the cached version. A
    // stale cache costs one 409 and the read-then-write loop below; a
    // cache that already shows enough replicas is checked by a read.
    if (known && known.replicas < replicas) {
      try {
        await this.writeReplicas(path, { metadata: { resourceVersion: known.resourceVersion } }, replicas);
        return true;
      } catch (err) {
        if (!isConflict(err)) throw err;
      }
    }

    for (let attempt = 0; attempt <= MAX_CONFLICT_RETRIES; attempt++) {
      const scale = (await this.objects.getNamespacedCustomObjectScale(path)) as V1Scale;
      if ((scale.spec?.replicas ?? 0) >= replicas) return false;

      try {
        await this.writeReplicas(path, scale, replicas);
        return true;
      } catch (err) {
        if (!isConflict(err)) throw err;
      }
    }
    throw new ScaleConflictError(describe(namespace, target));
  }

  async scaleTo(namespace: string, target: TargetRef, replicas: number): Promise<void> {
    const path = await this.scalePath(namespace, target);
    const scale = (await this.objects.getNamespacedCustomObjectScale(path)) as V1Scale;
    if (scale.spec?.replicas === replicas) return;

    try {
      await this.writeReplicas(path, scale, replicas);
    } catch (err) {
      if (isConflict(err)) throw new ScaleConflictError(describe(namespace, target));
      throw err;
    }
  }

  async readScale(namespace: string, target: TargetRef): Promise<TargetScale | null> {
    const path = await this.scalePath(namespace, target);
    try {
      const scale = (await this.objects.getNamespacedCustomObjectScale(path)) as V1Scale;
      return { replicas: scale.spec?.replicas ?? 0, selector: scale.status?.selector };
    } catch (err) {
      if (err instanceof ApiException && err.code === 404) return null;
      throw err;
    }
  }

  // Replaces the Scale with the resourceVersion that was read, which is
  // what makes a concurrent change fail with 409.
  private async writeReplicas(path: ScalePath, scale: V1Scale, replicas: number): Promise<void> {
    const body: V1Scale = {
      apiVersion: 'autoscaling/v1',
      kind: 'Scale',
      metadata: { name: path.name, namespace: path.namespace, resourceVersion: scale.metadata?.resourceVersion },
      spec: { replicas },
    };
    await this.objects.replaceNamespacedCustomObjectScale({ ...path, body });
  }

  private async scalePath(namespace: string, target: TargetRef): Promise<ScalePath> {
    const [group, version] = target.apiVersion.includes('/') ? target.apiVersion.split('/') : ['', target.apiVersion];
    if (!group) {
      throw new Error(`cannot scale ${describe(namespace, target)}: core API kinds have no /scale path this agent uses, expected a kind from an API group such as apps/v1`);
    }

    const plural = await this.discovery.resourceName(target.apiVersion, target.kind);
    if (!plural) {
      throw new Error(`cannot scale ${describe(namespace, target)}: kind ${target.kind} not found in ${target.apiVersion} discovery`);
    }
    return { group: group!, version: version!, namespace, plural, name: target.name };
  }
}

interface ScalePath {
  group: string;
  version: string;
  namespace: string;
  plural: string;
  name: string;
}

function describe(namespace: string, target: TargetRef): string {
  return `${target.kind} ${namespace}/${target.name}`;
}
