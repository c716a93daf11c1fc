// npm run bench:coldstart
//
// Cold starts of a real server on the testbed, in one run. First the agents
// run in hold mode, where the held SYN is re-injected at release. Then
// they run in drop mode, where the held SYN is discarded and the client
// connects at its next retransmission, as in earlier proxyless designs. Each sample measures
// the client's connection established minus the backend's listen(), both
// as Unix milliseconds on this machine: the server prints the time its
// socket is bound, and the client prints the time connect() completed.
//
// Between listen() and the connection, every sample also pays the
// testbed's readiness probe (a TCP connect every PROBE_INTERVAL_MS from a
// prober in the pod's namespace), the Pod and EndpointSlice writes through
// the API server and kube-proxy's nftables sync, so the breakdown prints
// those steps too. The last line is one JSON object.

import { performance } from 'node:perf_hooks';

import { nodeHttpWorkload } from '../test/testbed/servers.js';
import { type DeployedWorkload, Testbed } from '../test/testbed/testbed.js';

const SAMPLES = Number(process.env.ZH_BENCH_SAMPLES ?? 50);
const PROBE_INTERVAL_MS = 5;
const HOLD_TARGET_P95_MS = 5;

// Connects, sends one HTTP request and prints "connected <Unix ms>" at the
// moment the TCP handshake completed, then the response's status line.
const CLIENT = `
const net = require('node:net');
const [host, port] = process.argv.slice(1);
const socket = net.connect({ host, port: Number(port) });
socket.setTimeout(30000, () => { console.error('timed out'); process.exit(2); });
socket.on('connect', () => {
  console.log('connected ' + Date.now());
  socket.write('GET / HTTP/1.1\\r\\nHost: bench\\r\\nConnection: close\\r\\n\\r\\n');
});
let response = '';
socket.on('data', (chunk) => { response += chunk; });
socket.on('end', () => { console.log(response.split('\\r\\n')[0]); });
socket.on('error', (err) => { console.error(err.message); process.exit(1); });
`;

interface Sample {
  listeningMs: number;
  readyMs: number | null;
  programmedMs: number | null;
  releasedMs: number | null;
  // The agent's own part: from its backend check passing to the held
  // packets re-injected, from its log.
  agentReleaseMs: number | null;
  connectedMs: number;
}

type Mode = 'hold' | 'drop';

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

async function coldStart(testbed: Testbed, workload: DeployedWorkload): Promise<Sample> {
  const startedMs = Date.now();
  const client = await testbed.run(testbed.externalClient(0), process.execPath, ['-e', CLIENT, workload.clusterIPv4, '80'], { timeoutMs: 40_000 });
  const connected = /^connected (\d+)$/m.exec(client.stdout);
  if (!client.ok || !connected || !/^HTTP\/1\.1 200/m.test(client.stdout)) {
    throw new Error(`the client failed (exit ${client.code}): ${client.stdout} ${client.stderr}`);
  }

  const [pod] = await testbed.readyPods(workload);
  const logs = testbed.kubelet('node-0').logs(workload.namespace, pod!);
  const listening = /listening (\d+)/.exec(logs);
  if (!listening) throw new Error(`no "listening" line in the logs of pod ${pod}: ${logs}`);

  const events = testbed.events.since(startedMs);
  const ready = events.find((e) => e.source === 'kubelet' && e.type === 'pod-ready');
  const released = events.find((e) => e.source === 'agent' && e.type === 'released held flows' && e.node === 'node-0');
  // The Service's IPv4 and IPv6 ports arrive in separate EndpointSlices and
  // syncs, and the release waits for both: the first sync with every port
  // of the Service counts.
  const service = `${workload.namespace}/${workload.name}`;
  const portsAfter = (e: { fields: Record<string, unknown> }) => (e.fields.servicePorts as Record<string, number> | undefined)?.[service] ?? 0;
  const syncs = ready ? events.filter((e) => e.source === 'service-proxy' && e.node === 'node-0' && e.unixMs >= ready.unixMs && portsAfter(e) > 0) : [];
  const allPorts = Math.max(0, ...syncs.map(portsAfter));
  const programmed = syncs.find((e) => portsAfter(e) === allPorts);
  return {
    listeningMs: Number(listening[1]),
    readyMs: ready?.unixMs ?? null,
    programmedMs: programmed?.unixMs ?? null,
    releasedMs: released?.unixMs ?? null,
    agentReleaseMs: typeof released?.fields.releaseMs === 'number' ? released.fields.releaseMs : null,
    connectedMs: Number(connected[1]),
  };
}

// Scales the workload to zero and waits until every agent holds again.
async function scaleToZero(testbed: Testbed, workload: DeployedWorkload): Promise<void> {
  await testbed.apps.patchNamespacedDeploymentScale(
    { name: workload.name, namespace: workload.namespace, body: [{ op: 'replace', path: '/spec/replicas', value: 0 }] },
  );
  await testbed.waitForPhase(workload.key!, 'Cold', { gateClosed: true, timeoutMs: 30_000 });
  const deadline = Date.now() + 30_000;
  while ((await testbed.readyPods(workload)).length > 0 || (await testbed.core.listNamespacedPod({ namespace: workload.namespace })).items.length > 0) {
    if (Date.now() > deadline) throw new Error(`the pods of ${workload.name} did not go away`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function runMode(mode: Mode): Promise<Sample[]> {
  const testbed = await Testbed.start({ nodes: 1, externalClients: 1, clientPodsPerNode: 0, probeIntervalMs: PROBE_INTERVAL_MS, agentLogLevel: 'info', releaseMode: mode === 'hold' ? 'reinject' : 'drop' });
  try {
    const workload = await testbed.deploy(nodeHttpWorkload({ workDir: testbed.workloadDir, name: 'web' }), { scaleToZero: { idleTimeout: '1h' } });
    await testbed.waitForPhase(workload.key!, 'Cold', { gateClosed: true });

    const samples: Sample[] = [];
    for (let i = 0; i < SAMPLES; i++) {
      samples.push(await coldStart(testbed, workload));
      await scaleToZero(testbed, workload);
      process.stderr.write(`\r${mode}: ${i + 1}/${SAMPLES}`);
    }
    process.stderr.write('\n');
    return samples;
  } finally {
    await testbed.close();
  }
}

function describe(samples: Sample[], pick: (s: Sample) => number | null): string {
  const values = samples.map(pick).filter((v): v is number => v !== null);
  if (values.length === 0) return '-';
  return `${percentile(values, 50).toFixed(1)} / ${percentile(values, 95).toFixed(1)} / ${Math.max(...values).toFixed(1)}`;
}

async function main(): Promise<void> {
  const started = performance.now();
  const hold = await runMode('hold');
  const drop = await runMode('drop');

  const gap = (s: Sample) => s.connectedMs - s.listeningMs;
  const rows: [string, string, string][] = [['step (ms, p50 / p95 / max)', 'hold', 'drop']];
  const step = (label: string, pick: (s: Sample) => number | null) => rows.push([label, describe(hold, pick), describe(drop, pick)]);
  step('listening -> connected', gap);
  step('  listening -> pod Ready (probe)', (s) => (s.readyMs === null ? null : s.readyMs - s.listeningMs));
  step('  pod Ready -> kube-proxy programmed', (s) => (s.readyMs === null || s.programmedMs === null ? null : s.programmedMs - s.readyMs));
  step('  kube-proxy programmed -> released', (s) => (s.programmedMs === null || s.releasedMs === null ? null : s.releasedMs - s.programmedMs));
  step('    of which the agent: backend seen -> re-injected', (s) => s.agentReleaseMs);
  step('  released -> connected', (s) => (s.releasedMs === null ? null : s.connectedMs - s.releasedMs));

  const widths = [0, 1, 2].map((c) => Math.max(...rows.map((r) => r[c]!.length)));
  for (const row of rows) process.stdout.write(`${row.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('   ')}\n`);

  const holdP95 = percentile(hold.map(gap), 95);
  const dropP95 = percentile(drop.map(gap), 95);
  process.stdout.write(`\nhold p95 ${holdP95.toFixed(1)} ms, target ${HOLD_TARGET_P95_MS} ms: ${holdP95 <= HOLD_TARGET_P95_MS ? 'met' : 'NOT met'}\n`);
  process.stdout.write(`drop p95 / hold p95: ${(dropP95 / holdP95).toFixed(1)}x (${SAMPLES} cold starts per mode, ${((performance.now() - started) / 1000).toFixed(0)} s)\n`);
  process.stdout.write(
    `${JSON.stringify({
      samples_per_mode: SAMPLES,
      hold_p50_ms: Number(percentile(hold.map(gap), 50).toFixed(1)),
      hold_p95_ms: Number(holdP95.toFixed(1)),
      hold_max_ms: Number(Math.max(...hold.map(gap)).toFixed(1)),
      drop_p50_ms: Number(percentile(drop.map(gap), 50).toFixed(1)),
      drop_p95_ms: Number(dropP95.toFixed(1)),
      drop_max_ms: Number(Math.max(...drop.map(gap)).toFixed(1)),
      drop_to_hold_p95_ratio: Number((dropP95 / holdP95).toFixed(1)),
    })}\n`,
  );
}

main().catch((err: Error) => {
  process.stderr.write(`bench:coldstart failed: ${err.stack ?? err.message}\n`);
  process.exit(1);
});
