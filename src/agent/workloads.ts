// The workloads that opted in, in one internal model whatever declared
// them: a ScaleToZero object, or the zerohold.dev/idle-timeout annotation
// on a Service as a shortcut. Invalid declarations become an error that
// names the field and the fix, and are never scaled.

import type { KubernetesObject, V1Service } from '@kubernetes/client-node';

import { parseDuration } from './duration.js';
import type { TargetRef, WorkloadKey } from './ports.js';

export const IDLE_TIMEOUT_ANNOTATION = 'zerohold.dev/idle-timeout';

// The key of a workload declared by the annotation on a Service. It
// differs from a ScaleToZero's "namespace/name", so the two never collide.
export function annotationWorkloadKey(namespace: string, service: string): WorkloadKey {
  return `${namespace}/service/${service}`;
}

export interface WorkloadSpec {
  key: WorkloadKey;
  namespace: string;
  source: 'ScaleToZero' | 'annotation';
  target: TargetRef;
  // Services by name; null means every Service whose selector matches the
  // target's pod labels.
  services: string[] | null;
  idleTimeoutMs: number;
  minWarmMs: number;
  wakeReplicas: number;
  wakeTimeoutMs: number;
  // Bounds on held flows from spec.heldFlowLimits. Undefined: the agent's
  // limits.heldFlowsPerService and limits.heldFlowsPerClient.
  heldFlowsPerService: number | undefined;
  heldFlowsPerClient: number | undefined;
  // spec.checkListening: false skips the check, before a release, that
  // the backends listen, for this workload only.
  checkListening: boolean;
}

export interface ScaleToZero extends KubernetesObject {
  spec?: {
    targetRef?: Partial<TargetRef>;
    services?: string[];
    idleTimeout?: string;
    minWarmTime?: string;
    wakeReplicas?: number;
    wakeTimeout?: string;
    heldFlowLimits?: { perService?: number; perClient?: number };
    checkListening?: boolean;
  };
}

export class InvalidWorkloadError extends Error {
  constructor(
    readonly key: WorkloadKey,
    readonly problems: string[],
  ) {
    super(`invalid zerohold configuration for ${key}: ${problems.join('; ')}`);
    this.name = 'InvalidWorkloadError';
  }
}

const DEFAULTS = {
  minWarmMs: 0,
  wakeReplicas: 1,
  wakeTimeoutMs: 120_000,
  heldFlowsPerService: undefined,
  heldFlowsPerClient: undefined,
  checkListening: true,
};

interface DurationRule {
  // The value in milliseconds when the field is unset. Without it the
  // field is required.
  fallback?: number;
  // The example in the message that rejects 0. Unset: 0 is valid.
  aboveZeroExample?: string;
}

// Parses a duration field into milliseconds. It records a problem, and
// returns 0, when the value is missing without a fallback, is not a Go
// duration, or is 0 where the rule needs more. These durations are compared
// with elapsed times and never become timers, so they have no upper bound.
function durationField(problems: string[], field: string, value: string | undefined, rule: DurationRule = {}): number {
  if (value === undefined) {
    if (rule.fallback !== undefined) return rule.fallback;
    problems.push(`${field} is missing, expected a duration such as "15m"`);
    return 0;
  }
  const ms = parseDuration(value);
  if (ms === null) {
    problems.push(`${field} ${JSON.stringify(value)} is invalid, expected a Go duration such as "90s" or "15m"`);
    return 0;
  }
  if (ms === 0 && rule.aboveZeroExample !== undefined) {
    problems.push(`${field} ${JSON.stringify(value)} is invalid, expected a duration above 0, such as "${rule.aboveZeroExample}"`);
  }
  return ms;
}

function positiveInteger<T extends number | undefined>(problems: string[], field: string, value: number | undefined, fallback: T): number | T {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < 1) {
    problems.push(`${field} ${JSON.stringify(value)} is invalid, expected an integer of at least 1`);
    return fallback;
  }
  return value;
}

// Validates a ScaleToZero. The API server applies the CRD schema too, but
// the agent checks again: a CRD installed without validation, or an older
// one, must not lead to a wrong scale.
export function workloadFromScaleToZero(object: ScaleToZero): WorkloadSpec {
  const namespace = object.metadata?.namespace ?? 'default';
  const key = `${namespace}/${object.metadata?.name ?? ''}`;
  const spec = object.spec ?? {};
  const problems: string[] = [];

  const ref = spec.targetRef ?? {};
  for (const field of ['apiVersion', 'kind', 'name'] as const) {
    if (!ref[field]) problems.push(`spec.targetRef.${field} is missing`);
  }
  if (spec.services !== undefined && (!Array.isArray(spec.services) || spec.services.some((s) => typeof s !== 'string' || !s))) {
    problems.push('spec.services is invalid, expected a list of Service names');
  }

  const workload: WorkloadSpec = {
    key,
    namespace,
    source: 'ScaleToZero',
    target: { apiVersion: ref.apiVersion ?? '', kind: ref.kind ?? '', name: ref.name ?? '' },
    services: spec.services?.length ? [...spec.services] : null,
    idleTimeoutMs: durationField(problems, 'spec.idleTimeout', spec.idleTimeout, { aboveZeroExample: '15m' }),
    minWarmMs: durationField(problems, 'spec.minWarmTime', spec.minWarmTime, { fallback: DEFAULTS.minWarmMs }),
    wakeReplicas: positiveInteger(problems, 'spec.wakeReplicas', spec.wakeReplicas, DEFAULTS.wakeReplicas),
    // At 0 every wake would drop its held flows at once.
    wakeTimeoutMs: durationField(problems, 'spec.wakeTimeout', spec.wakeTimeout, { fallback: DEFAULTS.wakeTimeoutMs, aboveZeroExample: '2m' }),
    heldFlowsPerService: positiveInteger(problems, 'spec.heldFlowLimits.perService', spec.heldFlowLimits?.perService, DEFAULTS.heldFlowsPerService),
    heldFlowsPerClient: positiveInteger(problems, 'spec.heldFlowLimits.perClient', spec.heldFlowLimits?.perClient, DEFAULTS.heldFlowsPerClient),
    checkListening: spec.checkListening ?? DEFAULTS.checkListening,
  };
  if (typeof workload.checkListening !== 'boolean') {
    problems.push(`spec.checkListening ${JSON.stringify(spec.checkListening)} is invalid, expected true or false`);
  }
  if (problems.length > 0) throw new InvalidWorkloadError(key, problems);
  return workload;
}

// Reads the annotation shortcut of a Service. The target is the one
// workload whose pod template labels the Service's selector matches. The
// caller finds it and passes null when there is none or several. Every
// Service that selects the target's pods belongs to the workload, as with
// a ScaleToZero without spec.services, so that traffic through another
// Service keeps it warm and wakes it too.
export function workloadFromAnnotation(service: V1Service, target: TargetRef | null): WorkloadSpec | null {
  const value = service.metadata?.annotations?.[IDLE_TIMEOUT_ANNOTATION];
  if (value === undefined) return null;

  const namespace = service.metadata?.namespace ?? 'default';
  const key = annotationWorkloadKey(namespace, service.metadata?.name ?? '');
  const problems: string[] = [];
  const idleTimeoutMs = durationField(problems, `annotation ${IDLE_TIMEOUT_ANNOTATION}`, value, { aboveZeroExample: '15m' });
  if (!target) {
    problems.push('no single Deployment or StatefulSet matches the Service selector, so there is no workload to scale; use a ScaleToZero with targetRef instead');
  }
  if (problems.length > 0) throw new InvalidWorkloadError(key, problems);

  return {
    key,
    namespace,
    source: 'annotation',
    target: target!,
    services: null,
    idleTimeoutMs,
    ...DEFAULTS,
  };
}

// Tells whether a Service selector selects pods with these labels. An
// empty or missing selector selects nothing, because Kubernetes leaves the
// endpoints of such a Service to another controller or to a person.
export function selectorMatches(selector: Record<string, string> | undefined, labels: Record<string, string> | undefined): boolean {
  const entries = Object.entries(selector ?? {});
  if (entries.length === 0) return false;
  return entries.every(([k, v]) => labels?.[k] === v);
}
