// docs/configuration.md against the code it documents. Every field of the
// agent's schema and of the ScaleToZero spec has one row, and no row names
// a field that does not exist. Each default that the page states is the
// one the agent applies.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';

import { type AgentConfig, agentConfigSchema, validateConfig } from '../../src/agent/config.js';
import { type ScaleToZero, workloadFromScaleToZero } from '../../src/agent/workloads.js';
import { repoRoot } from '../../src/paths.js';

interface Row {
  field: string;
  defaultText: string;
}

const page = readFileSync(path.join(repoRoot, 'docs/configuration.md'), 'utf8');

// The rows of the table under a "## " heading, with the field's backticks
// taken off.
function tableRows(heading: string): Row[] {
  const section = page.split(/^## /m).find((part) => part.startsWith(`${heading}\n`));
  assert.ok(section, `docs/configuration.md has no "## ${heading}" section`);

  return section
    .split('\n')
    .filter((line) => /^\| `/.test(line))
    .map((line) => {
      const [field, defaultText] = line.split('|').slice(1, 3).map((cell) => cell.trim());
      return { field: field!.replace(/`/g, ''), defaultText: defaultText! };
    });
}

// The schema's field paths, with wrappers such as defaults taken off.
// The elements of an array of objects appear as "name[].field".
function schemaFields(schema: z.ZodType, prefix: string): string[] {
  const def = schema._zod.def as unknown as { type: string; innerType?: z.ZodType; in?: z.ZodType; shape?: Record<string, z.ZodType>; element?: z.ZodType };
  if (def.innerType) return schemaFields(def.innerType, prefix);
  if (def.type === 'pipe') return schemaFields(def.in!, prefix);
  if (def.type === 'object') {
    return Object.entries(def.shape!).flatMap(([key, field]) => schemaFields(field, prefix ? `${prefix}.${key}` : key));
  }
  if (def.type === 'array') {
    const element = schemaFields(def.element!, `${prefix}[]`);
    return element[0] === `${prefix}[]` ? [prefix] : [prefix, ...element];
  }
  return [prefix];
}

// The value at a field path, where "[]" stands for the first element.
function fieldAt(object: unknown, field: string): unknown {
  return field.split('.').reduce<unknown>((value, key) => {
    if (value === undefined) return undefined;
    const record = value as Record<string, unknown>;
    return key.endsWith('[]') ? (record[key.slice(0, -2)] as unknown[] | undefined)?.[0] : record[key];
  }, object);
}

// A copy of the document with the field at the path set.
function withField(document: Record<string, unknown>, field: string, value: unknown): Record<string, unknown> {
  const copy = structuredClone(document);
  const keys = field.split('.');
  let target = copy as Record<string, unknown>;
  for (const key of keys.slice(0, -1)) {
    if (key.endsWith('[]')) {
      target = (target[key.slice(0, -2)] as Record<string, unknown>[])[0]!;
    } else {
      target[key] ??= {};
      target = target[key] as Record<string, unknown>;
    }
  }
  target[keys.at(-1)!] = value;
  return copy;
}

// A standalone configuration with one interface, so that its elements'
// defaults are filled in too.
const BASE = { interfaces: [{ name: 'eth0' }] };

test('configuration page lists every agent field', () => {
  const documented = tableRows('The agent').map((row) => row.field);

  assert.deepEqual([...documented].sort(), schemaFields(agentConfigSchema, '').sort());
  assert.equal(new Set(documented).size, documented.length, 'no field has two rows');
});

test('configuration page states agent defaults', () => {
  const defaults: AgentConfig = validateConfig(BASE);
  const rows = tableRows('The agent');

  for (const { field, defaultText } of rows) {
    if (field === 'interfaces') {
      assert.deepEqual(parseYaml(defaultText.replace(/`/g, '')), validateConfig({ mode: 'signal' }).interfaces);
      continue;
    }
    if (defaultText === 'no default') continue;
    if (defaultText.startsWith('unset')) {
      assert.equal(fieldAt(defaults, field), undefined, `${field} is documented as unset by default`);
      continue;
    }

    const literal = /^`([^`]+)`$/.exec(defaultText);
    assert.ok(literal, `${field}: the default "${defaultText}" is neither a value in backticks nor "unset"`);
    const written = validateConfig(withField(BASE, field, parseYaml(literal[1]!)));
    assert.deepEqual(fieldAt(written, field), fieldAt(defaults, field), `${field}: documented default ${literal[1]}`);
  }
});

test('configuration page lists every ScaleToZero field', () => {
  const crd = parseYaml(readFileSync(path.join(repoRoot, 'deploy/crds/scaletozero.yaml'), 'utf8'));
  const spec = crd.spec.versions[0].schema.openAPIV3Schema.properties.spec;

  // targetRef is documented as one field, the other objects field by field.
  const fields = (schema: { properties?: Record<string, unknown> }, prefix: string): string[] =>
    Object.entries(schema.properties ?? {}).flatMap(([key, property]) => {
      const name = `${prefix}.${key}`;
      const nested = property as { properties?: Record<string, unknown> };
      return nested.properties && key !== 'targetRef' ? fields(nested, name) : [name];
    });

  const documented = tableRows('A workload').map((row) => row.field);
  assert.deepEqual([...documented].sort(), fields(spec, 'spec').sort());
});

test('configuration page states ScaleToZero defaults', () => {
  const minimal: ScaleToZero = {
    metadata: { name: 'web', namespace: 'shop' },
    spec: { targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'web' }, idleTimeout: '15m' },
  };
  const defaults = workloadFromScaleToZero(minimal);

  // A field set to its documented default gives the workload that leaving
  // it out gives.
  let checked = 0;
  for (const { field, defaultText } of tableRows('A workload')) {
    const literal = /^`([^`]+)`$/.exec(defaultText);
    if (!literal) continue;
    const written = workloadFromScaleToZero(withField(minimal as Record<string, unknown>, field, parseYaml(literal[1]!)) as ScaleToZero);
    assert.deepEqual(written, defaults, `${field}: documented default ${literal[1]}`);
    checked += 1;
  }
  assert.equal(checked, 4, 'minWarmTime, wakeReplicas, wakeTimeout and checkListening have stated defaults');
});
