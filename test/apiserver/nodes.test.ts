import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { CoreV1Api, PatchStrategy, setHeaderOptions, type V1Node, type V1Status } from '@kubernetes/client-node';

import { rejection, statusOf, WatchRecorder } from './client-helpers.js';
import { kubeConfigFor } from './kubeconfig.js';
import { startApiServer, type TestApiServer } from './server.js';

let server: TestApiServer;
let kubeConfig: ReturnType<typeof kubeConfigFor>;
let core: CoreV1Api;

before(async () => {
  server = await startApiServer({ namespaces: ['nodes-test'] });
  kubeConfig = kubeConfigFor(server.url);
  core = kubeConfig.makeApiClient(CoreV1Api);
});

after(() => server.close());

const ADDRESSES = [
  { type: 'InternalIP', address: '198.18.0.1' },
  { type: 'InternalIP', address: 'fd5a:18::1' },
  { type: 'Hostname', address: 'node-a' },
];

// Returns the reason and field of each cause of the call's 422, or [] when
// the call succeeds.
async function causesOf(call: Promise<unknown>): Promise<Array<[string, string]>> {
  try {
    await call;
    return [];
  } catch (err) {
    return (statusOf(err).details?.causes ?? []).map((cause) => [cause.reason, cause.field ?? '']);
  }
}

// Returns status.addresses as plain objects, because client-node returns
// V1NodeAddress instances, which deepEqual does not match to object literals.
function addressesOf(node: V1Node): Array<{ type: string; address: string }> | undefined {
  return node.status?.addresses?.map(({ type, address }) => ({ type, address }));
}

function nodeFixture(name: string, spec: V1Node['spec'] = {}): V1Node {
  return { metadata: { name, labels: { 'kubernetes.io/hostname': name } }, spec };
}

test('node create keeps status', async () => {
  const created = await core.createNode({ body: { ...nodeFixture('with-status'), status: { addresses: ADDRESSES } } });

  assert.deepEqual(addressesOf(created), ADDRESSES);
  assert.equal(created.metadata?.namespace, undefined);
  assert.match(created.metadata?.uid ?? '', /^[0-9a-f-]{36}$/);
  assert.equal(created.metadata?.generation, undefined);
});

test('node create fills zero status', async () => {
  await core.createNode({ body: { metadata: { name: 'bare' } } });

  // Read the JSON itself, because client-node renames "Port" to "port".
  const raw = (await (await fetch(`${server.url}/api/v1/nodes/bare`)).json()) as { spec: unknown; status: Record<string, unknown> };
  assert.deepEqual(raw.spec, {});
  assert.deepEqual(raw.status.daemonEndpoints, { kubeletEndpoint: { Port: 0 } });
  assert.deepEqual(Object.values(raw.status.nodeInfo as object), new Array(10).fill(''));
  assert.equal(raw.status.addresses, undefined);
});

test('node allocatable defaults to capacity', async () => {
  const created = await core.createNode({ body: { ...nodeFixture('sized'), status: { capacity: { cpu: '4', pods: '110' } } } });

  assert.deepEqual(created.status?.allocatable, { cpu: '4', pods: '110' });
});

test('node read, list and delete', async () => {
  const created = await core.createNode({ body: nodeFixture('short-lived') });

  const read = await core.readNode({ name: 'short-lived' });
  assert.equal(read.metadata?.uid, created.metadata?.uid);
  assert.equal(read.kind, 'Node');

  const list = await core.listNode({ labelSelector: 'kubernetes.io/hostname=short-lived' });
  assert.deepEqual(list.items.map((item) => item.metadata?.name), ['short-lived']);

  // kube-apiserver's node registry does not return the deleted object.
  const deleted = (await core.deleteNode({ name: 'short-lived' })) as V1Status;
  assert.equal(deleted.status, 'Success');
  assert.deepEqual({ ...deleted.details }, { name: 'short-lived', group: '', kind: 'nodes', uid: created.metadata?.uid });

  const missing = await rejection(core.readNode({ name: 'short-lived' }));
  assert.equal(missing.code, 404);
  assert.equal(missing.message, 'nodes "short-lived" not found');
});

test('node create duplicate is AlreadyExists', async () => {
  await core.createNode({ body: nodeFixture('twice') });

  const status = await rejection(core.createNode({ body: nodeFixture('twice') }));

  assert.equal(status.code, 409);
  assert.deepEqual(status.details, { name: 'twice', group: '', kind: 'nodes' });
});

test('node replace ignores status', async () => {
  const created = await core.createNode({ body: { ...nodeFixture('steady'), status: { addresses: [ADDRESSES[0]!] } } });

  created.spec = { unschedulable: true };
  created.status = { addresses: [{ type: 'InternalIP', address: '198.18.9.9' }] };
  const replaced = await core.replaceNode({ name: 'steady', body: created });

  assert.equal(replaced.spec?.unschedulable, true);
  assert.deepEqual(addressesOf(replaced), [ADDRESSES[0]]);
});

test('node status replace ignores spec', async () => {
  const created = await core.createNode({ body: nodeFixture('reporting') });

  created.spec = { unschedulable: true };
  created.status = { addresses: ADDRESSES };
  const replaced = await core.replaceNodeStatus({ name: 'reporting', body: created });

  assert.deepEqual(addressesOf(replaced), ADDRESSES);
  assert.equal(replaced.spec?.unschedulable, undefined);
  assert.ok(Number(replaced.metadata?.resourceVersion) > Number(created.metadata?.resourceVersion));
});

test('node status merge patch', async () => {
  await core.createNode({ body: nodeFixture('patched') });

  const patched = await core.patchNodeStatus(
    { name: 'patched', body: { status: { addresses: ADDRESSES.slice(0, 2) } } },
    setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
  );

  assert.deepEqual(addressesOf(patched), ADDRESSES.slice(0, 2));
  assert.equal(patched.status?.nodeInfo?.osImage, '', 'defaults survive the patch');
});

test('node status strategic merge by type', async () => {
  await core.createNode({ body: { ...nodeFixture('merged'), status: { addresses: [ADDRESSES[0]!, ADDRESSES[2]!] } } });

  // status.addresses merges by type, so the patch replaces the InternalIP
  // entry and keeps the Hostname.
  const patched = await core.patchNodeStatus(
    { name: 'merged', body: { status: { addresses: [{ type: 'InternalIP', address: '198.18.7.7' }] } } },
    setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch),
  );

  assert.deepEqual(addressesOf(patched), [{ type: 'InternalIP', address: '198.18.7.7' }, ADDRESSES[2]]);
});

test('node field selector spec.unschedulable', async () => {
  await core.createNode({ body: { metadata: { name: 'cordoned', labels: { pool: 'select' } }, spec: { unschedulable: true } } });
  await core.createNode({ body: { metadata: { name: 'open', labels: { pool: 'select' } } } });

  const names = async (fieldSelector: string): Promise<string[]> =>
    (await core.listNode({ labelSelector: 'pool=select', fieldSelector })).items.map((item) => item.metadata!.name!);

  assert.deepEqual(await names('spec.unschedulable=true'), ['cordoned']);
  assert.deepEqual(await names('spec.unschedulable=false'), ['open']);
  assert.deepEqual(await names('metadata.name=open'), ['open']);
});

test('node unsupported field selector', async () => {
  const status = await rejection(core.listNode({ fieldSelector: 'status.phase=Running' }));

  assert.equal(status.code, 400);
  assert.equal(status.message, 'field label not supported: status.phase');
});

test('node watch sees status writes', async () => {
  const list = await core.listNode();
  const recorder = await WatchRecorder.start(kubeConfig, '/api/v1/nodes', {
    resourceVersion: list.metadata!.resourceVersion!,
    fieldSelector: 'metadata.name=watched',
  });
  try {
    const created = await core.createNode({ body: nodeFixture('watched') });
    created.status = { addresses: ADDRESSES };
    await core.replaceNodeStatus({ name: 'watched', body: created });
    await core.deleteNode({ name: 'watched' });

    await recorder.waitForCount(3);
    assert.deepEqual(recorder.types(), ['ADDED', 'MODIFIED', 'DELETED']);
    assert.deepEqual(recorder.events[1]!.object.status.addresses, ADDRESSES);
  } finally {
    recorder.stop();
  }
});

test('node path with namespace is NotFound', async () => {
  const response = await fetch(`${server.url}/api/v1/namespaces/nodes-test/nodes`);

  assert.equal(response.status, 404);
});

test('node discovery entries', async () => {
  const response = await fetch(`${server.url}/api/v1`);
  const resources = ((await response.json()) as { resources: Array<{ name: string; namespaced: boolean; shortNames?: string[]; kind: string }> }).resources;

  const nodes = resources.find((resource) => resource.name === 'nodes');
  assert.equal(nodes?.kind, 'Node');
  assert.equal(nodes?.namespaced, false);
  assert.deepEqual(nodes?.shortNames, ['no']);
  assert.ok(resources.some((resource) => resource.name === 'nodes/status'));
});

test('node address without type is Invalid', async () => {
  const body = { ...nodeFixture('untyped'), status: { addresses: [{ address: '198.18.0.5' }] } } as unknown as V1Node;

  const status = await rejection(core.createNode({ body }));

  assert.equal(status.code, 422);
  assert.equal(status.message, 'Node "untyped" is invalid: status.addresses[0].type: Required value');
});

test('node taint rules', async () => {
  const spec = {
    taints: [
      { key: 'bad key!', effect: 'NoSchedule' },
      { key: 'zone', value: 'a', effect: 'NoExecute' },
      { key: 'zone', value: 'b', effect: 'NoExecute' },
    ],
  };

  const status = await rejection(core.createNode({ body: nodeFixture('tainted', spec) }));

  assert.equal(status.code, 422);
  assert.deepEqual(
    status.details?.causes?.map((cause) => [cause.reason, cause.field]),
    [
      ['FieldValueInvalid', 'metadata.taints[0].key'],
      ['FieldValueDuplicate', 'metadata.taints[2]'],
    ],
  );
  assert.match(status.details!.causes![1]!.message, /taints must be unique by key and effect pair$/);
});

test('node taint effect must be known', async () => {
  const status = await rejection(core.createNode({ body: nodeFixture('odd-effect', { taints: [{ key: 'k', effect: 'Sometimes' }] }) }));

  assert.equal(status.code, 422);
  assert.equal(status.details?.causes?.[0]?.reason, 'FieldValueNotSupported');
  assert.equal(status.details?.causes?.[0]?.field, 'spec.taints[0].effect');
});

test('node podCIDRs rules', async () => {
  const cases: Array<[string[], Array<[string, string]>]> = [
    [['198.18.1.0/24', 'fd5a:18:1::/64'], []],
    [['198.18.1.0/33'], [['FieldValueInvalid', 'spec.podCIDRs[0]']]],
    [['not-a-cidr'], [['FieldValueInvalid', 'spec.podCIDRs[0]']]],
    [['198.18.1.0/24', '198.18.2.0/24'], [['FieldValueInvalid', 'spec.podCIDRs']]],
    [['198.18.1.0/24', '198.18.1.0/24'], [['FieldValueInvalid', 'spec.podCIDRs'], ['FieldValueDuplicate', 'spec.podCIDRs[1]']]],
    [['198.18.1.0/24', 'fd5a:18:1::/64', 'fd5a:18:2::/64'], [['FieldValueInvalid', 'spec.podCIDRs']]],
  ];

  for (const [index, [podCIDRs, expected]] of cases.entries()) {
    const causes = await causesOf(core.createNode({ body: nodeFixture(`cidrs-${index}`, { podCIDRs }) }));
    assert.deepEqual(causes, expected, `podCIDRs ${JSON.stringify(podCIDRs)}`);
  }
});

test('node podCIDRs set once', async () => {
  const created = await core.createNode({ body: nodeFixture('cidr-once') });

  created.spec = { podCIDRs: ['198.18.3.0/24'] };
  const assigned = await core.replaceNode({ name: 'cidr-once', body: created });
  assert.deepEqual(assigned.spec?.podCIDRs, ['198.18.3.0/24']);

  assigned.spec = { podCIDRs: ['198.18.4.0/24'] };
  const status = await rejection(core.replaceNode({ name: 'cidr-once', body: assigned }));
  assert.equal(status.code, 422);
  assert.equal(status.message, 'Node "cidr-once" is invalid: spec.podCIDRs: Forbidden: node updates may not change podCIDR except from "" to valid');
});

test('node providerID set once', async () => {
  const created = await core.createNode({ body: nodeFixture('provided', { providerID: 'testbed://provided' }) });

  created.spec = { providerID: 'testbed://other' };
  const status = await rejection(core.replaceNode({ name: 'provided', body: created }));

  assert.equal(status.code, 422);
  assert.equal(status.details?.causes?.[0]?.field, 'spec.providerID');
  assert.equal(status.details?.causes?.[0]?.reason, 'FieldValueForbidden');
});

test('node status duplicate address is Invalid', async () => {
  const created = await core.createNode({ body: nodeFixture('repeated') });

  created.status = { addresses: [ADDRESSES[0]!, ADDRESSES[0]!] };
  const status = await rejection(core.replaceNodeStatus({ name: 'repeated', body: created }));

  assert.equal(status.code, 422);
  assert.equal(status.details?.causes?.[0]?.reason, 'FieldValueDuplicate');
  assert.equal(status.details?.causes?.[0]?.field, 'status.addresses[1]');
});

test('node name must be a DNS subdomain', async () => {
  const status = await rejection(core.createNode({ body: nodeFixture('Node_0') }));

  assert.equal(status.code, 422);
  assert.equal(status.details?.causes?.[0]?.field, 'metadata.name');
});
