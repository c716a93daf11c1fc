import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Backoff } from '../../src/hubble/backoff.js';

test('backoff grows to maximum', () => {
  const backoff = new Backoff({ initialMs: 100, maxMs: 1000, multiplier: 2, jitter: 0 });

  const delays = Array.from({ length: 6 }, () => backoff.next());

  assert.deepEqual(delays, [100, 200, 400, 800, 1000, 1000]);
});

test('backoff jitter stays in range', () => {
  const low = new Backoff({ initialMs: 1000, maxMs: 10_000, multiplier: 2, jitter: 0.2 }, () => 0);
  const high = new Backoff({ initialMs: 1000, maxMs: 10_000, multiplier: 2, jitter: 0.2 }, () => 0.999_999);

  assert.equal(low.next(), 800);
  assert.equal(high.next(), 1200);
});

test('backoff jitter never exceeds maximum', () => {
  const backoff = new Backoff({ initialMs: 1000, maxMs: 1000, multiplier: 2, jitter: 0.5 }, () => 0.999_999);

  assert.equal(backoff.next(), 1000);
});

test('backoff reset starts over', () => {
  const backoff = new Backoff({ initialMs: 100, maxMs: 1000, multiplier: 2, jitter: 0 });
  backoff.next();
  backoff.next();

  backoff.reset();

  assert.equal(backoff.next(), 100);
});

test('backoff rejects invalid options', () => {
  assert.throws(() => new Backoff({ initialMs: 0 }), /invalid backoff: expected 0 < initialMs <= maxMs/);
  assert.throws(() => new Backoff({ initialMs: 100, maxMs: 50 }), /invalid backoff/);
  assert.throws(() => new Backoff({ multiplier: 0.5 }), /invalid backoff multiplier 0.5/);
  assert.throws(() => new Backoff({ jitter: 2 }), /invalid backoff jitter 2/);
});
