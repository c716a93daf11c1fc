// The agent process end to end. It runs as `node dist/src/agent/main.js`
// against the test API server and attaches XDP in a node namespace. It
// holds a curl SYN for a Deployment at zero and scales the Deployment up.
// Once the test starts the server and reports a Ready endpoint, the agent
// releases the SYN. SIGTERM then detaches it.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { AppsV1Api } from '@kubernetes/client-node';

import { Verdict, type Flow } from '../../src/hubble/gen/flow/flow_pb.js';
import { isGarbled, ObserverClient } from '../../src/hubble/observer-client.js';
import { repoRoot } from '../../src/paths.js';
import { createReadyEndpoint } from '../agent/testing/objects.js';
import { netnsPath, run, waitFor } from '../lib/netns.js';
import { startHttpServer } from '../lib/servers.js';
import { buildTopology, NODE_V4, startClient, type Topology } from '../lib/topology.js';
import { AgentChild } from './agent-child.js';
import { type ShopCluster, startShopCluster } from './shop-cluster.js';

const pinDir = `/sys/fs/bpf/zh-test-agent-${process.pid}`;
let cluster: ShopCluster;
let topology: Topology;
let workDir: string;
let agent: AgentChild | undefined;
let serviceIP: string;

before(async () => {
  cluster = await startShopCluster();
  serviceIP = cluster.serviceIP;

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
kubernetes: { kubeconfig: ${cluster.kubeconfigFile.path} }
bpf: { pinDir: ${pinDir}, maxServices: 64, indexBuckets: 1024 }
metrics: { host: 127.0.0.1, port: 0 }
idle: { reportInterval: 1s }
api: { socket: ${workDir}/agent.sock }
hubble: { observerSocket: ${workDir}/hubble.sock }
`,
  );
  agent = await AgentChild.start(configPath);
});

after(async () => {
  agent?.killSync();
  await topology?.network.cleanup();
  await cluster?.close();
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
  const apps = cluster.kc.makeApiClient(AppsV1Api);
  await waitFor('the scale-up', async () => ((await apps.readNamespacedDeployment({ name: 'web', namespace: 'shop' })).spec?.replicas === 1 ? true : undefined), 10_000);

  // The CLI lists the held SYN while the workload has no backend.
  const held = JSON.parse(await zerohold('held', '-o', 'json')) as { flows: { workload: string; protocol: string; destination: string; destinationPort: number; interface: string }[] };
  assert.equal(held.flows.length, 1);
  assert.equal(held.flows[0]!.workload, 'shop/web');
  assert.equal(held.flows[0]!.protocol, 'tcp');
  assert.equal(held.flows[0]!.destination, serviceIP);
  assert.equal(held.flows[0]!.interface, 'n0');
  assert.match(await zerohold('status'), /^shop\/web\s+web\s+Waking\s+1\s.*\sa Ready endpoint$/m);

  // Play kubelet: start the server, then report it Ready.
  await startHttpServer(topology.network, topology.node, NODE_V4, 8080, 'woken by zerohold');
  await createReadyEndpoint(cluster.kc, 'shop', 'web', NODE_V4);

  assert.equal(await curl, 'woken by zerohold');
  // The client can connect before the agent logs the release, because the
  // re-injected SYN reaches the server while the release call still runs.
  await waitFor('the release log line', () => (/"released held flows"/.test(agent!.output) ? true : undefined), 5000);
  assert.match(await zerohold('status'), /^shop\/web\s+web\s+Warm\s+0\s.*<none>$/m);

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
  assert.equal(await agent!.terminate(), 0, agent!.output);

  const { stdout } = await run('nsenter', [`--net=${netnsPath(topology.node)}`, 'ip', 'link', 'show', 'n0']);
  assert.doesNotMatch(stdout, /xdp/, 'no XDP program left on n0');
});
