// Validation rules that kube-apiserver enforces in code for some built-in
// kinds, beyond what their OpenAPI schemas can express.

import { formatRequirements, matchesLabels, requirementsFromSelectorObject } from './label-selector.js';
import { getPath, isPlainObject, type KubeObject } from './objects.js';
import type { StatusCause } from './status.js';
import { invalidValue } from './validation.js';

// Deployments and StatefulSets: a non-empty selector that matches the pod
// template's labels, and a non-negative replica count.
export function workloadCauses(object: KubeObject): StatusCause[] {
  const causes: StatusCause[] = [];
  const spec = isPlainObject(object.spec) ? object.spec : {};

  const requirements = requirementsFromSelectorObject(spec.selector);
  if (requirements && requirements.length === 0) {
    causes.push(invalidValue('spec.selector', spec.selector, `empty selector is invalid for ${object.kind?.toLowerCase()}`));
  }
  const templateLabels = getPath(spec, 'template.metadata.labels') as Record<string, string> | undefined;
  if (requirements && requirements.length > 0 && !matchesLabels(requirements, templateLabels)) {
    causes.push(invalidValue('spec.template.metadata.labels', templateLabels ?? {}, '`selector` does not match template `labels`'));
  }

  if (typeof spec.replicas === 'number' && spec.replicas < 0) {
    causes.push(invalidValue('spec.replicas', spec.replicas, 'must be greater than or equal to 0'));
  }
  return causes;
}

// The Scale status.selector of a Deployment or StatefulSet: its
// spec.selector in string form.
export function workloadSelector(object: KubeObject): string | undefined {
  const requirements = requirementsFromSelectorObject(getPath(object, 'spec.selector'));
  return requirements ? formatRequirements(requirements) : undefined;
}

// CustomResourceDefinitions: the name must be "<plural>.<group>", the group
// must contain a dot, and exactly one version is the storage version.
export function crdCauses(object: KubeObject): StatusCause[] {
  const causes: StatusCause[] = [];
  const spec = isPlainObject(object.spec) ? object.spec : {};
  const group = String(spec.group ?? '');
  const plural = String(getPath(spec, 'names.plural') ?? '');

  if (object.metadata.name !== `${plural}.${group}`) {
    causes.push(invalidValue('metadata.name', object.metadata.name, 'must be spec.names.plural+"."+spec.group'));
  }
  if (!group.includes('.')) {
    causes.push(invalidValue('spec.group', group, 'should be a domain with at least one dot'));
  }

  const versions = Array.isArray(spec.versions) ? spec.versions.filter(isPlainObject) : [];
  const storageCount = versions.filter((version) => version.storage === true).length;
  if (storageCount !== 1) {
    causes.push(invalidValue('spec.versions', versions.map((version) => version.name), 'must have exactly one version marked as storage version'));
  }
  return causes;
}

// Fills the CRD names that kube-apiserver defaults: singular and listKind.
export function defaultCrd(object: KubeObject): void {
  const spec = isPlainObject(object.spec) ? object.spec : undefined;
  const names = spec && isPlainObject(spec.names) ? spec.names : undefined;
  if (!spec || !names) return;
  if (!names.singular && typeof names.kind === 'string') names.singular = names.kind.toLowerCase();
  if (!names.listKind && typeof names.kind === 'string') names.listKind = `${names.kind}List`;
  if (!isPlainObject(spec.conversion)) spec.conversion = { strategy: 'None' };
}

// A new CRD is reported established at once. kube-apiserver's controllers
// set these conditions a moment after the create instead.
export function initialCrdStatus(object: KubeObject): unknown {
  const spec = isPlainObject(object.spec) ? object.spec : {};
  const versions = Array.isArray(spec.versions) ? spec.versions.filter(isPlainObject) : [];
  const storage = versions.find((version) => version.storage === true);
  const now = object.metadata.creationTimestamp;
  return {
    conditions: [
      { type: 'NamesAccepted', status: 'True', lastTransitionTime: now, reason: 'NoConflicts', message: 'no conflicts found' },
      { type: 'Established', status: 'True', lastTransitionTime: now, reason: 'InitialNamesAccepted', message: 'the initial names have been accepted' },
    ],
    acceptedNames: spec.names ?? {},
    storedVersions: storage ? [storage.name] : [],
  };
}
