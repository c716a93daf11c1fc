// The object filter of a list or watch request: namespace, name and the
// labelSelector and fieldSelector query parameters.

import { type FieldExtractors, type FieldRequirement, matchesFields, METADATA_FIELDS, parseFieldSelector } from './field-selector.js';
import { matchesLabels, parseLabelSelector, type Requirement } from './label-selector.js';
import type { KubeObject } from './objects.js';
import type { ResourceType } from './resource-type.js';

export interface ObjectFilter {
  namespace: string | undefined;
  name: string | undefined;
  labels: Requirement[];
  fields: FieldRequirement[];
  extractors: FieldExtractors;
}

export function parseFilter(type: ResourceType, namespace: string | undefined, name: string | undefined, query: URLSearchParams): ObjectFilter {
  const extractors = { ...METADATA_FIELDS, ...type.fields };
  return {
    namespace: type.namespaced ? namespace : undefined,
    name,
    labels: parseLabelSelector(query.get('labelSelector') ?? ''),
    fields: parseFieldSelector(query.get('fieldSelector') ?? '', extractors),
    extractors,
  };
}

export function hasSelectors(filter: ObjectFilter): boolean {
  return filter.labels.length > 0 || filter.fields.length > 0;
}

export function matchesFilter(filter: ObjectFilter, object: KubeObject): boolean {
  if (filter.namespace !== undefined && object.metadata.namespace !== filter.namespace) return false;
  if (filter.name !== undefined && object.metadata.name !== filter.name) return false;
  return matchesLabels(filter.labels, object.metadata.labels) && matchesFields(filter.fields, filter.extractors, object);
}
