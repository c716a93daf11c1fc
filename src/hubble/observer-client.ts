// A grpc-js client for Hubble's Observer service, on the local socket or on
// Hubble Relay.

import { create, fromBinary, type MessageInitShape } from '@bufbuild/protobuf';
import { Client, Metadata, type ClientReadableStream, type ServiceError } from '@grpc/grpc-js';

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
    return new ObserverClient(new Client(settings.target, settings.credentials, settings.options));
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
