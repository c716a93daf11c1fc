// An in-repo stand-in for the Cilium agent's REST API on a unix socket. It
// serves GET /v1/service with the JSON that Cilium v1.18.6 produces
// (Frontend.ToModel() in pkg/loadbalancer): upper-case protocols, backend
// states in lower case, flags, and status.realized equal to spec. Tests
// change the services or make it fail between requests.

import { rmSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';

export interface FakeBackend {
  ip: string;
  port: number;
  state?: 'active' | 'terminating' | 'terminating-not-serving' | 'quarantined' | 'maintenance';
}

export interface FakeService {
  id: number;
  ip: string;
  port: number;
  protocol: 'TCP' | 'UDP' | 'ANY' | 'SCTP';
  scope?: 'external' | 'internal';
  type?: string;
  name?: string;
  namespace?: string;
  backends?: FakeBackend[];
}

// What the next requests get: the services, an HTTP 500, or a body that
// is not JSON.
export type FakeApiMode = 'ok' | 'error' | 'invalid-json';

export class FakeCiliumApi {
  services: FakeService[] = [];
  mode: FakeApiMode = 'ok';
  requests = 0;
  readonly socketPath: string;
  private readonly server: http.Server;

  private constructor(socketPath: string) {
    this.socketPath = socketPath;
    this.server = http.createServer((request, response) => this.handle(request, response));
  }

  // Listens on a new socket in the temporary directory.
  static async start(): Promise<FakeCiliumApi> {
    const socketPath = path.join(os.tmpdir(), `zh-fake-cilium-${process.pid}-${Math.random().toString(36).slice(2, 8)}.sock`);
    const api = new FakeCiliumApi(socketPath);
    await new Promise<void>((resolve, reject) => {
      api.server.once('error', reject);
      api.server.listen(socketPath, () => resolve());
    });
    return api;
  }

  // Closes every connection and removes the socket file.
  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    rmSync(this.socketPath, { force: true });
  }

  private handle(request: http.IncomingMessage, response: http.ServerResponse): void {
    this.requests++;
    if (request.method !== 'GET' || request.url !== '/v1/service') {
      response.writeHead(404, { 'Content-Type': 'application/json' });
      response.end(JSON.stringify({ message: `path ${request.url} not found` }));
      return;
    }

    if (this.mode === 'error') {
      response.writeHead(500, { 'Content-Type': 'application/json' });
      response.end(JSON.stringify({ message: 'statedb: table frontends not initialized' }));
      return;
    }
    if (this.mode === 'invalid-json') {
      response.writeHead(200, { 'Content-Type': 'application/json' });
      response.end('[{"spec": {"id": 1,');
      return;
    }

    response.writeHead(200, { 'Content-Type': 'application/json' });
    response.end(JSON.stringify(this.services.map(toModel)));
  }
}

function toModel(service: FakeService): object {
  const spec = {
    id: service.id,
    // Go's encoding/json omits a zero port (omitempty) and writes a nil
    // backend list as null.
    'frontend-address': { ip: service.ip, ...(service.port === 0 ? {} : { port: service.port }), protocol: service.protocol, scope: service.scope ?? 'external' },
    'backend-addresses': service.backends?.length ? service.backends.map((b) => ({
      ip: b.ip,
      protocol: service.protocol === 'ANY' ? 'TCP' : service.protocol,
      port: b.port,
      nodeName: 'node1',
      state: b.state ?? 'active',
      preferred: true,
      weight: 100,
    })) : null,
    flags: {
      type: service.type ?? 'ClusterIP',
      trafficPolicy: 'Cluster',
      extTrafficPolicy: 'Cluster',
      intTrafficPolicy: 'Cluster',
      name: service.name ?? `svc-${service.id}`,
      namespace: service.namespace ?? 'demo',
    },
  };
  return { spec, status: { realized: spec } };
}
