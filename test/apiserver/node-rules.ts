// Validation rules for core/v1 Nodes that kube-apiserver enforces in code
// rather than in the Node schema: ValidateNode on every write and
// ValidateNodeUpdate on updates, both in k8s.io/kubernetes
// pkg/apis/core/validation/validation.go.
//
// NOTE: capacity and allocatable quantities, spec.configSource,
// status.config and the taint and avoid-pods annotations are not checked.

import { deepEqual, getPath, isPlainObject, type KubeObject } from './objects.js';
import { type IpFamily, parseIp } from './service-ip-allocator.js';
import type { StatusCause } from './status.js';
import { invalidValue, isLabelKey, isLabelValue } from './validation.js';

const PODCIDR_IMMUTABLE = 'node updates may not change podCIDR except from "" to valid';
const PROVIDERID_IMMUTABLE = 'node updates may not change providerID except from "" to valid';

// Checks spec.taints and spec.podCIDRs of a created or updated Node.
export function nodeCauses(object: KubeObject): StatusCause[] {
  const spec = isPlainObject(object.spec) ? object.spec : {};
  return [...taintCauses(spec.taints), ...podCidrCauses(spec.podCIDRs)];
}

// Checks what an update may not change: podCIDRs and providerID once set,
// and externalID at all. Also rejects repeated entries in status.addresses,
// which kube-apiserver checks on update only.
export function nodeUpdateCauses(old: KubeObject, next: KubeObject): StatusCause[] {
  const causes: StatusCause[] = [];

  const addresses = getPath(next, 'status.addresses');
  if (Array.isArray(addresses)) {
    addresses.forEach((address, index) => {
      if (addresses.slice(0, index).some((earlier) => deepEqual(earlier, address))) {
        causes.push(duplicate(`status.addresses[${index}]`, address));
      }
    });
  }

  const oldCidrs = stringList(getPath(old, 'spec.podCIDRs'));
  const nextCidrs = stringList(getPath(next, 'spec.podCIDRs'));
  if (oldCidrs.length > 0) {
    // kube-apiserver reports one error for a changed length, otherwise one
    // per changed entry, all on spec.podCIDRs.
    if (oldCidrs.length !== nextCidrs.length) {
      causes.push(forbidden('spec.podCIDRs', PODCIDR_IMMUTABLE));
    } else {
      for (const [index, cidr] of oldCidrs.entries()) {
        if (cidr !== nextCidrs[index]) causes.push(forbidden('spec.podCIDRs', PODCIDR_IMMUTABLE));
      }
    }
  }

  const oldProviderId = String(getPath(old, 'spec.providerID') ?? '');
  if (oldProviderId !== '' && oldProviderId !== String(getPath(next, 'spec.providerID') ?? '')) {
    causes.push(forbidden('spec.providerID', PROVIDERID_IMMUTABLE));
  }

  if ((getPath(old, 'spec.externalID') ?? '') !== (getPath(next, 'spec.externalID') ?? '')) {
    causes.push(forbidden('spec.externalID', 'may not be updated'));
  }
  return causes;
}

// Taint keys must be qualified names, values label values, and each
// key and effect pair may appear once. kube-apiserver reports these under
// metadata.taints, not spec.taints, and so does this server.
function taintCauses(taints: unknown): StatusCause[] {
  if (!Array.isArray(taints)) return [];
  const causes: StatusCause[] = [];
  const seen = new Set<string>();

  taints.forEach((taint, index) => {
    if (!isPlainObject(taint)) return;
    const path = `metadata.taints[${index}]`;
    const key = String(taint.key ?? '');
    if (!isLabelKey(key)) {
      causes.push(invalidValue(`${path}.key`, key, 'must be a qualified name: an optional DNS subdomain prefix and "/", then a name of at most 63 alphanumeric characters, "-", "_" or "."'));
    }
    if (taint.value !== undefined && taint.value !== null && !isLabelValue(taint.value)) {
      causes.push(invalidValue(`${path}.value`, taint.value, "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"));
    }

    const pair = JSON.stringify([key, taint.effect]);
    if (seen.has(pair)) causes.push(duplicate(path, taint, 'taints must be unique by key and effect pair'));
    seen.add(pair);
  });
  return causes;
}

// Each pod CIDR must parse, and two CIDRs must be of different families.
function podCidrCauses(podCidrs: unknown): StatusCause[] {
  const cidrs = stringList(podCidrs);
  const causes: StatusCause[] = [];
  const families: (IpFamily | undefined)[] = cidrs.map(cidrFamily);

  cidrs.forEach((cidr, index) => {
    if (families[index] === undefined) causes.push(invalidValue(`spec.podCIDRs[${index}]`, cidr, 'must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)'));
  });
  if (cidrs.length < 2) return causes;

  const dualStack = cidrs.length === 2 && families[0] !== undefined && families[1] !== undefined && families[0] !== families[1];
  if (!dualStack) causes.push(invalidValue('spec.podCIDRs', cidrs, 'may specify no more than one CIDR for each IP family'));
  cidrs.forEach((cidr, index) => {
    if (cidrs.indexOf(cidr) < index) causes.push(duplicate(`spec.podCIDRs[${index}]`, cidr));
  });
  return causes;
}

// Returns the family of an "address/prefix" CIDR, or undefined when it
// does not parse.
function cidrFamily(cidr: string): IpFamily | undefined {
  const slash = cidr.indexOf('/');
  if (slash < 0) return undefined;
  const address = parseIp(cidr.slice(0, slash));
  const prefixText = cidr.slice(slash + 1);
  if (!address || !/^\d{1,3}$/.test(prefixText)) return undefined;

  const maxPrefix = address.family === 'IPv4' && !cidr.slice(0, slash).includes(':') ? 32 : 128;
  return Number(prefixText) <= maxPrefix ? address.family : undefined;
}

function stringList(value: unknown): string[] {
  return Array.isArray(value) ? value.map(String) : [];
}

function duplicate(field: string, value: unknown, detail?: string): StatusCause {
  const message = `Duplicate value: ${JSON.stringify(value)}`;
  return { reason: 'FieldValueDuplicate', message: detail ? `${message}: ${detail}` : message, field };
}

function forbidden(field: string, detail: string): StatusCause {
  return { reason: 'FieldValueForbidden', message: `Forbidden: ${detail}`, field };
}
