// The agent process end to end in chained mode. test/bpf/test_host.c
// takes the place of Cilium's datapath on the node's veth, and the agent
// reads Cilium's services either from a fake Cilium agent REST API or
// from Cilium-layout load-balancer maps. A curl SYN to a Deployment at
// zero reaches the host, which finds no backend and tail-calls zerohold.
// The agent scales the Deployment up, and once the endpoint is Ready it
// waits until the Cilium source has a backend before it re-injects the
// SYN. SIGTERM then empties the host's prog array slots.

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { AppsV1Api } from '@kubernetes/client-node';

import type { Frontend } from '../../src/datapath/frontends.js';
import { repoRoot } from '../../src/paths.js';
import { CiliumLbMaps } from '../agent/testing/cilium-lb-maps.js';
import { FakeCiliumApi } from '../agent/testing/fake-cilium-api.js';
import { createReadyEndpoint } from '../agent/testing/objects.js';
import { netnsPath, run, waitFor } from '../lib/netns.js';
import { startHttpServer } from '../lib/servers.js';
import { buildFrame, TCP_SYN } from '../lib/packets.js';
import { HostStat, TestHost } from '../lib/test-host.js';
import { buildTopology, NODE_V4, startClient, type Topology } from '../lib/topology.js';
import { AgentChild } from './agent-child.js';
import { type ShopCluster, startShopCluster } from './shop-cluster.js';

// Cilium's rev-NAT id of the Service, within the agent's bpf.maxServices.
const REV_NAT_ID = 7;
const BACKEND_ID = 1;
const WORKLOAD = 'shop/web';

// How long the test keeps the Cilium source without a backend after the
// agent saw the Ready endpoint. Longer than the maps poll (250 ms) and the
// backend check's re-read (5 ms), so an agent that ignored the source
// would release within it.
const BACKEND_DELAY_MS = 1500;

type SourceKind = 'rest' | 'maps';

interface LogRecord {
  msg: string;
  time: string;
  [field: string]: unknown;
}

// One Cilium service source with the Service's frontend, switchable
// between no backend and one backend.
interface CiliumSource {
  // cilium.bpfPinDir and cilium.apiSocket of the agent's configuration.
  pinDir: string;
  apiSocket: string;
  setBackend(present: boolean): void;
  close(): Promise<void>;
}

let counter = 0;

async function openRestSource(serviceIP: string): Promise<CiliumSource & { api: FakeCiliumApi }> {
  const api = await FakeCiliumApi.start();
  // An empty pin directory, so the agent finds no maps and uses the API.
  const pinDir = `/sys/fs/bpf/zh-test-cilium-empty-${process.pid}-${counter++}`;
  mkdirSync(pinDir, { recursive: true });

  const setBackend = (present: boolean) => {
    api.services = [{ id: REV_NAT_ID, ip: serviceIP, port: 80, protocol: 'TCP', name: 'web', namespace: 'shop', backends: present ? [{ ip: NODE_V4, port: 8080 }] : [] }];
  };
  setBackend(false);

  return {
    api,
    pinDir,
    apiSocket: api.socketPath,
    setBackend,
    close: async () => {
      await api.close();
      rmSync(pinDir, { recursive: true, force: true });
    },
  };
}

async function openMapsSource(serviceIP: string, workDir: string): Promise<CiliumSource> {
  const maps = await CiliumLbMaps.create(`zh-test-cilium-lb-${counter++}`);
  const service = { address: serviceIP, port: 80, protocol: 'tcp' as const, revNatId: REV_NAT_ID };
  maps.addService(service);

  return {
    pinDir: maps.pinDir,
    // No Cilium agent listens here, so a fallback to the API would fail.
    apiSocket: path.join(workDir, 'cilium-missing.sock'),
    setBackend: (present: boolean) => {
      if (present) {
        maps.addBackend(BACKEND_ID, NODE_V4, 8080);
        maps.addService({ ...service, backendIds: [BACKEND_ID] });
      } else {
        maps.setMaster(service, 0);
      }
    },
    close: async () => maps.close(),
  };
}

// Parses the agent's pino lines, skipping any line that is not JSON.
function parseLog(output: string): LogRecord[] {
  const records: LogRecord[] = [];
  for (const line of output.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      records.push(JSON.parse(line) as LogRecord);
    } catch {
      // A line cut by a chunk boundary, or stderr text.
    }
  }
  return records;
}

for (const kind of ['rest', 'maps'] as const satisfies readonly SourceKind[]) {
  describe(`chained agent with Cilium ${kind} source`, () => {
    const hostPinDir = `/sys/fs/bpf/zh-test-chained-host-${process.pid}-${kind}`;
    const agentPinDir = `/sys/fs/bpf/zh-test-chained-agent-${process.pid}-${kind}`;
    let cluster: ShopCluster;
    let topology: Topology;
    let host: TestHost;
    let cilium: CiliumSource;
    let restApi: FakeCiliumApi | undefined;
    let workDir: string;
    let agent: AgentChild | undefined;
    let serviceIP: string;
    let frontend: Frontend;
    let configPath: string;

    const logRecords = () => parseLog(agent?.output ?? '');
    const findLog = (msg: string) => logRecords().find((r) => r.msg === msg && (r.workload === undefined || r.workload === WORKLOAD));

    async function zerohold(...args: string[]): Promise<string> {
      const { stdout } = await run(process.execPath, [path.join(repoRoot, 'dist/src/cli/zerohold.js'), '--socket', path.join(workDir, 'agent.sock'), ...args]);
      return stdout;
    }

    before(async () => {
      cluster = await startShopCluster();
      serviceIP = cluster.serviceIP;
      frontend = { address: serviceIP, protocol: 'tcp', port: 80 };

      // nftables DNAT plays the part of the host's translation once it
      // passes the SYN to a backend.
      topology = await buildTopology(`
table ip zh_test {
  chain prerouting {
    type nat hook prerouting priority dstnat;
    ip daddr ${serviceIP} tcp dport 80 dnat to ${NODE_V4}:8080
  }
}
`);

      // The host loads before the agent, as Cilium's datapath usually
      // does, and pins the chained-mode maps that the agent joins.
      mkdirSync(hostPinDir, { recursive: true });
      host = await TestHost.load(hostPinDir);
      await host.attach('n0', netnsPath(topology.node), 'native');
      host.setService(frontend, REV_NAT_ID, 0);

      workDir = mkdtempSync(path.join(tmpdir(), 'zh-chained-agent-'));
      if (kind === 'rest') {
        const rest = await openRestSource(serviceIP);
        restApi = rest.api;
        cilium = rest;
      } else {
        cilium = await openMapsSource(serviceIP, workDir);
      }

      configPath = path.join(workDir, 'agent.yaml');
      writeFileSync(
        configPath,
        `nodeName: node-1
mode: chained
netns: ${netnsPath(topology.node)}
kubernetes: { kubeconfig: ${cluster.kubeconfigFile.path} }
bpf: { pinDir: ${agentPinDir}, maxServices: 64, indexBuckets: 1024 }
chained: { hostPinDir: ${hostPinDir}, reinsertInterval: 100ms }
cilium: { bpfPinDir: ${cilium.pinDir}, apiSocket: ${cilium.apiSocket} }
release: { timeout: 30s }
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
      host?.close();
      await cilium?.close();
      await topology?.network.cleanup();
      await cluster?.close();
      rmSync(hostPinDir, { recursive: true, force: true });
      rmSync(agentPinDir, { recursive: true, force: true });
      if (workDir) rmSync(workDir, { recursive: true, force: true });
    });

    test('agent reads the expected source', () => {
      const opened = findLog(kind === 'rest' ? 'reading Cilium services from the Cilium agent API' : 'reading Cilium services from its pinned maps');

      assert.ok(opened, `no source log line in: ${agent!.output}`);
      assert.equal(opened.source, kind);
    });

    test('agent fills the host slots', () => {
      assert.notEqual(host.slot('zh_chain_xdp'), null, 'zh_chain_xdp slot 0');
      assert.notEqual(host.slot('zh_chain_tc'), null, 'zh_chain_tc slot 0');
      assert.equal(host.listed(REV_NAT_ID), true, 'rev-NAT id listed in zh_chain_svcs');
    });

    test('release waits for the Cilium backend', async () => {
      const curlStartMs = Date.now();
      const curl = startClient(topology.network, topology.client, 'curl', ['-sS', '--max-time', '20', '-w', '\n%{time_connect}', `http://${serviceIP}/`]);

      // The held SYN makes the agent scale the Deployment up.
      const apps = cluster.kc.makeApiClient(AppsV1Api);
      await waitFor('the scale-up', async () => ((await apps.readNamespacedDeployment({ name: 'web', namespace: 'shop' })).spec?.replicas === 1 ? true : undefined), 10_000);
      assert.ok(host.stat(HostStat.ChainCalls) > 0n, 'the host tail-called zerohold');

      // The CLI lists the held SYN and the waking workload.
      const heldOutput = JSON.parse(await zerohold('held', '-o', 'json')) as { flows: { workload: string; protocol: string; destination: string; destinationPort: number }[] };
      assert.equal(heldOutput.flows.length, 1, 'held flows');
      assert.equal(heldOutput.flows[0]!.workload, WORKLOAD);
      assert.equal(heldOutput.flows[0]!.protocol, 'tcp');
      assert.equal(heldOutput.flows[0]!.destination, serviceIP);
      assert.equal(heldOutput.flows[0]!.destinationPort, 80);
      assert.match(await zerohold('status'), /^shop\/web\s+web\s+Waking\s+1\s/m);

      // Play kubelet: start the server, then report it Ready. Cilium and
      // the host still show no backend.
      await startHttpServer(topology.network, topology.node, NODE_V4, 8080, `woken in chained mode (${kind})`);
      await createReadyEndpoint(cluster.kc, 'shop', 'web', NODE_V4);
      await waitFor('the agent to see the Ready endpoint', () => findLog('Waking -> Warm'), 5000);
      const requestsAtReady = restApi?.requests ?? 0;
      await new Promise((resolve) => setTimeout(resolve, BACKEND_DELAY_MS));

      assert.equal(findLog('released held flows'), undefined, 'released before the Cilium source had a backend');
      if (restApi) assert.ok(restApi.requests > requestsAtReady, 'the backend check read GET /v1/service again while it waited');
      const stillHeld = JSON.parse(await zerohold('held', '-o', 'json')) as { flows: unknown[] };
      assert.equal(stillHeld.flows.length, 1, 'the SYN stays held without a Cilium backend');

      // The host first, so that the client's later segments pass it, then
      // the Cilium source that the agent's release waits for.
      host.setService(frontend, REV_NAT_ID, 1);
      const flipMs = Date.now();
      cilium.setBackend(true);

      const [response, connectSeconds] = (await curl).split('\n');
      assert.equal(response, `woken in chained mode (${kind})`);

      // The timeline: the agent saw the Ready endpoint before the wait
      // above, and released only after the Cilium source had a backend.
      const released = await waitFor('the release log line', () => findLog('released held flows'), 2000);
      assert.ok(Date.parse(released.time) >= flipMs, `released at ${released.time}, before the backend was added at ${new Date(flipMs).toISOString()}`);
      assert.equal(released.released, 1, 'released flows');
      assert.equal(released.failed, 0, 'failed releases');
      assert.equal(findLog('the node load balancer has no backend yet, releasing anyway'), undefined, 'the release timed out');

      // The re-injected SYN connects at once. A lost one would cost the
      // client a retransmission, at least its 1 s initial timeout. curl
      // starts after curlStartMs, so connectedMs errs early, never late.
      const connectedMs = curlStartMs + Number(connectSeconds) * 1000;
      assert.ok(connectedMs - flipMs < 1000, `connected ${connectedMs - flipMs} ms after the backend was added`);

      assert.match(await zerohold('status'), /^shop\/web\s+web\s+Warm\s+0\s/m);
    });

    test('SIGTERM empties the host slots', async () => {
      assert.equal(await agent!.terminate(), 0, agent!.output);

      assert.equal(host.slot('zh_chain_xdp'), null, 'zh_chain_xdp slot 0');
      assert.equal(host.slot('zh_chain_tc'), null, 'zh_chain_tc slot 0');
      assert.equal(host.listed(REV_NAT_ID), true, 'the id stays listed for the next agent');
    });

    test('host drops without the agent', async () => {
      host.setService(frontend, REV_NAT_ID, 0);
      const before = host.stat(HostStat.Fallback);
      const curl = startClient(topology.network, topology.client, 'curl', ['-sS', '--max-time', '1', `http://${serviceIP}/`]);

      await assert.rejects(curl, /exited 28/);
      assert.ok(host.stat(HostStat.Fallback) > before, 'the host fallback counted the SYN');
    });

    test('new host zh_chain_meta restarts the agent', async () => {
      agent = await AgentChild.start(configPath);
      await waitFor('the chained programs inserted', () => (host.slot('zh_chain_xdp') !== null ? true : undefined), 5000);
      const insertions = () => logRecords().filter((record) => record.msg === 'inserted the chained program into the host prog array').length;
      const insertedBefore = insertions();

      // The programs that the agent loaded read the old map, so every
      // chained call would drop until the agent loads again.
      await host.reload({ replaceMeta: true });
      const exiting = agent;
      const code = await Promise.race([exiting.exitCode(), new Promise<'running'>((resolve) => setTimeout(() => resolve('running'), 5000))]);
      if (code === 'running') await exiting.terminate();

      assert.equal(code, 1, exiting.output);
      assert.ok(findLog('the host replaced zh_chain_meta, so chained calls are dropped; restarting the agent to load against the new map'), exiting.output);
      assert.equal(insertions(), insertedBefore, 'programs that read the old map went into the new prog arrays');
      assert.equal(host.slot('zh_chain_xdp'), null, 'the exiting agent empties zh_chain_xdp');
      assert.equal(host.slot('zh_chain_tc'), null, 'the exiting agent empties zh_chain_tc');

      // The next start loads against the new map. The host has no backend,
      // so its program writes the metadata and calls zerohold, which holds
      // the SYN. zh_stats outlives each agent, so the counts are deltas.
      agent = await AgentChild.start(configPath);
      await waitFor('the chained programs inserted again', () => (host.slot('zh_chain_xdp') !== null && host.listed(REV_NAT_ID) ? true : undefined), 5000);
      const metricsUrl = `http://127.0.0.1:${findLog('agent ready')!.metricsPort as number}/metrics`;
      const badMetaSeries = 'zerohold_datapath_errors_total{reason="chain-bad-meta"}';
      const heldSeries = `zerohold_datapath_flow_openers_total{workload="${WORKLOAD}",outcome="held"}`;
      const before = await (await fetch(metricsUrl)).text();

      host.setService(frontend, REV_NAT_ID, 0);
      const syn = buildFrame({ src: '198.18.0.99', dst: serviceIP, tcp: { srcPort: 40001, dstPort: 80, flags: TCP_SYN } });
      host.bpfObject.program('test_host_xdp').testRunSync({ data: syn });

      const after = await (await fetch(metricsUrl)).text();
      assert.equal(counterValue(after, badMetaSeries) - counterValue(before, badMetaSeries), 0, 'chained calls dropped for bad metadata');
      assert.equal(counterValue(after, heldSeries) - counterValue(before, heldSeries), 1, 'chained SYNs held');
    });
  });
}

// Reads one sample of the Prometheus text format by its series name and
// labels, as the agent prints them.
function counterValue(metrics: string, series: string): number {
  const line = metrics.split('\n').find((candidate) => candidate.startsWith(`${series} `));
  assert.ok(line, `no ${series} in the metrics`);
  return Number(line.slice(series.length + 1));
}
