// Chooses the patch algorithm from the request's Content-Type, as
// kube-apiserver does for PATCH requests.

import { applyJsonPatch } from './json-patch.js';
import { applyMergePatch } from './merge-patch.js';
import { badRequest, unsupportedMediaType } from './status.js';
import { applyStrategicMergePatch } from './strategic-merge-patch.js';

export const JSON_PATCH = 'application/json-patch+json';
export const MERGE_PATCH = 'application/merge-patch+json';
export const STRATEGIC_MERGE_PATCH = 'application/strategic-merge-patch+json';
export const APPLY_PATCH = 'application/apply-patch+yaml';

export interface PatchTarget {
  kind: string;
  // Custom resources have no patch strategy metadata, so kube-apiserver
  // rejects strategic merge patches for them with 415.
  custom: boolean;
}

// Returns `current` with the patch applied; `current` is not modified.
export function applyPatch(contentType: string | undefined, patchText: string, current: unknown, target: PatchTarget): unknown {
  const mediaType = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  const accepted = target.custom ? [JSON_PATCH, MERGE_PATCH, APPLY_PATCH] : [JSON_PATCH, MERGE_PATCH, APPLY_PATCH, STRATEGIC_MERGE_PATCH];

  // TODO: server-side apply needs managedFields tracking, which this server lacks.
  if (mediaType === APPLY_PATCH || !accepted.includes(mediaType)) throw unsupportedMediaType(mediaType, accepted.filter((type) => type !== APPLY_PATCH));

  let patch: unknown;
  try {
    patch = JSON.parse(patchText);
  } catch (err) {
    throw badRequest(`error decoding patch: ${(err as Error).message}`);
  }

  switch (mediaType) {
    case JSON_PATCH:
      return applyJsonPatch(current, patch);
    case MERGE_PATCH:
      return applyMergePatch(current, patch);
    default:
      return applyStrategicMergePatch(current, patch, target.kind);
  }
}
