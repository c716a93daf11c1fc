import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { CoreV1Api, PatchStrategy, setHeaderOptions, type V1Service, type V1ServiceSpec } from '@kubernetes/client-node';

import { rejection } from './client-helpers.js';
import { kubeConfigFor } from './kubeconfig.js';
import { startApiServer, type TestApiServer } from './server.js';
import { formatIp, parseIp } from './service-ip-allocator.js';

const NS = 'dual';

// Addresses from the server's Service ranges, 198.19.0.0/16 and fd5a:19::/64.
const IPV4 = /^198\.19\.\d+\.\d+$/;
const IPV6 = /^fd5a:19::[0-9a-f:]+$/;

const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

let server: TestApiServer;
let core: CoreV1Api;

before(async () => {
  server = await startApiServer({ namespaces: [NS] });
  core = kubeConfigFor(server.url).makeApiClient(CoreV1Api);
});

after(() => server.close());

function serviceBody(name: string, spec: V1ServiceSpec = {}): V1Service {
  return { metadata: { name }, spec: { selector: { app: name }, ports: [{ name: 'http', port: 80 }], ...spec } };
}

async function createService(name: string, spec: V1ServiceSpec = {}): Promise<V1ServiceSpec> {
  const created = await core.createNamespacedService({ namespace: NS, body: serviceBody(name, spec) });
  return created.spec!;
}

// The next address after `address`, in the same family.
function nextAddress(address: string): string {
  const parsed = parseIp(address)!;
  return formatIp({ family: parsed.family, value: parsed.value + 1n });
}

test('address parsing and formatting', () => {
  const cases: Array<[input: string, formatted: string | undefined]> = [
    ['198.19.0.10', '198.19.0.10'],
    ['fd5a:19::a', 'fd5a:19::a'],
    ['FD5A:0019:0000:0000:0000:0000:0000:000A', 'fd5a:19::a'],
    ['1:0:0:1:0:0:0:1', '1:0:0:1::1'],
    ['1:0:1:0:1:0:1:0', '1:0:1:0:1:0:1:0'],
    ['::', '::'],
    ['::ffff:198.19.0.10', '198.19.0.10'],
    ['fe80::1%eth0', undefined],
    ['198.19.0.0/16', undefined],
    ['None', undefined],
  ];
  for (const [input, formatted] of cases) {
    const parsed = parseIp(input);
    assert.equal(parsed && formatIp(parsed), formatted, input);
  }
});

test('service defaults to SingleStack IPv4', async () => {
  const spec = await createService('single');
  assert.equal(spec.ipFamilyPolicy, 'SingleStack');
  assert.deepEqual(spec.ipFamilies, ['IPv4']);
  assert.equal(spec.clusterIPs?.length, 1);
  assert.match(spec.clusterIPs?.[0] ?? '', IPV4);
  assert.equal(spec.clusterIP, spec.clusterIPs?.[0]);
});

test('service PreferDualStack gets IPv4 then IPv6', async () => {
  const spec = await createService('prefer', { ipFamilyPolicy: 'PreferDualStack' });
  assert.deepEqual(spec.ipFamilies, ['IPv4', 'IPv6']);
  assert.equal(spec.clusterIPs?.length, 2);
  assert.match(spec.clusterIPs?.[0] ?? '', IPV4);
  assert.match(spec.clusterIPs?.[1] ?? '', IPV6);
  assert.equal(spec.clusterIP, spec.clusterIPs?.[0]);
});

test('service IPv6 first keeps family order', async () => {
  const spec = await createService('v6-first', { ipFamilyPolicy: 'PreferDualStack', ipFamilies: ['IPv6', 'IPv4'] });
  assert.deepEqual(spec.ipFamilies, ['IPv6', 'IPv4']);
  assert.match(spec.clusterIPs?.[0] ?? '', IPV6);
  assert.match(spec.clusterIPs?.[1] ?? '', IPV4);
  assert.equal(spec.clusterIP, spec.clusterIPs?.[0]);
});

test('service RequireDualStack adds second family', async () => {
  const spec = await createService('require', { ipFamilyPolicy: 'RequireDualStack', ipFamilies: ['IPv6'] });
  assert.deepEqual(spec.ipFamilies, ['IPv6', 'IPv4']);
  assert.match(spec.clusterIPs?.[0] ?? '', IPV6);
  assert.match(spec.clusterIPs?.[1] ?? '', IPV4);
});

test('service IPv6 only gets one IPv6 address', async () => {
  const spec = await createService('v6-only', { ipFamilies: ['IPv6'] });
  assert.equal(spec.ipFamilyPolicy, 'SingleStack');
  assert.deepEqual(spec.ipFamilies, ['IPv6']);
  assert.equal(spec.clusterIPs?.length, 1);
  assert.match(spec.clusterIPs?.[0] ?? '', IPV6);
  assert.equal(spec.clusterIP, spec.clusterIPs?.[0]);
});

test('headless service allocates nothing', async () => {
  const spec = await createService('headless', { clusterIP: 'None', ipFamilyPolicy: 'PreferDualStack' });
  assert.equal(spec.clusterIP, 'None');
  assert.deepEqual(spec.clusterIPs, ['None']);
  assert.deepEqual(spec.ipFamilies, ['IPv4', 'IPv6']);
});

test('headless service without selector is RequireDualStack', async () => {
  const body = serviceBody('headless-bare', { clusterIP: 'None' });
  delete body.spec!.selector;
  const spec = (await core.createNamespacedService({ namespace: NS, body })).spec!;
  assert.equal(spec.ipFamilyPolicy, 'RequireDualStack');
  assert.deepEqual(spec.ipFamilies, ['IPv4', 'IPv6']);
  assert.deepEqual(spec.clusterIPs, ['None']);
});

test('headless service with selector is SingleStack', async () => {
  const spec = await createService('headless-selected', { clusterIP: 'None' });
  assert.equal(spec.ipFamilyPolicy, 'SingleStack');
  assert.deepEqual(spec.ipFamilies, ['IPv4']);
  assert.deepEqual(spec.clusterIPs, ['None']);
});

test('ExternalName service allocates nothing', async () => {
  const spec = await createService('external', { type: 'ExternalName', externalName: 'db.example.com' });
  assert.equal(spec.clusterIP, undefined);
  assert.equal(spec.clusterIPs, undefined);
  assert.equal(spec.ipFamilies, undefined);
  assert.equal(spec.ipFamilyPolicy, undefined);
});

test('service keeps requested clusterIP', async () => {
  const spec = await createService('fixed', { clusterIP: '198.19.200.1' });
  assert.equal(spec.clusterIP, '198.19.200.1');
  assert.deepEqual(spec.clusterIPs, ['198.19.200.1']);
  assert.deepEqual(spec.ipFamilies, ['IPv4']);
});

test('service keeps requested clusterIPs', async () => {
  const spec = await createService('fixed-dual', {
    clusterIP: 'fd5a:19::200:2',
    clusterIPs: ['fd5a:19::200:2', '198.19.200.2'],
    ipFamilyPolicy: 'RequireDualStack',
  });
  assert.deepEqual(spec.clusterIPs, ['fd5a:19::200:2', '198.19.200.2']);
  assert.deepEqual(spec.ipFamilies, ['IPv6', 'IPv4']);
  assert.equal(spec.clusterIP, 'fd5a:19::200:2');
});

test('requested IPv6 clusterIP gets an IPv4 second', async () => {
  const spec = await createService('fixed-v6', { clusterIP: 'fd5a:19::200:3', ipFamilyPolicy: 'PreferDualStack' });
  assert.deepEqual(spec.ipFamilies, ['IPv6', 'IPv4']);
  assert.equal(spec.clusterIPs?.[0], 'fd5a:19::200:3');
  assert.match(spec.clusterIPs?.[1] ?? '', IPV4);
});

test('requested clusterIP already allocated is Invalid', async () => {
  await createService('taken', { clusterIP: '198.19.200.4' });
  const status = await rejection(core.createNamespacedService({ namespace: NS, body: serviceBody('taker', { clusterIP: '198.19.200.4' }) }));
  assert.equal(status.code, 422);
  assert.equal(status.reason, 'Invalid');
  assert.equal(
    status.message,
    'Service "taker" is invalid: spec.clusterIPs: Invalid value: ["198.19.200.4"]: failed to allocate IP 198.19.200.4: provided IP is already allocated',
  );
  assert.deepEqual(status.details?.causes, [
    {
      reason: 'FieldValueInvalid',
      message: 'Invalid value: ["198.19.200.4"]: failed to allocate IP 198.19.200.4: provided IP is already allocated',
      field: 'spec.clusterIPs',
    },
  ]);
});

test('allocated address conflicts in any spelling', async () => {
  const spec = await createService('auto-v6', { ipFamilies: ['IPv6'] });
  const parsed = parseIp(spec.clusterIP!)!;
  const spelledOut = [112n, 96n, 80n, 64n, 48n, 32n, 16n, 0n].map((shift) => ((parsed.value >> shift) & 0xffffn).toString(16).padStart(4, '0')).join(':');

  const status = await rejection(core.createNamespacedService({ namespace: NS, body: serviceBody('auto-v6-copy', { clusterIP: spelledOut }) }));
  assert.equal(status.code, 422);
  assert.match(status.message, /provided IP is already allocated$/);
});

test('conflict in second address is Invalid', async () => {
  await createService('second-taken', { clusterIP: 'fd5a:19::200:5', ipFamilies: ['IPv6'] });
  const status = await rejection(
    core.createNamespacedService({
      namespace: NS,
      body: serviceBody('second-taker', { clusterIP: '198.19.200.5', clusterIPs: ['198.19.200.5', 'fd5a:19::200:5'], ipFamilyPolicy: 'PreferDualStack' }),
    }),
  );
  assert.equal(status.code, 422);
  assert.equal(
    status.message,
    'Service "second-taker" is invalid: spec.clusterIPs: Invalid value: ["198.19.200.5","fd5a:19::200:5"]: failed to allocate IP fd5a:19::200:5: provided IP is already allocated',
  );

  // The rejected request held nothing, so its first address is still free.
  const spec = await createService('first-free', { clusterIP: '198.19.200.5' });
  assert.equal(spec.clusterIP, '198.19.200.5');
});

test('allocation skips requested addresses', async () => {
  const first = await createService('next-a');
  const requested = nextAddress(first.clusterIP!);
  await createService('next-b', { clusterIP: requested });

  const third = await createService('next-c');
  assert.equal(third.clusterIP, nextAddress(requested));
});

test('deleted service releases its addresses', async () => {
  const spec = await createService('released', { ipFamilyPolicy: 'PreferDualStack' });
  await core.deleteNamespacedService({ name: 'released', namespace: NS });

  const reused = await createService('reuser', { clusterIP: spec.clusterIP!, clusterIPs: spec.clusterIPs!, ipFamilyPolicy: 'PreferDualStack' });
  assert.deepEqual(reused.clusterIPs, spec.clusterIPs);
});

test('dry run holds no address', async () => {
  const body = serviceBody('dry', { clusterIP: '198.19.200.6' });
  await core.createNamespacedService({ namespace: NS, body, dryRun: 'All' });

  const spec = await createService('wet', { clusterIP: '198.19.200.6' });
  assert.equal(spec.clusterIP, '198.19.200.6');
});

test('requested clusterIP outside range is Invalid', async () => {
  const status = await rejection(core.createNamespacedService({ namespace: NS, body: serviceBody('outside', { clusterIP: '10.96.0.10' }) }));
  assert.equal(status.code, 422);
  assert.equal(
    status.message,
    'Service "outside" is invalid: spec.clusterIPs: Invalid value: ["10.96.0.10"]: failed to allocate IP 10.96.0.10: provided IP 10.96.0.10 is not in the valid range. The range of valid IPs is 198.19.0.0/16',
  );
});

test('requested clusterIP of wrong family is Invalid', async () => {
  const status = await rejection(
    core.createNamespacedService({ namespace: NS, body: serviceBody('wrong-family', { clusterIP: 'fd5a:19::200:7', ipFamilies: ['IPv4'] }) }),
  );
  assert.equal(status.code, 422);
  assert.equal(status.message, 'Service "wrong-family" is invalid: spec.clusterIPs[0]: Invalid value: "fd5a:19::200:7": expected an IPv4 value as indicated by `ipFamilies[0]`');
});

test('malformed clusterIP is Invalid', async () => {
  const status = await rejection(core.createNamespacedService({ namespace: NS, body: serviceBody('malformed', { clusterIP: '198.19.300.1' }) }));
  assert.equal(status.code, 422);
  assert.equal(status.message, 'Service "malformed" is invalid: spec.clusterIPs[0]: Invalid value: "198.19.300.1": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)');
});

test('clusterIPs without clusterIP is Invalid', async () => {
  const status = await rejection(core.createNamespacedService({ namespace: NS, body: serviceBody('plural-only', { clusterIPs: ['198.19.200.8'] }) }));
  assert.equal(status.code, 422);
  assert.equal(status.message, 'Service "plural-only" is invalid: spec.clusterIPs: Invalid value: ["198.19.200.8"]: must be empty when `clusterIP` is not specified');
});

test('two addresses of one family are Invalid', async () => {
  const body = serviceBody('same-family', { clusterIP: '198.19.200.9', clusterIPs: ['198.19.200.9', '198.19.200.10'], ipFamilyPolicy: 'PreferDualStack' });
  const status = await rejection(core.createNamespacedService({ namespace: NS, body }));
  assert.equal(status.code, 422);
  assert.equal(status.message, 'Service "same-family" is invalid: spec.clusterIPs: Invalid value: ["198.19.200.9","198.19.200.10"]: may specify no more than one IP for each IP family');
});

test('SingleStack with two families is Invalid', async () => {
  const status = await rejection(
    core.createNamespacedService({ namespace: NS, body: serviceBody('single-two', { ipFamilyPolicy: 'SingleStack', ipFamilies: ['IPv4', 'IPv6'] }) }),
  );
  assert.equal(status.code, 422);
  assert.equal(
    status.message,
    'Service "single-two" is invalid: spec.ipFamilyPolicy: Invalid value: "SingleStack": must be \'RequireDualStack\' or \'PreferDualStack\' when multiple IP families are specified',
  );
});

test('unknown family and policy are Invalid', async () => {
  const body = serviceBody('unknown', { ipFamilyPolicy: 'DualStack', ipFamilies: ['IPv4', 'IPv4'] });
  const status = await rejection(core.createNamespacedService({ namespace: NS, body }));
  assert.equal(status.code, 422);
  assert.deepEqual(status.details?.causes, [
    { reason: 'FieldValueDuplicate', message: 'Duplicate value: "IPv4"', field: 'spec.ipFamilies[1]' },
    {
      reason: 'FieldValueNotSupported',
      message: 'Unsupported value: "DualStack": supported values: "PreferDualStack", "RequireDualStack", "SingleStack"',
      field: 'spec.ipFamilyPolicy',
    },
  ]);
});

test('replace without IP fields keeps both addresses', async () => {
  const created = await createService('replaced', { ipFamilyPolicy: 'PreferDualStack' });

  const read = await core.readNamespacedService({ name: 'replaced', namespace: NS });
  const body = serviceBody('replaced');
  body.metadata!.resourceVersion = read.metadata!.resourceVersion!;
  const replaced = (await core.replaceNamespacedService({ name: 'replaced', namespace: NS, body })).spec!;
  assert.deepEqual(replaced.clusterIPs, created.clusterIPs);
  assert.deepEqual(replaced.ipFamilies, ['IPv4', 'IPv6']);
  assert.equal(replaced.ipFamilyPolicy, 'PreferDualStack');
});

test('patch to PreferDualStack adds IPv6 address', async () => {
  const created = await createService('upgrade');
  const patched = await core.patchNamespacedService({ name: 'upgrade', namespace: NS, body: { spec: { ipFamilyPolicy: 'PreferDualStack' } } }, mergePatch);
  assert.deepEqual(patched.spec?.ipFamilies, ['IPv4', 'IPv6']);
  assert.equal(patched.spec?.clusterIPs?.[0], created.clusterIP);
  assert.match(patched.spec?.clusterIPs?.[1] ?? '', IPV6);
});

test('patch to SingleStack releases second address', async () => {
  const created = await createService('downgrade', { ipFamilyPolicy: 'RequireDualStack' });
  const patched = await core.patchNamespacedService({ name: 'downgrade', namespace: NS, body: { spec: { ipFamilyPolicy: 'SingleStack' } } }, mergePatch);
  assert.deepEqual(patched.spec?.ipFamilies, ['IPv4']);
  assert.deepEqual(patched.spec?.clusterIPs, [created.clusterIP]);

  const secondary = created.clusterIPs![1]!;
  const reuser = await createService('downgrade-reuser', { clusterIP: secondary, ipFamilies: ['IPv6'] });
  assert.equal(reuser.clusterIP, secondary);
});

test('dropping second address needs SingleStack', async () => {
  const created = await createService('drop', { ipFamilyPolicy: 'PreferDualStack' });
  const body = { spec: { clusterIPs: [created.clusterIP], ipFamilies: ['IPv4'] } };
  const status = await rejection(core.patchNamespacedService({ name: 'drop', namespace: NS, body }, mergePatch));
  assert.equal(status.code, 422);
  assert.equal(
    status.message,
    'Service "drop" is invalid: [spec.ipFamilyPolicy: Invalid value: "PreferDualStack": must be \'SingleStack\' to release the secondary cluster IP, ' +
      'spec.ipFamilyPolicy: Invalid value: "PreferDualStack": must be \'SingleStack\' to release the secondary IP family]',
  );
});

test('changing clusterIP is Invalid', async () => {
  await createService('moved');
  const status = await rejection(core.patchNamespacedService({ name: 'moved', namespace: NS, body: { spec: { clusterIP: '198.19.200.11' } } }, mergePatch));
  assert.equal(status.code, 422);
  assert.equal(status.message, 'Service "moved" is invalid: spec.clusterIPs[0]: Invalid value: ["198.19.200.11"]: may not change once set');
});
