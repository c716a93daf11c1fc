// A Kubernetes API server for tests: real HTTP on 127.0.0.1, an ephemeral
// port, in-memory storage, and fault injection. It serves the kinds in
// builtin-kinds.ts and the custom resources of any stored CRD.
//
// Set ZEROHOLD_APISERVER_TRACE=1 to log each request and its status to stderr.

import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

import type { ApiContext } from './api-context.js';
import { apiGroupDocument, apiGroupList, apiResourceList, apiVersions, versionInfo } from './discovery.js';
import { Faults } from './faults.js';
import { KindRegistry } from './kind-registry.js';
import { createObject } from './object-writes.js';
import { isPlainObject, type KubeObject } from './objects.js';
import { parseRequestInfo, type RequestInfo } from './request-info.js';
import type { DefaultingContext } from './resource-type.js';
import { handleResource, type HandlerContext, type Reply } from './rest-handlers.js';
import { type IpFamily, ServiceIpAllocator, type ServiceIpRange } from './service-ip-allocator.js';
import { decodeProtobufBody, PROTOBUF } from './protobuf-bodies.js';
import { ApiError, internalError, pathNotFound } from './status.js';
import { Store } from './store.js';
import { parseBool, WatchHub } from './watch-stream.js';

export interface ApiServerOptions {
  // Requests must carry "Authorization: Bearer <token>"; no auth when absent.
  token?: string;
  // Interval between BOOKMARK events on watches that allow them. Default
  // 60000 ms, close to kube-apiserver's roughly one minute.
  bookmarkIntervalMs?: number;
  // Number of store events kept for watches and exact lists. Default 1000.
  historyLimit?: number;
  // Namespaces created at start besides default, kube-system, kube-public
  // and kube-node-lease.
  namespaces?: string[];
}

export interface RequestRecord {
  method: string;
  // Pathname and query string.
  path: string;
  status: number;
  // Unix milliseconds when the request arrived.
  receivedMs: number;
}

export interface TestApiServer {
  // Base URL, e.g. "http://127.0.0.1:40123".
  url: string;
  store: Store;
  kinds: KindRegistry;
  faults: Faults;
  // Every request served so far, in arrival order; watch requests are
  // recorded with status 200 when their stream starts.
  requests: RequestRecord[];
  openWatchCount(): number;
  close(): Promise<void>;
}

// kube-apiserver's default limit on request bodies (--max-request-bytes).
const MAX_BODY_BYTES = 3 * 1024 * 1024;

const SYSTEM_NAMESPACES = ['default', 'kube-system', 'kube-public', 'kube-node-lease'];

const trace = process.env.ZEROHOLD_APISERVER_TRACE
  ? (message: string) => process.stderr.write(`apiserver: ${message}\n`)
  : () => {};

export async function startApiServer(options: ApiServerOptions = {}): Promise<TestApiServer> {
  const store = new Store(options.historyLimit === undefined ? {} : { historyLimit: options.historyLimit });
  const kinds = new KindRegistry(store);
  const watches = new WatchHub();
  const faults = new Faults(store, watches);
  const requests: RequestRecord[] = [];
  const context: HandlerContext = {
    store,
    kinds,
    defaulting: serviceIpDefaulting(store, kinds),
    watches,
    bookmarkIntervalMs: options.bookmarkIntervalMs ?? 60_000,
  };

  createNamespaces(context, [...SYSTEM_NAMESPACES, ...(options.namespaces ?? [])]);

  const server = createServer((req, res) => {
    const receivedMs = Date.now();
    serve(context, faults, options.token, req, res).then(
      (status) => {
        requests.push({ method: req.method ?? 'GET', path: req.url ?? '/', status, receivedMs });
        trace(`${req.method} ${req.url} -> ${status}`);
      },
      (err: unknown) => process.stderr.write(`apiserver: failed to serve ${req.method} ${req.url}: ${String(err)}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    store,
    kinds,
    faults,
    requests,
    openWatchCount: () => watches.openCount,
    close: async () => {
      faults.clear();
      watches.dropAll(false);
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    },
  };
}

function createNamespaces(context: ApiContext, names: string[]): void {
  const namespaces = context.kinds.lookup('', 'v1', 'namespaces')!;
  for (const name of new Set(names)) {
    createObject(context, namespaces, undefined, { metadata: { name } }, { dryRun: false });
  }
}

// The Service ClusterIP ranges, as kube-apiserver's
// --service-cluster-ip-range=198.19.0.0/16,fd5a:19::/64 would set them, with
// IPv4 the primary family. Allocation starts at 198.19.0.10 and fd5a:19::a.
const SERVICE_IP_RANGES: Record<IpFamily, ServiceIpRange> = {
  IPv4: { family: 'IPv4', network: '198.19.0.0', prefixLength: 16, firstOffset: 10 },
  IPv6: { family: 'IPv6', network: 'fd5a:19::', prefixLength: 64, firstOffset: 10 },
};

// Builds one allocator per family and keeps them informed of the addresses
// that stored Services hold, so deleting a Service releases its addresses.
function serviceIpDefaulting(store: Store, kinds: KindRegistry): DefaultingContext {
  const allocators: Record<IpFamily, ServiceIpAllocator> = {
    IPv4: new ServiceIpAllocator(SERVICE_IP_RANGES.IPv4),
    IPv6: new ServiceIpAllocator(SERVICE_IP_RANGES.IPv6),
  };
  const servicesKey = kinds.lookup('', 'v1', 'services')!.storageKey;
  const update = (service: KubeObject, change: 'hold' | 'release') => {
    for (const address of clusterIpsOf(service)) {
      allocators.IPv4[change](address);
      allocators.IPv6[change](address);
    }
  };

  store.subscribe((event) => {
    if (event.resource !== servicesKey) return;
    if (event.previous) update(event.previous, 'release');
    if (event.type !== 'DELETED') update(event.object, 'hold');
  });

  return {
    allocateServiceIp: (family) => allocators[family].allocateNext(),
    serviceIpRejection: (address) => allocators[address.family].rejectionOf(address),
  };
}

// Returns the distinct addresses in a Service's clusterIP and clusterIPs.
function clusterIpsOf(service: KubeObject): Set<string> {
  const spec = isPlainObject(service.spec) ? service.spec : {};
  const addresses = new Set<string>();
  if (typeof spec.clusterIP === 'string') addresses.add(spec.clusterIP);
  for (const address of Array.isArray(spec.clusterIPs) ? spec.clusterIPs : []) {
    if (typeof address === 'string') addresses.add(address);
  }
  return addresses;
}

// Serves one request and returns the HTTP status sent.
async function serve(context: HandlerContext, faults: Faults, token: string | undefined, req: IncomingMessage, res: ServerResponse): Promise<number> {
  const method = req.method ?? 'GET';
  const url = new URL(req.url ?? '/', 'http://127.0.0.1');
  const info = parseRequestInfo(method, url, parseBool(url.searchParams.get('watch')));

  try {
    // Injected faults act before authentication, like an overloaded or
    // failing server in front of the handlers.
    const injected = await faults.apply(method, url, info.kind === 'resource' && info.verb === 'watch');
    if (injected) throw injected;

    if (token !== undefined && req.headers.authorization !== `Bearer ${token}`) {
      throw new ApiError(401, 'Unauthorized', 'Unauthorized');
    }

    const body = requestText(req.headers['content-type'], await readBody(req));
    const reply = route(context, info, url, method, body, req, res);
    if (reply === 'streaming') return 200;
    sendJson(res, reply.status, reply.body);
    return reply.status;
  } catch (err) {
    const error = err instanceof ApiError ? err : internalError(String(err));
    if (!(err instanceof ApiError)) process.stderr.write(`apiserver: internal error on ${method} ${url.pathname}: ${(err as Error).stack ?? String(err)}\n`);
    sendError(res, error);
    return error.code;
  }
}

function route(context: HandlerContext, info: RequestInfo, url: URL, method: string, body: string, req: IncomingMessage, res: ServerResponse): Reply {
  switch (info.kind) {
    case 'version':
      return { status: 200, body: versionInfo() };
    case 'discovery':
      return { status: 200, body: discoveryDocument(context, info, req) };
    case 'resource':
      return handleResource(context, { info, url, method, contentType: req.headers['content-type'], body, req, res });
    default:
      throw pathNotFound();
  }
}

function discoveryDocument(context: HandlerContext, info: Extract<RequestInfo, { kind: 'discovery' }>, req: IncomingMessage): unknown {
  let document: unknown;
  if (info.legacy && info.version === undefined) document = apiVersions(`${req.socket.localAddress}:${req.socket.localPort}`);
  else if (info.version !== undefined) document = apiResourceList(context.kinds, info.group ?? '', info.version);
  else if (info.group !== undefined) document = apiGroupDocument(context.kinds, info.group);
  else document = apiGroupList(context.kinds);

  if (document === undefined) throw pathNotFound();
  return document;
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new ApiError(413, 'RequestEntityTooLarge', `the request body exceeds ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

// The body as the handlers read it: JSON or YAML text. A protobuf body
// becomes its JSON form.
function requestText(contentType: string | undefined, body: Buffer): string {
  const mediaType = (contentType ?? '').split(';')[0]!.trim();
  if (mediaType === PROTOBUF && body.length > 0) return JSON.stringify(decodeProtobufBody(body));
  return body.toString('utf8');
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

function sendError(res: ServerResponse, error: ApiError): void {
  const retryAfter = error.details?.retryAfterSeconds;
  sendJson(res, error.code, error.toStatus(), retryAfter === undefined ? {} : { 'Retry-After': String(retryAfter) });
}
