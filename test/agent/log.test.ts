import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';

import { componentLogger, createLogger, parseLogLevel } from '../../src/agent/log.js';

test('component logs carry fields', async () => {
  const sink = new PassThrough();
  const lines: string[] = [];
  sink.on('data', (chunk: Buffer) => lines.push(...chunk.toString().trim().split('\n')));

  const log = componentLogger(createLogger('info', 'node-1', sink), 'controller');
  log.info({ workload: 'shop/web' }, 'Cold -> Waking');
  log.debug('hidden at info');
  await new Promise((resolve) => setImmediate(resolve));

  assert.equal(lines.length, 1);
  const record = JSON.parse(lines[0]!);
  assert.equal(record.component, 'controller');
  assert.equal(record.node, 'node-1');
  assert.equal(record.workload, 'shop/web');
  assert.equal(record.msg, 'Cold -> Waking');
  assert.match(record.time, /^\d{4}-\d{2}-\d{2}T/);
});

test('log level is validated', () => {
  assert.equal(parseLogLevel(undefined), 'info');
  assert.equal(parseLogLevel('debug'), 'debug');
  assert.throws(() => parseLogLevel('verbose'), {
    message: 'invalid ZEROHOLD_LOG_LEVEL "verbose": expected one of fatal, error, warn, info, debug, trace, silent, or unset for info',
  });
});

test('log level names its variable', () => {
  assert.throws(() => parseLogLevel('loud', 'warn', 'TEST_LOG_LEVEL'), {
    message: 'invalid TEST_LOG_LEVEL "loud": expected one of fatal, error, warn, info, debug, trace, silent, or unset for warn',
  });
});
