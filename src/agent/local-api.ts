// The agent's local API: read-only JSON over HTTP on a unix socket, for the
// zerohold CLI on the same node. Access control is the socket file's mode
// (0660), so only root and the socket's group can connect. Paths carry a
// version (/v1/...) so that a newer agent can change a response shape
// without breaking an older CLI.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { chmod, mkdir, rm } from 'node:fs/promises';
import { dirname } from 'node:path';

import type { Logger } from 'pino';

import type { Phase } from './phase.js';
import type { WorkloadKey } from './ports.js';
import { removeStaleSocket } from './stale-socket.js';

export interface WorkloadSummary {
  workload: WorkloadKey;
  source: 'ScaleToZero' | 'annotation';
  target: { kind: string; name: string };
  // Services whose frontends this node gates for the workload.
  services: string[];
  phase: Phase;
  gateClosed: boolean;
  // Flows held on this node now, and the bytes of their frames.
  heldFlows: number;
  heldBytes: number;
  // First held packet to the release of the held flows, for the last wake.
  lastColdStartSeconds: number | null;
  // RFC 3339 timestamps.
  lastWakeTime: string | null;
  lastActivityTime: string | null;
  // The conditions this node waits for before the held flows go out, such
  // as "a Ready endpoint" or "198.18.7.1:53/udp to listen". Empty when
  // nothing waits.
  waitingFor: string[];
}

export interface HeldFlowSummary {
  workload: WorkloadKey;
  protocol: 'tcp' | 'udp';
  source: string;
  sourcePort: number;
  destination: string;
  destinationPort: number;
  // Name of the interface that received the first frame, or its ifindex
  // when the name is unknown.
  interface: string | number;
  // Time since the first frame of the flow arrived.
  heldForSeconds: number;
  // Frames of the flow seen so far: SYNs for TCP, 1 for UDP.
  frames: number;
}

export interface InterfaceSummary {
  name: string;
  ifindex: number;
  hook: 'xdp' | 'tc';
  // The interfaces entry that selects it: a name, or a prefix and "+".
  entry: string;
  // failed: the last attach failed with error, and the agent retries.
  state: 'attached' | 'failed';
  error: string | null;
}

// The agent state that the local API serves, read on every request.
export interface AgentState {
  readonly node: string;
  workloads(): WorkloadSummary[];
  heldFlows(): HeldFlowSummary[];
  // Standalone mode's interfaces entries and the interfaces they select;
  // none in the other modes.
  interfaces(): InterfacesReport;
}

export interface InterfacesReport {
  // The names of the interfaces entries, such as eth0 and veth+.
  entries: string[];
  interfaces: InterfaceSummary[];
}

export const SOCKET_MODE = 0o660;

const ROUTES: Record<string, (state: AgentState) => unknown> = {
  '/v1/workloads': (state) => ({ node: state.node, workloads: state.workloads() }),
  '/v1/held': (state) => ({ node: state.node, flows: state.heldFlows() }),
  '/v1/interfaces': (state) => ({ node: state.node, ...state.interfaces() }),
};

const ALLOWED_METHODS = ['GET', 'HEAD'];

export class LocalApi {
  private server: Server | null = null;
  private socketPath: string | null = null;

  constructor(
    private readonly state: AgentState,
    private readonly log: Logger,
  ) {}

  // Listens on socketPath, creating its directory if needed. A socket file
  // left by an agent that did not exit cleanly is removed first. Rejects
  // when another process is listening on the path, or when the path is
  // not a socket, because removing either would break something else.
  async listen(socketPath: string): Promise<void> {
    if (this.server) throw new Error(`local API is already listening on ${this.socketPath}`);

    await mkdir(dirname(socketPath), { recursive: true });
    await removeStaleSocket(socketPath, 'local API', 'api.socket');

    const server = createServer((req, res) => this.handle(req, res));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socketPath, () => {
        server.off('error', reject);
        resolve();
      });
    });

    // NOTE: between bind and chmod the socket has the mode that the umask
    // gives. With the usual umask 022 that is 0755, which lets no one but
    // the owner connect, because connecting needs write permission.
    try {
      await chmod(socketPath, SOCKET_MODE);
    } catch (err) {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      throw err;
    }

    server.on('error', (err) => this.log.error({ err, socket: socketPath }, 'local api server error'));
    this.server = server;
    this.socketPath = socketPath;
    this.log.info({ socket: socketPath }, 'local api listening');
  }

  // Stops listening, ends open connections and removes the socket file.
  async close(): Promise<void> {
    const server = this.server;
    const socketPath = this.socketPath;
    this.server = null;
    this.socketPath = null;
    if (!server || !socketPath) return;

    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    await closed;
    await rm(socketPath, { force: true });
    this.log.info({ socket: socketPath }, 'local api stopped');
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    const route = ROUTES[path];
    if (!route) {
      sendJson(res, 404, { error: `path ${path} not found, the endpoints are ${Object.keys(ROUTES).join(', ')}` });
      return;
    }
    if (!ALLOWED_METHODS.includes(req.method ?? '')) {
      res.setHeader('Allow', ALLOWED_METHODS.join(', '));
      sendJson(res, 405, { error: `method ${req.method} not allowed on ${path}, the local API is read-only and accepts ${ALLOWED_METHODS.join(' and ')}` });
      return;
    }

    let body: unknown;
    try {
      body = route(this.state);
    } catch (err) {
      this.log.error({ err, path }, 'local api request failed');
      sendJson(res, 500, { error: `reading the agent state for ${path} failed: ${(err as Error).message}` });
      return;
    }
    sendJson(res, 200, body);
  }
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}
