// The floor that the testbed's control plane puts under every cold start:
// the in-repo API server and the EndpointSlice controller alone in this
// process, with no kubelet, kube-proxy, agent or server running. Each
// round writes a Pod's status as Ready, the way the kubelet does, and
// times it until an EndpointSlice informer receives the Pod as a ready
// IPv4 endpoint. That is two API writes and two watch deliveries, which every
// cold start on the testbed pays before kube-proxy and the agent start.

import { CoreV1Api, DiscoveryV1Api, makeInformer, PatchStrategy, setHeaderOptions, type V1EndpointSlice } from '@kubernetes/client-node';

import { kubeConfigFor } from '../../test/apiserver/kubeconfig.js';
import { startApiServer } from '../../test/apiserver/server.js';
import { EndpointSliceController } from '../../test/testbed/endpointslice-controller.js';

const ROUNDS = 30;
const ROUND_TIMEOUT_MS = 5000;
const POD_IPV4 = '198.18.16.2';

export async function controlPlaneFloor(): Promise<number[]> {
  const server = await startApiServer({ namespaces: ['demo'] });
  const kc = kubeConfigFor(server.url);
  const core = kc.makeApiClient(CoreV1Api);
  const discovery = kc.makeApiClient(DiscoveryV1Api);
  const controller = new EndpointSliceController(kc);
  const slices = makeInformer(kc, '/apis/discovery.k8s.io/v1/endpointslices', () => discovery.listEndpointSliceForAllNamespaces());

  try {
    await controller.start();
    let onReady: ((atMs: number) => void) | undefined;
    const readyIpv4 = (slice: V1EndpointSlice) => slice.addressType === 'IPv4' && (slice.endpoints ?? []).some((e) => e.conditions?.ready === true);
    slices.on('update', (slice) => {
      if (onReady !== undefined && readyIpv4(slice)) onReady(performance.now());
    });
    await slices.start();

    await core.createNamespacedService({
      namespace: 'demo',
      body: { metadata: { name: 'web' }, spec: { selector: { app: 'web' }, ports: [{ port: 80, targetPort: 8080 }], ipFamilyPolicy: 'PreferDualStack', ipFamilies: ['IPv4', 'IPv6'] } },
    });
    await core.createNamespacedPod({
      namespace: 'demo',
      body: { metadata: { name: 'web-0', labels: { app: 'web' } }, spec: { nodeName: 'node-0', containers: [{ name: 'server', image: 'node', ports: [{ containerPort: 8080 }] }] } },
    });

    const writeStatus = (ready: boolean) =>
      core.patchNamespacedPodStatus(
        {
          name: 'web-0',
          namespace: 'demo',
          body: {
            status: {
              phase: 'Running',
              podIP: POD_IPV4,
              podIPs: [{ ip: POD_IPV4 }, { ip: 'fd5a:18:16::2' }],
              conditions: [{ type: 'Ready', status: ready ? 'True' : 'False' }],
              containerStatuses: [{ name: 'server', ready, restartCount: 0, image: 'node', imageID: '' }],
            },
          },
        },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );

    const rounds: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      await writeStatus(false);
      await new Promise((resolve) => setTimeout(resolve, 50));

      const seen = new Promise<number>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no ready IPv4 EndpointSlice within ${ROUND_TIMEOUT_MS} ms of the Pod's Ready`)), ROUND_TIMEOUT_MS);
        onReady = (atMs) => {
          clearTimeout(timer);
          onReady = undefined;
          resolve(atMs);
        };
      });
      const startedMs = performance.now();
      await writeStatus(true);
      rounds.push((await seen) - startedMs);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return rounds;
  } finally {
    await slices.stop();
    await controller.stop();
    await server.close();
  }
}
