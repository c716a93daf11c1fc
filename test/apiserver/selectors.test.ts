import assert from 'node:assert/strict';
import { test } from 'node:test';

import { METADATA_FIELDS, matchesFields, parseFieldSelector } from './field-selector.js';
import { formatRequirements, matchesLabels, parseLabelSelector, requirementsFromSelectorObject } from './label-selector.js';
import type { KubeObject } from './objects.js';

test('label selector matching table', () => {
  const labels = { app: 'web', tier: 'front', replicas: '3' };
  const cases: Array<[selector: string, want: boolean]> = [
    ['', true],
    ['app=web', true],
    ['app==web', true],
    ['app!=web', false],
    ['missing!=x', true],
    ['app in (web,api)', true],
    ['app notin (web)', false],
    ['missing notin (x)', true],
    ['tier', true],
    ['!tier', false],
    ['!missing', true],
    ['replicas>2', true],
    ['replicas<3', false],
    ['app=web, tier in (front, back)', true],
    ['app=web,tier=back', false],
  ];
  for (const [selector, want] of cases) {
    assert.equal(matchesLabels(parseLabelSelector(selector), labels), want, `selector "${selector}"`);
  }
});

test('label selector rejects bad syntax', () => {
  for (const selector of ['app=(x)', 'a b', 'app in x', '=web']) {
    assert.throws(() => parseLabelSelector(selector), { code: 400 }, `selector "${selector}"`);
  }
});

test('selector object formats like labels.Selector', () => {
  const requirements = requirementsFromSelectorObject({
    matchLabels: { app: 'web' },
    matchExpressions: [
      { key: 'tier', operator: 'In', values: ['front', 'api'] },
      { key: 'canary', operator: 'DoesNotExist' },
    ],
  });
  assert.equal(formatRequirements(requirements!), 'app=web,!canary,tier in (api,front)', 'sorted by key, values sorted');
  assert.deepEqual(requirementsFromSelectorObject({}), [], 'empty selector selects everything');
  assert.equal(requirementsFromSelectorObject(undefined), undefined, 'missing selector selects nothing');
});

test('field selector on metadata', () => {
  const object: KubeObject = { metadata: { name: 'web', namespace: 'prod' } };
  const match = (text: string) => matchesFields(parseFieldSelector(text, METADATA_FIELDS), METADATA_FIELDS, object);
  assert.equal(match('metadata.name=web'), true);
  assert.equal(match('metadata.name==web,metadata.namespace=prod'), true);
  assert.equal(match('metadata.name!=web'), false);
  assert.throws(() => parseFieldSelector('spec.nodeName=a', METADATA_FIELDS), { code: 400, message: 'field label not supported: spec.nodeName' });
  assert.throws(() => parseFieldSelector('nonsense', METADATA_FIELDS), { code: 400 });
});
