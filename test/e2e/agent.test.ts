// The agent process end to end. It runs as `node dist/src/agent/main.js`
// against the test API server and attaches XDP in a node namespace. It
// holds a curl SYN for a Deployment at zero and scales the Deployment up.
// Once the test starts the server and reports a Ready endpoint, the agent
// releases the SYN. SIGTERM then detaches it.

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { AppsV1Api, CoreV1Api, type KubeConfig } from '@kubernetes/client-node';

import { Verdict, type Flow } from '../../src/hubble/gen/flow/flow_pb.js';
import { isGarbled, ObserverClient } from '../../src/hubble/observer-client.js';
import { repoRoot } from '../../src/paths.js';
import { deploymentFixture, serviceFixture } from '../apiserver/fixtures.js';
import { kubeConfigFor, writeKubeConfigFile, type KubeConfigFile } from '../apiserver/kubeconfig.js';
import { startApiServer, type TestApiServer } from '../apiserver/server.js';
import { netnsPath, run, waitFor } from '../lib/netns.js';
import { createReadyEndpoint, createScaleToZero, installScaleToZeroCrd } from '../agent/testing/objects.js';
import { startHttpServer } from '../lib/servers.js';
import { buildTopology, NODE_V4, startClient, type Topology } from '../lib/topology.js';

const pinDir = `/sys/fs/bpf/zh-test-agent-${process.pid}`;
let server: TestApiServer;
let kc: KubeConfig;
let kubeconfigFile: KubeConfigFile;
let topology: Topology;
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

  topology = await buildTopology(`
table ip zh_test {
  chain prerouting {
    type nat hook prerouting priority dstnat;
    ip daddr ${serviceIP} tcp dport 80 dnat to ${NODE_V4}:8080
  }
}
`);

  workDir = mkdtempSync(path.join(tmpdir(), 'zh-agent-'));
  const configPath = path.join(workDir, 'agent.yaml');
  writeFileSync(
    configPath,
    `nodeName: node-1
netns: ${netnsPath(topology.node)}
interfaces:
  - { name: n0, hook: xdp, xdpMode: native }
kubernetes: { kubeconfig: ${kubeconfigFile.path} }
bpf: { pinDir: ${pinDir}, maxServices: 64, indexBuckets: 1024 }
metrics: { host: 127.0.0.1, port: 0 }
idle: { reportInterval: 1s }
api: { socket: ${workDir}/agent.sock }
hubble: { observerSocket: ${workDir}/hubble.sock }
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
  await topology?.network.cleanup();
  await kubeconfigFile?.remove();
  await server?.close();
  rmSync(pinDir, { recursive: true, force: true });
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

async function zerohold(...args: string[]): Promise<string> {
  const { stdout } = await run(process.execPath, [path.join(repoRoot, 'dist/src/cli/zerohold.js'), '--socket', path.join(workDir, 'agent.sock'), ...args]);
  return stdout;
}

test('agent wakes and releases curl', async () => {
  const curl = startClient(topology.network, topology.client, 'curl', ['-sS', '--max-time', '15', `http://${serviceIP}/`]);

  // The held SYN makes the agent scale the Deployment up.
  const apps = kc.makeApiClient(AppsV1Api);
  await waitFor('the scale-up', async () => ((await apps.readNamespacedDeployment({ name: 'web', namespace: 'shop' })).spec?.replicas === 1 ? true : undefined), 10_000);

  // The CLI lists the held SYN while the workload has no backend.
  const held = JSON.parse(await zerohold('held', '-o', 'json')) as { flows: { workload: string; protocol: string; destination: string; destinationPort: number; interface: string }[] };
  assert.equal(held.flows.length, 1);
  assert.equal(held.flows[0]!.workload, 'shop/web');
  assert.equal(held.flows[0]!.protocol, 'tcp');
  assert.equal(held.flows[0]!.destination, serviceIP);
  assert.equal(held.flows[0]!.interface, 'n0');
  assert.match(await zerohold('status'), /^shop\/web\s+web\s+Waking\s+1\s/m);

  // Play kubelet: start the server, then report it Ready.
  await startHttpServer(topology.network, topology.node, NODE_V4, 8080, 'woken by zerohold');
  await createReadyEndpoint(kc, 'shop', 'web', NODE_V4);

  assert.equal(await curl, 'woken by zerohold');
  // The client can connect before the agent logs the release, because the
  // re-injected SYN reaches the server while the release call still runs.
  await waitFor('the release log line', () => (/"released held flows"/.test(agentOutput) ? true : undefined), 5000);
  assert.match(await zerohold('status'), /^shop\/web\s+web\s+Warm\s+0\s/m);

  // The agent's observer endpoint shows the flow held, then released, as
  // `hubble observe` would read it.
  const client = await ObserverClient.connect({ kind: 'socket', path: path.join(workDir, 'hubble.sock') });
  try {
    const flows: Flow[] = [];
    for await (const message of client.getFlows({})) {
      if (!isGarbled(message) && message.responseTypes.case === 'flow') flows.push(message.responseTypes.value);
    }
    const toService = flows.filter((flow) => flow.IP?.destination === serviceIP);
    assert.deepEqual(toService.map((flow) => flow.verdict), [Verdict.TRACED, Verdict.FORWARDED], 'held, then released');
    assert.equal(toService[0]!.destinationService?.name, 'web');
    assert.equal(toService[0]!.destinationService?.namespace, 'shop');
    assert.equal(toService[0]!.nodeName, 'node-1');
  } finally {
    client.close();
  }
});

test('SIGTERM detaches the agent', async () => {
  const exited = new Promise<number | null>((resolve) => agent!.on('exit', (code) => resolve(code)));
  process.kill(agent!.pid!, 'SIGTERM');
  assert.equal(await exited, 0, agentOutput);

  const { stdout } = await run('nsenter', [`--net=${netnsPath(topology.node)}`, 'ip', 'link', 'show', 'n0']);
  assert.doesNotMatch(stdout, /xdp/, 'no XDP program left on n0');
});
