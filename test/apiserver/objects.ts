// Kubernetes objects as plain JSON, and the helpers every layer of the test
// API server shares: deep copy, deep equality, deep freeze and dotted paths.

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

export interface ObjectMeta {
  name?: string;
  generateName?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  deletionGracePeriodSeconds?: number;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  finalizers?: string[];
  ownerReferences?: unknown[];
  [key: string]: unknown;
}

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
  [key: string]: unknown;
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function deepCopy<T>(value: T): T {
  return structuredClone(value);
}

export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a)) {
    return Array.isArray(b) && a.length === b.length && a.every((item, i) => deepEqual(item, b[i]));
  }
  if (isPlainObject(a) && isPlainObject(b)) {
    const keysA = Object.keys(a).filter((key) => a[key] !== undefined);
    const keysB = Object.keys(b).filter((key) => b[key] !== undefined);
    return keysA.length === keysB.length && keysA.every((key) => deepEqual(a[key], b[key]));
  }
  return false;
}

// Freezes stored objects, so a handler that edits one without copying it
// throws instead of changing history behind the watchers.
export function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}

// Reads a field given as ".spec.replicas" or "spec.replicas", the form that
// CRD scale subresources use for specReplicasPath and its siblings.
export function getPath(object: unknown, path: string): unknown {
  let current = object;
  for (const key of splitPath(path)) {
    if (!isPlainObject(current)) return undefined;
    current = current[key];
  }
  return current;
}

// Sets a field, creating the missing parent objects on the way.
export function setPath(object: Record<string, unknown>, path: string, value: unknown): void {
  const keys = splitPath(path);
  let current = object;
  for (const key of keys.slice(0, -1)) {
    if (!isPlainObject(current[key])) current[key] = {};
    current = current[key] as Record<string, unknown>;
  }
  current[keys[keys.length - 1]!] = value;
}

function splitPath(path: string): string[] {
  return path.replace(/^\./, '').split('.');
}

// The key under which the store sorts objects, like the etcd key suffix
// "<namespace>/<name>"; cluster-scoped objects have no namespace part.
export function objectKey(namespace: string | undefined, name: string): string {
  return namespace ? `${namespace}/${name}` : name;
}

// Compares strings by UTF-16 code units, the order etcd gives ASCII keys.
export function compareStrings(a: string, b: string): number {
  if (a < b) return -1;
  if (a > b) return 1;
  return 0;
}

export function nowTimestamp(): string {
  // metav1.Time serializes in RFC 3339 with second precision.
  return new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
}
