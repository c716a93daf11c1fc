// grpc-js service definitions built from protobuf-es descriptors, so the
// generated code in gen/ is the only description of the wire format and no
// .proto file is loaded at run time.

import { fromBinary, toBinary, type DescMessage, type DescMethod, type DescService, type MessageShape } from '@bufbuild/protobuf';
import type { MethodDefinition, ServiceDefinition } from '@grpc/grpc-js';

export function serializer<Schema extends DescMessage>(schema: Schema): (value: MessageShape<Schema>) => Buffer {
  return (value) => {
    const bytes = toBinary(schema, value);

    // A view on the same memory: grpc-js only reads the Buffer.
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  };
}

// Throws on bytes that are not a valid encoding of the message. grpc-js
// turns that into an INTERNAL status that ends the call.
export function deserializer<Schema extends DescMessage>(schema: Schema): (bytes: Buffer) => MessageShape<Schema> {
  return (bytes) => fromBinary(schema, bytes);
}

// Builds the definition of one RPC. The path is "/package.Service/Method",
// as in every gRPC implementation.
export function methodDefinition<Method extends DescMethod>(
  method: Method,
): MethodDefinition<MessageShape<Method['input']>, MessageShape<Method['output']>> {
  const kind = method.methodKind;
  return {
    path: `/${method.parent.typeName}/${method.name}`,
    originalName: method.localName,
    requestStream: kind === 'client_streaming' || kind === 'bidi_streaming',
    responseStream: kind === 'server_streaming' || kind === 'bidi_streaming',
    requestSerialize: serializer<Method['input']>(method.input),
    requestDeserialize: deserializer<Method['input']>(method.input),
    responseSerialize: serializer<Method['output']>(method.output),
    responseDeserialize: deserializer<Method['output']>(method.output),
  };
}

// Builds a definition for grpc-js Server.addService, keyed by the RPC
// names as the .proto file spells them ("GetFlows").
export function serviceDefinition(service: DescService): ServiceDefinition {
  const definition: Record<string, MethodDefinition<unknown, unknown>> = {};
  for (const method of service.methods) {
    definition[method.name] = methodDefinition(method) as MethodDefinition<unknown, unknown>;
  }
  return definition;
}
