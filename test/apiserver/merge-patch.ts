// JSON Merge Patch (RFC 7386), the application/merge-patch+json patch type.

import { deepCopy, isPlainObject } from './objects.js';

// Returns `target` with `patch` applied; neither argument is modified. A null
// member deletes the key, an object member merges recursively, and any
// other value (arrays included) replaces the target's value.
export function applyMergePatch(target: unknown, patch: unknown): unknown {
  if (!isPlainObject(patch)) return deepCopy(patch);

  const result: Record<string, unknown> = isPlainObject(target) ? { ...target } : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete result[key];
    else result[key] = applyMergePatch(result[key], value);
  }
  return result;
}
