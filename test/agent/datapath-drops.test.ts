import assert from 'node:assert/strict';
import { test } from 'node:test';

import { DatapathDrops } from '../../src/agent/datapath-drops.js';
import { SERVICE_STAT_FIELDS } from '../../src/datapath/layout.js';
import type { ServiceCounters } from '../../src/datapath/services.js';
import { captureLog } from '../hubble/log-capture.js';

function counters(values: Partial<ServiceCounters>): ServiceCounters {
  return { ...(Object.fromEntries(SERVICE_STAT_FIELDS.map((field) => [field, 0n])) as ServiceCounters), ...values };
}

test('drops log growth per reason', () => {
  const { logger: log, records: lines } = captureLog('warn');
  let now = new Map([['shop/web', counters({ ringbuf_full: 5n, held_frames: 9n })]]);
  const drops = new DatapathDrops({ log, counters: () => now, intervalMs: 60_000 });

  drops.start();
  drops.check();
  assert.equal(lines.length, 0, 'drops from before the start are the baseline');

  // A workload that appears later starts from its counters then, which
  // an id reused from another workload may carry.
  now = new Map([
    ['shop/web', counters({ ringbuf_full: 5n, held_frames: 9n })],
    ['shop/db', counters({ wake_lost: 7n })],
  ]);
  drops.check();
  assert.equal(lines.length, 0, 'a new workload logs nothing at first');

  now = new Map([
    ['shop/web', counters({ ringbuf_full: 8n, fragments: 1n, held_frames: 20n })],
    ['shop/db', counters({ wake_lost: 9n, too_large: 4n })],
  ]);
  drops.check();

  const logged = lines.map((line) => `${line.workload} ${line.reason} ${line.dropped}`).sort();
  assert.deepEqual(logged, ['shop/db too-large 4', 'shop/db wake-lost 2', 'shop/web fragment 1', 'shop/web ring-full 3']);
  assert.match(String(lines.find((line) => line.reason === 'ring-full')!.msg), /bpf\.heldRingBytes/);
  assert.match(String(lines.find((line) => line.reason === 'wake-lost')!.msg), /bpf\.wakeRingBytes/);

  drops.check();
  assert.equal(lines.length, 4, 'unchanged counters log nothing');
  drops.stop();
});

test('drops count a fresh id from zero', () => {
  const { logger: log, records: lines } = captureLog('warn');
  let now = new Map([['shop/web', counters({ too_large: 10n })]]);
  const drops = new DatapathDrops({ log, counters: () => now, intervalMs: 60_000 });
  drops.start();

  now = new Map([['shop/web', counters({ too_large: 2n })]]);
  drops.stop();

  assert.equal(lines.length, 1);
  assert.equal(lines[0]!.dropped, 2);
});

test('drops survive a failed read', () => {
  const { logger: log, records: lines } = captureLog('warn');
  let fail = false;
  const drops = new DatapathDrops({
    log,
    counters: () => {
      if (fail) throw new Error('map gone');
      return new Map([['shop/web', counters({})]]);
    },
    intervalMs: 60_000,
  });
  drops.start();

  fail = true;
  drops.check();

  assert.equal(lines.length, 1);
  assert.match(String(lines[0]!.msg), /reading the datapath counters failed/);
  drops.stop();
});

test('start reports openers passed without agent', () => {
  const { logger: log, records: lines } = captureLog('info');
  const now = new Map([
    ['shop/web', counters({ no_agent: 3n, ringbuf_full: 5n })],
    ['shop/db', counters({})],
  ]);
  const drops = new DatapathDrops({ log, counters: () => now, intervalMs: 60_000 });

  drops.start();
  drops.stop();

  assert.deepEqual(
    lines.map((line) => `${line.workload} ${line.reason} ${line.passed}`),
    ['shop/web no-agent 3'],
  );
});
