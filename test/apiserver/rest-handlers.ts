// The REST verbs on resources and their subresources: get, list, watch,
// create, update, patch, delete and deletecollection, with the status
// codes kube-apiserver sends for each.

import type { IncomingMessage, ServerResponse } from 'node:http';

import type { ApiContext, WriteOptions } from './api-context.js';
import { listObjects } from './list.js';
import { parseFilter } from './object-filter.js';
import { type DeleteOptions, deleteObject } from './object-deletion.js';
import { createObject, present, updateObject } from './object-writes.js';
import { isPlainObject, type KubeObject } from './objects.js';
import { applyPatch } from './patch.js';
import type { RequestInfo } from './request-info.js';
import { groupResourceOf, type ResourceType } from './resource-type.js';
import { patchScale, readScale, updateScale } from './scale.js';
import { badRequest, methodNotAllowed, notFound, pathNotFound } from './status.js';
import type { WatchHub } from './watch-stream.js';

export interface HandlerContext extends ApiContext {
  watches: WatchHub;
  bookmarkIntervalMs: number;
}

export interface ResourceCall {
  info: Extract<RequestInfo, { kind: 'resource' }>;
  url: URL;
  method: string;
  contentType: string | undefined;
  body: string;
  req: IncomingMessage;
  res: ServerResponse;
}

// A JSON reply, or 'streaming' when a watch took over the response.
export type Reply = { status: number; body: unknown } | 'streaming';

export function handleResource(context: HandlerContext, call: ResourceCall): Reply {
  const { info } = call;
  const type = context.kinds.lookup(info.group, info.version, info.resource);
  if (!type) throw pathNotFound();

  // A Namespace is addressed as /namespaces/{name}: the "namespace" that the
  // path parser saw is its name, not a scope.
  const namespace = type.namespaced ? info.namespace : undefined;
  if (!type.namespaced && info.namespace !== undefined && type.plural !== 'namespaces') throw pathNotFound();
  if (type.namespaced && namespace === undefined && !['list', 'watch'].includes(info.verb)) throw pathNotFound();
  checkSubresource(type, info.subresource);

  const options: WriteOptions = { dryRun: parseDryRun(call.url.searchParams) };
  const name = info.name;
  const sub = info.subresource;
  if ((info.verb === 'update' || info.verb === 'patch') && !name) throw methodNotAllowed(call.method, call.url.pathname);

  switch (info.verb) {
    case 'get':
      if (sub === 'scale') return ok(readScale(context, type, namespace, name!));
      return ok(getObject(context, type, namespace, name!));

    case 'list':
      return ok(listObjects(context, type, parseFilter(type, namespace, undefined, call.url.searchParams), call.url.searchParams));

    case 'watch': {
      if (sub) throw methodNotAllowed(call.method, call.url.pathname);
      const filter = parseFilter(type, namespace, name, call.url.searchParams);
      context.watches.open(context, call.req, call.res, { type, filter, query: call.url.searchParams, bookmarkIntervalMs: context.bookmarkIntervalMs });
      return 'streaming';
    }

    case 'create':
      if (name || sub) throw methodNotAllowed(call.method, call.url.pathname);
      return { status: 201, body: createObject(context, type, namespace, parseJson(call.body), options) };

    case 'update':
      if (sub === 'scale') return ok(updateScale(context, type, namespace, name!, parseJson(call.body), options));
      return ok(updateObject(context, type, namespace, name!, parseJson(call.body), { ...options, ...(sub === 'status' ? { subresource: 'status' } : {}) }));

    case 'patch': {
      if (sub === 'scale') return ok(patchScale(context, type, namespace, name!, call.contentType, call.body, options));
      const current = getObject(context, type, namespace, name!);
      const patched = applyPatch(call.contentType, call.body, current, type);
      return ok(updateObject(context, type, namespace, name!, patched, { ...options, ...(sub === 'status' ? { subresource: 'status' } : {}) }));
    }

    case 'delete': {
      if (sub) throw methodNotAllowed(call.method, call.url.pathname);
      const result = deleteObject(context, type, namespace, name!, parseDeleteOptions(call.body), options);
      return ok(result.deletedNow && !type.returnDeletedObject ? deletedStatus(type, result.object) : result.object);
    }

    case 'deletecollection':
      return ok(deleteCollection(context, type, namespace, call, options));
  }
}

function ok(body: unknown): Reply {
  return { status: 200, body };
}

// Builds the Status that kube-apiserver sends for an object deleted at once.
// details.kind contains the resource, not the kind, as in the registry's finalizeDelete.
function deletedStatus(type: ResourceType, object: KubeObject): Record<string, unknown> {
  return {
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Success',
    details: { name: object.metadata.name, group: type.group, kind: type.plural, uid: object.metadata.uid },
  };
}

function checkSubresource(type: ResourceType, subresource: string | undefined): void {
  if (subresource === undefined) return;
  if (subresource === 'status' && type.statusSubresource) return;
  if (subresource === 'scale' && type.scale) return;
  throw pathNotFound();
}

function getObject(context: ApiContext, type: ResourceType, namespace: string | undefined, name: string): KubeObject {
  const object = context.store.get(type.storageKey, namespace, name);
  if (!object) throw notFound(groupResourceOf(type), name);
  return present(type, object);
}

function deleteCollection(context: ApiContext, type: ResourceType, namespace: string | undefined, call: ResourceCall, options: WriteOptions): KubeObject {
  const list = listObjects(context, type, parseFilter(type, namespace, undefined, call.url.searchParams), new URLSearchParams());
  const deleteOptions = parseDeleteOptions(call.body);
  const items = (list.items as KubeObject[]).map(
    (item) => deleteObject(context, type, item.metadata.namespace, item.metadata.name!, deleteOptions, options).object,
  );
  return { ...list, metadata: { resourceVersion: String(context.store.revision) }, items };
}

function parseDryRun(query: URLSearchParams): boolean {
  const values = query.getAll('dryRun');
  for (const value of values) {
    if (value !== 'All') throw badRequest(`Invalid dryRun value "${value}": the only supported value is "All"`);
  }
  return values.length > 0;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw badRequest(`couldn't get version/kind; json parse error: ${(err as Error).message}`);
  }
}

function parseDeleteOptions(text: string): DeleteOptions {
  if (text.trim() === '') return {};
  const options = parseJson(text);
  if (!isPlainObject(options)) throw badRequest('DeleteOptions must be a JSON object');
  return options as DeleteOptions;
}
