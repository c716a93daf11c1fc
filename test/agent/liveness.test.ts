import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Liveness } from '../../src/agent/liveness.js';
import { NO_DEADLINE } from '../../src/datapath/datapath.js';
import { captureLog } from '../hubble/log-capture.js';

test('renewals move the deadline ahead', async () => {
  const { logger: log } = captureLog('info');
  const deadlines: bigint[] = [];
  const liveness = new Liveness({ setLivenessDeadline: (ns) => deadlines.push(ns) }, 1000, log);

  const before = process.hrtime.bigint();
  liveness.start();
  // Four renewals a second for a 1 s deadline.
  await new Promise((resolve) => setTimeout(resolve, 600));
  liveness.stop();

  assert.ok(deadlines.length >= 2, `${deadlines.length} renewals in 600 ms`);
  assert.ok(deadlines[0]! >= before + 1_000_000_000n, 'the first deadline lies 1 s ahead');
  assert.ok(deadlines.at(-1)! > deadlines[0]!, 'later renewals move it on');
});

test('no deadline when off', () => {
  const { logger: log } = captureLog('info');
  const deadlines: bigint[] = [];
  const liveness = new Liveness({ setLivenessDeadline: (ns) => deadlines.push(ns) }, 0, log);

  liveness.start();
  liveness.stop();

  assert.deepEqual(deadlines, [NO_DEADLINE]);
});

test('hand-over sets the end once', () => {
  const { logger: log } = captureLog('info');
  const deadlines: bigint[] = [];
  const liveness = new Liveness({ setLivenessDeadline: (ns) => deadlines.push(ns) }, 10_000, log);
  liveness.start();

  const before = process.hrtime.bigint();
  liveness.handOver(30_000);

  assert.equal(deadlines.length, 2);
  const end = deadlines[1]! - before;
  assert.ok(end >= 30_000_000_000n, `hand-over ends ${end} ns ahead`);
  assert.ok(end < 31_000_000_000n, `hand-over ends ${end} ns ahead`);
});

test('failed renewals log sparingly', async () => {
  const { logger: log, records: lines } = captureLog('error');
  let calls = 0;
  const liveness = new Liveness(
    {
      setLivenessDeadline: () => {
        calls += 1;
        throw new Error('map update failed');
      },
    },
    1000,
    log,
  );

  liveness.start();
  await new Promise((resolve) => setTimeout(resolve, 600));
  liveness.stop();

  assert.ok(calls >= 2, `${calls} renewals`);
  assert.equal(lines.length, 1, 'one line until the 60th failure');
  assert.equal(lines[0]!.failures, 1);
});

test('recovered renewal is logged', async () => {
  const { logger: log, records: lines } = captureLog('info');
  let failing = true;
  const liveness = new Liveness(
    {
      setLivenessDeadline: () => {
        if (failing) throw new Error('map update failed');
      },
    },
    1000,
    log,
  );

  liveness.start();
  failing = false;
  await new Promise((resolve) => setTimeout(resolve, 350));
  liveness.stop();

  assert.deepEqual(
    lines.map((line) => line.msg),
    ['renewing the datapath deadline failed; past liveness.failOpenAfter the datapath stops holding', 'renewing the datapath deadline works again'],
  );
});
