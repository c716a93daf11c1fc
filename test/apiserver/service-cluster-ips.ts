// Dual-stack ClusterIP defaulting and allocation for Services, following
// kube-apiserver's Service registry: initIPFamilyFields and allocClusterIPs
// in pkg/registry/core/service/storage/alloc.go, the clusterIP/clusterIPs
// reconciliation of normalizeClusterIPs and patchAllocatedValues, and the
// checks of ValidateServiceClusterIPsRelatedFields. This cluster always
// serves both families, IPv4 first, so no request fails for a family that
// the cluster lacks.
//
// Errors are 422 Invalid with kube-apiserver's messages. They are thrown
// here, before schema validation, because kube-apiserver also rejects these
// requests while allocating.

import { isPlainObject } from './objects.js';
import type { DefaultingContext } from './resource-type.js';
import { type IpFamily, IP_FAMILIES, parseIp } from './service-ip-allocator.js';
import { invalid, type StatusCause } from './status.js';
import { invalidValue } from './validation.js';

type Fields = Record<string, unknown>;

// The cluster's primary family, the first range of kube-apiserver's
// --service-cluster-ip-range. Services without ipFamilies get this one.
export const PRIMARY_IP_FAMILY: IpFamily = 'IPv4';

const POLICIES = ['PreferDualStack', 'RequireDualStack', 'SingleStack'];

const NONE = 'None';

// The IP fields of a ServiceSpec, with absent values as "" or [].
interface IpFields {
  type: string;
  clusterIP: string;
  clusterIPs: string[];
  ipFamilies: string[];
  ipFamilyPolicy: string | undefined;
  hasSelector: boolean;
}

// Fills ipFamilyPolicy, ipFamilies, clusterIPs and clusterIP of a Service
// spec in place, allocating an address per family through `context`.
// `oldSpec` is the stored spec on update. Throws a 422 for invalid or
// taken addresses and for family settings that kube-apiserver rejects.
export function assignClusterIps(spec: Fields, oldSpec: Fields | undefined, context: DefaultingContext, name: string): void {
  // A field of the wrong JSON type is left for schema validation, which
  // reports it as 400 BadRequest the way kube-apiserver's decoder does.
  if (!hasDecodableIpFields(spec)) return;
  const fields = readIpFields(spec);
  const old = oldSpec === undefined ? undefined : readIpFields(oldSpec);

  if (old) keepAllocatedValues(fields, old);
  syncClusterIps(fields, old);
  if (fields.type === 'ExternalName') return;

  fields.ipFamilyPolicy ??= defaultPolicy(fields, old);
  throwIfAny(relatedFieldCauses(fields), name);

  const causes = old ? downgradeCauses(fields, old) : [];
  causes.push(...singleStackCauses(fields));
  inferFamiliesFromClusterIps(fields);
  throwIfAny(causes, name);

  completeFamilies(fields);
  if (old) throwIfAny([...clusterIpChangeCauses(fields, old), ...familyChangeCauses(fields, old)], name);

  if (!isHeadless(fields)) allocate(fields, old, context, name);
  writeIpFields(spec, fields);
}

function hasDecodableIpFields(spec: Fields): boolean {
  const isAbsent = (value: unknown) => value === undefined || value === null;
  const isStringList = (value: unknown) => Array.isArray(value) && value.every((item) => typeof item === 'string');
  return (
    (isAbsent(spec.type) || typeof spec.type === 'string') &&
    (isAbsent(spec.clusterIP) || typeof spec.clusterIP === 'string') &&
    (isAbsent(spec.clusterIPs) || isStringList(spec.clusterIPs)) &&
    (isAbsent(spec.ipFamilies) || isStringList(spec.ipFamilies)) &&
    (isAbsent(spec.ipFamilyPolicy) || typeof spec.ipFamilyPolicy === 'string')
  );
}

function readIpFields(spec: Fields): IpFields {
  return {
    type: typeof spec.type === 'string' ? spec.type : 'ClusterIP',
    clusterIP: typeof spec.clusterIP === 'string' ? spec.clusterIP : '',
    clusterIPs: Array.isArray(spec.clusterIPs) ? [...(spec.clusterIPs as string[])] : [],
    ipFamilies: Array.isArray(spec.ipFamilies) ? [...(spec.ipFamilies as string[])] : [],
    ipFamilyPolicy: typeof spec.ipFamilyPolicy === 'string' ? spec.ipFamilyPolicy : undefined,
    hasSelector: isPlainObject(spec.selector) && Object.keys(spec.selector).length > 0,
  };
}

function writeIpFields(spec: Fields, fields: IpFields): void {
  spec.ipFamilyPolicy = fields.ipFamilyPolicy;
  spec.ipFamilies = fields.ipFamilies;
  spec.clusterIPs = fields.clusterIPs;
  spec.clusterIP = fields.clusterIPs[0];
}

// An update that omits clusterIP or clusterIPs keeps the stored values, so
// resubmitting the manifest a Service was created from succeeds.
function keepAllocatedValues(fields: IpFields, old: IpFields): void {
  if (old.type === 'ExternalName' || fields.type === 'ExternalName') return;
  if (fields.clusterIP === '') fields.clusterIP = old.clusterIP;
  if (fields.clusterIPs.length === 0) fields.clusterIPs = [...old.clusterIPs];
}

// Fills clusterIPs from clusterIP when a client set only clusterIP. A client
// that sets clusterIPs must also set clusterIP, so clusterIP is never
// derived from clusterIPs.
function syncClusterIps(fields: IpFields, old: IpFields | undefined): void {
  if (!old) {
    if (fields.clusterIP !== '' && fields.clusterIPs.length === 0) fields.clusterIPs = [fields.clusterIP];
    return;
  }

  // On update, a changed clusterIP with unchanged clusterIPs replaces
  // clusterIPs, so that the change checks see the new address.
  if (old.clusterIP !== fields.clusterIP && sameList(old.clusterIPs, fields.clusterIPs)) fields.clusterIPs = [fields.clusterIP];
}

// An update keeps the stored policy. A new headless Service without a
// selector defaults to RequireDualStack and every other one to SingleStack,
// as in kube-apiserver.
function defaultPolicy(fields: IpFields, old: IpFields | undefined): string {
  if (old?.ipFamilyPolicy !== undefined) return old.ipFamilyPolicy;
  if (fields.clusterIP === NONE && !fields.hasSelector) return 'RequireDualStack';
  return 'SingleStack';
}

function isHeadless(fields: IpFields): boolean {
  return fields.clusterIPs[0] === NONE;
}

// The checks of ValidateServiceClusterIPsRelatedFields: clusterIP matches
// clusterIPs[0], known families and policy, at most one valid address per
// family, and each address of the family at its index in ipFamilies.
function relatedFieldCauses(fields: IpFields): StatusCause[] {
  const causes: StatusCause[] = [];
  const { clusterIP, clusterIPs, ipFamilies, ipFamilyPolicy } = fields;

  // clusterIPs is never empty while clusterIP is set: syncClusterIps fills it.
  if (clusterIP !== '' && clusterIPs[0] !== clusterIP) {
    causes.push(invalidValue('spec.clusterIPs', clusterIPs, 'first value must match `clusterIP`'));
  } else if (clusterIP === '' && clusterIPs.length > 0) {
    causes.push(invalidValue('spec.clusterIPs', clusterIPs, 'must be empty when `clusterIP` is not specified'));
  }

  for (const [i, family] of ipFamilies.entries()) {
    if (!IP_FAMILIES.includes(family as IpFamily)) causes.push(notSupported(`spec.ipFamilies[${i}]`, family, IP_FAMILIES));
    if (ipFamilies.indexOf(family) < i) {
      causes.push({ reason: 'FieldValueDuplicate', message: `Duplicate value: ${JSON.stringify(family)}`, field: `spec.ipFamilies[${i}]` });
    }
  }
  if (ipFamilyPolicy !== undefined && !POLICIES.includes(ipFamilyPolicy)) causes.push(notSupported('spec.ipFamilyPolicy', ipFamilyPolicy, POLICIES));

  // A malformed address ends the checks here, so that the family checks
  // below do not report the same mistake again.
  let malformed = false;
  for (const [i, address] of clusterIPs.entries()) {
    if (i === 0 && address === NONE) {
      if (clusterIPs.length > 1) {
        malformed = true;
        causes.push(invalidValue('spec.clusterIPs', clusterIPs, "'None' must be the first and only value"));
      }
      continue;
    }
    if (parseIp(address) === undefined) {
      malformed = true;
      causes.push(invalidValue(`spec.clusterIPs[${i}]`, address, 'must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)'));
    }
  }
  if (clusterIPs.length > 2) causes.push(invalidValue('spec.clusterIPs', clusterIPs, 'may only hold up to 2 values'));
  if (malformed) return causes;

  if (clusterIPs.length === 2 && parseIp(clusterIPs[0]!)!.family === parseIp(clusterIPs[1]!)!.family) {
    causes.push(invalidValue('spec.clusterIPs', clusterIPs, 'may specify no more than one IP for each IP family'));
  }
  if (isHeadless(fields)) return causes;
  for (const [i, address] of clusterIPs.entries()) {
    const expected = ipFamilies[i];
    if (expected !== undefined && IP_FAMILIES.includes(expected as IpFamily) && parseIp(address)!.family !== expected) {
      causes.push(invalidValue(`spec.clusterIPs[${i}]`, address, `expected an ${expected} value as indicated by \`ipFamilies[${i}]\``));
    }
  }
  return causes;
}

// On update, SingleStack with unchanged clusterIPs or ipFamilies releases
// the secondary entry. Any other policy must not drop one.
function downgradeCauses(fields: IpFields, old: IpFields): StatusCause[] {
  if (fields.ipFamilyPolicy === 'SingleStack') {
    if (sameList(old.clusterIPs, fields.clusterIPs)) fields.clusterIPs = fields.clusterIPs.slice(0, 1);
    if (sameList(old.ipFamilies, fields.ipFamilies)) fields.ipFamilies = fields.ipFamilies.slice(0, 1);
    return [];
  }

  const causes: StatusCause[] = [];
  if (fields.clusterIPs.length > 0 && fields.clusterIPs.length < old.clusterIPs.length) {
    causes.push(invalidValue('spec.ipFamilyPolicy', fields.ipFamilyPolicy, "must be 'SingleStack' to release the secondary cluster IP"));
  }
  if (fields.ipFamilies.length > 0 && fields.ipFamilies.length < old.ipFamilies.length) {
    causes.push(invalidValue('spec.ipFamilyPolicy', fields.ipFamilyPolicy, "must be 'SingleStack' to release the secondary IP family"));
  }
  return causes;
}

function singleStackCauses(fields: IpFields): StatusCause[] {
  if (fields.ipFamilyPolicy !== 'SingleStack') return [];
  const causes: StatusCause[] = [];
  if (fields.clusterIPs.length === 2) {
    causes.push(invalidValue('spec.ipFamilyPolicy', fields.ipFamilyPolicy, "must be 'RequireDualStack' or 'PreferDualStack' when multiple cluster IPs are specified"));
  }
  if (fields.ipFamilies.length === 2) {
    causes.push(invalidValue('spec.ipFamilyPolicy', fields.ipFamilyPolicy, "must be 'RequireDualStack' or 'PreferDualStack' when multiple IP families are specified"));
  }
  return causes;
}

// Requested addresses without a matching ipFamilies entry add their family.
function inferFamiliesFromClusterIps(fields: IpFields): void {
  for (const [i, address] of fields.clusterIPs.entries()) {
    if (address === NONE) break;
    if (i >= fields.ipFamilies.length) fields.ipFamilies.push(parseIp(address)!.family);
  }
}

// Defaults ipFamilies to the primary family, and adds the other family for
// PreferDualStack and RequireDualStack. Headless Services get families too,
// but no addresses.
function completeFamilies(fields: IpFields): void {
  if (fields.ipFamilies.length === 0) fields.ipFamilies = [PRIMARY_IP_FAMILY];
  if (fields.ipFamilyPolicy !== 'SingleStack' && fields.ipFamilies.length === 1) {
    fields.ipFamilies.push(fields.ipFamilies[0] === 'IPv4' ? 'IPv6' : 'IPv4');
  }
}

// An update may add or release the secondary clusterIP but not change an
// address that stays.
function clusterIpChangeCauses(fields: IpFields, old: IpFields): StatusCause[] {
  if (old.type === 'ExternalName' || (isHeadless(old) && isHeadless(fields))) return [];
  const causes: StatusCause[] = [];
  const commonLength = Math.min(fields.clusterIPs.length, old.clusterIPs.length);
  for (let i = 0; i < commonLength; i++) {
    if (fields.clusterIPs[i] !== old.clusterIPs[i]) causes.push(invalidValue(`spec.clusterIPs[${i}]`, fields.clusterIPs, 'may not change once set'));
  }
  return causes;
}

// An update may add or release the secondary IP family but not change one
// that stays. Headless Services may change families freely.
function familyChangeCauses(fields: IpFields, old: IpFields): StatusCause[] {
  if (old.type === 'ExternalName' || isHeadless(old) || isHeadless(fields)) return [];
  const causes: StatusCause[] = [];
  const commonLength = Math.min(fields.ipFamilies.length, old.ipFamilies.length);
  for (let i = 0; i < commonLength; i++) {
    if (fields.ipFamilies[i] !== old.ipFamilies[i]) causes.push(invalidValue(`spec.ipFamilies[${i}]`, fields.ipFamilies, 'may not change once set'));
  }
  return causes;
}

// Gives every family in ipFamilies its address at the same index in
// clusterIPs. Requested addresses are checked first, so a rejected request
// allocates nothing. Addresses that the stored Service already has are
// kept without checks.
function allocate(fields: IpFields, old: IpFields | undefined, context: DefaultingContext, name: string): void {
  // Validation above made each requested address match its family.
  const oldAddresses = new Set(old?.clusterIPs ?? []);
  const causes: StatusCause[] = [];
  for (const requested of fields.clusterIPs) {
    if (oldAddresses.has(requested)) continue;
    const reason = context.serviceIpRejection?.(parseIp(requested)!);
    if (reason) causes.push(invalidValue('spec.clusterIPs', fields.clusterIPs, `failed to allocate IP ${requested}: ${reason}`));
  }
  throwIfAny(causes, name);

  for (const [i, family] of (fields.ipFamilies as IpFamily[]).entries()) {
    if (fields.clusterIPs[i] === undefined) fields.clusterIPs[i] = context.allocateServiceIp(family);
  }
}

function notSupported(field: string, value: unknown, supported: readonly string[]): StatusCause {
  const allowed = supported.map((item) => JSON.stringify(item)).join(', ');
  return { reason: 'FieldValueNotSupported', message: `Unsupported value: ${JSON.stringify(value)}: supported values: ${allowed}`, field };
}

function sameList(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((item, i) => item === b[i]);
}

function throwIfAny(causes: StatusCause[], name: string): void {
  if (causes.length > 0) throw invalid('Service', '', name, causes);
}
