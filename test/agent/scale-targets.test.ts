import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ApiException } from '@kubernetes/client-node';
import { pino } from 'pino';

import type { TargetRef, TargetScale } from '../../src/agent/ports.js';
import { ScaleTargets } from '../../src/agent/scale-targets.js';

const ROLLOUT: TargetRef = { apiVersion: 'argoproj.io/v1alpha1', kind: 'Rollout', name: 'web' };
const log = pino({ level: 'silent' });

// A scaler whose reads stay pending until the test resolves them, in order.
function controlledScaler() {
  const pending: { answer: (scale: TargetScale | null | Error) => void }[] = [];
  return {
    pending,
    readScale: () =>
      new Promise<TargetScale | null>((resolve, reject) => {
        pending.push({ answer: (scale) => (scale instanceof Error ? reject(scale) : resolve(scale)) });
      }),
  };
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

test('refresh during a read reads again', async () => {
  const scaler = controlledScaler();
  const targets = new ScaleTargets({ scaler, log, onChange: () => {} });

  assert.equal(targets.get('shop', ROLLOUT), undefined, 'unknown before the first read');
  // A scale write lands while the first read is in flight.
  targets.refresh('shop', ROLLOUT);
  scaler.pending[0]!.answer({ replicas: 0, selector: 'app=web' });
  await settle();

  assert.equal(scaler.pending.length, 2, 'a second read follows the first');
  scaler.pending[1]!.answer({ replicas: 1, selector: 'app=web' });
  await settle();
  assert.deepEqual(targets.get('shop', ROLLOUT), { scale: { replicas: 1, selector: 'app=web' } });
});

test('failed first read stays unknown and retries', async () => {
  const scaler = controlledScaler();
  let changes = 0;
  const targets = new ScaleTargets({ scaler, log, onChange: () => changes++ });

  targets.get('shop', ROLLOUT);
  scaler.pending[0]!.answer(new ApiException(504, 'Gateway Timeout', 'etcdserver: request timed out', {}));
  await settle();
  assert.equal(targets.get('shop', ROLLOUT), undefined, 'an API error is no verdict on the target');
  assert.equal(changes, 0);

  await new Promise((resolve) => setTimeout(resolve, 1200));
  assert.equal(scaler.pending.length, 2, 'read again after a second');
  scaler.pending[1]!.answer({ replicas: 2, selector: undefined });
  await settle();
  assert.deepEqual(targets.get('shop', ROLLOUT), { scale: { replicas: 2, selector: undefined } });
  assert.equal(changes, 1);
  targets.stop();
});

test('missing or unservable target is a problem', async () => {
  const scaler = controlledScaler();
  const targets = new ScaleTargets({ scaler, log, onChange: () => {} });
  const other: TargetRef = { ...ROLLOUT, name: 'other' };

  targets.get('shop', ROLLOUT);
  targets.get('shop', other);
  scaler.pending[0]!.answer(null);
  scaler.pending[1]!.answer(new Error('cannot scale Rollout shop/other: kind Rollout not found in argoproj.io/v1alpha1 discovery'));
  await settle();

  assert.deepEqual(targets.get('shop', ROLLOUT), { problem: 'spec.targetRef: Rollout shop/web (argoproj.io/v1alpha1) not found' });
  assert.deepEqual(targets.get('shop', other), { problem: 'spec.targetRef: cannot scale Rollout shop/other: kind Rollout not found in argoproj.io/v1alpha1 discovery' });
});

test('forbidden read is a problem', async () => {
  const scaler = controlledScaler();
  let changes = 0;
  const targets = new ScaleTargets({ scaler, log, onChange: () => changes++ });

  targets.get('shop', ROLLOUT);
  scaler.pending[0]!.answer(new ApiException(403, 'Forbidden', 'rollouts.argoproj.io "web" is forbidden', {}));
  await settle();

  const reading = targets.get('shop', ROLLOUT);
  assert.ok(reading !== undefined);
  assert.ok('problem' in reading, 'a missing RBAC rule makes the workload invalid');
  assert.match(reading.problem, /^spec\.targetRef: the agent may not read the scale of Rollout shop\/web \(argoproj\.io\/v1alpha1\): 403 Forbidden; add get and update/);
  assert.equal(changes, 1);
  targets.stop();
});

test('forbidden after not found replaces it', async () => {
  const scaler = controlledScaler();
  const targets = new ScaleTargets({ scaler, log, onChange: () => {} });

  targets.get('shop', ROLLOUT);
  scaler.pending[0]!.answer(null);
  await settle();
  targets.refresh('shop', ROLLOUT);
  scaler.pending[1]!.answer(new ApiException(403, 'Forbidden', 'rollouts.argoproj.io "web" is forbidden', {}));
  await settle();

  const reading = targets.get('shop', ROLLOUT);
  assert.ok(reading !== undefined);
  assert.ok('problem' in reading);
  assert.match(reading.problem, /403 Forbidden/);
  targets.stop();
});

test('forbidden after a good read keeps it', async () => {
  const scaler = controlledScaler();
  const targets = new ScaleTargets({ scaler, log, onChange: () => {} });

  targets.get('shop', ROLLOUT);
  scaler.pending[0]!.answer({ replicas: 1, selector: 'app=web' });
  await settle();
  targets.refresh('shop', ROLLOUT);
  scaler.pending[1]!.answer(new ApiException(403, 'Forbidden', 'the authorization webhook failed', {}));
  await settle();

  assert.deepEqual(targets.get('shop', ROLLOUT), { scale: { replicas: 1, selector: 'app=web' } });
  targets.stop();
});

test('repeated API error logs once', async () => {
  const scaler = controlledScaler();
  const lines: string[] = [];
  const capture = pino({ level: 'warn' }, { write: (line: string) => lines.push(line) });
  const targets = new ScaleTargets({ scaler, log: capture, onChange: () => {} });

  targets.get('shop', ROLLOUT);
  scaler.pending[0]!.answer(new ApiException(504, 'Gateway Timeout', 'etcdserver: request timed out', {}));
  await settle();
  await new Promise((resolve) => setTimeout(resolve, 1200));
  scaler.pending[1]!.answer(new ApiException(504, 'Gateway Timeout', 'etcdserver: request timed out', {}));
  await settle();
  assert.equal(lines.length, 1, 'the retry with the same error logs nothing');

  await new Promise((resolve) => setTimeout(resolve, 1200));
  scaler.pending[2]!.answer(new ApiException(503, 'Service Unavailable', 'the server is shutting down', {}));
  await settle();
  assert.equal(lines.length, 2, 'a different error logs again');
  targets.stop();
});

test('readAll waits for first reads, up to its timeout', async () => {
  const scaler = controlledScaler();
  const targets = new ScaleTargets({ scaler, log, onChange: () => {} });

  const all = targets.readAll([{ namespace: 'shop', target: ROLLOUT }], 5000);
  await settle();
  scaler.pending[0]!.answer({ replicas: 1, selector: 'app=web' });
  await all;
  assert.deepEqual(targets.get('shop', ROLLOUT), { scale: { replicas: 1, selector: 'app=web' } });

  const started = Date.now();
  await targets.readAll([{ namespace: 'shop', target: { ...ROLLOUT, name: 'slow' } }], 100);
  assert.ok(Date.now() - started < 1000, 'an unanswered read does not hold start() past the timeout');
});
