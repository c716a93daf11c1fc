// JSON Patch (RFC 6902), the application/json-patch+json patch type, with
// JSON Pointers (RFC 6901) for paths.

import { deepCopy, deepEqual, isPlainObject } from './objects.js';
import { ApiError, badRequest } from './status.js';

interface Operation {
  op: string;
  path: string;
  from?: string;
  value?: unknown;
}

// Returns `document` with the operations applied in order; `document` is not
// modified. A malformed patch is a 400; an operation that cannot apply
// (missing path, failed test) is a 422, as in kube-apiserver.
export function applyJsonPatch(document: unknown, patch: unknown): unknown {
  const operations = parseOperations(patch);
  let result = deepCopy(document);
  for (const [index, operation] of operations.entries()) {
    try {
      result = applyOperation(result, operation);
    } catch (err) {
      if (err instanceof PatchFailure) {
        throw new ApiError(422, 'Invalid', `json patch operation ${index} (${operation.op} ${operation.path}) failed: ${err.message}`);
      }
      throw err;
    }
  }
  return result;
}

class PatchFailure extends Error {}

function parseOperations(patch: unknown): Operation[] {
  if (!Array.isArray(patch)) throw badRequest('json patch must be a JSON array of operations');
  return patch.map((operation, index) => {
    if (!isPlainObject(operation) || typeof operation.op !== 'string' || typeof operation.path !== 'string') {
      throw badRequest(`json patch operation ${index} must be an object with string "op" and "path"`);
    }
    if (!['add', 'remove', 'replace', 'move', 'copy', 'test'].includes(operation.op)) {
      throw badRequest(`json patch operation ${index} has unknown op "${operation.op}"`);
    }
    if ((operation.op === 'move' || operation.op === 'copy') && typeof operation.from !== 'string') {
      throw badRequest(`json patch operation ${index} (${operation.op}) is missing "from"`);
    }
    if (['add', 'replace', 'test'].includes(operation.op) && !('value' in operation)) {
      throw badRequest(`json patch operation ${index} (${operation.op}) is missing "value"`);
    }
    return operation as unknown as Operation;
  });
}

function applyOperation(document: unknown, { op, path, from, value }: Operation): unknown {
  switch (op) {
    case 'add':
      return add(document, parsePointer(path), deepCopy(value));
    case 'remove':
      return remove(document, parsePointer(path));
    case 'replace':
      return add(remove(document, parsePointer(path)), parsePointer(path), deepCopy(value));
    case 'move': {
      const moved = get(document, parsePointer(from!));
      return add(remove(document, parsePointer(from!)), parsePointer(path), moved);
    }
    case 'copy':
      return add(document, parsePointer(path), deepCopy(get(document, parsePointer(from!))));
    default:
      if (!deepEqual(get(document, parsePointer(path)), value)) throw new PatchFailure('test value does not match');
      return document;
  }
}

function parsePointer(pointer: string): string[] {
  if (pointer === '') return [];
  if (!pointer.startsWith('/')) throw badRequest(`invalid JSON pointer "${pointer}": must start with "/"`);
  return pointer
    .slice(1)
    .split('/')
    .map((token) => token.replaceAll('~1', '/').replaceAll('~0', '~'));
}

function get(document: unknown, tokens: string[]): unknown {
  let current = document;
  for (const token of tokens) {
    if (Array.isArray(current) && /^(0|[1-9]\d*)$/.test(token) && Number(token) < current.length) current = current[Number(token)];
    else if (isPlainObject(current) && Object.hasOwn(current, token)) current = current[token];
    else throw new PatchFailure(`path "/${tokens.join('/')}" does not exist`);
  }
  return current;
}

// Inserts into arrays (or appends with "-") and sets object members. The
// parent container must exist.
function add(document: unknown, tokens: string[], value: unknown): unknown {
  if (tokens.length === 0) return value;
  const parent = get(document, tokens.slice(0, -1));
  const last = tokens[tokens.length - 1]!;

  if (Array.isArray(parent)) {
    const index = last === '-' ? parent.length : /^(0|[1-9]\d*)$/.test(last) ? Number(last) : NaN;
    if (!(index >= 0 && index <= parent.length)) throw new PatchFailure(`array index "${last}" is out of range`);
    parent.splice(index, 0, value);
  } else if (isPlainObject(parent)) {
    parent[last] = value;
  } else {
    throw new PatchFailure(`parent of "/${tokens.join('/')}" is not a container`);
  }
  return document;
}

function remove(document: unknown, tokens: string[]): unknown {
  if (tokens.length === 0) return undefined;
  get(document, tokens);
  const parent = get(document, tokens.slice(0, -1));
  const last = tokens[tokens.length - 1]!;
  if (Array.isArray(parent)) parent.splice(Number(last), 1);
  else delete (parent as Record<string, unknown>)[last];
  return document;
}
