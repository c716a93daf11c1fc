// Protobuf request bodies. A Secret written in Kubernetes protobuf, as
// client-go's typed clients write it, is stored like its JSON form. Kinds
// that the server cannot read in protobuf get 415, and a body without the
// "k8s\0" magic gets 400. test/deploy/helm-install.test.ts covers the
// protobuf writes of a real client, Helm.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { BinaryWriter } from '@bufbuild/protobuf/wire';
import { CoreV1Api } from '@kubernetes/client-node';

import { kubeConfigFor } from './kubeconfig.js';
import { startApiServer, type TestApiServer } from './server.js';

const PROTOBUF = 'application/vnd.kubernetes.protobuf';

let server: TestApiServer;

before(async () => {
  server = await startApiServer({ namespaces: ['demo'] });
});

after(async () => {
  await server?.close();
});

// The "k8s\0" magic and a runtime.Unknown around raw.
function envelope(apiVersion: string, kind: string, raw: Uint8Array): Buffer {
  const unknown = new BinaryWriter()
    .tag(1, 2)
    .bytes(new BinaryWriter().tag(1, 2).string(apiVersion).tag(2, 2).string(kind).finish())
    .tag(2, 2)
    .bytes(raw)
    .finish();
  return Buffer.concat([Buffer.from('k8s\0', 'latin1'), unknown]);
}

// A v1.Secret: metadata (1) with name (1) and labels (11), data (2), type (3).
function secret(name: string): Uint8Array {
  const entry = (key: string, value: (w: BinaryWriter) => BinaryWriter) => value(new BinaryWriter().tag(1, 2).string(key).tag(2, 2)).finish();
  const metadata = new BinaryWriter()
    .tag(1, 2)
    .string(name)
    .tag(11, 2)
    .bytes(entry('owner', (w) => w.string('helm')))
    .finish();
  return new BinaryWriter()
    .tag(1, 2)
    .bytes(metadata)
    .tag(2, 2)
    .bytes(entry('release', (w) => w.bytes(Buffer.from('payload'))))
    .tag(3, 2)
    .string('helm.sh/release.v1')
    .finish();
}

function post(path: string, body: Buffer): Promise<Response> {
  return fetch(`${server.url}${path}`, { method: 'POST', headers: { 'Content-Type': PROTOBUF, Accept: `${PROTOBUF}, application/json` }, body });
}

test('protobuf Secret is stored', async () => {
  const response = await post('/api/v1/namespaces/demo/secrets', envelope('v1', 'Secret', secret('release')));

  assert.equal(response.status, 201, await response.clone().text());
  const stored = await kubeConfigFor(server.url).makeApiClient(CoreV1Api).readNamespacedSecret({ name: 'release', namespace: 'demo' });
  assert.deepEqual(stored.metadata?.labels, { owner: 'helm' });
  assert.equal(stored.type, 'helm.sh/release.v1');
  assert.equal(Buffer.from(stored.data?.release ?? '', 'base64').toString(), 'payload');
});

test('protobuf zero values are left out', async () => {
  // Go's marshalers write empty strings and zero numbers: here an empty
  // generateName (2) and namespace (3), generation 0 (7), a zero
  // creationTimestamp (8) and an empty type (3), as a typed client sends
  // a Secret without a type.
  const metadata = new BinaryWriter().tag(1, 2).string('plain').tag(2, 2).string('').tag(3, 2).string('').tag(7, 0).int64(0).tag(8, 2).bytes(new Uint8Array()).finish();
  const raw = new BinaryWriter().tag(1, 2).bytes(metadata).tag(3, 2).string('').finish();

  const response = await post('/api/v1/namespaces/demo/secrets', envelope('v1', 'Secret', raw));

  assert.equal(response.status, 201, await response.clone().text());
  const stored = (await response.json()) as { type: string; metadata: Record<string, unknown> };
  assert.equal(stored.type, 'Opaque');
  assert.equal('generateName' in stored.metadata, false);
  assert.equal('generation' in stored.metadata, false);
  assert.equal(stored.metadata.namespace, 'demo');
  assert.notEqual(stored.metadata.creationTimestamp, '1970-01-01T00:00:00Z');
});

test('protobuf Pod is 415', async () => {
  const response = await post('/api/v1/namespaces/demo/pods', envelope('v1', 'Pod', new Uint8Array()));

  assert.equal(response.status, 415);
  const status = (await response.json()) as { reason: string; message: string };
  assert.equal(status.reason, 'UnsupportedMediaType');
  assert.match(status.message, /supported here for Secrets, ConfigMaps and DeleteOptions only, not v1 Pod: send application\/json/);
});

test('truncated protobuf is 400', async () => {
  // Field 1 announces 80 bytes, and one follows.
  const response = await post('/api/v1/namespaces/demo/secrets', Buffer.concat([Buffer.from('k8s\0', 'latin1'), Buffer.from([0x0a, 0x50, 0x01])]));

  assert.equal(response.status, 400);
  assert.match(((await response.json()) as { message: string }).message, /^the protobuf request body is invalid: /);
});

test('protobuf without magic is 400', async () => {
  const response = await post('/api/v1/namespaces/demo/secrets', Buffer.from('{"kind":"Secret"}'));

  assert.equal(response.status, 400);
  assert.match(((await response.json()) as { message: string }).message, /does not start with the "k8s\\0" magic/);
});
