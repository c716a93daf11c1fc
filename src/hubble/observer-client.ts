// A grpc-js client for Hubble's Observer service, on the local socket or on
// Hubble Relay.

import { create, fromBinary, type MessageInitShape } from '@bufbuild/protobuf';
import { Client, Metadata, status as grpcStatus, type ChannelOptions, type ClientReadableStream, type ServiceError, type StatusObject } from '@grpc/grpc-js';

import { channelSettings, type HubbleEndpoint } from './endpoint.js';
import {
  GetFlowsRequestSchema,
  GetFlowsResponseSchema,
  GetNodesRequestSchema,
  Observer,
  ServerStatusRequestSchema,
  type GetFlowsResponse,
  type GetNodesResponse,
  type ServerStatusResponse,
} from './gen/observer/observer_pb.js';
import { methodDefinition, serializer } from './service-definition.js';

// A GetFlows message that failed to decode, kept in the stream in place of
// the response so that one bad message does not end the call.
export interface GarbledMessage {
  $typeName: 'zerohold.GarbledMessage';
  error: Error;
  bytes: number;
}

export type FlowsMessage = GetFlowsResponse | GarbledMessage;

export const DEFAULT_UNARY_TIMEOUT_MS = 10_000;

// Channel options for a flow stream, which is one long call of many small
// messages.
const STREAM_CHANNEL_OPTIONS: Partial<ChannelOptions> = {
  // The initial HTTP/2 window of the connection and its streams, in bytes
  // (read by grpc-js 1.14's transport). With the default of 65,535 the
  // server waits for a WINDOW_UPDATE after every few hundred flows. 1 MiB is
  // an estimate that covers a few thousand flows of 200 to 1,000 bytes.
  'grpc-node.flow_control_window': 1 << 20,
  // FlowStream resumes a broken call itself, with `since`, so grpc-js
  // retries would only add a layer to every message.
  'grpc.enable_retries': 0,
};

// Receives the events of a streamFlows call, in the order that grpc-js's
// ClientReadableStream emits them: metadata, messages, then one status.
export interface FlowsListener {
  onMetadata(): void;
  onMessage(message: FlowsMessage): void;
  onStatus(status: StatusObject): void;
}

export interface FlowsCall {
  // Ends the call with CANCELLED. The listener then receives that status.
  cancel(): void;
}

type ChannelCall = ReturnType<ReturnType<Client['getChannel']>['createCall']>;

const getFlows = methodDefinition(Observer.method.getFlows);
const getNodes = methodDefinition(Observer.method.getNodes);
const serverStatus = methodDefinition(Observer.method.serverStatus);

// Decodes a GetFlows message and returns a GarbledMessage in place of
// throwing, because grpc-js ends the call with INTERNAL when a deserializer
// throws, which would drop the flows after a bad one.
// Unknown fields are skipped, because the flows of a newer Cilium carry
// many fields that zerohold does not read.
function decodeFlowsMessage(bytes: Buffer): FlowsMessage {
  try {
    return fromBinary(GetFlowsResponseSchema, bytes, { readUnknownFields: false });
  } catch (err) {
    return { $typeName: 'zerohold.GarbledMessage', error: err as Error, bytes: bytes.length };
  }
}

export function isGarbled(message: FlowsMessage): message is GarbledMessage {
  return message.$typeName === 'zerohold.GarbledMessage';
}

export class ObserverClient {
  private constructor(private readonly client: Client) {}

  static async connect(endpoint: HubbleEndpoint): Promise<ObserverClient> {
    const settings = await channelSettings(endpoint);
    return new ObserverClient(new Client(settings.target, settings.credentials, { ...STREAM_CHANNEL_OPTIONS, ...settings.options }));
  }

  // Opens a GetFlows call and passes each decoded message to the listener.
  // It uses grpc-js's channel call API directly, because the object-mode
  // Readable of getFlows() adds a process.nextTick turn and several
  // allocations per message. grpc-js delivers the next message in a later
  // tick, so requesting it before the listener runs keeps at most one
  // message pending, and a listener that throws does not stall the call.
  // NOTE: this path skips grpc-js client interceptors and per-call
  // credentials, which zerohold does not use. Channel credentials (TLS)
  // still apply.
  streamFlows(request: MessageInitShape<typeof GetFlowsRequestSchema>, listener: FlowsListener): FlowsCall {
    const call: ChannelCall = this.client.getChannel().createCall(getFlows.path, Infinity, undefined, null, null);
    call.start(new Metadata(), {
      onReceiveMetadata: () => listener.onMetadata(),
      onReceiveMessage: (bytes: Buffer) => {
        call.startRead();
        listener.onMessage(decodeFlowsMessage(bytes));
      },
      onReceiveStatus: (status: StatusObject) => listener.onStatus(status),
    });
    call.sendMessageWithContext({}, getFlows.requestSerialize(create(GetFlowsRequestSchema, request)));
    call.halfClose();
    call.startRead();

    return { cancel: () => call.cancelWithStatus(grpcStatus.CANCELLED, 'Cancelled on client') };
  }

  getFlows(request: MessageInitShape<typeof GetFlowsRequestSchema>): ClientReadableStream<FlowsMessage> {
    return this.client.makeServerStreamRequest(
      getFlows.path,
      serializer(GetFlowsRequestSchema),
      decodeFlowsMessage,
      create(GetFlowsRequestSchema, request),
      new Metadata(),
      {},
    );
  }

  serverStatus(timeoutMs = DEFAULT_UNARY_TIMEOUT_MS): Promise<ServerStatusResponse> {
    return this.unary(serverStatus, create(ServerStatusRequestSchema), timeoutMs);
  }

  // A node's own Hubble rejects this with UNIMPLEMENTED, Relay supports it.
  getNodes(timeoutMs = DEFAULT_UNARY_TIMEOUT_MS): Promise<GetNodesResponse> {
    return this.unary(getNodes, create(GetNodesRequestSchema), timeoutMs);
  }

  close(): void {
    this.client.close();
  }

  private unary<Request, Response>(
    method: { path: string; requestSerialize: (value: Request) => Buffer; responseDeserialize: (bytes: Buffer) => Response },
    request: Request,
    timeoutMs: number,
  ): Promise<Response> {
    return new Promise((resolve, reject) => {
      this.client.makeUnaryRequest(
        method.path,
        method.requestSerialize,
        method.responseDeserialize,
        request,
        new Metadata(),
        { deadline: Date.now() + timeoutMs },
        (err: ServiceError | null, response?: Response) => {
          if (err) reject(err);
          else resolve(response!);
        },
      );
    });
  }
}
