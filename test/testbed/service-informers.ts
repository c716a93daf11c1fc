// The Service and EndpointSlice informers of a kube-proxy stand-in, which
// call onChange on every add, update and delete and restart after a watch
// error until the stand-in stops.

import {
  ADD,
  CoreV1Api,
  DELETE,
  DiscoveryV1Api,
  type Informer,
  type KubeConfig,
  makeInformer,
  type ObjectCache,
  UPDATE,
  type V1EndpointSlice,
  type V1Service,
} from '@kubernetes/client-node';
import type { Logger } from 'pino';

import { restartOnError } from '../../src/agent/informers.js';

export interface ServiceInformers {
  services: Informer<V1Service> & ObjectCache<V1Service>;
  slices: Informer<V1EndpointSlice> & ObjectCache<V1EndpointSlice>;
}

export function watchServicesAndSlices(kubeConfig: KubeConfig, log: Logger, isStopped: () => boolean, onChange: () => void): ServiceInformers {
  const core = kubeConfig.makeApiClient(CoreV1Api);
  const discovery = kubeConfig.makeApiClient(DiscoveryV1Api);
  const services = makeInformer(kubeConfig, '/api/v1/services', () => core.listServiceForAllNamespaces());
  const slices = makeInformer(kubeConfig, '/apis/discovery.k8s.io/v1/endpointslices', () => discovery.listEndpointSliceForAllNamespaces());

  for (const informer of [services, slices] as Informer<V1Service | V1EndpointSlice>[]) {
    for (const verb of [ADD, UPDATE, DELETE] as const) informer.on(verb, onChange);
  }
  restartOnError(services, log, 'Service', isStopped);
  restartOnError(slices, log, 'EndpointSlice', isStopped);
  return { services, slices };
}
