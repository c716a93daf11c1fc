// What the EndpointSlice controller last wrote, per Service, modelled on
// the EndpointSliceTracker of Kubernetes' controller. The controller uses
// it to decide two things:
//
// - Is a slice event the echo of the controller's own write? Then it needs
//   no reconcile, because the controller built that slice from the same
//   Pods and Services it would read again.
// - Is the informer's cache behind the controller's writes? Then a
//   reconcile would compare against an old slice and send an update with
//   a stale resourceVersion, which the API server refuses with 409. The
//   controller waits for the cache instead.
//
// Slices are identified by UID, so a slice that was deleted and created
// again under its name is a different slice.

import type { V1EndpointSlice } from '@kubernetes/client-node';

// The generation a write returned, or DELETED once the controller deleted
// the slice.
const DELETED = -1;

export class EndpointSliceTracker {
  // "namespace/service" -> slice UID -> generation.
  private readonly written = new Map<string, Map<string, number>>();

  // Records the slice that a create or an update returned.
  recordWrite(service: string, slice: V1EndpointSlice): void {
    const uid = slice.metadata?.uid;
    if (uid === undefined) return;
    this.slicesOf(service).set(uid, slice.metadata?.generation ?? 0);
  }

  recordDeletion(service: string, slice: V1EndpointSlice): void {
    const uid = slice.metadata?.uid;
    if (uid !== undefined) this.slicesOf(service).set(uid, DELETED);
  }

  // Whether an informer event for the slice may need a reconcile: false
  // only for a slice this controller wrote, at the generation it wrote
  // or an older one.
  shouldSync(service: string, slice: V1EndpointSlice): boolean {
    const generation = this.written.get(service)?.get(slice.metadata?.uid ?? '');
    return generation === undefined || generation === DELETED || (slice.metadata?.generation ?? 0) > generation;
  }

  // Whether the cached slices of the Service lag behind the controller's
  // writes: a written slice missing or at an older generation, or a
  // deleted one still present. Forgets the deletions the cache has caught
  // up with.
  isStale(service: string, cached: readonly V1EndpointSlice[]): boolean {
    const slices = this.written.get(service);
    if (slices === undefined) return false;

    const cachedGenerations = new Map(cached.map((slice) => [slice.metadata?.uid ?? '', slice.metadata?.generation ?? 0]));
    let stale = false;
    for (const [uid, generation] of slices) {
      const cachedGeneration = cachedGenerations.get(uid);
      if (generation === DELETED) {
        if (cachedGeneration === undefined) slices.delete(uid);
        else stale = true;
      } else if (cachedGeneration === undefined || cachedGeneration < generation) {
        stale = true;
      }
    }
    if (slices.size === 0) this.written.delete(service);
    return stale;
  }

  // Forgets a slice that someone else deleted, so that the cache is not
  // waited for to show it.
  forget(service: string, slice: V1EndpointSlice): void {
    this.written.get(service)?.delete(slice.metadata?.uid ?? '');
  }

  private slicesOf(service: string): Map<string, number> {
    let slices = this.written.get(service);
    if (slices === undefined) this.written.set(service, (slices = new Map()));
    return slices;
  }
}
