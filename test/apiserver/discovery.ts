// Discovery documents: /api, /apis, /apis/{group} and the APIResourceList of
// each group version, built from the served resource types. kubectl and
// client-node's KubernetesObjectApi read these to map kinds to resources.
//
// NOTE: aggregated discovery (apidiscovery.k8s.io/v2) and /openapi are not
// served; kubectl falls back to these legacy documents.

import type { KindRegistry } from './kind-registry.js';
import { compareStrings } from './objects.js';
import { apiVersionOf, type ResourceType } from './resource-type.js';

const VERBS = ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'];
const SUBRESOURCE_VERBS = ['get', 'patch', 'update'];

export function versionInfo(): Record<string, string> {
  return {
    major: '1',
    minor: '33',
    gitVersion: 'v1.33.0-zerohold-test',
    gitCommit: '0000000000000000000000000000000000000000',
    gitTreeState: 'clean',
    buildDate: '2025-01-01T00:00:00Z',
    goVersion: 'go1.24.0',
    compiler: 'gc',
    platform: 'linux/amd64',
  };
}

export function apiVersions(serverAddress: string): Record<string, unknown> {
  return {
    kind: 'APIVersions',
    versions: ['v1'],
    serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress }],
  };
}

interface GroupVersions {
  name: string;
  versions: string[];
}

// Groups in first-seen order; versions sorted by Kubernetes version priority.
function namedGroups(kinds: KindRegistry): GroupVersions[] {
  const groups = new Map<string, Set<string>>();
  for (const type of kinds.all()) {
    if (!type.group) continue;
    if (!groups.has(type.group)) groups.set(type.group, new Set());
    groups.get(type.group)!.add(type.version);
  }
  return [...groups.entries()].map(([name, versions]) => ({ name, versions: [...versions].sort(compareVersionPriority) }));
}

function apiGroup({ name, versions }: GroupVersions): Record<string, unknown> {
  const entries = versions.map((version) => ({ groupVersion: `${name}/${version}`, version }));
  return { name, versions: entries, preferredVersion: entries[0] };
}

export function apiGroupList(kinds: KindRegistry): Record<string, unknown> {
  return { kind: 'APIGroupList', apiVersion: 'v1', groups: namedGroups(kinds).map(apiGroup) };
}

export function apiGroupDocument(kinds: KindRegistry, group: string): Record<string, unknown> | undefined {
  const found = namedGroups(kinds).find((entry) => entry.name === group);
  return found ? { kind: 'APIGroup', apiVersion: 'v1', ...apiGroup(found) } : undefined;
}

export function apiResourceList(kinds: KindRegistry, group: string, version: string): Record<string, unknown> | undefined {
  const types = kinds.all().filter((type) => type.group === group && type.version === version);
  if (types.length === 0) return undefined;
  return {
    kind: 'APIResourceList',
    apiVersion: 'v1',
    groupVersion: apiVersionOf({ group, version }),
    resources: types.flatMap(resourceEntries),
  };
}

function resourceEntries(type: ResourceType): Record<string, unknown>[] {
  const entries: Record<string, unknown>[] = [
    {
      name: type.plural,
      singularName: type.singular,
      namespaced: type.namespaced,
      kind: type.kind,
      verbs: VERBS,
      ...(type.shortNames.length > 0 ? { shortNames: type.shortNames } : {}),
      ...(type.categories.length > 0 ? { categories: type.categories } : {}),
    },
  ];
  if (type.statusSubresource) {
    entries.push({ name: `${type.plural}/status`, singularName: '', namespaced: type.namespaced, kind: type.kind, verbs: SUBRESOURCE_VERBS });
  }
  if (type.scale) {
    entries.push({
      name: `${type.plural}/scale`,
      singularName: '',
      namespaced: type.namespaced,
      group: 'autoscaling',
      version: 'v1',
      kind: 'Scale',
      verbs: SUBRESOURCE_VERBS,
    });
  }
  return entries;
}

// Orders versions as kube-apiserver prefers them: GA before beta before
// alpha, higher numbers first, then anything else alphabetically.
export function compareVersionPriority(a: string, b: string): number {
  const [rankA, rankB] = [versionRank(a), versionRank(b)];
  for (let i = 0; i < rankA.length; i++) {
    if (rankA[i] !== rankB[i]) return rankA[i]! - rankB[i]!;
  }
  return compareStrings(a, b);
}

// Sort key of a version: stability (GA 0, beta 1, alpha 2, other 3), then
// the negated major and pre-release numbers so that higher ones sort first.
function versionRank(version: string): [number, number, number] {
  const match = /^v(\d+)(?:(alpha|beta)(\d+))?$/.exec(version);
  if (!match) return [3, 0, 0];
  const stability = { undefined: 0, beta: 1, alpha: 2 }[String(match[2])] ?? 0;
  return [stability, -Number(match[1]), -Number(match[3] ?? 0)];
}
