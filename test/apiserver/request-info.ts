// Parses request paths the way k8s.io/apiserver's RequestInfoFactory does:
//
//   /api/v1[/watch]/namespaces/{namespace}/{resource}[/{name}[/{subresource}]]
//   /apis/{group}/{version}[/watch]/{resource}[/{name}[/{subresource}]]
//
// plus the discovery paths /api, /api/v1, /apis, /apis/{group} and
// /apis/{group}/{version}.

export type Verb = 'get' | 'list' | 'watch' | 'create' | 'update' | 'patch' | 'delete' | 'deletecollection';

export type RequestInfo =
  | { kind: 'version' }
  | { kind: 'discovery'; group?: string; version?: string; legacy: boolean }
  | {
      kind: 'resource';
      verb: Verb;
      group: string;
      version: string;
      namespace: string | undefined;
      resource: string;
      name: string | undefined;
      subresource: string | undefined;
    }
  | { kind: 'unknown' };

// Subresources of a Namespace that are not resources inside it.
const NAMESPACE_SUBRESOURCES = ['status', 'finalize'];

export function parseRequestInfo(method: string, url: URL, isWatch: boolean): RequestInfo {
  let parts: string[];
  try {
    parts = url.pathname.split('/').filter((part) => part !== '').map(decodeURIComponent);
  } catch {
    return { kind: 'unknown' };
  }

  if (parts.length === 1 && parts[0] === 'version') return { kind: 'version' };

  let group: string;
  let version: string | undefined;
  let rest: string[];
  if (parts[0] === 'api') {
    group = '';
    version = parts[1];
    rest = parts.slice(2);
    if (!version) return { kind: 'discovery', legacy: true };
  } else if (parts[0] === 'apis') {
    group = parts[1] ?? '';
    version = parts[2];
    rest = parts.slice(3);
    if (!group) return { kind: 'discovery', legacy: false };
    if (!version) return { kind: 'discovery', group, legacy: false };
  } else {
    return { kind: 'unknown' };
  }
  if (rest.length === 0) return { kind: 'discovery', group, version, legacy: group === '' };

  let watchPath = false;
  if (rest[0] === 'watch') {
    watchPath = true;
    rest = rest.slice(1);
  }

  let namespace: string | undefined;
  if (rest[0] === 'namespaces' && rest.length > 1) {
    namespace = rest[1];
    // "/namespaces/{name}" and "/namespaces/{name}/status" address the
    // Namespace itself; anything else after the name is a namespaced resource.
    if (rest.length > 2 && !NAMESPACE_SUBRESOURCES.includes(rest[2]!)) rest = rest.slice(2);
  }
  const [resource, name, subresource, ...extra] = rest;
  if (!resource || extra.length > 0) return { kind: 'unknown' };

  return { kind: 'resource', verb: verbOf(method, name, watchPath, isWatch), group, version, namespace, resource, name, subresource };
}

function verbOf(method: string, name: string | undefined, watchPath: boolean, watchParam: boolean): Verb {
  switch (method) {
    case 'POST':
      return 'create';
    case 'PUT':
      return 'update';
    case 'PATCH':
      return 'patch';
    case 'DELETE':
      return name ? 'delete' : 'deletecollection';
    default:
      // A GET with a name is a get even with watch=true; watching one object
      // takes the /watch/ path or a metadata.name field selector.
      if (name) return watchPath ? 'watch' : 'get';
      return watchPath || watchParam ? 'watch' : 'list';
  }
}
