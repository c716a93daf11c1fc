// The API side that the agent e2e tests share: a test API server with the
// ScaleToZero CRD and, in namespace shop, the Deployment web at 0
// replicas, its Service web and a ScaleToZero web with a 1 h idle
// timeout. The agent reads the API through kubeconfigFile.

import { AppsV1Api, CoreV1Api, type KubeConfig } from '@kubernetes/client-node';

import { createScaleToZero, installScaleToZeroCrd } from '../agent/testing/objects.js';
import { deploymentFixture, serviceFixture } from '../apiserver/fixtures.js';
import { kubeConfigFor, type KubeConfigFile, writeKubeConfigFile } from '../apiserver/kubeconfig.js';
import { startApiServer, type TestApiServer } from '../apiserver/server.js';

export interface ShopCluster {
  server: TestApiServer;
  kc: KubeConfig;
  kubeconfigFile: KubeConfigFile;
  // The ClusterIP of Service shop/web.
  serviceIP: string;
  close(): Promise<void>;
}

export async function startShopCluster(): Promise<ShopCluster> {
  const server = await startApiServer({ namespaces: ['shop', 'zerohold-system'] });
  const kc = kubeConfigFor(server.url);
  let kubeconfigFile: KubeConfigFile | undefined;
  const close = async () => {
    try {
      await kubeconfigFile?.remove();
    } finally {
      await server.close();
    }
  };

  try {
    kubeconfigFile = await writeKubeConfigFile(server.url);
    await installScaleToZeroCrd(kc);
    await kc.makeApiClient(AppsV1Api).createNamespacedDeployment({ namespace: 'shop', body: deploymentFixture('web', 0) });
    const service = await kc.makeApiClient(CoreV1Api).createNamespacedService({ namespace: 'shop', body: serviceFixture('web') });
    await createScaleToZero(kc, 'shop', 'web', { targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'web' }, idleTimeout: '1h' });
    return { server, kc, kubeconfigFile, serviceIP: service.spec!.clusterIP!, close };
  } catch (err) {
    await close();
    throw err;
  }
}
