import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { CoordinationV1Api, type V1Lease } from '@kubernetes/client-node';

import { rejection } from './client-helpers.js';
import { kubeConfigFor } from './kubeconfig.js';
import { startApiServer, type TestApiServer } from './server.js';

const NS = 'kube-system';
const NAME = 'zerohold-agent';

let server: TestApiServer;
let leases: CoordinationV1Api;

before(async () => {
  server = await startApiServer();
  leases = kubeConfigFor(server.url).makeApiClient(CoordinationV1Api);
});

after(() => server.close());

function lease(holder: string, at: Date): V1Lease {
  return {
    metadata: { name: NAME, namespace: NS },
    spec: { holderIdentity: holder, leaseDurationSeconds: 15, acquireTime: at, renewTime: at, leaseTransitions: 0 },
  };
}

test('lease create rejects a second creator', async () => {
  const at = new Date('2025-01-02T03:04:05.678Z');
  const created = await leases.createNamespacedLease({ namespace: NS, body: lease('node-a', at) });
  assert.equal(created.spec?.holderIdentity, 'node-a');

  const lost = await rejection(leases.createNamespacedLease({ namespace: NS, body: lease('node-b', at) }));
  assert.equal(lost.code, 409);
  assert.equal(lost.reason, 'AlreadyExists');
  assert.equal(lost.message, 'leases.coordination.k8s.io "zerohold-agent" already exists');
});

test('lease times are stored as MicroTime', async () => {
  const raw = await fetch(`${server.url}/apis/coordination.k8s.io/v1/namespaces/${NS}/leases/${NAME}`);
  const body = (await raw.json()) as { spec: { renewTime: string } };
  assert.equal(body.spec.renewTime, '2025-01-02T03:04:05.678000Z');
});

test('only one of two renewals from the same read wins', async () => {
  const seenByA = await leases.readNamespacedLease({ name: NAME, namespace: NS });
  const seenByB = await leases.readNamespacedLease({ name: NAME, namespace: NS });

  seenByA.spec!.renewTime = new Date();
  const renewed = await leases.replaceNamespacedLease({ name: NAME, namespace: NS, body: seenByA });
  assert.notEqual(renewed.metadata?.resourceVersion, seenByA.metadata?.resourceVersion);

  // node-b read the same version and tries to take over: it must lose.
  seenByB.spec!.holderIdentity = 'node-b';
  seenByB.spec!.leaseTransitions = 1;
  const conflict = await rejection(leases.replaceNamespacedLease({ name: NAME, namespace: NS, body: seenByB }));
  assert.equal(conflict.code, 409);
  assert.equal(conflict.reason, 'Conflict');

  const current = await leases.readNamespacedLease({ name: NAME, namespace: NS });
  assert.equal(current.spec?.holderIdentity, 'node-a');

  // After rereading, node-b's takeover applies.
  current.spec!.holderIdentity = 'node-b';
  current.spec!.leaseTransitions = 1;
  const takenOver = await leases.replaceNamespacedLease({ name: NAME, namespace: NS, body: current });
  assert.equal(takenOver.spec?.holderIdentity, 'node-b');
  assert.equal(takenOver.spec?.leaseTransitions, 1);
});

test('lease with invalid duration type is rejected', async () => {
  const body = lease('node-c', new Date()) as unknown as { spec: Record<string, unknown>; metadata: { name: string } };
  body.metadata.name = 'typed';
  body.spec.leaseDurationSeconds = '15s';
  const status = await rejection(leases.createNamespacedLease({ namespace: NS, body: body as V1Lease }));
  assert.equal(status.code, 400);
  assert.match(status.message, /cannot unmarshal string into Go struct field spec\.leaseDurationSeconds of type integer/);
});
