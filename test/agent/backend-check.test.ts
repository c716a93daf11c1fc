// A release waits for the node's load balancer to have a backend: the
// gate stays closed and nothing is re-injected until the backend check
// passes, even when other changes reconcile the workload meanwhile.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { AppsV1Api, CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';

import { Controller } from '../../src/agent/controller.js';
import { EndpointReadiness } from '../../src/agent/endpoint-readiness.js';
import { EventRecorder } from '../../src/agent/events.js';
import type { BackendCheck } from '../../src/agent/ports.js';
import { KubeScaler } from '../../src/agent/scaler.js';
import type { Frontend } from '../../src/datapath/frontends.js';
import { deploymentFixture, serviceFixture } from '../apiserver/fixtures.js';
import { kubeConfigFor } from '../apiserver/kubeconfig.js';
import { startApiServer, type TestApiServer } from '../apiserver/server.js';
import { waitFor } from '../lib/netns.js';
import { FakeDatapath } from './testing/fake-datapath.js';
import { createReadyEndpoint, createScaleToZero, installScaleToZeroCrd } from './testing/objects.js';

const log = pino({ level: 'silent' });

// Resolves each wait when the test calls program(), or false on timeout.
// programSome() passes frontends to the progress callbacks of the waits.
class ManualBackendCheck implements BackendCheck {
  readonly requests: Frontend[][] = [];
  private programmed = false;
  private readonly waiters: ((ok: boolean) => void)[] = [];
  private readonly progress: ((frontends: Frontend[]) => void)[] = [];

  waitProgrammed(frontends: Frontend[], timeoutMs: number, onProgrammed?: (frontends: Frontend[]) => void): Promise<boolean> {
    this.requests.push(frontends);
    if (this.programmed) return Promise.resolve(true);
    if (onProgrammed) this.progress.push(onProgrammed);
    return new Promise((resolve) => {
      this.waiters.push(resolve);
      setTimeout(() => resolve(false), timeoutMs);
    });
  }

  programSome(frontends: Frontend[]): void {
    for (const report of this.progress) report(frontends);
  }

  program(): void {
    this.programmed = true;
    this.progress.length = 0;
    for (const resolve of this.waiters.splice(0)) resolve(true);
  }

  reset(): void {
    this.programmed = false;
    this.requests.length = 0;
  }
}

let server: TestApiServer;
let kc: KubeConfig;
let readiness: EndpointReadiness;
let controller: Controller;
const datapath = new FakeDatapath();
const check = new ManualBackendCheck();

before(async () => {
  server = await startApiServer({ namespaces: ['shop'] });
  kc = kubeConfigFor(server.url);
  await installScaleToZeroCrd(kc);
  readiness = new EndpointReadiness(kc, log);
  await readiness.start();
  controller = new Controller({
    kc,
    nodeAddresses: [],
    datapath,
    readiness,
    scaler: new KubeScaler(kc),
    events: new EventRecorder(kc, 'node-1', log),
    activity: { lastActivity: () => undefined },
    backendCheck: check,
    backendCheckTimeoutMs: 30_000,
    isLeader: () => true,
    log,
    tickMs: 50,
  });
  await controller.start();
});

after(async () => {
  await controller.stop();
  await readiness.stop();
  await server.close();
});

test('release waits for backend check', async () => {
  const apps = kc.makeApiClient(AppsV1Api);
  await apps.createNamespacedDeployment({ namespace: 'shop', body: deploymentFixture('web', 0) });
  const service = await kc.makeApiClient(CoreV1Api).createNamespacedService({ namespace: 'shop', body: serviceFixture('web') });
  await createScaleToZero(kc, 'shop', 'web', { targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'web' }, idleTimeout: '1h' });
  await waitFor('frontends installed', () => (datapath.gateClosed.get('shop/web') === true ? true : undefined));

  datapath.wake('shop/web');
  await createReadyEndpoint(kc, 'shop', 'web', '198.18.5.1');
  await waitFor('the backend check', () => (check.requests.length > 0 ? true : undefined));
  assert.deepEqual(check.requests[0], [{ address: service.spec!.clusterIP, protocol: 'tcp', port: 80 }]);

  // A change that reconciles the workload must not open the gate early.
  await apps.patchNamespacedDeployment({ name: 'web', namespace: 'shop', body: [{ op: 'add', path: '/metadata/labels', value: { touched: 'yes' } }] });
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.equal(datapath.gateClosed.get('shop/web'), true, 'gate closed while the check waits');
  assert.deepEqual(datapath.releases, [], 'nothing released before the check passes');

  check.program();
  await waitFor('the release', () => (datapath.releases.includes('shop/web') ? true : undefined));
  assert.equal(datapath.gateClosed.get('shop/web'), false);
});

test('partly programmed frontends release early', async () => {
  check.reset();
  const apps = kc.makeApiClient(AppsV1Api);
  await apps.createNamespacedDeployment({ namespace: 'shop', body: deploymentFixture('dual', 0) });
  const service = await kc.makeApiClient(CoreV1Api).createNamespacedService({ namespace: 'shop', body: serviceFixture('dual') });
  await createScaleToZero(kc, 'shop', 'dual', { targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'dual' }, idleTimeout: '1h' });
  await waitFor('frontends installed', () => (datapath.gateClosed.get('shop/dual') === true ? true : undefined));

  datapath.wake('shop/dual');
  await createReadyEndpoint(kc, 'shop', 'dual', '198.18.5.2');
  await waitFor('the backend check', () => (check.requests.length > 0 ? true : undefined));
  const frontend: Frontend = { address: service.spec!.clusterIP!, protocol: 'tcp', port: 80 };
  check.programSome([frontend]);

  await waitFor('the early release', () => (datapath.earlyReleases.length > 0 ? true : undefined));
  assert.deepEqual(datapath.earlyReleases, [{ workload: 'shop/dual', frontends: [frontend] }]);
  assert.equal(datapath.gateClosed.get('shop/dual'), true, 'the gate stays closed');
  assert.equal(datapath.releases.includes('shop/dual'), false);

  check.program();
  await waitFor('the release', () => (datapath.releases.includes('shop/dual') ? true : undefined));
  assert.equal(datapath.gateClosed.get('shop/dual'), false);
});
