// The workload controller against the test API server, with no kubelet:
// the test writes Pod status itself, so it controls when a Pod is Ready.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { AppsV1Api, CoreV1Api, PatchStrategy, setHeaderOptions, type V1Pod } from '@kubernetes/client-node';

import { kubeConfigFor } from '../apiserver/kubeconfig.js';
import { startApiServer, type TestApiServer } from '../apiserver/server.js';
import { waitFor } from '../lib/netns.js';
import { WorkloadController } from './workload-controller.js';

const NAMESPACE = 'demo';
const MERGE_PATCH = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

describe('workload controller', () => {
  let server: TestApiServer;
  let controller: WorkloadController;
  let core: CoreV1Api;
  let apps: AppsV1Api;

  before(async () => {
    server = await startApiServer({ namespaces: [NAMESPACE] });
    const kc = kubeConfigFor(server.url);
    core = kc.makeApiClient(CoreV1Api);
    apps = kc.makeApiClient(AppsV1Api);
    controller = new WorkloadController(kc, { nodes: ['node-a', 'node-b'], pins: { [`${NAMESPACE}/pinned`]: 'node-b' } });
    await controller.start();
  });

  after(async () => {
    await controller?.stop();
    await server?.close();
  });

  async function podsOf(app: string): Promise<V1Pod[]> {
    const list = await core.listNamespacedPod({ namespace: NAMESPACE, labelSelector: `app=${app}` });
    return list.items.sort((a, b) => a.metadata!.name!.localeCompare(b.metadata!.name!));
  }

  async function markReady(name: string): Promise<void> {
    const status = { phase: 'Running', conditions: [{ type: 'Ready', status: 'True' }] };
    await core.patchNamespacedPodStatus({ name, namespace: NAMESPACE, body: { status } }, MERGE_PATCH);
  }

  function template(app: string) {
    return { metadata: { labels: { app } }, spec: { containers: [{ name: 'main', image: 'none', command: ['true'] }] } };
  }

  it('creates deployment pods round-robin', async () => {
    await apps.createNamespacedDeployment({ namespace: NAMESPACE, body: { metadata: { name: 'web' }, spec: { replicas: 2, selector: { matchLabels: { app: 'web' } }, template: template('web') } } });

    const pods = await waitFor('two web pods', async () => ((await podsOf('web')).length === 2 ? podsOf('web') : undefined));
    assert.deepEqual(pods.map((pod) => pod.spec?.nodeName).sort(), ['node-a', 'node-b']);
    for (const pod of pods) assert.match(pod.metadata!.name!, /^web-[a-z0-9]{5}$/);

    for (const pod of pods) await markReady(pod.metadata!.name!);
    const deployment = await waitFor('web readyReplicas 2', async () => {
      const current = await apps.readNamespacedDeploymentStatus({ name: 'web', namespace: NAMESPACE });
      return current.status?.readyReplicas === 2 ? current : undefined;
    });
    assert.equal(deployment.status?.availableReplicas, 2);
    assert.equal(deployment.status?.observedGeneration, deployment.metadata?.generation);
  });

  it('pins a workload to its node', async () => {
    await apps.createNamespacedDeployment({ namespace: NAMESPACE, body: { metadata: { name: 'pinned' }, spec: { replicas: 3, selector: { matchLabels: { app: 'pinned' } }, template: template('pinned') } } });

    const pods = await waitFor('three pinned pods', async () => ((await podsOf('pinned')).length === 3 ? podsOf('pinned') : undefined));
    assert.deepEqual(pods.map((pod) => pod.spec?.nodeName), ['node-b', 'node-b', 'node-b']);
  });

  it('creates statefulset pods in order', async () => {
    await apps.createNamespacedStatefulSet({ namespace: NAMESPACE, body: { metadata: { name: 'db' }, spec: { replicas: 2, serviceName: 'db', selector: { matchLabels: { app: 'db' } }, template: template('db') } } });

    await waitFor('pod db-0', async () => ((await podsOf('db')).length === 1 ? true : undefined));
    // db-1 waits for db-0 to be Ready, however long that takes.
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.deepEqual((await podsOf('db')).map((pod) => pod.metadata!.name), ['db-0']);

    await markReady('db-0');
    const pods = await waitFor('pod db-1', async () => ((await podsOf('db')).length === 2 ? podsOf('db') : undefined));
    assert.deepEqual(pods.map((pod) => pod.metadata!.name), ['db-0', 'db-1']);
    assert.equal(pods[1]!.metadata?.labels?.['statefulset.kubernetes.io/pod-name'], 'db-1');
  });

  it('removes the highest statefulset ordinal first', async () => {
    await markReady('db-1');
    await apps.patchNamespacedStatefulSetScale({ name: 'db', namespace: NAMESPACE, body: { spec: { replicas: 1 } } }, MERGE_PATCH);

    const pods = await waitFor('db scaled to one pod', async () => ((await podsOf('db')).length === 1 ? podsOf('db') : undefined));
    assert.deepEqual(pods.map((pod) => pod.metadata!.name), ['db-0']);
    const set = await waitFor('db status replicas 1', async () => {
      const current = await apps.readNamespacedStatefulSetStatus({ name: 'db', namespace: NAMESPACE });
      return current.status?.replicas === 1 ? current : undefined;
    });
    assert.equal(set.status?.readyReplicas, 1);
  });
});
