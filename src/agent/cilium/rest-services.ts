// Cilium's service frontends read from the Cilium agent's REST API, for
// nodes where its pinned maps cannot be read. GET /v1/service on the
// agent's unix socket returns one Service object per frontend (model
// Service in api/v1/openapi.yaml of Cilium v1.18.6):
//
//   spec.id                 the frontend's id, which is its rev-NAT id
//   spec.frontend-address   {ip, port, protocol, scope}
//   spec.backend-addresses  [{ip, port, protocol, state, ...}]
//   spec.flags              {type, name, namespace, ...}
//
// v1.18.6 fills these from Frontend.ToModel() in pkg/loadbalancer: the
// protocol is upper case ("TCP", "UDP", "ANY") although the OpenAPI enum
// lists lower case, and an ip carries "@<cluster id>" with cluster-aware
// addressing.
//
// NOTE: the API serves the agent's desired state, which its reconciler
// writes to the maps shortly after. So a backend can appear here a few
// milliseconds before the datapath uses it.

import http from 'node:http';

import type { Logger } from 'pino';
import { z } from 'zod';

import { canonicalAddress, type CiliumFrontend, type CiliumProtocol, type CiliumServiceSource, sameFrontends, sortFrontends } from './frontends.js';

export const CILIUM_API_SOCKET = '/var/run/cilium/cilium.sock';
const SERVICE_PATH = '/v1/service';

// Unknown fields pass, so that later Cilium versions that add fields still
// parse.
const backendSchema = z.looseObject({
  ip: z.string(),
  port: z.number().int().optional(),
  protocol: z.string().optional(),
  state: z.string().optional(),
});

const serviceSchema = z.looseObject({
  spec: z.looseObject({
    id: z.number().int().optional(),
    'frontend-address': z.looseObject({
      ip: z.string().optional(),
      port: z.number().int().optional(),
      protocol: z.string().optional(),
      scope: z.string().optional(),
    }),
    'backend-addresses': z.array(backendSchema).nullish(),
  }),
});

const responseSchema = z.array(serviceSchema).nullable();

export interface CiliumRestServicesOptions {
  // Unix socket of the Cilium agent's API. Defaults to CILIUM_API_SOCKET.
  socketPath?: string;
  // Interval between polls in milliseconds. Defaults to 1000.
  pollMs?: number;
  // Limit for one request in milliseconds. Defaults to 2000.
  requestTimeoutMs?: number;
  log: Logger;
}

export class CiliumRestServices implements CiliumServiceSource {
  readonly kind = 'rest';
  readonly socketPath: string;
  private readonly pollMs: number;
  private readonly requestTimeoutMs: number;
  private readonly log: Logger;
  // One kept-alive connection, so frequent reads do not open a socket each.
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  private readonly listeners = new Set<(frontends: readonly CiliumFrontend[]) => void>();
  private list: CiliumFrontend[] = [];
  // The request in flight; concurrent refresh() calls share it.
  private inFlight: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private failedPolls = 0;

  constructor(options: CiliumRestServicesOptions) {
    this.socketPath = options.socketPath ?? CILIUM_API_SOCKET;
    this.pollMs = options.pollMs ?? 1000;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 2000;
    this.log = options.log;
  }

  // Reads the services once, then polls every pollMs. Rejects, with
  // nothing started, when the first read fails. The timer does not keep
  // the process alive.
  async start(): Promise<void> {
    if (this.closed) throw new Error('Cilium REST service reader is closed');
    await this.refresh();

    if (this.closed || this.timer !== undefined) return;
    this.timer = setInterval(() => void this.poll(), this.pollMs);
    this.timer.unref();
  }

  frontends(): readonly CiliumFrontend[] {
    return this.list;
  }

  refresh(): Promise<void> {
    if (this.closed) return Promise.reject(new Error('Cilium REST service reader is closed'));
    if (this.inFlight !== undefined) return this.inFlight;

    this.inFlight = this.read().finally(() => {
      this.inFlight = undefined;
    });
    return this.inFlight;
  }

  onChange(listener: (frontends: readonly CiliumFrontend[]) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  close(): void {
    this.closed = true;
    clearInterval(this.timer);
    this.timer = undefined;
    this.agent.destroy();
    this.listeners.clear();
  }

  private async poll(): Promise<void> {
    try {
      await this.refresh();
      if (this.failedPolls > 0) this.log.info({ socketPath: this.socketPath, failedPolls: this.failedPolls }, 'reading Cilium services from the agent API again');
      this.failedPolls = 0;
    } catch (err) {
      if (this.closed) return;
      this.failedPolls++;
      if (this.failedPolls === 1) this.log.error({ err, socketPath: this.socketPath }, 'reading Cilium services from the agent API failed, keeping the previous frontends and retrying every poll');
    }
  }

  private async read(): Promise<void> {
    const body = await this.get();
    const next = sortFrontends(parseCiliumServices(body, this.source()));

    if (this.closed || sameFrontends(this.list, next)) return;
    this.list = next;
    for (const listener of this.listeners) listener(next);
  }

  private source(): string {
    return `GET ${SERVICE_PATH} on unix:${this.socketPath}`;
  }

  // Returns the parsed JSON body of a 200 response. Rejects with a message
  // that names the socket and the fix for a missing socket, a refused
  // connection, a timeout, a non-200 status and invalid JSON.
  private get(): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const request = http.get(
        { socketPath: this.socketPath, path: SERVICE_PATH, agent: this.agent, headers: { Accept: 'application/json' }, timeout: this.requestTimeoutMs },
        (response) => {
          const chunks: Buffer[] = [];
          response.on('data', (chunk: Buffer) => chunks.push(chunk));
          response.on('error', (err) => reject(new Error(`${this.source()} failed while reading the response: ${err.message}`, { cause: err })));
          response.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            if (response.statusCode !== 200) {
              reject(new Error(`${this.source()} failed with HTTP ${response.statusCode} ${response.statusMessage ?? ''}: ${excerpt(text)}`));
              return;
            }
            try {
              resolve(JSON.parse(text));
            } catch (err) {
              reject(new Error(`${this.source()} returned invalid JSON (${(err as Error).message}): ${excerpt(text)}`, { cause: err }));
            }
          });
        },
      );

      request.on('timeout', () => request.destroy(new Error(`timed out after ${this.requestTimeoutMs} ms`)));
      request.on('error', (err: NodeJS.ErrnoException) => reject(new Error(`${this.source()} failed: ${describeSocketError(err, this.socketPath)}`, { cause: err })));
    });
  }
}

// Converts a /v1/service response body into frontends. Skips frontends
// without an id and those of protocols other than TCP, UDP and ANY (SCTP).
// Throws an Error naming source when the body does not match the model.
export function parseCiliumServices(body: unknown, source = SERVICE_PATH): CiliumFrontend[] {
  const parsed = responseSchema.safeParse(body);
  if (!parsed.success) {
    throw new Error(`${source} returned a body that does not match Cilium's Service model: ${z.prettifyError(parsed.error)}`);
  }

  const frontends: CiliumFrontend[] = [];
  for (const service of parsed.data ?? []) {
    const spec = service.spec;
    const address = spec['frontend-address'];
    const protocol = (address.protocol ?? 'any').toLowerCase();
    if (spec.id === undefined || address.ip === undefined) continue;
    if (protocol !== 'tcp' && protocol !== 'udp' && protocol !== 'any') continue;

    frontends.push({
      address: parseAddress(address.ip, source),
      protocol: protocol as CiliumProtocol,
      port: address.port ?? 0,
      scope: address.scope === 'internal' ? 'internal' : 'external',
      revNatId: spec.id,
      backends: selectableBackends(spec['backend-addresses'] ?? []),
    });
  }
  return frontends;
}

// Counts the backends that Cilium v1.18.6's reconciler puts into a
// service's selectable slots: the active ones, or the terminating ones
// when none is active. Quarantined, maintenance and
// terminating-not-serving backends never count.
function selectableBackends(backends: { state?: string | undefined }[]): number {
  const active = backends.filter((b) => (b.state ?? 'active') === 'active').length;
  if (active > 0) return active;
  return backends.filter((b) => b.state === 'terminating').length;
}

// Strips the "@<cluster id>" suffix of cluster-aware addressing.
function parseAddress(ip: string, source: string): string {
  const address = ip.split('@')[0]!;
  try {
    return canonicalAddress(address);
  } catch {
    throw new Error(`${source} returned an invalid frontend address ${JSON.stringify(ip)}`);
  }
}

function describeSocketError(err: NodeJS.ErrnoException, socketPath: string): string {
  if (err.code === 'ENOENT') return `the socket ${socketPath} does not exist. Check that the Cilium agent runs on this node and that its /var/run/cilium is mounted into zerohold's pod`;
  if (err.code === 'ECONNREFUSED') return `the Cilium agent refused the connection on ${socketPath}. Check that the agent is running`;
  if (err.code === 'EACCES') return `permission denied on ${socketPath}. Run zerohold as root or in the socket's group`;
  return err.message;
}

function excerpt(text: string): string {
  const trimmed = text.trim();
  return trimmed.length > 200 ? `${trimmed.slice(0, 200)}...` : trimmed || '(empty body)';
}
