// Field selectors (fieldSelector query parameter): "=", "==" and "!="
// terms joined by commas, over the fields each kind supports. Every kind
// supports metadata.name and metadata.namespace.

import { getPath, type KubeObject } from './objects.js';
import { badRequest } from './status.js';

export interface FieldRequirement {
  field: string;
  equals: boolean;
  value: string;
}

// Field name -> its value in an object, for the fields one kind supports.
export type FieldExtractors = Record<string, (object: KubeObject) => string | undefined>;

export const METADATA_FIELDS: FieldExtractors = {
  'metadata.name': (object) => object.metadata.name,
  'metadata.namespace': (object) => object.metadata.namespace ?? '',
};

// Supported fields taken as plain paths into the object, as for Pods'
// spec.nodeName or Events' involvedObject.name.
export function pathFields(...paths: string[]): FieldExtractors {
  const extractors: FieldExtractors = {};
  for (const path of paths) {
    extractors[path] = (object) => {
      const value = getPath(object, path);
      return value === undefined || value === null ? '' : String(value);
    };
  }
  return extractors;
}

// Parses the selector and rejects fields that `supported` lacks, with the
// 400 "field label not supported" that kube-apiserver sends.
export function parseFieldSelector(text: string, supported: FieldExtractors): FieldRequirement[] {
  const requirements: FieldRequirement[] = [];
  for (const raw of text.split(',')) {
    const term = raw.trim();
    if (!term) continue;

    const match = /^([^=!\s]+)\s*(==|=|!=)\s*(.*)$/.exec(term);
    if (!match) throw badRequest(`invalid selector: '${text}'; can't understand '${term}'`);
    const [, field, operator, value] = match;
    if (!Object.hasOwn(supported, field!)) throw badRequest(`field label not supported: ${field}`);

    requirements.push({ field: field!, equals: operator !== '!=', value: value! });
  }
  return requirements;
}

export function matchesFields(requirements: FieldRequirement[], supported: FieldExtractors, object: KubeObject): boolean {
  return requirements.every(({ field, equals, value }) => (supported[field]!(object) === value) === equals);
}
