import assert from 'node:assert/strict';
import { test } from 'node:test';

import { create } from '@bufbuild/protobuf';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';

import { FlowCursor, flowKey } from '../../src/hubble/flow-cursor.js';
import { FlowSchema } from '../../src/hubble/gen/flow/flow_pb.js';

const at = (seconds: number, nanos = 0) => ({ ...timestampFromMs(seconds * 1000), nanos });

test('cursor drops repeat at latest time', () => {
  const cursor = new FlowCursor();
  cursor.advance(at(10), 'a');
  cursor.advance(at(10), 'b');

  assert.equal(cursor.advance(at(10), 'a'), false);
  assert.equal(cursor.advance(at(10), 'b'), false);
  assert.equal(cursor.advance(at(10), 'c'), true);
});

test('cursor forgets keys of older times', () => {
  const cursor = new FlowCursor();
  cursor.advance(at(10), 'a');

  cursor.advance(at(10, 5), 'b');

  assert.equal(cursor.advance(at(10, 5), 'a'), true);
});

test('cursor delivers late flow', () => {
  const cursor = new FlowCursor();
  cursor.advance(at(10), 'a');

  assert.equal(cursor.advance(at(9), 'late'), true);
  assert.deepEqual(cursor.since(), at(10));
});

test('cursor since starts at initial', () => {
  const cursor = new FlowCursor(at(5));

  assert.deepEqual(cursor.since(), at(5));
  cursor.advance(at(7, 42), 'a');
  assert.deepEqual(cursor.since(), at(7, 42));
});

test('cursor delivers flow without time', () => {
  const cursor = new FlowCursor();

  assert.equal(cursor.advance(undefined, 'a'), true);
  assert.equal(cursor.advance(undefined, 'a'), true);
  assert.equal(cursor.since(), undefined);
});

test('flow key prefers uuid', () => {
  const withUuid = create(FlowSchema, { uuid: 'u-1', nodeName: 'n' });
  const first = create(FlowSchema, { nodeName: 'n', IP: { source: '198.18.0.1', destination: '198.19.0.1' } });
  const second = create(FlowSchema, { nodeName: 'n', IP: { source: '198.18.0.2', destination: '198.19.0.1' } });

  assert.equal(flowKey(withUuid), 'u-1');
  assert.notEqual(flowKey(first), flowKey(second));
});

test('cursor resumes no later than now', () => {
  const cursor = new FlowCursor(undefined, () => 50_000);
  cursor.advance(at(600), 'ahead');

  assert.deepEqual(cursor.since(), timestampFromMs(50_000));
  assert.equal(cursor.advance(at(600), 'ahead'), false, 'the flow from the future, sent again');
  assert.equal(cursor.advance(at(40), 'on-time'), true);
});

test('cursor floor bounds the resume', () => {
  const cursor = new FlowCursor(at(5), () => 50_000);
  cursor.raiseFloor(20_000);
  assert.deepEqual(cursor.since(), timestampFromMs(20_000));

  cursor.advance(at(30), 'a');
  assert.deepEqual(cursor.since(), at(30));
  cursor.raiseFloor(10_000);
  assert.deepEqual(cursor.since(), at(30), 'a lower floor changes nothing');
});
