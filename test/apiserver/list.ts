// LIST requests: resourceVersion and resourceVersionMatch semantics, and
// pagination with limit and continue tokens that read one consistent
// snapshot across pages.

import type { ApiContext } from './api-context.js';
import { hasSelectors, matchesFilter, type ObjectFilter } from './object-filter.js';
import { deepCopy, type KubeObject } from './objects.js';
import { apiVersionOf, type ResourceType } from './resource-type.js';
import { ApiError, badRequest, expired, tooLargeResourceVersion } from './status.js';

interface ContinueToken {
  v: string;
  rv: number;
  start: string;
}

const TOKEN_VERSION = 'meta.k8s.io/v1';

// Parses a resourceVersion parameter: a decimal revision.
export function parseResourceVersion(value: string): number {
  if (!/^\d+$/.test(value)) throw badRequest(`invalid resource version "${value}"`);
  return Number(value);
}

export function listObjects(context: ApiContext, type: ResourceType, filter: ObjectFilter, query: URLSearchParams): KubeObject {
  const { store } = context;
  const resourceVersion = query.get('resourceVersion') ?? '';
  const match = query.get('resourceVersionMatch') ?? '';
  const continueParam = query.get('continue') ?? '';
  const limit = parseLimit(query.get('limit'));

  if (match && !resourceVersion) throw listOptionsInvalid('resourceVersionMatch', 'resourceVersionMatch is forbidden unless resourceVersion is provided');
  if (continueParam && resourceVersion && resourceVersion !== '0') {
    throw listOptionsInvalid('resourceVersion', 'specifying resource version is not allowed when using continue');
  }
  if (match && match !== 'Exact' && match !== 'NotOlderThan') throw listOptionsInvalid('resourceVersionMatch', `Unsupported value: "${match}"`);

  // Pick the revision to read. Only Exact and continue read the past; every
  // other form may read the newest state, which is never older than asked.
  let revision = store.revision;
  let start = '';
  if (continueParam) {
    const token = decodeContinue(continueParam);
    if (token.rv < store.oldestRevision) {
      throw expired(
        'The provided continue parameter is too old to display a consistent list result. ' +
          'You can start a new list without the continue parameter.',
      );
    }
    revision = token.rv;
    start = token.start;
  } else if (resourceVersion && resourceVersion !== '0') {
    const requested = parseResourceVersion(resourceVersion);
    if (requested > store.revision) throw tooLargeResourceVersion(requested, store.revision);
    if (match === 'Exact') revision = requested;
  }

  const entries = revision === store.revision ? store.list(type.storageKey) : store.listAt(type.storageKey, revision);
  const selected = entries.filter(([key, object]) => key > start && matchesFilter(filter, object));

  const page = limit && selected.length > limit ? selected.slice(0, limit) : selected;
  const metadata: Record<string, unknown> = { resourceVersion: String(revision) };
  if (page.length < selected.length) {
    const lastKey = page[page.length - 1]![0];
    metadata.continue = encodeContinue({ v: TOKEN_VERSION, rv: revision, start: `${lastKey}\u0000` });
    // kube-apiserver counts the remaining items only when no selector filters them.
    if (!hasSelectors(filter)) metadata.remainingItemCount = selected.length - page.length;
  }

  return {
    kind: type.listKind,
    apiVersion: apiVersionOf(type),
    metadata,
    items: page.map(([, object]) => listItem(type, object)),
  } as KubeObject;
}

// Items of built-in lists carry no apiVersion or kind in kube-apiserver's
// JSON; items of custom resource lists keep both.
function listItem(type: ResourceType, object: KubeObject): KubeObject {
  const item = deepCopy(object) as KubeObject;
  if (type.custom) {
    item.apiVersion = apiVersionOf(type);
    return item;
  }
  delete item.apiVersion;
  delete item.kind;
  return item;
}

function parseLimit(value: string | null): number | undefined {
  if (value === null || value === '' || value === '0') return undefined;
  if (!/^\d+$/.test(value)) throw badRequest(`invalid limit "${value}"`);
  return Number(value);
}

function encodeContinue(token: ContinueToken): string {
  return Buffer.from(JSON.stringify(token)).toString('base64url');
}

function decodeContinue(value: string): ContinueToken {
  try {
    const token = JSON.parse(Buffer.from(value, 'base64url').toString()) as ContinueToken;
    if (token.v === TOKEN_VERSION && Number.isInteger(token.rv) && typeof token.start === 'string') return token;
  } catch {
    // Reported below as an invalid token.
  }
  throw badRequest('continue key is not valid: the token could not be decoded');
}

function listOptionsInvalid(field: string, message: string): ApiError {
  return new ApiError(422, 'Invalid', `ListOptions.meta.k8s.io "" is invalid: ${field}: ${message}`, {
    group: 'meta.k8s.io',
    kind: 'ListOptions',
    causes: [{ reason: 'FieldValueForbidden', message, field }],
  });
}
