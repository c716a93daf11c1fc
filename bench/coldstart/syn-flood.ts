// A SYN flood at a cold Service: trafgen (netsniff-ng) sends
// FLOOD_RATE_PPS TCP SYNs a second for FLOOD_SECONDS from an external
// client namespace. Each SYN has a random source port and a random source
// address in FLOOD_SOURCES, a /24 that no testbed namespace owns, so the
// SYN-ACKs die at the node. trafgen's --rate does not pace the packets
// evenly: on a 2-vCPU KVM guest each second's SYNs arrived within about
// 70 ms at the start of the second, so the flood is one burst a second of
// about 700,000 SYN/s. Its per-packet --gap reached only about 15,500
// SYN/s there, because each gap is a sleep. Meanwhile legitimate curl clients connect from
// a second client namespace: one batch just before the flood, whose SYNs
// are held, and one batch a second during it.
//
// The server starts STARTUP_DELAY_MS after its pod, so the whole flood
// meets the cold Service, which is the agent's part. Once a backend is
// ready, flood SYNs go through kube-proxy's DNAT and masquerade instead.
// From external clients every connection to the backend gets the node's
// address and one of its 64,512 source ports, and a half-open flood
// connection keeps its port for conntrack's 120 s SYN_SENT timeout. On this
// testbed that exhausts the ports in about 1.3 s at 50,000 SYN/s, after
// which the node drops new external connections to that backend,
// legitimate or not. That is kube-proxy and conntrack behaviour with or
// without zerohold.
//
// What it checks: the workload is scaled up exactly once, the flows held
// stay within the agent's per-Service bound (heldFlowsPerService frames of
// at most MAX_FRAME bytes), and every legitimate client gets its response.

import { readFileSync } from 'node:fs';

import { MAX_FRAME } from '../../src/datapath/layout.js';
import { flowOpenerCount } from '../../test/testbed/agent-metrics.js';
import { nodeHttpWorkload } from '../../test/testbed/servers.js';
import type { ClientResult } from '../../test/testbed/client-run.js';
import type { Testbed } from '../../test/testbed/testbed.js';
import { synFloodArgs } from '../../test/testbed/trafgen.js';

export const FLOOD_RATE_PPS = 50_000;
export const FLOOD_SECONDS = 5;
// trafgen paces to its rate from its own start, so it is set a little
// higher to measure at least FLOOD_RATE_PPS over the whole run.
const TRAFGEN_RATE_PPS = Math.round(FLOOD_RATE_PPS * 1.03);
const FLOOD_SOURCES = '198.18.128.0/24';
// The agent's default limits.heldFlowsPerService, which the testbed keeps.
const HELD_FLOWS_PER_SERVICE = 4096;
const LEGIT_BATCH = 4;
const MONITOR_INTERVAL_MS = 25;
const STARTUP_DELAY_MS = FLOOD_SECONDS * 1000 + 1000;

export interface FloodResult {
  sent: number;
  durationMs: number;
  ratePps: number;
  scaleUps: number;
  maxHeldFlows: number;
  maxHeldBytes: number;
  heldBoundBytes: number;
  // Flow openers the agent rejected over a held flow bound, from its
  // zerohold_held_flows_dropped_total.
  rejected: number;
  // Flow openers that the datapath dropped before the agent read them:
  // over the Service's hold budget, or with the held ring full.
  overBudget: number;
  ringFull: number;
  agentRssBeforeBytes: number;
  agentRssMaxBytes: number;
  legitClients: number;
  legitServed: number;
  // Slowest connect of a legitimate client that was served, in milliseconds.
  legitMaxConnectMs: number;
  legitFailures: string[];
  // The pod's Ready after the flood's last SYN, in milliseconds; positive
  // when the whole flood met the cold Service.
  readyAfterFloodMs: number;
}

export async function synFlood(testbed: Testbed): Promise<FloodResult> {
  const workload = await testbed.deploy(nodeHttpWorkload({ workDir: testbed.workloadDir, name: 'flood', startupDelayMs: STARTUP_DELAY_MS }), { scaleToZero: { idleTimeout: '1h' } });
  await testbed.waitForPhase(workload.key!, 'Cold', { gateClosed: true });

  const flooder = testbed.externalClient(0);
  const legit = testbed.externalClient(1);
  const agent = testbed.agent('node-0');
  const floodArgs = await synFloodArgs(testbed, {
    flooder,
    node: 'node-0',
    address: workload.clusterIPv4,
    port: 80,
    sources: FLOOD_SOURCES.split('/')[0]!,
    ratePps: TRAFGEN_RATE_PPS,
    count: TRAFGEN_RATE_PPS * FLOOD_SECONDS,
  });

  // The agent's held flows and memory, sampled while the flood runs.
  const rssBefore = residentBytes(agent.pid!);
  const peak = { flows: 0, bytes: 0, rss: rssBefore };
  let monitoring = true;
  const monitor = (async () => {
    while (monitoring) {
      const summary = (await agent.workloads()).find((w) => w.workload === workload.key);
      peak.flows = Math.max(peak.flows, summary?.heldFlows ?? 0);
      peak.bytes = Math.max(peak.bytes, summary?.heldBytes ?? 0);
      peak.rss = Math.max(peak.rss, residentBytes(agent.pid!));
      await new Promise((resolve) => setTimeout(resolve, MONITOR_INTERVAL_MS));
    }
  })();

  const startedMs = Date.now();
  const curl = (batch: number) =>
    testbed.run(legit, 'curl', ['-sS', '-o', '/dev/null', '--max-time', '20', '-w', `${batch} %{http_code} %{time_connect}\\n`, `http://${workload.clusterIPv4}/`], { timeoutMs: 30_000 });
  const batch = (index: number) => Promise.all(Array.from({ length: LEGIT_BATCH }, () => curl(index)));

  // The first batch goes out before the flood, so its SYNs are held.
  const clients: Promise<ClientResult[]>[] = [batch(0)];
  await new Promise((resolve) => setTimeout(resolve, 50));
  const flood = testbed.run(flooder, 'trafgen', floodArgs, {
    timeoutMs: FLOOD_SECONDS * 1000 + 30_000,
  });
  for (let second = 1; second < FLOOD_SECONDS; second++) {
    await new Promise((resolve) => setTimeout(resolve, 1000));
    clients.push(batch(second));
  }
  const trafgen = await flood;
  const floodEndedMs = Date.now();
  const results = (await Promise.all(clients)).flat();
  monitoring = false;
  await monitor;

  if (!trafgen.ok) throw new Error(`trafgen failed (exit ${trafgen.code}): ${trafgen.stderr}`);
  const sent = /(\d+) packets outgoing/.exec(trafgen.stdout + trafgen.stderr);
  if (!sent) throw new Error(`no packet count in the output of trafgen: ${trafgen.stdout} ${trafgen.stderr}`);

  const scaleUps = testbed.server.requests.filter(
    (r) => r.receivedMs >= startedMs && (r.method === 'PATCH' || r.method === 'PUT') && r.path.startsWith(`/apis/apps/v1/namespaces/${workload.namespace}/deployments/${workload.name}/scale`),
  ).length;
  const metrics = await agent.metrics();
  const rejected = droppedOverBound(metrics, workload.key!);

  const served = results.filter((r) => r.ok && / 200 /.test(r.stdout));
  const connectMs = served.map((r) => Number(r.stdout.trim().split(' ')[2]) * 1000);
  return {
    sent: Number(sent[1]),
    durationMs: trafgen.durationMs,
    ratePps: Number(sent[1]) / (trafgen.durationMs / 1000),
    scaleUps,
    maxHeldFlows: peak.flows,
    maxHeldBytes: peak.bytes,
    heldBoundBytes: HELD_FLOWS_PER_SERVICE * MAX_FRAME,
    rejected,
    overBudget: flowOpenerCount(metrics, workload.key!, 'over-budget'),
    ringFull: flowOpenerCount(metrics, workload.key!, 'ring-full'),
    agentRssBeforeBytes: rssBefore,
    agentRssMaxBytes: peak.rss,
    legitClients: results.length,
    legitServed: served.length,
    legitMaxConnectMs: Math.max(0, ...connectMs),
    readyAfterFloodMs: (testbed.podReadyUnixMs(workload, startedMs) ?? Number.NaN) - floodEndedMs,
    legitFailures: results.filter((r) => !served.includes(r)).map((r) => `exit ${r.code}: ${r.stdout.trim()} ${r.stderr.trim()}`),
  };
}

function droppedOverBound(metrics: string, workload: string): number {
  const pattern = /^zerohold_held_flows_dropped_total\{workload="([^"]*)",reason="([^"]*)"\} (\d+)$/gm;
  let total = 0;
  for (const [, name, reason, count] of metrics.matchAll(pattern)) {
    if (name === workload && reason !== 'wake-timeout') total += Number(count);
  }
  return total;
}

function residentBytes(pid: number): number {
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return match ? Number(match[1]) * 1024 : 0;
}
