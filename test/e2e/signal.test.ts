// The agent process in signal mode, for stock Cilium: it loads no
// datapath of its own, and a Hubble drop of a SYN to a Service without
// backends wakes the workload. A test Hubble server takes the place of the
// node's Hubble socket.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { create } from '@bufbuild/protobuf';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import { AppsV1Api, CoreV1Api } from '@kubernetes/client-node';

import { CiliumEventTypeSchema, DropReason, FlowSchema, Verdict } from '../../src/hubble/gen/flow/flow_pb.js';
import { serviceFlow } from '../hubble/flows.js';
import { TestHubbleServer } from '../hubble/test-server.js';
import { waitFor } from '../lib/netns.js';
import { AgentChild } from './agent-child.js';
import { writeSignalConfig } from './signal-config.js';
import { type ShopCluster, startShopCluster } from './shop-cluster.js';

let cluster: ShopCluster;
let hubble: TestHubbleServer;
let workDir: string;
let agent: AgentChild | undefined;

before(async () => {
  cluster = await startShopCluster();

  workDir = mkdtempSync(path.join(tmpdir(), 'zh-signal-'));
  hubble = new TestHubbleServer({ address: { kind: 'socket', path: path.join(workDir, 'cilium-hubble.sock') } });
  await hubble.start();

  agent = await AgentChild.start(writeSignalConfig(workDir, cluster.kubeconfigFile.path, ['idle: { reportInterval: 1s }']));
});

after(async () => {
  agent?.killSync();
  await hubble?.stop();
  await cluster?.close();
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

test('Hubble drop wakes the workload', async () => {
  // Hubble streams flows to managed Services only, once the agent follows
  // shop/web; until then a published flow would not reach it.
  await waitFor('the agent to follow the Service', () => (hubble.openStreams > 0 ? true : undefined), 10_000);
  await new Promise((resolve) => setTimeout(resolve, 300));

  const drop = create(FlowSchema, serviceFlow({ namespace: 'shop', service: 'web', serviceIp: cluster.serviceIP, port: 80, verdict: Verdict.DROPPED, uuid: 'syn-1', time: timestampFromMs(Date.now()) }));
  drop.eventType = create(CiliumEventTypeSchema, { type: 1, subType: DropReason.SERVICE_BACKEND_NOT_FOUND });
  drop.dropReasonDesc = DropReason.SERVICE_BACKEND_NOT_FOUND;
  hubble.publish(drop);

  const apps = cluster.kc.makeApiClient(AppsV1Api);
  await waitFor('the scale-up', async () => ((await apps.readNamespacedDeployment({ name: 'web', namespace: 'shop' })).spec?.replicas === 1 ? true : undefined), 10_000);
  assert.match(agent!.output, /"Cold -> Waking"/);

  // The Woken Event names the Service from the Hubble flow.
  const woken = await waitFor('the Woken event', async () => {
    const events = await cluster.kc.makeApiClient(CoreV1Api).listNamespacedEvent({ namespace: 'shop' });
    return events.items.find((e) => e.reason === 'Woken' && e.involvedObject.kind === 'ScaleToZero');
  }, 5000);
  assert.match(woken.message ?? '', /to tcp\/198\.19\.\d+\.\d+:80 \(Service shop\/web\)/);
});

test('SIGTERM stops the signal agent', async () => {
  assert.equal(await agent!.terminate(), 0, agent!.output);
});
