// The EndpointSlice controller against the test API server, with Pods and
// their status written by the test.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { CoreV1Api, DiscoveryV1Api, PatchStrategy, setHeaderOptions, type V1EndpointSlice } from '@kubernetes/client-node';

import { kubeConfigFor } from '../apiserver/kubeconfig.js';
import { startApiServer, type TestApiServer } from '../apiserver/server.js';
import { waitFor } from '../lib/netns.js';
import { EndpointSliceController, SERVICE_NAME_LABEL } from './endpointslice-controller.js';

const NAMESPACE = 'demo';
const MERGE_PATCH = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

describe('endpointslice controller', () => {
  let server: TestApiServer;
  let controller: EndpointSliceController;
  let core: CoreV1Api;
  let discovery: DiscoveryV1Api;

  before(async () => {
    server = await startApiServer({ namespaces: [NAMESPACE] });
    const kc = kubeConfigFor(server.url);
    core = kc.makeApiClient(CoreV1Api);
    discovery = kc.makeApiClient(DiscoveryV1Api);
    controller = new EndpointSliceController(kc);
    await controller.start();
  });

  after(async () => {
    await controller?.stop();
    await server?.close();
  });

  async function slice(addressType: string): Promise<V1EndpointSlice | undefined> {
    const list = await discovery.listNamespacedEndpointSlice({ namespace: NAMESPACE, labelSelector: `${SERVICE_NAME_LABEL}=api` });
    return list.items.find((item) => item.addressType === addressType);
  }

  async function addPod(name: string, index: number, ready: boolean): Promise<void> {
    await core.createNamespacedPod({
      namespace: NAMESPACE,
      body: { metadata: { name, labels: { app: 'api' }, finalizers: ['test/hold'] }, spec: { nodeName: 'node-0', containers: [{ name: 'main', image: 'none', ports: [{ name: 'web', containerPort: 8080 + index }] }] } },
    });
    const status = { phase: 'Running', podIP: `198.18.16.${10 + index}`, podIPs: [{ ip: `198.18.16.${10 + index}` }, { ip: `fd5a:18:16::${10 + index}` }], conditions: [{ type: 'Ready', status: ready ? 'True' : 'False' }] };
    await core.patchNamespacedPodStatus({ name, namespace: NAMESPACE, body: { status } }, MERGE_PATCH);
  }

  it('lists pods per family with resolved ports', async () => {
    await core.createNamespacedService({
      namespace: NAMESPACE,
      body: { metadata: { name: 'api' }, spec: { selector: { app: 'api' }, ports: [{ name: 'http', port: 80, targetPort: 'web' }], ipFamilyPolicy: 'PreferDualStack', ipFamilies: ['IPv4', 'IPv6'] } },
    });
    await addPod('api-a', 0, true);

    const v4 = await waitFor('an IPv4 endpoint', async () => ((await slice('IPv4'))?.endpoints?.length ? slice('IPv4') : undefined));
    assert.deepEqual(v4!.endpoints![0]!.addresses, ['198.18.16.10']);
    assert.deepEqual({ ...v4!.endpoints![0]!.conditions }, { ready: true, serving: true, terminating: false });
    assert.equal(v4!.endpoints![0]!.nodeName, 'node-0');
    assert.equal(v4!.endpoints![0]!.targetRef?.name, 'api-a');
    assert.deepEqual(v4!.ports?.map((port) => ({ ...port })), [{ name: 'http', port: 8080, protocol: 'TCP' }]);
    assert.equal(v4!.metadata?.labels?.['endpointslice.kubernetes.io/managed-by'], 'endpointslice-controller.k8s.io');
    const v6 = await waitFor('an IPv6 endpoint', async () => ((await slice('IPv6'))?.endpoints?.length ? slice('IPv6') : undefined));
    assert.deepEqual(v6!.endpoints![0]!.addresses, ['fd5a:18:16::10']);
  });

  it('splits slices by resolved port', async () => {
    await addPod('api-b', 1, false);

    const list = await waitFor('two IPv4 slices', async () => {
      const slices = (await discovery.listNamespacedEndpointSlice({ namespace: NAMESPACE, labelSelector: `${SERVICE_NAME_LABEL}=api` })).items.filter((item) => item.addressType === 'IPv4');
      return slices.length === 2 ? slices : undefined;
    });
    const forB = list.find((item) => item.endpoints?.[0]?.targetRef?.name === 'api-b')!;
    assert.equal(forB.ports?.[0]?.port, 8081);
    assert.equal(forB.endpoints![0]!.conditions?.ready, false);
  });

  it('writes each slice once, no conflicts', async () => {
    const from = server.requests.length;
    await core.patchNamespacedPodStatus(
      { name: 'api-b', namespace: NAMESPACE, body: { status: { conditions: [{ type: 'Ready', status: 'True' }] } } },
      MERGE_PATCH,
    );

    await waitFor('api-b ready in both families', async () => {
      const slices = (await discovery.listNamespacedEndpointSlice({ namespace: NAMESPACE, labelSelector: `${SERVICE_NAME_LABEL}=api` })).items;
      const ready = slices.filter((item) => item.endpoints?.some((endpoint) => endpoint.targetRef?.name === 'api-b' && endpoint.conditions?.ready));
      return ready.length === 2 ? true : undefined;
    });
    await controller.idle();

    // The controller's own writes come back as watch events. A reconcile on
    // those would read the other family's slice before its event arrived,
    // and its update would fail with 409 Conflict.
    const writes = server.requests.slice(from).filter((request) => request.path.includes('/endpointslices/') && request.method !== 'GET');
    assert.deepEqual(
      writes.map((request) => `${request.method} ${request.status}`),
      ['PUT 200', 'PUT 200'],
      `slice writes: ${writes.map((request) => `${request.method} ${request.path} ${request.status}`).join(', ')}`,
    );
  });

  it('marks a deleted pod terminating', async () => {
    await core.deleteNamespacedPod({ name: 'api-a', namespace: NAMESPACE });

    const v4 = await waitFor('api-a terminating', async () => {
      const current = await slice('IPv4');
      const endpoint = current?.endpoints?.find((item) => item.targetRef?.name === 'api-a');
      return endpoint?.conditions?.terminating ? endpoint : undefined;
    });
    assert.deepEqual({ ...v4.conditions }, { ready: false, serving: true, terminating: true });
  });

  it('deletes the slices of a deleted service', async () => {
    await core.deleteNamespacedService({ name: 'api', namespace: NAMESPACE });

    await waitFor('no slices of api', async () => ((await slice('IPv4')) || (await slice('IPv6')) ? undefined : true));
  });
});
