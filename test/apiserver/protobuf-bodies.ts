// Request bodies in Kubernetes' protobuf encoding. client-go's typed
// clients send built-in kinds that way (Helm stores its release records
// as Secrets through one), so this server reads the kinds that those
// clients write here: Secrets, ConfigMaps and DeleteOptions. Other kinds
// get 415 Unsupported Media Type, which client-go does not retry in JSON.
//
// A body is the 4-byte magic "k8s\0" and a runtime.Unknown message that
// carries the apiVersion, the kind and the object's own protobuf bytes.
// Field numbers are those of the generated.proto files of k8s.io/api
// (core/v1) and k8s.io/apimachinery (meta/v1, runtime).

import { BinaryReader, WireType } from '@bufbuild/protobuf/wire';

import { ApiError } from './status.js';

export const PROTOBUF = 'application/vnd.kubernetes.protobuf';

const MAGIC = Buffer.from('k8s\0', 'latin1');

type Scalar = 'string' | 'bytes' | 'int64' | 'int32' | 'bool';

// How one field decodes into its JSON form: a scalar, a nested message,
// a map with string keys, or a meta/v1 Time, which becomes RFC 3339.
type Field =
  | { name: string; type: Scalar; repeated?: boolean; omitZero?: boolean }
  | { name: string; type: 'message'; message: Message; repeated?: boolean }
  | { name: string; type: 'map'; values: 'string' | 'bytes' }
  | { name: string; type: 'time' };

type Message = Record<number, Field>;

const OWNER_REFERENCE: Message = {
  1: { name: 'kind', type: 'string' },
  3: { name: 'name', type: 'string' },
  4: { name: 'uid', type: 'string' },
  5: { name: 'apiVersion', type: 'string' },
  6: { name: 'controller', type: 'bool' },
  7: { name: 'blockOwnerDeletion', type: 'bool' },
};

// managedFields (17) are left out: this server does not track them.
const OBJECT_META: Message = {
  1: { name: 'name', type: 'string' },
  2: { name: 'generateName', type: 'string' },
  3: { name: 'namespace', type: 'string' },
  5: { name: 'uid', type: 'string' },
  6: { name: 'resourceVersion', type: 'string' },
  7: { name: 'generation', type: 'int64', omitZero: true },
  8: { name: 'creationTimestamp', type: 'time' },
  9: { name: 'deletionTimestamp', type: 'time' },
  10: { name: 'deletionGracePeriodSeconds', type: 'int64' },
  11: { name: 'labels', type: 'map', values: 'string' },
  12: { name: 'annotations', type: 'map', values: 'string' },
  13: { name: 'ownerReferences', type: 'message', message: OWNER_REFERENCE, repeated: true },
  14: { name: 'finalizers', type: 'string', repeated: true },
};

const KINDS: Record<string, Message> = {
  'v1/Secret': {
    1: { name: 'metadata', type: 'message', message: OBJECT_META },
    2: { name: 'data', type: 'map', values: 'bytes' },
    3: { name: 'type', type: 'string' },
    4: { name: 'stringData', type: 'map', values: 'string' },
    5: { name: 'immutable', type: 'bool' },
  },
  'v1/ConfigMap': {
    1: { name: 'metadata', type: 'message', message: OBJECT_META },
    2: { name: 'data', type: 'map', values: 'string' },
    3: { name: 'binaryData', type: 'map', values: 'bytes' },
    4: { name: 'immutable', type: 'bool' },
  },
  'meta.k8s.io/v1/DeleteOptions': {
    1: { name: 'gracePeriodSeconds', type: 'int64' },
    2: {
      name: 'preconditions',
      type: 'message',
      message: {
        1: { name: 'uid', type: 'string' },
        2: { name: 'resourceVersion', type: 'string' },
      },
    },
    3: { name: 'orphanDependents', type: 'bool' },
    4: { name: 'propagationPolicy', type: 'string' },
    5: { name: 'dryRun', type: 'string', repeated: true },
  },
};

const TYPE_META: Message = {
  1: { name: 'apiVersion', type: 'string' },
  2: { name: 'kind', type: 'string' },
};

// client-go encodes DeleteOptions with the apiVersion of the request's
// group, so every group's DeleteOptions decode the same way.
function messageOf(apiVersion: string, kind: string): Message | undefined {
  if (kind === 'DeleteOptions') return KINDS['meta.k8s.io/v1/DeleteOptions'];
  return KINDS[`${apiVersion}/${kind}`];
}

// Returns the JSON form of a protobuf request body. Throws 415 for a kind
// that this server cannot read in protobuf, and 400 for a body that is
// not Kubernetes protobuf.
export function decodeProtobufBody(body: Buffer): Record<string, unknown> {
  try {
    return decodeEnvelope(body);
  } catch (err) {
    if (err instanceof ApiError) throw err;
    // BinaryReader throws for a truncated or malformed message.
    throw new ApiError(400, 'BadRequest', `the protobuf request body is invalid: ${(err as Error).message}`);
  }
}

function decodeEnvelope(body: Buffer): Record<string, unknown> {
  if (body.length < MAGIC.length || !body.subarray(0, MAGIC.length).equals(MAGIC)) {
    throw new ApiError(400, 'BadRequest', 'the protobuf request body does not start with the "k8s\\0" magic of Kubernetes protobuf');
  }

  // The runtime.Unknown envelope: typeMeta (1), raw (2), contentEncoding (3).
  const reader = new BinaryReader(body.subarray(MAGIC.length));
  let typeMeta: { apiVersion?: unknown; kind?: unknown } = {};
  let raw: Uint8Array = new Uint8Array();
  let contentEncoding = '';
  while (reader.pos < reader.len) {
    const [number, wireType] = reader.tag();
    if (number === 1) typeMeta = decodeMessage(new BinaryReader(reader.bytes()), TYPE_META);
    else if (number === 2) raw = reader.bytes();
    else if (number === 3) contentEncoding = reader.string();
    else reader.skip(wireType);
  }

  const apiVersion = String(typeMeta.apiVersion ?? '');
  const kind = String(typeMeta.kind ?? '');
  const message = messageOf(apiVersion, kind);
  if (message === undefined) {
    throw new ApiError(415, 'UnsupportedMediaType', `${PROTOBUF} is supported here for Secrets, ConfigMaps and DeleteOptions only, not ${apiVersion} ${kind}: send application/json`);
  }
  if (contentEncoding !== '') throw new ApiError(415, 'UnsupportedMediaType', `protobuf content encoding "${contentEncoding}" is not supported`);
  return { apiVersion, kind, ...decodeMessage(new BinaryReader(raw), message) };
}

function decodeMessage(reader: BinaryReader, message: Message): Record<string, unknown> {
  const object: Record<string, unknown> = {};
  while (reader.pos < reader.len) {
    const [number, wireType] = reader.tag();
    const field = message[number];
    if (field === undefined) {
      reader.skip(wireType);
      continue;
    }

    if (field.type === 'map') {
      const [key, value] = decodeMapEntry(reader.bytes(), field.values);
      const map = (object[field.name] ??= {}) as Record<string, string>;
      map[key] = value;
      continue;
    }

    const value = decodeValue(reader, field, wireType);
    if ('repeated' in field && field.repeated) ((object[field.name] ??= []) as unknown[]).push(value);
    else if (!isOmitted(field, value)) object[field.name] = value;
  }
  return object;
}

// Go's generated marshalers write every string and plain number field,
// empty or zero, where the JSON form leaves such fields out (omitempty).
function isOmitted(field: Exclude<Field, { type: 'map' }>, value: unknown): boolean {
  if (value === undefined || value === '') return true;
  return 'omitZero' in field && field.omitZero === true && value === 0;
}

function decodeValue(reader: BinaryReader, field: Exclude<Field, { type: 'map' }>, wireType: WireType): unknown {
  switch (field.type) {
    case 'string':
      return reader.string();
    case 'bytes':
      return Buffer.from(reader.bytes()).toString('base64');
    case 'int64':
      return Number(reader.int64());
    case 'int32':
      return reader.int32();
    case 'bool':
      return reader.bool();
    case 'time': {
      const time = decodeMessage(new BinaryReader(reader.bytes()), { 1: { name: 'seconds', type: 'int64' }, 2: { name: 'nanos', type: 'int32' } });
      // The zero Time marshals to no bytes, and to null in JSON.
      if (time.seconds === undefined && time.nanos === undefined) return undefined;
      // meta/v1 Time marshals to JSON with whole seconds.
      return new Date(Number(time.seconds ?? 0) * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
    }
    case 'message':
      if (wireType !== WireType.LengthDelimited) throw new ApiError(400, 'BadRequest', `protobuf field ${field.name} is not a message`);
      return decodeMessage(new BinaryReader(reader.bytes()), field.message);
  }
}

// A map entry is a message with the key in field 1 and the value in 2;
// bytes values become base64, as in the JSON form.
function decodeMapEntry(bytes: Uint8Array, values: 'string' | 'bytes'): [string, string] {
  const reader = new BinaryReader(bytes);
  let key = '';
  let value = '';
  while (reader.pos < reader.len) {
    const [number, wireType] = reader.tag();
    if (number === 1) key = reader.string();
    else if (number === 2) value = values === 'string' ? reader.string() : Buffer.from(reader.bytes()).toString('base64');
    else reader.skip(wireType);
  }
  return [key, value];
}
