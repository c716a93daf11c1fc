import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  IDLE_TIMEOUT_ANNOTATION,
  InvalidWorkloadError,
  selectorMatches,
  workloadFromAnnotation,
  workloadFromScaleToZero,
  type ScaleToZero,
} from '../../src/agent/workloads.js';

const TARGET = { apiVersion: 'apps/v1', kind: 'Deployment', name: 'web' };

function stz(spec: ScaleToZero['spec']): ScaleToZero {
  return { apiVersion: 'zerohold.dev/v1alpha1', kind: 'ScaleToZero', metadata: { name: 'web', namespace: 'shop' }, spec };
}

function problemsOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof InvalidWorkloadError, `expected InvalidWorkloadError, got ${err}`);
    return err.problems;
  }
  assert.fail('declaration was accepted');
}

test('ScaleToZero with defaults', () => {
  const w = workloadFromScaleToZero(stz({ targetRef: TARGET, idleTimeout: '15m' }));

  assert.equal(w.key, 'shop/web');
  assert.equal(w.source, 'ScaleToZero');
  assert.deepEqual(w.target, TARGET);
  assert.equal(w.services, null);
  assert.equal(w.idleTimeoutMs, 900_000);
  assert.equal(w.wakeReplicas, 1);
  assert.equal(w.wakeTimeoutMs, 120_000);
  assert.equal(w.heldFlowsPerService, undefined, 'the agent default');
  assert.equal(w.heldFlowsPerClient, undefined, 'the agent default');
  assert.equal(w.checkListening, true);
});

test('ScaleToZero with every field', () => {
  const w = workloadFromScaleToZero(
    stz({
      targetRef: TARGET,
      services: ['web', 'web-admin'],
      idleTimeout: '1h',
      minWarmTime: '5m',
      wakeReplicas: 3,
      wakeTimeout: '30s',
      heldFlowLimits: { perService: 10, perClient: 2 },
      checkListening: false,
    }),
  );

  assert.deepEqual(w.services, ['web', 'web-admin']);
  assert.equal(w.minWarmMs, 300_000);
  assert.equal(w.wakeReplicas, 3);
  assert.equal(w.wakeTimeoutMs, 30_000);
  assert.equal(w.heldFlowsPerService, 10);
  assert.equal(w.heldFlowsPerClient, 2);
  assert.equal(w.checkListening, false);
});

test('ScaleToZero checkListening must be a boolean', () => {
  const spec = { targetRef: TARGET, idleTimeout: '1h', checkListening: 'no' } as unknown as Parameters<typeof stz>[0];

  assert.deepEqual(problemsOf(() => workloadFromScaleToZero(stz(spec))), ['spec.checkListening "no" is invalid, expected true or false']);
});

test('ScaleToZero problems name fields', () => {
  const problems = problemsOf(() => workloadFromScaleToZero(stz({ targetRef: { kind: 'Deployment' }, idleTimeout: 'soon', wakeReplicas: 0 })));

  assert.deepEqual(problems, [
    'spec.targetRef.apiVersion is missing',
    'spec.targetRef.name is missing',
    'spec.idleTimeout "soon" is invalid, expected a Go duration such as "90s" or "15m"',
    'spec.wakeReplicas 0 is invalid, expected an integer of at least 1',
  ]);
});

test('ScaleToZero needs idle timeout', () => {
  assert.deepEqual(problemsOf(() => workloadFromScaleToZero(stz({ targetRef: TARGET }))), ['spec.idleTimeout is missing, expected a duration such as "15m"']);
  assert.deepEqual(problemsOf(() => workloadFromScaleToZero(stz({ targetRef: TARGET, idleTimeout: '0s' }))), [
    'spec.idleTimeout "0s" is invalid, expected a duration above 0, such as "15m"',
  ]);
});

test('ScaleToZero zero idle among problems', () => {
  const problems = problemsOf(() => workloadFromScaleToZero(stz({ targetRef: { kind: 'Deployment' }, idleTimeout: '0ms' })));

  assert.deepEqual(problems, [
    'spec.targetRef.apiVersion is missing',
    'spec.targetRef.name is missing',
    'spec.idleTimeout "0ms" is invalid, expected a duration above 0, such as "15m"',
  ]);
});

test('ScaleToZero rejects zero wake timeout', () => {
  const problems = problemsOf(() => workloadFromScaleToZero(stz({ targetRef: TARGET, idleTimeout: '15m', wakeTimeout: '0s' })));
  assert.deepEqual(problems, ['spec.wakeTimeout "0s" is invalid, expected a duration above 0, such as "2m"']);
});

test('ScaleToZero accepts zero warm time', () => {
  const w = workloadFromScaleToZero(stz({ targetRef: TARGET, idleTimeout: '15m', minWarmTime: '0s' }));
  assert.equal(w.minWarmMs, 0);
});

test('annotation shortcut maps to model', () => {
  const service = { metadata: { name: 'web', namespace: 'shop', annotations: { [IDLE_TIMEOUT_ANNOTATION]: '10m' } }, spec: { selector: { app: 'web' } } };
  const w = workloadFromAnnotation(service, TARGET)!;

  assert.equal(w.key, 'shop/service/web');
  assert.equal(w.source, 'annotation');
  assert.equal(w.services, null, 'every Service that selects the pods');
  assert.equal(w.idleTimeoutMs, 600_000);
});

test('annotation rejects zero idle timeout', () => {
  const service = { metadata: { name: 'web', namespace: 'shop', annotations: { [IDLE_TIMEOUT_ANNOTATION]: '0s' } } };
  const problems = problemsOf(() => workloadFromAnnotation(service, TARGET));
  assert.deepEqual(problems, ['annotation zerohold.dev/idle-timeout "0s" is invalid, expected a duration above 0, such as "15m"']);
});

test('annotation absent means not opted in', () => {
  assert.equal(workloadFromAnnotation({ metadata: { name: 'web' } }, TARGET), null);
});

test('annotation without one target', () => {
  const service = { metadata: { name: 'web', namespace: 'shop', annotations: { [IDLE_TIMEOUT_ANNOTATION]: '10m' } } };
  const [problem] = problemsOf(() => workloadFromAnnotation(service, null));
  assert.match(problem!, /no single Deployment or StatefulSet matches/);
});

test('selector matching', () => {
  assert.equal(selectorMatches({ app: 'web' }, { app: 'web', tier: 'front' }), true);
  assert.equal(selectorMatches({ app: 'web', tier: 'back' }, { app: 'web', tier: 'front' }), false);
  assert.equal(selectorMatches({}, { app: 'web' }), false);
  assert.equal(selectorMatches(undefined, { app: 'web' }), false);
});
