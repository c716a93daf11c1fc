// The testbed's controllers and one kubelet around a test API server and a
// SimplePodNetwork, for the testbed's own tests. close() stops everything
// that start() created, in reverse order.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { AppsV1Api, CoreV1Api, DiscoveryV1Api, type KubeConfig, type V1EndpointSlice, type V1Pod } from '@kubernetes/client-node';

import { kubeConfigFor } from '../../apiserver/kubeconfig.js';
import { type TestApiServer, startApiServer } from '../../apiserver/server.js';
import { waitFor } from '../../lib/netns.js';
import { EndpointSliceController, SERVICE_NAME_LABEL } from '../endpointslice-controller.js';
import { Kubelet } from '../kubelet.js';
import { WorkloadController } from '../workload-controller.js';
import { SimplePodNetwork } from './simple-pod-network.js';

export const NAMESPACE = 'demo';

export interface TestCluster {
  server: TestApiServer;
  kc: KubeConfig;
  core: CoreV1Api;
  apps: AppsV1Api;
  discovery: DiscoveryV1Api;
  network: SimplePodNetwork;
  kubelet: Kubelet;
  workDir: string;
  close(): Promise<void>;
}

export async function startTestCluster(): Promise<TestCluster> {
  const cleanups: (() => Promise<unknown>)[] = [];
  const close = async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
  };
  try {
    const workDir = await mkdtemp(join(tmpdir(), 'zerohold-testbed-'));
    cleanups.push(() => rm(workDir, { recursive: true, force: true }));
    const server = await startApiServer({ namespaces: [NAMESPACE] });
    cleanups.push(() => server.close());
    const network = await SimplePodNetwork.create();
    cleanups.push(() => network.close());

    const kc = kubeConfigFor(server.url);
    const kubelet = new Kubelet(kc, {
      node: network.nodes[0]!,
      network,
      probeIntervalMs: 50,
      restartBackoff: { initialMs: 100, maxMs: 1000, resetAfterMs: 60_000 },
      stopGraceMs: 1000,
    });
    await kubelet.start();
    cleanups.push(() => kubelet.stop());
    const workloads = new WorkloadController(kc, { nodes: network.nodes });
    await workloads.start();
    cleanups.push(() => workloads.stop());
    const slices = new EndpointSliceController(kc);
    await slices.start();
    cleanups.push(() => slices.stop());

    const core = kc.makeApiClient(CoreV1Api);
    const apps = kc.makeApiClient(AppsV1Api);
    const discovery = kc.makeApiClient(DiscoveryV1Api);
    return { server, kc, core, apps, discovery, network, kubelet, workDir, close };
  } catch (err) {
    await close();
    throw err;
  }
}

// Waits until a Pod with the label app=<app> is Running and Ready, and returns it.
export function waitForReadyPod(cluster: TestCluster, app: string, timeoutMs = 15_000): Promise<V1Pod> {
  return waitFor(
    `a Ready pod of ${app}`,
    async () => {
      const pods = await cluster.core.listNamespacedPod({ namespace: NAMESPACE, labelSelector: `app=${app}` });
      return pods.items.find((pod) => !pod.metadata?.deletionTimestamp && pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'));
    },
    timeoutMs,
    50,
  );
}

// Returns the Service's EndpointSlice of one address family. Fails unless there is exactly one.
export async function sliceOf(cluster: TestCluster, service: string, addressType: 'IPv4' | 'IPv6'): Promise<V1EndpointSlice | undefined> {
  const slices = await cluster.discovery.listNamespacedEndpointSlice({ namespace: NAMESPACE, labelSelector: `${SERVICE_NAME_LABEL}=${service}` });
  const matching = slices.items.filter((slice) => slice.addressType === addressType);
  if (matching.length > 1) throw new Error(`service ${service} has ${matching.length} ${addressType} slices, want 1`);
  return matching[0];
}
