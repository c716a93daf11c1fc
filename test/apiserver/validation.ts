// Object validation: the upstream OpenAPI schemas compiled into the
// kubernetes-models package, plus the object metadata rules (names, labels)
// that kube-apiserver checks in code rather than in its schemas.
//
// As in kube-apiserver, a field of the wrong JSON type fails decoding with
// 400 BadRequest before validation runs. Every other schema violation is a
// 422 Invalid whose causes name the fields.

import { type KubeObject, isPlainObject } from './objects.js';
import { badRequest, invalid, type StatusCause } from './status.js';

// The shape shared by every kubernetes-models class: the constructor copies
// the data and validate() throws a ValidationError that lists ajv errors.
export type ModelClass = new (data: never) => { validate(): void };

interface SchemaError {
  instancePath: string;
  keyword: string;
  params: Record<string, unknown>;
  message?: string;
}

export type NameRule = 'dns1123Subdomain' | 'dns1123Label' | 'dns1035Label';

// Validates `object` against the schema of `model` and returns the causes of
// a 422. Throws 400 BadRequest when a field has the wrong JSON type.
export function schemaCauses(model: ModelClass, object: KubeObject, kind: string, version: string): StatusCause[] {
  try {
    new model(object as never).validate();
    return [];
  } catch (err) {
    const errors = (err as { errors?: SchemaError[] }).errors;
    if (!Array.isArray(errors)) throw err;
    return classify(errors, object, kind, version);
  }
}

function classify(errors: SchemaError[], object: KubeObject, kind: string, version: string): StatusCause[] {
  // An int-or-string field reports one "type" error per alternative plus a
  // oneOf error, all at one path, so expected types are grouped by path.
  const typeErrors = new Map<string, string[]>();
  for (const error of errors) {
    if (error.keyword !== 'type') continue;
    const types = typeErrors.get(error.instancePath) ?? [];
    types.push(String(error.params.type));
    typeErrors.set(error.instancePath, types);
  }

  const [firstPath, expected] = [...typeErrors.entries()][0] ?? [];
  if (firstPath !== undefined) {
    const actual = goJsonType(valueAt(object, firstPath));
    throw badRequest(
      `${kind} in version "${version}" cannot be handled as a ${kind}: json: cannot unmarshal ${actual} ` +
        `into Go struct field ${fieldPath(firstPath)} of type ${expected!.join(' or ')}`,
    );
  }

  return errors
    .filter((error) => error.keyword !== 'oneOf' && error.keyword !== 'anyOf')
    .map((error) => causeOf(error, object));
}

function causeOf(error: SchemaError, object: KubeObject): StatusCause {
  const field = fieldPath(error.instancePath);
  switch (error.keyword) {
    case 'required': {
      const missing = String(error.params.missingProperty);
      return { reason: 'FieldValueRequired', message: 'Required value', field: field ? `${field}.${missing}` : missing };
    }
    case 'enum': {
      const allowed = (error.params.allowedValues as unknown[]).map((value) => JSON.stringify(value)).join(', ');
      return {
        reason: 'FieldValueNotSupported',
        message: `Unsupported value: ${JSON.stringify(valueAt(object, error.instancePath))}: supported values: ${allowed}`,
        field,
      };
    }
    default:
      return {
        reason: 'FieldValueInvalid',
        message: `Invalid value: ${JSON.stringify(valueAt(object, error.instancePath))}: ${error.message ?? error.keyword}`,
        field,
      };
  }
}

// "/spec/template/spec/containers/0/name" -> "spec.template.spec.containers[0].name"
export function fieldPath(instancePath: string): string {
  let path = '';
  for (const raw of instancePath.split('/').slice(1)) {
    const segment = raw.replaceAll('~1', '/').replaceAll('~0', '~');
    if (/^\d+$/.test(segment)) path += `[${segment}]`;
    else if (path) path += `.${segment}`;
    else path = segment;
  }
  return path;
}

function valueAt(object: unknown, instancePath: string): unknown {
  let current = object;
  for (const raw of instancePath.split('/').slice(1)) {
    const segment = raw.replaceAll('~1', '/').replaceAll('~0', '~');
    if (Array.isArray(current)) current = current[Number(segment)];
    else if (isPlainObject(current)) current = current[segment];
    else return undefined;
  }
  return current;
}

function goJsonType(value: unknown): string {
  if (Array.isArray(value)) return 'array';
  if (value === null) return 'null';
  if (typeof value === 'boolean') return 'bool';
  return typeof value;
}

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const LABEL_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

// Messages as written by k8s.io/apimachinery/pkg/util/validation.
const NAME_RULES: Record<NameRule, { pattern: RegExp; maxLength: number; message: string }> = {
  dns1123Subdomain: {
    pattern: DNS1123_SUBDOMAIN,
    maxLength: 253,
    message:
      "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
  },
  dns1123Label: {
    pattern: DNS1123_LABEL,
    maxLength: 63,
    message:
      "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
  },
  dns1035Label: {
    pattern: DNS1035_LABEL,
    maxLength: 63,
    message:
      "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')",
  },
};

export function metadataCauses(object: KubeObject, nameRule: NameRule): StatusCause[] {
  const causes: StatusCause[] = [];
  const { name, labels } = object.metadata;

  if (!name) {
    causes.push({ reason: 'FieldValueRequired', message: 'Required value: name or generateName is required', field: 'metadata.name' });
  } else {
    const rule = NAME_RULES[nameRule];
    if (name.length > rule.maxLength) {
      causes.push(invalidValue('metadata.name', name, `must be no more than ${rule.maxLength} characters`));
    }
    if (!rule.pattern.test(name)) causes.push(invalidValue('metadata.name', name, rule.message));
  }

  for (const [key, value] of Object.entries(labels ?? {})) {
    if (!isLabelKey(key)) causes.push(invalidValue('metadata.labels', key, 'label keys must be a qualified name: an optional DNS subdomain prefix and "/", then a name of at most 63 alphanumeric characters, "-", "_" or "."'));
    if (!isLabelValue(value)) {
      causes.push(invalidValue(`metadata.labels`, value, "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"));
    }
  }
  return causes;
}

// Whether `key` is a qualified name: an optional DNS subdomain prefix and
// "/", then a name of at most 63 characters.
export function isLabelKey(key: string): boolean {
  const slash = key.lastIndexOf('/');
  const prefix = slash >= 0 ? key.slice(0, slash) : undefined;
  const name = slash >= 0 ? key.slice(slash + 1) : key;
  if (prefix !== undefined && (prefix.length > 253 || !DNS1123_SUBDOMAIN.test(prefix))) return false;
  return name.length <= 63 && LABEL_NAME.test(name);
}

// Whether `value` is empty or at most 63 alphanumeric characters, "-", "_"
// or ".", starting and ending with an alphanumeric character.
export function isLabelValue(value: unknown): boolean {
  return typeof value === 'string' && value.length <= 63 && LABEL_VALUE.test(value);
}

export function invalidValue(field: string, value: unknown, detail: string): StatusCause {
  return { reason: 'FieldValueInvalid', message: `Invalid value: ${JSON.stringify(value)}: ${detail}`, field };
}

// Throws the 422 for `causes`, if any, naming the object by kind and name.
export function throwIfInvalid(causes: StatusCause[], kind: string, group: string, name: string): void {
  if (causes.length > 0) throw invalid(kind, group, name, causes);
}
