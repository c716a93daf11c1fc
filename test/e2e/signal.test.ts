// The agent process in signal mode, for stock Cilium: it loads no
// datapath of its own, and a Hubble drop of a SYN to a Service without
// backends wakes the workload. A test Hubble server takes the place of the
// node's Hubble socket.

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { create } from '@bufbuild/protobuf';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import { AppsV1Api, CoreV1Api, type KubeConfig } from '@kubernetes/client-node';

import { CiliumEventTypeSchema, DropReason, FlowSchema, Verdict } from '../../src/hubble/gen/flow/flow_pb.js';
import { repoRoot } from '../../src/paths.js';
import { deploymentFixture, serviceFixture } from '../apiserver/fixtures.js';
import { kubeConfigFor, writeKubeConfigFile, type KubeConfigFile } from '../apiserver/kubeconfig.js';
import { startApiServer, type TestApiServer } from '../apiserver/server.js';
import { createScaleToZero, installScaleToZeroCrd } from '../agent/testing/objects.js';
import { serviceFlow } from '../hubble/flows.js';
import { TestHubbleServer } from '../hubble/test-server.js';
import { waitFor } from '../lib/netns.js';

let server: TestApiServer;
let kc: KubeConfig;
let kubeconfigFile: KubeConfigFile;
let hubble: TestHubbleServer;
let workDir: string;
let agent: ChildProcess | null = null;
let agentOutput = '';
let serviceIP: string;

before(async () => {
  server = await startApiServer({ namespaces: ['shop', 'zerohold-system'] });
  kc = kubeConfigFor(server.url);
  kubeconfigFile = await writeKubeConfigFile(server.url);
  await installScaleToZeroCrd(kc);

  await kc.makeApiClient(AppsV1Api).createNamespacedDeployment({ namespace: 'shop', body: deploymentFixture('web', 0) });
  const service = await kc.makeApiClient(CoreV1Api).createNamespacedService({ namespace: 'shop', body: serviceFixture('web') });
  serviceIP = service.spec!.clusterIP!;
  await createScaleToZero(kc, 'shop', 'web', { targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'web' }, idleTimeout: '1h' });

  workDir = mkdtempSync(path.join(tmpdir(), 'zh-signal-'));
  hubble = new TestHubbleServer({ address: { kind: 'socket', path: path.join(workDir, 'cilium-hubble.sock') } });
  await hubble.start();

  const configPath = path.join(workDir, 'agent.yaml');
  writeFileSync(
    configPath,
    `nodeName: node-1
mode: signal
kubernetes: { kubeconfig: ${kubeconfigFile.path} }
metrics: { host: 127.0.0.1, port: 0 }
api: { socket: ${workDir}/agent.sock }
hubble: { socket: ${workDir}/cilium-hubble.sock, observerSocket: ${workDir}/hubble.sock }
idle: { reportInterval: 1s }
`,
  );
  agent = spawn(process.execPath, [path.join(repoRoot, 'dist/src/agent/main.js'), '--config', configPath], { stdio: ['ignore', 'pipe', 'pipe'] });
  agent.stdout!.on('data', (chunk: Buffer) => (agentOutput += chunk.toString()));
  agent.stderr!.on('data', (chunk: Buffer) => (agentOutput += chunk.toString()));
  await waitFor(`the agent to be ready (output: ${agentOutput})`, () => {
    if (agent!.exitCode !== null) throw new Error(`agent exited ${agent!.exitCode}: ${agentOutput}`);
    return agentOutput.includes('"agent ready"') ? true : undefined;
  }, 15_000);
});

after(async () => {
  if (agent && agent.exitCode === null && agent.pid !== undefined) process.kill(agent.pid, 'SIGKILL');
  await hubble?.stop();
  await kubeconfigFile?.remove();
  await server?.close();
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

test('Hubble drop wakes the workload', async () => {
  // Hubble streams flows to managed Services only, once the agent follows
  // shop/web; until then a published flow would not reach it.
  await waitFor('the agent to follow the Service', () => (hubble.openStreams > 0 ? true : undefined), 10_000);
  await new Promise((resolve) => setTimeout(resolve, 300));

  const drop = create(FlowSchema, serviceFlow({ namespace: 'shop', service: 'web', serviceIp: serviceIP, port: 80, verdict: Verdict.DROPPED, uuid: 'syn-1', time: timestampFromMs(Date.now()) }));
  drop.eventType = create(CiliumEventTypeSchema, { type: 1, subType: DropReason.SERVICE_BACKEND_NOT_FOUND });
  drop.dropReasonDesc = DropReason.SERVICE_BACKEND_NOT_FOUND;
  hubble.publish(drop);

  const apps = kc.makeApiClient(AppsV1Api);
  await waitFor('the scale-up', async () => ((await apps.readNamespacedDeployment({ name: 'web', namespace: 'shop' })).spec?.replicas === 1 ? true : undefined), 10_000);
  assert.match(agentOutput, /"Cold -> Waking"/);

  // The Woken Event names the Service from the Hubble flow.
  const woken = await waitFor('the Woken event', async () => {
    const events = await kc.makeApiClient(CoreV1Api).listNamespacedEvent({ namespace: 'shop' });
    return events.items.find((e) => e.reason === 'Woken' && e.involvedObject.kind === 'ScaleToZero');
  }, 5000);
  assert.match(woken.message ?? '', /to tcp\/198\.19\.\d+\.\d+:80 \(Service shop\/web\)/);
});

test('SIGTERM stops the signal agent', async () => {
  const exited = new Promise<number | null>((resolve) => agent!.on('exit', (code) => resolve(code)));
  process.kill(agent!.pid!, 'SIGTERM');
  assert.equal(await exited, 0, agentOutput);
});
