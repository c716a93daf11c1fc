// The controller where API errors, leader changes and concurrent wakes
// meet a wake or a scale-down, against the test API server with a fake
// datapath. Each test runs its own controllers in its own namespace.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { ApiException, AppsV1Api, CoreV1Api, CustomObjectsApi, type KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { pino } from 'pino';

import { Controller, type ControllerOptions } from '../../src/agent/controller.js';
import { EndpointReadiness } from '../../src/agent/endpoint-readiness.js';
import { EventRecorder } from '../../src/agent/events.js';
import { NodeReports } from '../../src/agent/node-reports.js';
import type { BackendCheck, ScalePort, TargetRef } from '../../src/agent/ports.js';
import { KubeScaler, ScaleConflictError } from '../../src/agent/scaler.js';
import { deploymentFixture, serviceFixture } from '../apiserver/fixtures.js';
import { kubeConfigFor } from '../apiserver/kubeconfig.js';
import { startApiServer, type TestApiServer } from '../apiserver/server.js';
import { waitFor } from '../lib/netns.js';
import { FakeDatapath } from './testing/fake-datapath.js';
import { createReadyEndpoint, createScaleToZero, installScaleToZeroCrd } from './testing/objects.js';

const log = pino({ level: process.env.ZH_TEST_LOG ?? 'silent' });
const MERGE_PATCH = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
const SCALE_TO_ZERO = { group: 'zerohold.dev', version: 'v1alpha1', plural: 'scaletozeros' };
let server: TestApiServer;
let kc: KubeConfig;

before(async () => {
  server = await startApiServer({ namespaces: ['idle', 'wakerace', 'wakefail', 'failover', 'conflict', 'race', 'events', 'zerohold-system'] });
  kc = kubeConfigFor(server.url);
  await installScaleToZeroCrd(kc);
});

after(async () => {
  await server.close();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const apps = () => kc.makeApiClient(AppsV1Api);
const replicasOf = async (namespace: string) => (await apps().readNamespacedDeployment({ name: 'web', namespace })).spec?.replicas;
const phaseInStatus = async (namespace: string) =>
  ((await kc.makeApiClient(CustomObjectsApi).getNamespacedCustomObject({ ...SCALE_TO_ZERO, namespace, name: 'web' })) as { status?: { phase?: string } }).status?.phase;

async function deploy(namespace: string, replicas: number, spec: Record<string, unknown>): Promise<void> {
  await apps().createNamespacedDeployment({ namespace, body: deploymentFixture('web', replicas) });
  await kc.makeApiClient(CoreV1Api).createNamespacedService({ namespace, body: serviceFixture('web') });
  await createScaleToZero(kc, namespace, 'web', { targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'web' }, ...spec });
}

interface Running {
  controller: Controller;
  datapath: FakeDatapath;
  stop: () => Promise<void>;
}

async function run(options: Partial<ControllerOptions> & { node?: string; reports?: NodeReports }): Promise<Running> {
  const agentKc = kubeConfigFor(server.url);
  const readiness = new EndpointReadiness(agentKc, log);
  const datapath = new FakeDatapath();
  await readiness.start();
  if (options.reports) await options.reports.start();
  const controller = new Controller({
    kc: agentKc,
    nodeAddresses: [],
    datapath,
    readiness,
    scaler: new KubeScaler(agentKc),
    events: new EventRecorder(agentKc, options.node ?? 'node-1', log),
    activity: { lastActivity: () => undefined },
    isLeader: () => true,
    log: log.child({ node: options.node ?? 'node-1' }),
    tickMs: 50,
    ...options,
  });
  await controller.start();
  return {
    controller,
    datapath,
    stop: async () => {
      await controller.stop();
      await readiness.stop();
      await options.reports?.stop();
    },
  };
}

test('failed scale-up is retried', async () => {
  const namespace = 'wakefail';
  await deploy(namespace, 0, { idleTimeout: '1h' });
  const real = new KubeScaler(kc);
  let scaleUps = 0;
  const scaler: ScalePort = {
    // The first write meets a passing API server error, as during an etcd
    // leader change.
    scaleUp: async (ns: string, target: TargetRef, replicas: number) => {
      scaleUps++;
      if (scaleUps === 1) throw new ApiException(503, 'Service Unavailable', {}, {});
      return real.scaleUp(ns, target, replicas);
    },
    scaleTo: (ns: string, target: TargetRef, replicas: number) => real.scaleTo(ns, target, replicas),
    readScale: (ns: string, target: TargetRef) => real.readScale(ns, target),
  };
  const agent = await run({ scaler });
  try {
    await waitFor('the gate closed', () => (agent.datapath.gateClosed.get(`${namespace}/web`) === true ? true : undefined));
    agent.datapath.held.set(`${namespace}/web`, 1);
    agent.datapath.wake(`${namespace}/web`);
    await sleep(3000);
    assert.equal(agent.controller.phaseOf(`${namespace}/web`)?.phase, 'Waking');
    assert.equal(scaleUps, 2, 'a second scale-up within 3 s of the failed one');
    assert.equal(await replicasOf(namespace), 1);
  } finally {
    await agent.stop();
  }
});

test('new leader finishes a pending scale-down', async () => {
  const namespace = 'failover';
  await deploy(namespace, 1, { idleTimeout: '1s' });
  await createReadyEndpoint(kc, namespace, 'web', '198.18.6.1');
  // The status that a previous leader wrote before it restarted.
  await kc.makeApiClient(CustomObjectsApi).patchNamespacedCustomObjectStatus({ ...SCALE_TO_ZERO, namespace, name: 'web', body: { status: { phase: 'ScalingDown', scaleDownId: 'old-leader' } } }, MERGE_PATCH);

  const agent = await run({ scaleDownTimeoutMs: 500 });
  try {
    await waitFor('the phase', () => agent.controller.phaseOf(`${namespace}/web`));
    // Four times the scale-down timeout: scaled to zero, or called off.
    await sleep(2000);
    const phase = agent.controller.phaseOf(`${namespace}/web`)?.phase;
    const replicas = await replicasOf(namespace);
    assert.ok(replicas === 0 || phase !== 'ScalingDown', `still ScalingDown after 2 s with ${replicas} replicas, gate closed: ${agent.datapath.gateClosed.get(`${namespace}/web`)}`);
  } finally {
    await agent.stop();
  }
});

test('conflicted scale to zero is retried', async () => {
  const namespace = 'conflict';
  await deploy(namespace, 1, { idleTimeout: '1s' });
  await createReadyEndpoint(kc, namespace, 'web', '198.18.6.2');
  const real = new KubeScaler(kc);
  let scaleTos = 0;
  const scaler: ScalePort = {
    scaleUp: (ns: string, target: TargetRef, replicas: number) => real.scaleUp(ns, target, replicas),
    // The Deployment controller wrote status between the read and the
    // write, as it does while pods change.
    scaleTo: async (ns: string, target: TargetRef, replicas: number) => {
      scaleTos++;
      if (scaleTos === 1) throw new ScaleConflictError(`Deployment ${ns}/${target.name}`);
      return real.scaleTo(ns, target, replicas);
    },
    readScale: (ns: string, target: TargetRef) => real.readScale(ns, target),
  };
  const agent = await run({ scaler, scaleDownTimeoutMs: 500 });
  try {
    await waitFor('the first scale to zero', () => (scaleTos >= 1 ? true : undefined), 10_000);
    await sleep(3000);
    const phase = agent.controller.phaseOf(`${namespace}/web`)?.phase;
    const replicas = await replicasOf(namespace);
    assert.ok(replicas === 0 || phase !== 'ScalingDown', `after ${scaleTos} scaleTo calls: phase ${phase}, status.phase ${await phaseInStatus(namespace)}, ${replicas} replicas`);
  } finally {
    await agent.stop();
  }
});

test('release after scale to zero keeps the gate closed', async () => {
  const namespace = 'race';
  await deploy(namespace, 0, { idleTimeout: '1h' });
  let programmed: (value: boolean) => void = () => {};
  const backendCheck: BackendCheck = { waitProgrammed: () => new Promise<boolean>((resolve) => (programmed = resolve)) };
  const agent = await run({ backendCheck });
  const key = `${namespace}/web`;
  const target = { apiVersion: 'apps/v1', kind: 'Deployment', name: 'web' };
  try {
    await waitFor('the gate closed', () => (agent.datapath.gateClosed.get(key) === true ? true : undefined));

    // A person scales the Cold workload up, and its pod turns Ready: the
    // controller goes Warm and its release waits for the load balancer.
    await new KubeScaler(kc).scaleUp(namespace, target, 1);
    await createReadyEndpoint(kc, namespace, 'web', '198.18.6.3');
    await waitFor('Warm, release waiting for the backend', () => (agent.controller.phaseOf(key)?.phase === 'Warm' ? true : undefined));

    // The person scales back to zero before the load balancer caught up.
    await new KubeScaler(kc).scaleTo(namespace, target, 0);
    await waitFor('Cold', () => (agent.controller.phaseOf(key)?.phase === 'Cold' ? true : undefined));
    await sleep(500);
    assert.equal(agent.datapath.gateClosed.get(key), true, 'gate closed on Cold');

    programmed(true);
    await sleep(1000);
    assert.equal(agent.controller.phaseOf(key)?.phase, 'Cold');
    assert.equal(agent.controller.phaseOf(key)?.gateClosed, true, 'the controller believes the gate is closed');
    assert.equal(agent.datapath.gateClosed.get(key), true, 'the datapath gate is closed too');
    assert.equal(agent.datapath.releases.includes(key), false, 'the release that waited opened the gate');
  } finally {
    await agent.stop();
  }
});

test('ScaledToZero recorded once per scale-down', async () => {
  const namespace = 'events';
  const started: Running[] = [];
  try {
    for (const [node, leader] of [['node-a', true], ['node-b', false], ['node-c', false]] as const) {
      const reports = new NodeReports(kubeConfigFor(server.url), { namespace: 'zerohold-system', nodeName: node, staleAfterMs: 1500 }, log);
      started.push(await run({ node, reports, isLeader: () => leader, reportIntervalMs: 100, scaleDownTimeoutMs: 10_000 }));
    }
    await deploy(namespace, 1, { idleTimeout: '1s' });
    await createReadyEndpoint(kc, namespace, 'web', '198.18.6.4');
    await waitFor('the scale to zero', async () => ((await replicasOf(namespace)) === 0 ? true : undefined), 15_000);
    await waitFor('every node Cold', () => (started.every((a) => a.controller.phaseOf(`${namespace}/web`)?.phase === 'Cold') ? true : undefined));
    await sleep(500);

    const events = (await kc.makeApiClient(CoreV1Api).listNamespacedEvent({ namespace })).items.filter((e) => e.reason === 'ScaledToZero' && e.involvedObject.kind === 'ScaleToZero');
    assert.equal(events.length, 1, `ScaledToZero Events from: ${events.map((e) => e.source?.host).join(', ')}`);
  } finally {
    for (const agent of started) await agent.stop();
  }
});

test('wake during the write of zero wins', async () => {
  const namespace = 'wakerace';
  const key = `${namespace}/web`;
  const real = new KubeScaler(kc);
  let scaleToCalled = false;
  let landed: Promise<unknown> = Promise.resolve();
  let proceed: () => void = () => {};
  const paused = new Promise<void>((resolve) => (proceed = resolve));
  // The leader's scale to zero is under way: it has decided, and its write
  // lands after the follower's wake.
  const leaderScaler: ScalePort = {
    scaleUp: (ns: string, target: TargetRef, replicas: number) => real.scaleUp(ns, target, replicas),
    scaleTo: (ns: string, target: TargetRef, replicas: number) => {
      scaleToCalled = true;
      landed = paused.then(() => real.scaleTo(ns, target, replicas));
      return landed as ReturnType<ScalePort['scaleTo']>;
    },
    readScale: (ns: string, target: TargetRef) => real.readScale(ns, target),
  };
  const reportsOf = (node: string) => new NodeReports(kubeConfigFor(server.url), { namespace: 'zerohold-system', nodeName: node, staleAfterMs: 1500 }, log);
  const leader = await run({ node: 'node-l', reports: reportsOf('node-l'), scaler: leaderScaler, reportIntervalMs: 100, scaleDownTimeoutMs: 10_000 });
  const follower = await run({ node: 'node-f', reports: reportsOf('node-f'), isLeader: () => false, reportIntervalMs: 100, scaleDownTimeoutMs: 10_000 });
  try {
    await deploy(namespace, 1, { idleTimeout: '1s' });
    await createReadyEndpoint(kc, namespace, 'web', '198.18.6.5');
    await waitFor('the leader writing zero', () => (scaleToCalled ? true : undefined), 15_000);

    follower.datapath.held.set(key, 1);
    follower.datapath.wake(key);
    await waitFor('the follower past Waking', () => (follower.controller.phaseOf(key)?.phase === 'Warm' || follower.datapath.releases.length > 0 ? true : undefined), 3000).catch(() => undefined);
    const followerBefore = follower.controller.phaseOf(key)?.phase;
    proceed();

    // The zero lands, and the follower's wake scales up again. The idle
    // timeout of 1 s scales the workload down later, as it should.
    await landed;
    await waitFor(
      'the wake to scale up again',
      async () => ((await replicasOf(namespace)) ?? 0) >= 1 ? true : undefined,
      3000,
    ).catch(async (err: Error) => {
      throw new Error(`${err.message}: follower went ${followerBefore} then ${follower.controller.phaseOf(key)?.phase}, status.phase ${await phaseInStatus(namespace)}`);
    });
  } finally {
    proceed();
    await leader.stop();
    await follower.stop();
  }
});

test('idle follower closes gate at zero', async () => {
  const namespace = 'idle';
  const key = `${namespace}/web`;
  const follower = await run({ isLeader: () => false });
  try {
    await deploy(namespace, 1, { idleTimeout: '1s' });
    await createReadyEndpoint(kc, namespace, 'web', '198.18.6.6');
    await waitFor('Idle', () => (follower.controller.phaseOf(key)?.phase === 'Idle' ? true : undefined), 5000);

    // Someone else, such as KEDA with minReplicaCount 0, scales it to zero.
    await new KubeScaler(kc).scaleTo(namespace, { apiVersion: 'apps/v1', kind: 'Deployment', name: 'web' }, 0);
    await sleep(1000);
    assert.equal(follower.datapath.gateClosed.get(key), true, `gate open at 0 replicas in phase ${follower.controller.phaseOf(key)?.phase}`);
  } finally {
    await follower.stop();
  }
});
