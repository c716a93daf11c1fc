// An in-repo Hubble server: the Observer service (GetFlows, ServerStatus,
// GetNodes) on a unix socket or on TCP with TLS, built from the same
// generated code as the client. It streams the flows that a test
// publishes, honours the request's filters and time range, and can be
// stopped and started again on the same address with its flow log intact,
// as a Relay restart looks to a client.

import { rm } from 'node:fs/promises';

import { create, type MessageInitShape } from '@bufbuild/protobuf';
import {
  Metadata,
  Server,
  ServerCredentials,
  status,
  type sendUnaryData,
  type ServerUnaryCall,
  type ServerWritableStream,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';

import type { FlowSchema } from '../../src/hubble/gen/flow/flow_pb.js';
import {
  GetNodesResponseSchema,
  Observer,
  ServerStatusResponseSchema,
  type GetFlowsRequest,
  type GetFlowsResponse,
} from '../../src/hubble/gen/observer/observer_pb.js';
import { NodeState } from '../../src/hubble/gen/relay/relay_pb.js';
import { compileFilters, InvalidFilterError } from '../../src/hubble/flow-filter-match.js';
import { serviceDefinition } from '../../src/hubble/service-definition.js';
import { FlowLog, timestampNs, type LoggedFlow } from './flow-log.js';

export interface ServerTls {
  // PEM contents, not paths.
  cert: Buffer;
  key: Buffer;
  // When set, clients must present a certificate signed by this CA.
  clientCa?: Buffer;
}

export type TestServerAddress = { kind: 'socket'; path: string } | { kind: 'tcp'; host: string; port: number; tls?: ServerTls };

export interface TestHubbleServerOptions {
  address: TestServerAddress;
  nodeName?: string;
  // Flows kept for replay, like Hubble's ring buffer. Defaults to 4095.
  capacity?: number;
}

// The definition that the server registers. GetFlows responses may be a
// Buffer, which goes on the wire as it is: the log stores encoded flows,
// and tests send bytes that no serializer would produce.
function testServerDefinition() {
  const definition = serviceDefinition(Observer);
  const getFlows = definition['GetFlows']!;
  const serialize = getFlows.responseSerialize;
  return {
    ...definition,
    GetFlows: { ...getFlows, responseSerialize: (value: GetFlowsResponse | Buffer) => (Buffer.isBuffer(value) ? value : serialize(value)) },
  };
}

interface OpenStream {
  call: ServerWritableStream<GetFlowsRequest, GetFlowsResponse | Buffer>;
}

export class TestHubbleServer {
  readonly log: FlowLog;
  // Every GetFlows request received, in order.
  readonly requests: GetFlowsRequest[] = [];
  private readonly nodeName: string;
  private readonly startedAt = process.hrtime.bigint();
  private server: Server | undefined;
  private boundPort = 0;
  private readonly streams = new Set<OpenStream>();

  constructor(private readonly options: TestHubbleServerOptions) {
    this.nodeName = options.nodeName ?? 'test-node';
    this.log = new FlowLog(options.capacity ?? 4095);
  }

  // The TCP port, which start() picks when the address has port 0 and
  // keeps for later starts.
  get port(): number {
    return this.boundPort;
  }

  get openStreams(): number {
    return this.streams.size;
  }

  async start(): Promise<void> {
    if (this.server) throw new Error('test Hubble server already started');

    const server = new Server();
    server.addService(testServerDefinition(), this.implementation());

    const address = this.options.address;
    let target: string;
    let serverCredentials = ServerCredentials.createInsecure();
    if (address.kind === 'socket') {
      // A socket file left by a crashed run makes bind fail with EADDRINUSE.
      await rm(address.path, { force: true });
      target = `unix://${address.path}`;
    } else {
      target = `${address.host.includes(':') ? `[${address.host}]` : address.host}:${this.boundPort || address.port}`;
      if (address.tls) {
        const { cert, key, clientCa } = address.tls;
        serverCredentials = ServerCredentials.createSsl(clientCa ?? null, [{ cert_chain: cert, private_key: key }], clientCa !== undefined);
      }
    }

    this.boundPort = await new Promise<number>((resolve, reject) =>
      server.bindAsync(target, serverCredentials, (err, port) => (err ? reject(err) : resolve(port))),
    );
    this.server = server;
  }

  // Ends every open call with UNAVAILABLE and closes the listener, as a
  // Hubble restart does. The flow log stays.
  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;

    for (const stream of this.streams) stream.call.destroy();
    this.streams.clear();
    server.forceShutdown();
    this.log.wake();
  }

  publish(flow: MessageInitShape<typeof FlowSchema>): LoggedFlow {
    return this.log.append(flow, this.nodeName);
  }

  // Writes bytes as one message to every open GetFlows call, bypassing
  // encoding. Not stored in the log.
  sendRaw(bytes: Buffer): void {
    for (const stream of this.streams) stream.call.write(bytes);
  }

  private implementation(): UntypedServiceImplementation {
    return {
      GetFlows: (call: ServerWritableStream<GetFlowsRequest, GetFlowsResponse | Buffer>) => void this.getFlows(call),
      ServerStatus: (_call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) => {
        callback(
          null,
          create(ServerStatusResponseSchema, {
            numFlows: BigInt(this.log.size),
            maxFlows: BigInt(this.log.capacity),
            seenFlows: BigInt(this.log.seen),
            uptimeNs: process.hrtime.bigint() - this.startedAt,
            version: 'zerohold-test',
          }),
        );
      },
      GetNodes: (_call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) => {
        const address = this.options.address;
        callback(
          null,
          create(GetNodesResponseSchema, {
            nodes: [
              {
                name: this.nodeName,
                version: 'zerohold-test',
                address: address.kind === 'socket' ? `unix://${address.path}` : `${address.host}:${this.boundPort}`,
                state: NodeState.NODE_CONNECTED,
                tls: { enabled: address.kind === 'tcp' && address.tls !== undefined },
                numFlows: BigInt(this.log.size),
                maxFlows: BigInt(this.log.capacity),
                seenFlows: BigInt(this.log.seen),
              },
            ],
          }),
        );
      },
    };
  }

  private async getFlows(call: ServerWritableStream<GetFlowsRequest, GetFlowsResponse | Buffer>): Promise<void> {
    const request = call.request;
    this.requests.push(request);

    let matches;
    try {
      matches = compileFilters(request.whitelist, request.blacklist);
    } catch (err) {
      if (!(err instanceof InvalidFilterError)) throw err;
      call.emit('error', { code: status.INVALID_ARGUMENT, details: err.message });
      return;
    }

    const stream: OpenStream = { call };
    this.streams.add(stream);
    call.on('cancelled', () => this.streams.delete(stream));
    call.sendMetadata(new Metadata());

    const sinceNs = request.since ? timestampNs(request.since) : undefined;
    const untilNs = request.until ? timestampNs(request.until) : undefined;

    // Like Hubble: `since` replays the buffer from that time, `number`
    // replays the last flows, and a bare follow starts at the end.
    let position = this.log.end;
    if (sinceNs !== undefined) position = 0;
    else if (request.number > 0n) position = Math.max(0, this.log.end - Number(request.number));
    else if (!request.follow) position = 0;

    while (this.streams.has(stream)) {
      const entry = this.log.at(position);
      if (entry === undefined) {
        if (!request.follow) break;
        await this.log.next();
        continue;
      }
      position = entry.sequence + 1;

      if (sinceNs !== undefined && entry.timeNs < sinceNs) continue;
      if (untilNs !== undefined && entry.timeNs > untilNs) break;
      if (!matches(entry.flow)) continue;

      // Wait for HTTP/2 flow control instead of buffering without bound.
      if (!call.write(entry.response)) await new Promise((resolve) => call.once('drain', resolve));
    }

    if (this.streams.delete(stream)) call.end();
  }
}
