// npm run bench:coldstart
//
// Cold starts of a real server on the testbed, in one run:
//
// 1. SAMPLES cold starts in hold mode, where the agent re-injects the held
//    SYN at release, then SAMPLES in drop mode, where it discards the SYN
//    and the client connects at its retransmission, as in earlier
//    proxyless designs. Each sample is the client's connection established
//    minus the server's listen() (samples.ts). Between the two come the
//    testbed's readiness probe (a TCP connect every PROBE_INTERVAL_MS),
//    the Pod and EndpointSlice writes through the API server and the
//    kube-proxy stand-in's nftables sync, so the breakdown prints those
//    steps too.
// 2. On the hold-mode testbed: the release of 1,000 held connections
//    (mass-release.ts) and a SYN flood (syn-flood.ts).
// 3. The floor of the testbed's control plane: a Pod's Ready status to a
//    ready IPv4 EndpointSlice, with nothing else running
//    (control-plane-floor.ts).
//
// It prints a table per part, and as the last line one JSON object.

import { performance } from 'node:perf_hooks';

import { nodeHttpWorkload } from '../test/testbed/servers.js';
import { Testbed } from '../test/testbed/testbed.js';
import { controlPlaneFloor } from './coldstart/control-plane-floor.js';
import { CONNECTIONS, massRelease, type MassReleaseResult } from './coldstart/mass-release.js';
import { coldStart, type Sample, scaleToZero } from './coldstart/samples.js';
import { FLOOD_RATE_PPS, FLOOD_SECONDS, type FloodResult, synFlood } from './coldstart/syn-flood.js';
import { formatTable, percentile } from './report.js';

const SAMPLES = Number(process.env.ZH_BENCH_SAMPLES ?? 50);
const PROBE_INTERVAL_MS = 5;
const HOLD_TARGET_P95_MS = 5;
const RELEASE_TARGET_MS = 100;
const MB = 1e6;

type Mode = 'hold' | 'drop';

interface HoldRun {
  samples: Sample[];
  release: MassReleaseResult;
  flood: FloodResult;
}

async function runSamples(testbed: Testbed, mode: Mode): Promise<Sample[]> {
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
}

function startTestbed(mode: Mode): Promise<Testbed> {
  return Testbed.start({ nodes: 1, externalClients: 2, clientPodsPerNode: 0, probeIntervalMs: PROBE_INTERVAL_MS, agentLogLevel: 'info', releaseMode: mode === 'hold' ? 'reinject' : 'drop' });
}

async function runHold(): Promise<HoldRun> {
  const testbed = await startTestbed('hold');
  try {
    const samples = await runSamples(testbed, 'hold');
    process.stderr.write(`release of ${CONNECTIONS} held connections\n`);
    const release = await massRelease(testbed);
    process.stderr.write(`SYN flood, ${FLOOD_RATE_PPS} SYN/s for ${FLOOD_SECONDS} s\n`);
    const flood = await synFlood(testbed);
    return { samples, release, flood };
  } finally {
    await testbed.close();
  }
}

async function runDrop(): Promise<Sample[]> {
  const testbed = await startTestbed('drop');
  try {
    return await runSamples(testbed, 'drop');
  } finally {
    await testbed.close();
  }
}

function describe(samples: Sample[], pick: (s: Sample) => number | null): string {
  const values = samples.map(pick).filter((v): v is number => v !== null);
  if (values.length === 0) return '-';
  return `${percentile(values, 50).toFixed(1)} / ${percentile(values, 95).toFixed(1)} / ${Math.max(...values).toFixed(1)}`;
}

function between(fromMs: number | null, toMs: number | null): number | null {
  return fromMs === null || toMs === null ? null : toMs - fromMs;
}

function printTable(rows: string[][]): void {
  process.stdout.write(formatTable(rows));
}

function verdict(met: boolean): string {
  return met ? 'met' : 'NOT met';
}

async function main(): Promise<void> {
  const started = performance.now();
  const { samples: hold, release, flood } = await runHold();
  const drop = await runDrop();
  const floor = await controlPlaneFloor();

  const gap = (s: Sample) => s.connectedMs - s.listeningMs;
  const rows: string[][] = [['step (ms, p50 / p95 / max)', 'hold', 'drop']];
  const step = (label: string, pick: (s: Sample) => number | null) => rows.push([label, describe(hold, pick), describe(drop, pick)]);
  step('listening -> connected', gap);
  step('  listening -> pod Ready (probe)', (s) => (s.readyMs === null ? null : s.readyMs - s.listeningMs));
  step('  pod Ready -> kube-proxy programmed (IPv4)', (s) => (s.readyMs === null || s.programmedMs === null ? null : s.programmedMs - s.readyMs));
  step('    pod Ready -> Pod status write at the API server', (s) => between(s.readyMs, s.podWrittenMs));
  step('    -> IPv4 EndpointSlice write at the API server', (s) => between(s.podWrittenMs, s.sliceWrittenMs));
  step('    -> kube-proxy programmed', (s) => between(s.sliceWrittenMs, s.programmedMs));
  step('  kube-proxy programmed -> released', (s) => (s.programmedMs === null || s.releasedMs === null ? null : s.releasedMs - s.programmedMs));
  step('    of which the agent: backend seen -> re-injected', (s) => s.agentReleaseMs);
  step('  released -> connected', (s) => (s.releasedMs === null ? null : s.connectedMs - s.releasedMs));
  printTable(rows);

  const holdP95 = percentile(hold.map(gap), 95);
  const dropP95 = percentile(drop.map(gap), 95);
  process.stdout.write(`\nhold p95 ${holdP95.toFixed(1)} ms, target ${HOLD_TARGET_P95_MS} ms: ${verdict(holdP95 <= HOLD_TARGET_P95_MS)}\n`);
  process.stdout.write(`drop p95 / hold p95: ${(dropP95 / holdP95).toFixed(1)}x (${SAMPLES} cold starts per mode)\n`);
  process.stdout.write(
    `control-plane floor, Pod Ready write -> ready IPv4 EndpointSlice seen, API server and EndpointSlice controller alone: ` +
      `p50 ${percentile(floor, 50).toFixed(1)} / p95 ${percentile(floor, 95).toFixed(1)} ms (${floor.length} rounds)\n\n`,
  );

  const releaseMet = release.served === CONNECTIONS && release.lastConnectedMs <= RELEASE_TARGET_MS;
  printTable([
    [`release of ${CONNECTIONS} held connections`, ''],
    ['flows re-injected at release', String(release.released)],
    ['connections served', `${release.served} / ${CONNECTIONS}`],
    ['pod Ready -> last connection established', `${release.lastConnectedMs.toFixed(1)} ms`],
    ['pod Ready -> last response', `${release.lastRespondedMs.toFixed(1)} ms`],
    ['release -> last connection established', `${release.releaseToLastConnectedMs.toFixed(1)} ms`],
  ]);
  if (release.errors.length > 0) process.stdout.write(`errors: ${release.errors.join('; ')}\n`);
  process.stdout.write(`target: all connected within ${RELEASE_TARGET_MS} ms of Ready: ${verdict(releaseMet)}\n\n`);

  const floodMet = flood.scaleUps === 1 && flood.maxHeldBytes <= flood.heldBoundBytes && flood.legitServed === flood.legitClients && flood.ratePps >= FLOOD_RATE_PPS;
  printTable([
    ['SYN flood', ''],
    ['SYNs sent', `${flood.sent} in ${(flood.durationMs / 1000).toFixed(2)} s (${Math.round(flood.ratePps)} SYN/s)`],
    ['scale-ups', String(flood.scaleUps)],
    ['most flows held', String(flood.maxHeldFlows)],
    ['most held frame bytes', `${(flood.maxHeldBytes / MB).toFixed(2)} MB (bound ${(flood.heldBoundBytes / MB).toFixed(2)} MB)`],
    ['flow openers rejected over the bound', String(flood.rejected)],
    ['dropped in the datapath: over the hold budget / ring full', `${flood.overBudget} / ${flood.ringFull}`],
    ['agent RSS before / peak', `${(flood.agentRssBeforeBytes / MB).toFixed(1)} / ${(flood.agentRssMaxBytes / MB).toFixed(1)} MB`],
    ['pod Ready after the last flood SYN', `${flood.readyAfterFloodMs.toFixed(0)} ms`],
    ['legitimate clients served', `${flood.legitServed} / ${flood.legitClients}, slowest connect ${flood.legitMaxConnectMs.toFixed(0)} ms`],
  ]);
  for (const failure of flood.legitFailures) process.stdout.write(`legitimate client failed: ${failure}\n`);
  process.stdout.write(`target: at least ${FLOOD_RATE_PPS} SYN/s, one scale-up, held memory within the bound, every legitimate client served: ${verdict(floodMet)}\n`);
  process.stdout.write(`\n(${((performance.now() - started) / 1000).toFixed(0)} s)\n`);

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
      flood_syn_per_s: Math.round(flood.ratePps),
      flood_scaleups: flood.scaleUps,
      flood_held_mb: Number((flood.maxHeldBytes / MB).toFixed(3)),
      flood_held_bound_mb: Number((flood.heldBoundBytes / MB).toFixed(2)),
      flood_legit_served: flood.legitServed,
      flood_legit_clients: flood.legitClients,
      flood_over_budget: flood.overBudget,
      flood_ring_full: flood.ringFull,
      release_1000_ms: Number(release.lastConnectedMs.toFixed(1)),
      control_plane_floor_p50_ms: Number(percentile(floor, 50).toFixed(1)),
      control_plane_floor_p95_ms: Number(percentile(floor, 95).toFixed(1)),
    })}\n`,
  );
}

main().catch((err: Error) => {
  process.stderr.write(`bench:coldstart failed: ${err.stack ?? err.message}\n`);
  process.exit(1);
});
