// Resource types derived from CustomResourceDefinitions: one per served
// version, all versions sharing one storage key, with the status and scale
// subresources that each version declares.

import { pathFields } from './field-selector.js';
import { getPath, isPlainObject, type KubeObject } from './objects.js';
import type { ResourceType, ScaleSubresource } from './resource-type.js';
import { metadataCauses } from './validation.js';

export function customResourceTypes(crd: KubeObject): ResourceType[] {
  const spec = isPlainObject(crd.spec) ? crd.spec : {};
  const names = isPlainObject(spec.names) ? spec.names : {};
  const group = String(spec.group);
  const plural = String(names.plural);
  const kind = String(names.kind);
  const versions = Array.isArray(spec.versions) ? spec.versions.filter(isPlainObject) : [];

  return versions
    .filter((version) => version.served === true)
    .map((version): ResourceType => {
      const subresources = isPlainObject(version.subresources) ? version.subresources : {};
      const scale = scaleSubresource(subresources.scale);
      const selectable = Array.isArray(version.selectableFields) ? version.selectableFields.filter(isPlainObject) : [];

      return {
        group,
        version: String(version.name),
        kind,
        listKind: String(names.listKind ?? `${kind}List`),
        plural,
        singular: String(names.singular ?? kind.toLowerCase()),
        shortNames: Array.isArray(names.shortNames) ? names.shortNames.map(String) : [],
        categories: Array.isArray(names.categories) ? names.categories.map(String) : [],
        namespaced: spec.scope !== 'Cluster',
        storageKey: `${group}/${plural}`,
        custom: true,
        statusSubresource: isPlainObject(subresources.status),
        ...(scale ? { scale } : {}),
        tracksGeneration: true,
        returnDeletedObject: false,
        // customResourceStrategy.AllowUnconditionalUpdate is false.
        allowUnconditionalUpdate: false,
        nameRule: 'dns1123Subdomain',
        fields: pathFields(...selectable.map((field) => String(field.jsonPath).replace(/^\./, ''))),
        immutableFields: [],
        // TODO: validate against the version's openAPIV3Schema and prune
        // unknown fields; only metadata is checked for now.
        validate: (object) => metadataCauses(object, 'dns1123Subdomain'),
      };
    });
}

function scaleSubresource(scale: unknown): ScaleSubresource | undefined {
  if (!isPlainObject(scale)) return undefined;
  const labelSelectorPath = typeof scale.labelSelectorPath === 'string' ? scale.labelSelectorPath : undefined;
  return {
    specReplicasPath: String(scale.specReplicasPath),
    statusReplicasPath: String(scale.statusReplicasPath),
    selector: (object) => {
      if (!labelSelectorPath) return undefined;
      const value = getPath(object, labelSelectorPath);
      return typeof value === 'string' ? value : undefined;
    },
  };
}
