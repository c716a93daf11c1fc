// The controller against the test API server, with a fake datapath: what
// it installs, when it scales, when it releases, and what it never touches.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { AppsV1Api, AutoscalingV2Api, CoreV1Api, CustomObjectsApi, type KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { pino } from 'pino';

import { Controller } from '../../src/agent/controller.js';
import { EndpointReadiness } from '../../src/agent/endpoint-readiness.js';
import { EventRecorder } from '../../src/agent/events.js';
import { AgentMetrics } from '../../src/agent/metrics.js';
import { ObservedDatapath } from '../../src/agent/observed-datapath.js';
import type { DatapathPort } from '../../src/agent/ports.js';
import { KubeScaler } from '../../src/agent/scaler.js';
import type { HeldFlowEvent } from '../../src/hubble/held-flow-messages.js';
import { readStatus, type WorkloadStatus } from '../../src/agent/workload-status.js';
import { IDLE_TIMEOUT_ANNOTATION } from '../../src/agent/workloads.js';
import { deploymentFixture, serviceFixture } from '../apiserver/fixtures.js';
import { kubeConfigFor } from '../apiserver/kubeconfig.js';
import { startApiServer, type TestApiServer } from '../apiserver/server.js';
import { waitFor } from '../lib/netns.js';
import { FakeDatapath } from './testing/fake-datapath.js';
import { CANARIES, createReadyEndpoint, createScaleToZero, installCanaryCrd, installScaleToZeroCrd } from './testing/objects.js';

let server: TestApiServer;
let kc: KubeConfig;
let controller: Controller;
let readiness: EndpointReadiness;
const datapath = new FakeDatapath();
const metrics = new AgentMetrics({ held: () => new Map() });
const log = pino({ level: 'silent' });

before(async () => {
  server = await startApiServer({ namespaces: ['shop'] });
  kc = kubeConfigFor(server.url);
  await installScaleToZeroCrd(kc);

  readiness = new EndpointReadiness(kc, log);
  await readiness.start();
  controller = new Controller({
    kc,
    nodeAddresses: ['198.18.0.1'],
    datapath,
    readiness,
    scaler: new KubeScaler(kc),
    events: new EventRecorder(kc, 'node-1', log),
    activity: { lastActivity: () => undefined },
    isLeader: () => true,
    log,
    metrics,
    tickMs: 50,
  });
  await controller.start();
});

after(async () => {
  await controller.stop();
  await readiness.stop();
  await server.close();
});

const apps = () => kc.makeApiClient(AppsV1Api);
const core = () => kc.makeApiClient(CoreV1Api);

async function createApp(name: string, replicas: number) {
  await apps().createNamespacedDeployment({ namespace: 'shop', body: deploymentFixture(name, replicas) });
  return core().createNamespacedService({ namespace: 'shop', body: serviceFixture(name) });
}

function scaleToZero(name: string, spec: Record<string, unknown>) {
  return createScaleToZero(kc, 'shop', name, spec);
}

const statusOf = async (name: string) => {
  const object = (await kc.makeApiClient(CustomObjectsApi).getNamespacedCustomObject({ group: 'zerohold.dev', version: 'v1alpha1', namespace: 'shop', plural: 'scaletozeros', name })) as {
    status?: WorkloadStatus;
  };
  return object.status ?? {};
};

const annotationStatusOf = async (service: string) => readStatus('annotation', await core().readNamespacedService({ name: service, namespace: 'shop' }));

const readyOf = (status: WorkloadStatus) => status.conditions?.find((c) => c.type === 'Ready');

const replicasOf = async (name: string) => (await apps().readNamespacedDeployment({ name, namespace: 'shop' })).spec?.replicas;

test('flow released only on Ready', async () => {
  const service = await createApp('web', 0);
  await scaleToZero('web', { targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'web' }, idleTimeout: '1h', wakeReplicas: 2 });

  await waitFor('frontends installed with the gate closed', () => (datapath.gateClosed.get('shop/web') === true ? true : undefined));
  assert.deepEqual(datapath.frontends.get('shop/web'), [{ address: service.spec!.clusterIP, protocol: 'tcp', port: 80 }]);

  datapath.held.set('shop/web', 3);
  datapath.wake('shop/web');
  await waitFor('the scale-up', async () => ((await replicasOf('web')) === 2 ? true : undefined));
  await waitFor('status.heldFlows while held', async () => ((await statusOf('web')).heldFlows === 3 ? true : undefined));
  assert.equal(readyOf(await statusOf('web'))?.reason, 'Waking');
  assert.equal(controller.phaseOf('shop/web')?.phase, 'Waking');
  assert.deepEqual(datapath.releases, [], 'nothing released before a Ready endpoint');

  await createReadyEndpoint(kc, 'shop', 'web', '198.18.5.1');
  await waitFor('the release', () => (datapath.releases.includes('shop/web') ? true : undefined));
  const woken = (await core().listNamespacedEvent({ namespace: 'shop' })).items.find((e) => e.reason === 'Woken' && e.involvedObject.name === 'web');
  assert.equal(woken?.message, 'flow opener from 198.18.0.1:40000 to tcp/198.19.0.10:80, scaling to at least 2');
  const onTarget = (await core().listNamespacedEvent({ namespace: 'shop' })).items.find((e) => e.reason === 'Woken' && e.involvedObject.kind === 'Deployment');
  assert.equal(onTarget?.involvedObject.name, 'web', 'the Deployment has the event too');
  assert.equal(controller.phaseOf('shop/web')?.phase, 'Warm');
  assert.equal(datapath.gateClosed.get('shop/web'), false);

  await waitFor('status after the release', async () => {
    const status = await statusOf('web');
    return status.phase === 'Warm' && status.lastWakeTime && (status.lastColdStartSeconds ?? 0) > 0 && status.heldFlows === 0 ? true : undefined;
  });
  const ready = readyOf(await statusOf('web'));
  assert.equal(ready?.status, 'True');
  assert.equal(ready?.reason, 'Warm');

  const text = await metrics.registry.metrics();
  assert.match(text, /^zerohold_wakes_total\{workload="shop\/web"\} 1$/m);
  assert.match(text, /^zerohold_cold_start_seconds_count\{workload="shop\/web"\} 1$/m);
  assert.match(text, /^zerohold_release_overhead_seconds_count\{workload="shop\/web"\} 1$/m);
});

test('deleted ScaleToZero counts its held flows', async () => {
  await createApp('gone', 0);
  await scaleToZero('gone', { targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'gone' }, idleTimeout: '1h' });
  await waitFor('frontends installed', () => (datapath.gateClosed.get('shop/gone') === true ? true : undefined));
  datapath.held.set('shop/gone', 2);

  await kc.makeApiClient(CustomObjectsApi).deleteNamespacedCustomObject({ group: 'zerohold.dev', version: 'v1alpha1', namespace: 'shop', plural: 'scaletozeros', name: 'gone' });
  await waitFor('the workload removed', () => (datapath.frontends.has('shop/gone') ? undefined : true));

  assert.equal(datapath.heldFlows('shop/gone').length, 0);
  assert.match(await metrics.registry.metrics(), /^zerohold_held_flows_dropped_total\{workload="shop\/gone",reason="workload-removed"\} 2$/m);
});

test('held flow without a wake wakes', async () => {
  await createApp('lost', 0);
  await scaleToZero('lost', { targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'lost' }, idleTimeout: '1h' });
  await waitFor('frontends installed', () => (datapath.gateClosed.get('shop/lost') === true ? true : undefined));

  // Held, but its wake signal never arrives, as when the wake ring was full.
  datapath.held.set('shop/lost', 1);

  await waitFor('the scale-up', async () => ((await replicasOf('lost')) === 1 ? true : undefined));
  assert.equal(controller.phaseOf('shop/lost')?.phase, 'Waking');
});

test('failed re-injection is counted', async () => {
  await createApp('flaky', 0);
  await scaleToZero('flaky', { targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'flaky' }, idleTimeout: '1h' });
  await waitFor('frontends installed', () => (datapath.gateClosed.get('shop/flaky') === true ? true : undefined));
  datapath.held.set('shop/flaky', 3);
  datapath.failing.add('shop/flaky');

  datapath.wake('shop/flaky');
  await createReadyEndpoint(kc, 'shop', 'flaky', '198.18.5.9');
  await waitFor('the release', () => (datapath.releases.includes('shop/flaky') ? true : undefined));

  await waitFor('the count', async () => (/^zerohold_held_flows_dropped_total\{workload="shop\/flaky",reason="reinject-failed"\} 3$/m.test(await metrics.registry.metrics()) ? true : undefined));
});

test('held flow limits reach the datapath', async () => {
  await createApp('limited', 0);
  await scaleToZero('limited', { targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'limited' }, idleTimeout: '1h', heldFlowLimits: { perService: 64, perClient: 4 } });
  await waitFor('the limits', () => datapath.heldLimits.get('shop/limited'));
  assert.deepEqual(datapath.heldLimits.get('shop/limited'), { perService: 64, perClient: 4 });

  await createApp('defaults', 0);
  await scaleToZero('defaults', { targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'defaults' }, idleTimeout: '1h' });
  await waitFor('the default limits', () => datapath.heldLimits.get('shop/defaults'));
  assert.deepEqual(datapath.heldLimits.get('shop/defaults'), { perService: undefined, perClient: undefined }, 'the agent defaults');
});

test('workload without opt-in is untouched', async () => {
  await createApp('other', 0);
  datapath.wake('shop/other');
  await new Promise((resolve) => setTimeout(resolve, 300));

  assert.equal(datapath.frontends.has('shop/other'), false);
  assert.equal(await replicasOf('other'), 0);
  assert.equal(server.requests.filter((r) => r.path.includes('/deployments/other/scale')).length, 0);
});

test('invalid ScaleToZero is reported', async () => {
  await createApp('broken', 0);
  // The test API server does not apply CRD schemas, like a cluster whose
  // CRD predates a field's pattern, so the bad duration is stored.
  await scaleToZero('broken', { targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'broken' }, idleTimeout: '1h', wakeTimeout: 'later' });
  const objects = kc.makeApiClient(CustomObjectsApi);

  await waitFor('the InvalidConfiguration event', async () => {
    const events = await core().listNamespacedEvent({ namespace: 'shop' });
    return events.items.some((e) => e.reason === 'InvalidConfiguration' && e.involvedObject.name === 'broken') ? true : undefined;
  });
  await waitFor('the Valid=False condition', async () => {
    const object = (await objects.getNamespacedCustomObject({ group: 'zerohold.dev', version: 'v1alpha1', namespace: 'shop', plural: 'scaletozeros', name: 'broken' })) as { status?: { conditions?: { type: string; status: string; message: string }[] } };
    const condition = object.status?.conditions?.find((c) => c.type === 'Valid');
    return condition?.status === 'False' && /spec\.wakeTimeout "later" is invalid/.test(condition.message) ? true : undefined;
  });

  datapath.wake('shop/broken');
  await new Promise((resolve) => setTimeout(resolve, 200));
  assert.equal(datapath.frontends.has('shop/broken'), false);
  assert.equal(await replicasOf('broken'), 0);
});

const validOf = async (name: string) => readStatus('ScaleToZero', (await kc.makeApiClient(CustomObjectsApi).getNamespacedCustomObject({ group: 'zerohold.dev', version: 'v1alpha1', namespace: 'shop', plural: 'scaletozeros', name })) as never).conditions?.find((c) => c.type === 'Valid');

test('missing target is reported', async () => {
  await scaleToZero('typo', { targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'typo' }, idleTimeout: '1h' });

  await waitFor('the Valid=False condition', async () => ((await validOf('typo'))?.status === 'False' ? true : undefined));
  assert.equal((await validOf('typo'))?.message, 'spec.targetRef: Deployment shop/typo not found');
  assert.equal(datapath.frontends.has('shop/typo'), false, 'nothing held for a target that does not exist');

  // Created later, the target makes the workload valid.
  await createApp('typo', 1);
  await waitFor('frontends installed', () => datapath.frontends.get('shop/typo'));
  await waitFor('the Valid=True condition', async () => ((await validOf('typo'))?.status === 'True' ? true : undefined));
});

test('workload without a Service frontend is reported', async () => {
  await apps().createNamespacedDeployment({ namespace: 'shop', body: deploymentFixture('headless', 0) });
  await core().createNamespacedService({ namespace: 'shop', body: { ...serviceFixture('headless'), spec: { ...serviceFixture('headless').spec, clusterIP: 'None' } } });
  await scaleToZero('headless', { targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'headless' }, idleTimeout: '1h' });

  await waitFor('the Valid=False condition', async () => ((await validOf('headless'))?.status === 'False' ? true : undefined));
  assert.match((await validOf('headless'))!.message!, /^nothing could wake the workload, because no Service of it has a frontend: Service shop\/headless: headless/);
  assert.equal(datapath.frontends.has('shop/headless'), false);
});

test('scale subresource target is read', async () => {
  await installCanaryCrd(kc);
  const custom = kc.makeApiClient(CustomObjectsApi);
  await custom.createNamespacedCustomObject({ ...CANARIES, namespace: 'shop', body: { apiVersion: 'example.com/v1', kind: 'Canary', metadata: { name: 'canary' }, spec: { replicas: 2 } } });
  await custom.patchNamespacedCustomObjectStatus(
    { ...CANARIES, namespace: 'shop', name: 'canary', body: { status: { replicas: 2, selector: 'app=canary' } } },
    setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
  );
  await core().createNamespacedService({ namespace: 'shop', body: serviceFixture('canary') });
  await createReadyEndpoint(kc, 'shop', 'canary', '198.18.5.7');
  await scaleToZero('canary', { targetRef: { apiVersion: 'example.com/v1', kind: 'Canary', name: 'canary' }, idleTimeout: '1h' });

  // Running with two replicas, the workload is warm: the gate stays open.
  await waitFor('frontends installed', () => datapath.frontends.get('shop/canary'));
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.equal(controller.phaseOf('shop/canary')?.phase, 'Warm');
  assert.equal(datapath.gateClosed.get('shop/canary'), false);

  // One at zero wakes through its /scale subresource and stays warm.
  await custom.createNamespacedCustomObject({ ...CANARIES, namespace: 'shop', body: { apiVersion: 'example.com/v1', kind: 'Canary', metadata: { name: 'sleepy' }, spec: { replicas: 0 } } });
  await core().createNamespacedService({ namespace: 'shop', body: serviceFixture('sleepy') });
  await scaleToZero('sleepy', { targetRef: { apiVersion: 'example.com/v1', kind: 'Canary', name: 'sleepy' }, idleTimeout: '1h', services: ['sleepy'] });
  await waitFor('the gate closed', () => (datapath.gateClosed.get('shop/sleepy') === true ? true : undefined));
  datapath.wake('shop/sleepy');
  const replicasOfSleepy = async () => ((await custom.getNamespacedCustomObject({ ...CANARIES, namespace: 'shop', name: 'sleepy' })) as { spec: { replicas: number } }).spec.replicas;
  await waitFor('the scale-up', async () => ((await replicasOfSleepy()) === 1 ? true : undefined));
  await createReadyEndpoint(kc, 'shop', 'sleepy', '198.18.5.8');
  await waitFor('the release', () => (datapath.releases.includes('shop/sleepy') ? true : undefined));
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.equal(controller.phaseOf('shop/sleepy')?.phase, 'Warm');
  assert.equal(datapath.gateClosed.get('shop/sleepy'), false);

  // A Canary that is not there makes the workload invalid.
  await scaleToZero('no-canary', { targetRef: { apiVersion: 'example.com/v1', kind: 'Canary', name: 'missing' }, idleTimeout: '1h' });
  await waitFor('the Valid=False condition', async () => ((await validOf('no-canary'))?.status === 'False' ? true : undefined));
  assert.equal((await validOf('no-canary'))?.message, 'spec.targetRef: Canary shop/missing (example.com/v1) not found');
});

test('watch drop relists new objects', async () => {
  server.faults.dropWatches({ abrupt: true });
  await createApp('late', 0);
  await scaleToZero('late', { targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'late' }, idleTimeout: '1h' });

  await waitFor('frontends for the object created across the drop', () => (datapath.gateClosed.get('shop/late') === true ? true : undefined), 10_000);
});

test('HPA above minimum blocks scale-down', async () => {
  await createApp('busy', 2);
  const autoscaling = kc.makeApiClient(AutoscalingV2Api);
  const hpa = await autoscaling.createNamespacedHorizontalPodAutoscaler({
    namespace: 'shop',
    body: { metadata: { name: 'busy' }, spec: { scaleTargetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'busy' }, minReplicas: 1, maxReplicas: 5 } },
  });
  // The HPA scales on its own metrics and wants three replicas.
  hpa.status = { currentReplicas: 2, desiredReplicas: 3 };
  await autoscaling.replaceNamespacedHorizontalPodAutoscalerStatus({ name: 'busy', namespace: 'shop', body: hpa });
  await scaleToZero('busy', { targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'busy' }, idleTimeout: '300ms' });

  await new Promise((resolve) => setTimeout(resolve, 1500));
  assert.equal(await replicasOf('busy'), 2, 'no scale-down while the HPA wants more than its minimum');

  const current = await autoscaling.readNamespacedHorizontalPodAutoscaler({ name: 'busy', namespace: 'shop' });
  current.status = { currentReplicas: 2, desiredReplicas: 1 };
  await autoscaling.replaceNamespacedHorizontalPodAutoscalerStatus({ name: 'busy', namespace: 'shop', body: current });
  await waitFor('the scale-down once the HPA is at its minimum', async () => ((await replicasOf('busy')) === 0 ? true : undefined), 10_000);
});

async function createAnnotatedApp(name: string, replicas: number, idleTimeout: string) {
  await apps().createNamespacedDeployment({ namespace: 'shop', body: deploymentFixture(name, replicas) });
  const service = serviceFixture(name);
  service.metadata!.annotations = { [IDLE_TIMEOUT_ANNOTATION]: idleTimeout };
  return core().createNamespacedService({ namespace: 'shop', body: service });
}

test('annotation shortcut wakes and releases', async () => {
  const service = await createAnnotatedApp('quick', 0, '1h');

  await waitFor('frontends of the annotated Service', () => (datapath.gateClosed.get('shop/service/quick') === true ? true : undefined));
  assert.deepEqual(datapath.frontends.get('shop/service/quick'), [{ address: service.spec!.clusterIP, protocol: 'tcp', port: 80 }]);

  datapath.wake('shop/service/quick');
  await waitFor('the scale-up', async () => ((await replicasOf('quick')) === 1 ? true : undefined));
  await createReadyEndpoint(kc, 'shop', 'quick', '198.18.5.2');
  await waitFor('the release', () => (datapath.releases.includes('shop/service/quick') ? true : undefined));

  await waitFor('status in the Service annotation', async () => {
    const status = await annotationStatusOf('quick');
    return status.phase === 'Warm' && (status.lastColdStartSeconds ?? 0) > 0 && readyOf(status)?.status === 'True' ? true : undefined;
  });
  const woken = (await core().listNamespacedEvent({ namespace: 'shop' })).items.find((e) => e.reason === 'Woken' && e.involvedObject.kind === 'Service');
  assert.equal(woken?.involvedObject.name, 'quick', 'the Service has the Woken event');
});

test('annotation shortcut scales down when idle', async () => {
  await createAnnotatedApp('nap', 1, '300ms');
  await createReadyEndpoint(kc, 'shop', 'nap', '198.18.5.3');

  await waitFor('the scale-down', async () => ((await replicasOf('nap')) === 0 ? true : undefined), 10_000);
  await waitFor('phase Cold in the annotation', async () => ((await annotationStatusOf('nap')).phase === 'Cold' ? true : undefined));
  assert.equal(datapath.gateClosed.get('shop/service/nap'), true);
});

test('annotation without one target is reported', async () => {
  const service = serviceFixture('orphan');
  service.metadata!.annotations = { [IDLE_TIMEOUT_ANNOTATION]: '10m' };
  await core().createNamespacedService({ namespace: 'shop', body: service });

  await waitFor('the InvalidConfiguration event on the Service', async () => {
    const events = await core().listNamespacedEvent({ namespace: 'shop' });
    const event = events.items.find((e) => e.reason === 'InvalidConfiguration' && e.involvedObject.name === 'orphan');
    return event?.involvedObject.kind === 'Service' ? event : undefined;
  });
  const valid = (await annotationStatusOf('orphan')).conditions?.find((c) => c.type === 'Valid');
  assert.equal(valid?.status, 'False');
  assert.match(valid?.message ?? '', /no single Deployment or StatefulSet matches the Service selector/);
  assert.equal(datapath.frontends.has('shop/service/orphan'), false);
});

test('ScaleToZero takes precedence over annotation', async () => {
  await createAnnotatedApp('both', 0, '10m');
  await scaleToZero('both', { targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'both' }, idleTimeout: '1h' });

  await waitFor('the ScaleToZero workload', () => (datapath.frontends.has('shop/both') ? true : undefined));
  await waitFor('the annotation workload to go', () => (datapath.frontends.has('shop/service/both') ? undefined : true));
});

const annotationValidOf = async (service: string) => (await annotationStatusOf(service)).conditions?.find((c) => c.type === 'Valid');

test('second ScaleToZero for a target is rejected', async () => {
  await createApp('dup', 0);
  await scaleToZero('dup-a', { targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'dup' }, idleTimeout: '1h' });
  await waitFor('the first workload', () => (datapath.frontends.has('shop/dup-a') ? true : undefined));

  await scaleToZero('dup-b', { targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'dup' }, idleTimeout: '5m' });
  const valid = await waitFor('Valid=False on the second', () => validOf('dup-b'));
  assert.equal(valid.status, 'False');
  assert.equal(valid.message, 'spec.targetRef: Deployment shop/dup is already scaled by ScaleToZero shop/dup-a; delete one of the two');
  assert.equal(datapath.frontends.has('shop/dup-b'), false);
  assert.equal(datapath.frontends.has('shop/dup-a'), true, 'the first keeps its workload');
});

test('annotation covers every selecting Service', async () => {
  const service = await createAnnotatedApp('multi', 0, '1h');
  const admin = serviceFixture('multi-admin');
  admin.spec!.selector = { app: 'multi' };
  const adminService = await core().createNamespacedService({ namespace: 'shop', body: admin });

  const frontends = await waitFor('frontends of both Services', () => (datapath.frontends.get('shop/service/multi')?.length === 2 ? datapath.frontends.get('shop/service/multi') : undefined));
  assert.deepEqual(frontends.map((frontend) => frontend.address).sort(), [service.spec!.clusterIP, adminService.spec!.clusterIP].sort());
});

test('second annotation for a target is rejected', async () => {
  await createAnnotatedApp('twin', 0, '1h');
  const second = serviceFixture('twin-b');
  second.spec!.selector = { app: 'twin' };
  second.metadata!.annotations = { [IDLE_TIMEOUT_ANNOTATION]: '5m' };
  await core().createNamespacedService({ namespace: 'shop', body: second });

  const valid = await waitFor('Valid=False on the second Service', () => annotationValidOf('twin-b'));
  assert.equal(valid.status, 'False');
  assert.equal(valid.message, 'the Service already belongs to the workload of the annotation on Service shop/twin, which takes in every Service that selects its pods; remove this annotation');
  assert.equal(datapath.frontends.has('shop/service/twin-b'), false);
  assert.equal(datapath.frontends.get('shop/service/twin')?.length, 2, 'the first covers both Services');
});

test('annotation beside a ScaleToZero is rejected', async () => {
  await createApp('split', 0);
  const other = serviceFixture('split-other');
  other.spec!.selector = { app: 'split' };
  other.metadata!.annotations = { [IDLE_TIMEOUT_ANNOTATION]: '5m' };
  await scaleToZero('split', { targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'split' }, services: ['split'], idleTimeout: '1h' });
  await waitFor('the ScaleToZero workload', () => (datapath.frontends.has('shop/split') ? true : undefined));
  await core().createNamespacedService({ namespace: 'shop', body: other });

  const valid = await waitFor('Valid=False on the annotated Service', () => annotationValidOf('split-other'));
  assert.equal(valid.message, 'Deployment shop/split is already scaled by ScaleToZero shop/split; remove the annotation, or list this Service in the spec.services of ScaleToZero shop/split');
  assert.equal(datapath.frontends.has('shop/service/split-other'), false);
});

test('invalid ScaleToZero leaves the annotation', async () => {
  await createAnnotatedApp('ghost', 0, '1h');
  await scaleToZero('ghost', { targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'ghost' }, services: ['no-such-service'], idleTimeout: '1h' });

  const valid = await waitFor('Valid=False on the ScaleToZero', () => validOf('ghost'));
  assert.match(valid.message ?? '', /nothing could wake the workload.*Service shop\/no-such-service not found/);
  await waitFor('the annotation workload', () => (datapath.frontends.has('shop/service/ghost') ? true : undefined));
  assert.notEqual((await annotationValidOf('ghost'))?.status, 'False', 'the annotation is valid');
});

test('annotation on another target\'s Service is reported', async () => {
  await createApp('oa', 0);
  await scaleToZero('oa', { targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'oa' }, services: ['oa', 'ob'], idleTimeout: '1h' });
  await createAnnotatedApp('ob', 0, '1h');

  const valid = await waitFor('Valid=False on the annotated Service', () => annotationValidOf('ob'));
  assert.equal(valid.message, 'the Service already belongs to the workload of ScaleToZero shop/oa, which scales another target; remove this annotation');
  assert.equal(datapath.frontends.has('shop/service/ob'), false);
});

test('shared Service belongs to the oldest', async () => {
  for (const name of ['sx', 'sy']) {
    const deployment = deploymentFixture(name, 0);
    deployment.spec!.template.metadata!.labels = { app: name, team: 'shared' };
    await apps().createNamespacedDeployment({ namespace: 'shop', body: deployment });
  }
  const shared = serviceFixture('shared');
  shared.spec!.selector = { team: 'shared' };
  const sharedService = await core().createNamespacedService({ namespace: 'shop', body: shared });
  const sy = await core().createNamespacedService({ namespace: 'shop', body: serviceFixture('sy') });
  await scaleToZero('sy', { targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'sy' }, services: ['sy', 'shared'], idleTimeout: '1h' });
  await waitFor('the ScaleToZero workload', () => (datapath.frontends.has('shop/sy') ? true : undefined));

  const annotated = serviceFixture('sx');
  annotated.metadata!.annotations = { [IDLE_TIMEOUT_ANNOTATION]: '1h' };
  const sxService = await core().createNamespacedService({ namespace: 'shop', body: annotated });
  const frontends = await waitFor('the annotation workload', () => datapath.frontends.get('shop/service/sx'));

  assert.deepEqual(frontends.map((frontend) => frontend.address), [sxService.spec!.clusterIP], 'the selector brings in shared, which sy claimed first');
  assert.deepEqual(datapath.frontends.get('shop/sy')!.map((frontend) => frontend.address).sort(), [sy.spec!.clusterIP, sharedService.spec!.clusterIP].sort());

  await scaleToZero('sz', { targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'sx' }, services: ['shared'], idleTimeout: '1h' });
  const valid = await waitFor('Valid=False on the later claim', () => validOf('sz'));
  assert.equal(valid.message, 'spec.services: Service shop/shared belongs to the workload of ScaleToZero shop/sy; a Service can wake one workload only');
});

// The controller of another agent in the same cluster, a follower.
function followerController(datapath: DatapathPort, followerReadiness: EndpointReadiness, node: string): Controller {
  return new Controller({
    kc,
    nodeAddresses: ['198.18.0.1'],
    datapath,
    readiness: followerReadiness,
    scaler: new KubeScaler(kc),
    events: new EventRecorder(kc, node, log),
    activity: { lastActivity: () => undefined },
    isLeader: () => false,
    log,
    tickMs: 50,
  });
}

test('restarted controller keeps frontends', async () => {
  // A second agent starting against a cluster where shop/web exists must
  // install its frontends at once, never an empty set from a cache that
  // has not listed yet.
  const calls: { workload: string; frontends: number }[] = [];
  const recording = new (class extends FakeDatapath {
    override setFrontends(...args: Parameters<FakeDatapath['setFrontends']>): void {
      calls.push({ workload: args[0], frontends: args[1].length });
      super.setFrontends(...args);
    }
  })();
  const restartedReadiness = new EndpointReadiness(kc, log);
  await restartedReadiness.start();
  const restarted = followerController(recording, restartedReadiness, 'node-2');
  try {
    await restarted.start();
    const web = calls.filter((c) => c.workload === 'shop/web');
    assert.ok(web.length > 0, 'shop/web installed during start');
    assert.deepEqual(web.map((c) => c.frontends), web.map(() => 1), 'every install had the frontend');
    // So are workloads whose target only its /scale subresource describes.
    assert.ok(calls.some((c) => c.workload === 'shop/sleepy' && c.frontends === 1), 'shop/sleepy installed during start');
  } finally {
    await restarted.stop();
    await restartedReadiness.stop();
  }
});

test('removed workload reports its dropped flows with the Service', async () => {
  // The observer endpoint names the Service of each dropped flow, which
  // the controller has only while it still tracks the workload.
  const events: HeldFlowEvent[] = [];
  const inner = Object.assign(new FakeDatapath(), { workloadOf: () => undefined, interfaceName: () => undefined });
  let observed: Controller | undefined;
  const observedReadiness = new EndpointReadiness(kc, log);
  await observedReadiness.start();
  const port = new ObservedDatapath({ inner, observer: { record: (event: HeldFlowEvent) => events.push(event) } as never, serviceOf: (workload) => observed!.serviceNames(workload)[0] });
  observed = followerController(port, observedReadiness, 'node-3');
  try {
    await createApp('observed', 0);
    await scaleToZero('observed', { targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'observed' }, idleTimeout: '1h' });
    await observed.start();
    await waitFor('frontends installed', () => inner.frontends.get('shop/observed'));
    inner.held.set('shop/observed', 1);

    await kc.makeApiClient(CustomObjectsApi).deleteNamespacedCustomObject({ group: 'zerohold.dev', version: 'v1alpha1', namespace: 'shop', plural: 'scaletozeros', name: 'observed' });
    await waitFor('the dropped flow reported', () => (events.some((e) => e.kind === 'expired') ? true : undefined));

    const dropped = events.find((e) => e.kind === 'expired')!;
    assert.equal(dropped.service, 'shop/observed');
    assert.equal(dropped.cause, 'no longer opts in');
  } finally {
    await observed.stop();
    await observedReadiness.stop();
  }
});
