// Label selectors in the string form of the labelSelector query parameter
// and the metav1.LabelSelector object form, with the matching rules of
// k8s.io/apimachinery/pkg/labels: "!=" and "notin" also match objects that
// lack the key.

import { compareStrings, isPlainObject } from './objects.js';
import { badRequest } from './status.js';

export type Operator = 'Exists' | 'DoesNotExist' | 'Equals' | 'NotEquals' | 'In' | 'NotIn' | 'GreaterThan' | 'LessThan';

export interface Requirement {
  key: string;
  operator: Operator;
  values: string[];
}

const KEY = String.raw`[A-Za-z0-9][-A-Za-z0-9_./]*`;
const VALUE = String.raw`[-A-Za-z0-9_.]*`;
const EXISTS = new RegExp(`^(${KEY})$`);
const NOT_EXISTS = new RegExp(String.raw`^!\s*(${KEY})$`);
const EQUALITY = new RegExp(String.raw`^(${KEY})\s*(==|=|!=)\s*(${VALUE})$`);
const SET = new RegExp(String.raw`^(${KEY})\s+(in|notin)\s*\(([^()]*)\)$`);
const ORDER = new RegExp(String.raw`^(${KEY})\s*([<>])\s*(-?\d+)$`);

// Parses the labelSelector query parameter; an empty string selects everything.
export function parseLabelSelector(text: string): Requirement[] {
  const requirements: Requirement[] = [];
  for (const term of splitTopLevel(text)) {
    requirements.push(parseRequirement(term));
  }
  return requirements;
}

function parseRequirement(term: string): Requirement {
  let match = NOT_EXISTS.exec(term);
  if (match) return { key: match[1]!, operator: 'DoesNotExist', values: [] };

  match = SET.exec(term);
  if (match) {
    const values = match[3]!.split(',').map((value) => value.trim());
    if (values.some((value) => !new RegExp(`^${VALUE}$`).test(value))) {
      throw badRequest(`unable to parse requirement: invalid value in "${term}"`);
    }
    return { key: match[1]!, operator: match[2] === 'in' ? 'In' : 'NotIn', values };
  }

  match = EQUALITY.exec(term);
  if (match) return { key: match[1]!, operator: match[2] === '!=' ? 'NotEquals' : 'Equals', values: [match[3]!] };

  match = ORDER.exec(term);
  if (match) return { key: match[1]!, operator: match[2] === '>' ? 'GreaterThan' : 'LessThan', values: [match[3]!] };

  match = EXISTS.exec(term);
  if (match) return { key: match[1]!, operator: 'Exists', values: [] };

  throw badRequest(`unable to parse requirement: invalid label selector term "${term}"`);
}

// Splits at commas outside parentheses, so "a in (x,y),b" gives two terms.
function splitTopLevel(text: string): string[] {
  const terms: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i <= text.length; i++) {
    const char = text[i];
    if (char === '(') depth++;
    if (char === ')') depth--;
    if (i === text.length || (char === ',' && depth === 0)) {
      const term = text.slice(start, i).trim();
      if (term) terms.push(term);
      start = i + 1;
    }
  }
  return terms;
}

export function matchesLabels(requirements: Requirement[], labels: Record<string, string> | undefined): boolean {
  return requirements.every((requirement) => matchesRequirement(requirement, labels ?? {}));
}

function matchesRequirement({ key, operator, values }: Requirement, labels: Record<string, string>): boolean {
  const has = Object.hasOwn(labels, key);
  const value = labels[key];
  switch (operator) {
    case 'Exists':
      return has;
    case 'DoesNotExist':
      return !has;
    case 'Equals':
    case 'In':
      return has && values.includes(value!);
    case 'NotEquals':
    case 'NotIn':
      return !has || !values.includes(value!);
    case 'GreaterThan':
    case 'LessThan': {
      if (!has || !/^-?\d+$/.test(value!)) return false;
      const actual = Number(value);
      const bound = Number(values[0]);
      return operator === 'GreaterThan' ? actual > bound : actual < bound;
    }
  }
}

// Converts a metav1.LabelSelector object. Returns undefined for a missing
// selector, which selects nothing, and [] for {}, which selects everything.
export function requirementsFromSelectorObject(selector: unknown): Requirement[] | undefined {
  if (!isPlainObject(selector)) return undefined;
  const requirements: Requirement[] = [];

  const matchLabels = isPlainObject(selector.matchLabels) ? selector.matchLabels : {};
  for (const [key, value] of Object.entries(matchLabels)) {
    requirements.push({ key, operator: 'Equals', values: [String(value)] });
  }

  const expressions = Array.isArray(selector.matchExpressions) ? selector.matchExpressions : [];
  for (const expression of expressions) {
    if (!isPlainObject(expression)) continue;
    const values = Array.isArray(expression.values) ? expression.values.map(String) : [];
    const operator = expression.operator as Operator;
    requirements.push({ key: String(expression.key), operator, values });
  }

  return requirements.sort((a, b) => compareStrings(a.key, b.key));
}

// Formats requirements like labels.Selector.String(), the form Scale
// status.selector uses: "app=web,tier in (a,b)".
export function formatRequirements(requirements: Requirement[]): string {
  return requirements
    .map(({ key, operator, values }) => {
      const sorted = [...values].sort();
      switch (operator) {
        case 'Exists':
          return key;
        case 'DoesNotExist':
          return `!${key}`;
        case 'Equals':
          return `${key}=${values[0]}`;
        case 'NotEquals':
          return `${key}!=${values[0]}`;
        case 'In':
          return `${key} in (${sorted.join(',')})`;
        case 'NotIn':
          return `${key} notin (${sorted.join(',')})`;
        case 'GreaterThan':
          return `${key}>${values[0]}`;
        case 'LessThan':
          return `${key}<${values[0]}`;
      }
    })
    .join(',');
}
