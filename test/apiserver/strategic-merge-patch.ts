// Strategic merge patch, the application/strategic-merge-patch+json patch
// type of the built-in kinds. It is a JSON merge patch in which the lists
// that upstream types tag with patchStrategy "merge" merge element-wise:
// lists of objects by their patchMergeKey, lists of strings as a set union.
//
// Supported directives: "$patch" (replace, delete, merge) in maps and list
// elements, "$retainKeys", "$deleteFromPrimitiveList/<field>" and
// "$setElementOrder/<field>".

import { deepCopy, deepEqual, isPlainObject } from './objects.js';
import { badRequest } from './status.js';

// Path suffixes (list elements written "[]") of the merge lists, with their
// patchMergeKey, from the struct tags in k8s.io/api. A path matches when it
// equals the suffix or ends with "." + suffix.
// NOTE: this covers the lists of the kinds this server serves, not all of k8s.io/api.
const MERGE_KEYS: Array<[suffix: string, key: string]> = [
  ['spec.containers', 'name'],
  ['spec.initContainers', 'name'],
  ['spec.ephemeralContainers', 'name'],
  ['spec.volumes', 'name'],
  ['spec.imagePullSecrets', 'name'],
  ['spec.hostAliases', 'ip'],
  ['spec.resourceClaims', 'name'],
  ['spec.schedulingGates', 'name'],
  ['spec.topologySpreadConstraints', 'topologyKey'],
  ['containers[].ports', 'containerPort'],
  ['initContainers[].ports', 'containerPort'],
  ['containers[].env', 'name'],
  ['initContainers[].env', 'name'],
  ['containers[].volumeMounts', 'mountPath'],
  ['initContainers[].volumeMounts', 'mountPath'],
  ['containers[].volumeDevices', 'devicePath'],
  ['status.conditions', 'type'],
  ['status.addresses', 'type'],
  ['metadata.ownerReferences', 'uid'],
];

// Top-level Service ports merge by port number.
const SERVICE_PORTS: [string, string] = ['spec.ports', 'port'];

// Lists of strings that merge as sets.
const PRIMITIVE_MERGE_LISTS = ['metadata.finalizers'];

const PATCH = '$patch';
const RETAIN_KEYS = '$retainKeys';
const DELETE_FROM_PRIMITIVE_LIST = '$deleteFromPrimitiveList/';
const SET_ELEMENT_ORDER = '$setElementOrder/';

type ListStrategy = { kind: 'replace' } | { kind: 'primitive' } | { kind: 'byKey'; key: string };

// Returns `original` with `patch` applied; neither is modified. `kind` picks
// the kind-specific merge lists (Service spec.ports).
export function applyStrategicMergePatch(original: unknown, patch: unknown, kind: string): unknown {
  if (!isPlainObject(patch)) throw badRequest('strategic merge patch must be a JSON object');
  const merged = mergeMap(isPlainObject(original) ? original : {}, patch, '', kind);
  return merged ?? {};
}

function matchesSuffix(path: string, suffix: string): boolean {
  return path === suffix || path.endsWith(`.${suffix}`);
}

function listStrategy(path: string, kind: string): ListStrategy {
  if (PRIMITIVE_MERGE_LISTS.includes(path)) return { kind: 'primitive' };
  if (kind === 'Service' && path === SERVICE_PORTS[0]) return { kind: 'byKey', key: SERVICE_PORTS[1] };
  const entry = MERGE_KEYS.find(([suffix]) => matchesSuffix(path, suffix));
  return entry ? { kind: 'byKey', key: entry[1] } : { kind: 'replace' };
}

function join(path: string, key: string): string {
  return path ? `${path}.${key}` : key;
}

function isDirective(key: string): boolean {
  return key === PATCH || key === RETAIN_KEYS || key.startsWith(DELETE_FROM_PRIMITIVE_LIST) || key.startsWith(SET_ELEMENT_ORDER);
}

// Removes directives from a value that has no original to merge with.
function stripDirectives(value: unknown): unknown {
  if (Array.isArray(value)) {
    return value.filter((item) => !(isPlainObject(item) && item[PATCH] === 'delete')).map(stripDirectives);
  }
  if (!isPlainObject(value)) return deepCopy(value);
  const result: Record<string, unknown> = {};
  for (const [key, child] of Object.entries(value)) {
    if (!isDirective(key) && child !== null) result[key] = stripDirectives(child);
  }
  return result;
}

// Returns the merged map, or undefined when the patch deletes it.
function mergeMap(original: Record<string, unknown>, patch: Record<string, unknown>, path: string, kind: string): Record<string, unknown> | undefined {
  const directive = patch[PATCH];
  if (directive === 'delete') return undefined;
  if (directive === 'replace') return stripDirectives(patch) as Record<string, unknown>;
  if (directive !== undefined && directive !== 'merge') throw badRequest(`unknown patch directive "${String(directive)}" at ${path || 'the top level'}`);

  const result: Record<string, unknown> = deepCopy(original);
  for (const [key, value] of Object.entries(patch)) {
    if (isDirective(key)) continue;
    const childPath = join(path, key);

    if (value === null) {
      delete result[key];
    } else if (isPlainObject(value) && isPlainObject(result[key])) {
      const merged = mergeMap(result[key] as Record<string, unknown>, value, childPath, kind);
      if (merged === undefined) delete result[key];
      else result[key] = merged;
    } else if (Array.isArray(value) && Array.isArray(result[key])) {
      result[key] = mergeList(result[key] as unknown[], value, childPath, kind);
    } else if (isPlainObject(value) && value[PATCH] === 'delete') {
      delete result[key];
    } else {
      result[key] = stripDirectives(value);
    }
  }

  applyListDirectives(result, patch);
  applyRetainKeys(result, patch);
  return result;
}

function mergeList(original: unknown[], patch: unknown[], path: string, kind: string): unknown[] {
  const strategy = listStrategy(path, kind);
  if (strategy.kind === 'replace') return stripDirectives(patch) as unknown[];

  if (strategy.kind === 'primitive') {
    const result = [...original];
    for (const item of patch) if (!result.some((existing) => deepEqual(existing, item))) result.push(item);
    return result;
  }

  // A {"$patch": "replace"} element replaces the whole list with the other elements.
  if (patch.some((item) => isPlainObject(item) && item[PATCH] === 'replace' && Object.keys(item).length === 1)) {
    return stripDirectives(patch.filter((item) => !(isPlainObject(item) && item[PATCH] === 'replace'))) as unknown[];
  }

  const { key } = strategy;
  const result = deepCopy(original);
  for (const item of patch) {
    if (!isPlainObject(item) || item[key] === undefined) {
      throw badRequest(`map: ${JSON.stringify(item)} does not contain declared merge key: ${key}`);
    }
    const index = result.findIndex((existing) => isPlainObject(existing) && deepEqual(existing[key], item[key]));

    if (item[PATCH] === 'delete') {
      if (index >= 0) result.splice(index, 1);
    } else if (index >= 0) {
      result[index] = mergeMap(result[index] as Record<string, unknown>, item, `${path}[]`, kind);
    } else {
      result.push(mergeMap({}, item, `${path}[]`, kind));
    }
  }
  return result;
}

function applyListDirectives(result: Record<string, unknown>, patch: Record<string, unknown>): void {
  for (const [key, value] of Object.entries(patch)) {
    if (key.startsWith(DELETE_FROM_PRIMITIVE_LIST) && Array.isArray(value)) {
      const field = key.slice(DELETE_FROM_PRIMITIVE_LIST.length);
      const list = result[field];
      if (Array.isArray(list)) result[field] = list.filter((item) => !value.some((removed) => deepEqual(removed, item)));
    }
    if (key.startsWith(SET_ELEMENT_ORDER) && Array.isArray(value)) {
      const field = key.slice(SET_ELEMENT_ORDER.length);
      const list = result[field];
      if (Array.isArray(list)) result[field] = orderList(list, value);
    }
  }
}

// Puts the elements named in `order` first, in that order, and keeps the
// rest after them in their current order. `order` contains primitives or
// objects with only the merge key set.
function orderList(list: unknown[], order: unknown[]): unknown[] {
  const position = (item: unknown): number =>
    order.findIndex((entry) =>
      isPlainObject(entry) && isPlainObject(item) ? Object.entries(entry).every(([k, v]) => deepEqual(item[k], v)) : deepEqual(entry, item),
    );
  const ranked = list.map((item, index) => ({ item, index, rank: position(item) }));
  ranked.sort((a, b) => {
    const rankA = a.rank < 0 ? Infinity : a.rank;
    const rankB = b.rank < 0 ? Infinity : b.rank;
    return rankA === rankB ? a.index - b.index : rankA - rankB;
  });
  return ranked.map(({ item }) => item);
}

// "$retainKeys" lists the keys to keep; every other key of the merged map is cleared.
function applyRetainKeys(result: Record<string, unknown>, patch: Record<string, unknown>): void {
  const retain = patch[RETAIN_KEYS];
  if (retain === undefined) return;
  if (!Array.isArray(retain)) throw badRequest('$retainKeys must be a list of field names');
  for (const key of Object.keys(result)) if (!retain.includes(key)) delete result[key];
}
