// Cluster-wide scale-down with two agents on one test API server. The
// leader scales to zero only when no node saw activity for idleTimeout and
// every live node has closed its gate. A follower takes over when the
// leader is gone.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { AppsV1Api, CoreV1Api, CustomObjectsApi, DiscoveryV1Api, type KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';

import { Controller } from '../../src/agent/controller.js';
import { EndpointReadiness } from '../../src/agent/endpoint-readiness.js';
import { EventRecorder } from '../../src/agent/events.js';
import { NodeReports } from '../../src/agent/node-reports.js';
import type { ScalePort, TargetRef } from '../../src/agent/ports.js';
import { KubeScaler } from '../../src/agent/scaler.js';
import { deploymentFixture, serviceFixture } from '../apiserver/fixtures.js';
import { kubeConfigFor } from '../apiserver/kubeconfig.js';
import { startApiServer, type TestApiServer } from '../apiserver/server.js';
import { waitFor } from '../lib/netns.js';
import { FakeDatapath } from './testing/fake-datapath.js';
import { createReadyEndpoint, createScaleToZero, installScaleToZeroCrd } from './testing/objects.js';

const log = pino({ level: process.env.ZH_TEST_LOG ?? 'silent' });
let server: TestApiServer;
let kc: KubeConfig;

interface Agent {
  node: string;
  datapath: FakeDatapath;
  controller: Controller;
  readiness: EndpointReadiness;
  reports: NodeReports;
  leader: boolean;
  busy: boolean;
  stopped: boolean;
  // Gates of both agents at the moment this agent scaled to zero.
  gatesAtScaleDown: boolean[] | null;
}

const agents: Agent[] = [];

before(async () => {
  server = await startApiServer({ namespaces: ['shop', 'zerohold-system'] });
  kc = kubeConfigFor(server.url);
  await installScaleToZeroCrd(kc);
});

after(async () => {
  for (const agent of agents) await stopAgent(agent);
  await server.close();
});

async function startAgent(node: string, leader: boolean): Promise<Agent> {
  const agentKc = kubeConfigFor(server.url);
  const readiness = new EndpointReadiness(agentKc, log);
  const reports = new NodeReports(agentKc, { namespace: 'zerohold-system', nodeName: node, staleAfterMs: 1500 }, log);
  const datapath = new FakeDatapath();
  const agent = { node, datapath, readiness, reports, leader, busy: false, stopped: false, gatesAtScaleDown: null } as Agent;

  const real = new KubeScaler(agentKc);
  const scaler: ScalePort = {
    scaleUp: (ns: string, target: TargetRef, replicas: number) => real.scaleUp(ns, target, replicas),
    scaleTo: (ns: string, target: TargetRef, replicas: number) => {
      agent.gatesAtScaleDown = agents.filter((a) => !a.stopped).map((a) => a.datapath.gateClosed.get('shop/web') ?? false);
      return real.scaleTo(ns, target, replicas);
    },
    readScale: (ns: string, target: TargetRef) => real.readScale(ns, target),
  };
  agent.controller = new Controller({
    kc: agentKc,
    nodeAddresses: [],
    datapath,
    readiness,
    scaler,
    events: new EventRecorder(agentKc, node, log),
    activity: { lastActivity: () => (agent.busy ? Number(process.hrtime.bigint() / 1_000_000n) : undefined) },
    isLeader: () => agent.leader,
    log,
    reports,
    tickMs: 50,
    reportIntervalMs: 100,
    scaleDownTimeoutMs: 10_000,
  });
  await readiness.start();
  await reports.start();
  await agent.controller.start();
  agents.push(agent);
  return agent;
}

async function stopAgent(agent: Agent): Promise<void> {
  if (agent.stopped) return;
  agent.stopped = true;
  await agent.controller.stop();
  await agent.readiness.stop();
  await agent.reports.stop();
}

const apps = () => kc.makeApiClient(AppsV1Api);
const replicas = async () => (await apps().readNamespacedDeployment({ name: 'web', namespace: 'shop' })).spec?.replicas;
const statusOf = async () => {
  const object = (await kc.makeApiClient(CustomObjectsApi).getNamespacedCustomObjectStatus({ group: 'zerohold.dev', version: 'v1alpha1', namespace: 'shop', plural: 'scaletozeros', name: 'web' })) as {
    status?: { phase?: string; heldFlows?: number };
  };
  return object.status ?? {};
};
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function deployWarmWorkload(): Promise<void> {
  await apps().createNamespacedDeployment({ namespace: 'shop', body: deploymentFixture('web', 1) });
  await kc.makeApiClient(CoreV1Api).createNamespacedService({ namespace: 'shop', body: serviceFixture('web') });
  await createReadyEndpoint(kc, 'shop', 'web', '198.18.5.1');
  await createScaleToZero(kc, 'shop', 'web', { targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'web' }, idleTimeout: '1s' });
}

test('scale-down waits for every node', async () => {
  const a = await startAgent('node-a', true);
  const b = await startAgent('node-b', false);
  // Only node-b receives traffic: the leader must learn of it from b's report.
  b.busy = true;
  await deployWarmWorkload();

  await waitFor('both agents to install frontends', () => (a.datapath.frontends.has('shop/web') && b.datapath.frontends.has('shop/web') ? true : undefined));
  await sleep(2500);
  assert.equal(await replicas(), 1, 'activity on node-b keeps the workload up');

  // No traffic passes node-b now, but it holds a flow, as while a release
  // waits for the backend to listen: that is activity too.
  b.busy = false;
  b.datapath.held.set('shop/web', 1);
  await sleep(2500);
  assert.equal(await replicas(), 1, 'a flow held on node-b keeps the workload up');

  b.datapath.held.delete('shop/web');
  await waitFor('the scale to zero', async () => ((await replicas()) === 0 ? true : undefined), 10_000);
  assert.deepEqual(a.gatesAtScaleDown, [true, true], 'both gates were closed before replicas reached zero');
  assert.equal(b.gatesAtScaleDown, null, 'the follower never scaled');
  await waitFor('both agents cold', () => (a.controller.phaseOf('shop/web')?.phase === 'Cold' && b.controller.phaseOf('shop/web')?.phase === 'Cold' ? true : undefined));

  // The leader writes the phase after the replicas, which both agents may
  // see first.
  await waitFor('status.phase Cold', async () => ((await statusOf()).phase === 'Cold' ? true : undefined));

  // Flows held on both nodes add up in status.heldFlows. Their wake
  // scales the workload up again, and with the pods gone, as the
  // EndpointSlice controller reports them, the flows stay held meanwhile.
  await kc.makeApiClient(DiscoveryV1Api).deleteNamespacedEndpointSlice({ name: 'web-1', namespace: 'shop' });
  a.datapath.held.set('shop/web', 2);
  b.datapath.held.set('shop/web', 3);
  a.datapath.wake('shop/web');
  b.datapath.wake('shop/web');
  await waitFor('held flows summed over both nodes', async () => ((await statusOf()).heldFlows === 5 ? true : undefined), 5000);
  a.datapath.held.clear();
  b.datapath.held.clear();
  await waitFor('held flows back to zero', async () => ((await statusOf()).heldFlows === 0 ? true : undefined), 5000);
  // The pod is Ready again, for the next test.
  await createReadyEndpoint(kc, 'shop', 'web', '198.18.5.1');
});

test('follower takes over from lost leader', async () => {
  const [a, b] = agents as [Agent, Agent];
  // Wake the workload again, then lose the leader.
  b.datapath.wake('shop/web');
  await waitFor('the wake', async () => ((await replicas()) === 1 ? true : undefined));
  b.busy = true;
  await stopAgent(a);
  b.leader = true;
  b.busy = false;

  // node-a's report goes stale, so node-b proceeds alone.
  await waitFor('the scale to zero by node-b', async () => ((await replicas()) === 0 ? true : undefined), 15_000);
  assert.deepEqual(b.gatesAtScaleDown, [true]);
});
