// Lookup of served resources: the built-in kinds plus the custom resources
// of every CustomResourceDefinition in the store. Custom types are derived
// from the stored CRDs on demand, so a CRD serves its resources from the
// moment its create returns and stops when its delete returns.

import { builtinKinds, CRDS_KEY } from './builtin-kinds.js';
import { customResourceTypes } from './custom-resources.js';
import type { KubeObject } from './objects.js';
import type { ResourceType } from './resource-type.js';
import type { Store } from './store.js';

export class KindRegistry {
  readonly #builtins: ResourceType[];
  readonly #store: Store;
  // CRD name -> the types derived from it, valid while its resourceVersion matches.
  readonly #derived = new Map<string, { resourceVersion: string; types: ResourceType[] }>();

  constructor(store: Store) {
    this.#builtins = builtinKinds();
    this.#store = store;
  }

  lookup(group: string, version: string, plural: string): ResourceType | undefined {
    return this.all().find((type) => type.group === group && type.version === version && type.plural === plural);
  }

  // Returns every served type, built-in ones first.
  all(): ResourceType[] {
    return [...this.#builtins, ...this.customTypes()];
  }

  customTypes(): ResourceType[] {
    const types: ResourceType[] = [];
    const live = new Set<string>();
    for (const [, crd] of this.#store.list(CRDS_KEY)) {
      live.add(crd.metadata.name!);
      types.push(...this.#typesOf(crd));
    }
    for (const name of this.#derived.keys()) if (!live.has(name)) this.#derived.delete(name);
    return types;
  }

  #typesOf(crd: KubeObject): ResourceType[] {
    const name = crd.metadata.name!;
    const cached = this.#derived.get(name);
    if (cached && cached.resourceVersion === crd.metadata.resourceVersion) return cached.types;

    const types = customResourceTypes(crd);
    this.#derived.set(name, { resourceVersion: crd.metadata.resourceVersion!, types });
    return types;
  }
}
