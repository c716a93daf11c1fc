// npm run bench:agent
//
// The node agent's controller against the in-repo test API server, with a
// fake datapath: how fast it reacts to a wake and to a Ready endpoint, and
// what it costs to start on a cluster of 5,000 Services. The API server
// runs in the same process as the agent, so its request handling is part
// of every latency here, as a network round trip would be in a cluster.
// Run as root, it also times the checks that a release makes to see
// whether a backend listens (TCP and UDP), in network namespaces of its own,
// and how soon the hold program is on a new pod's veth in standalone mode.
// The last line is one JSON object for scripts.

import { spawn } from 'node:child_process';
import { subscribe } from 'node:diagnostics_channel';
import type { ClientRequest } from 'node:http';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

import { ApiextensionsV1Api, DiscoveryV1Api, type KubeConfig, type V1CustomResourceDefinition } from '@kubernetes/client-node';
import { pino } from 'pino';
import { parse as parseYaml } from 'yaml';

import { connectProbe } from '../src/agent/connect-probe.js';
import { Controller } from '../src/agent/controller.js';
import { EndpointReadiness } from '../src/agent/endpoint-readiness.js';
import { EventRecorder } from '../src/agent/events.js';
import { InterfaceAttacher } from '../src/agent/interface-attacher.js';
import type { ReleaseOutcome, ScalePort, WorkloadKey } from '../src/agent/ports.js';
import { KubeScaler } from '../src/agent/scaler.js';
import { type UdpBoundProbe, udpBoundProbe } from '../src/agent/udp-bound-probe.js';
import { Datapath } from '../src/datapath/datapath.js';
import { repoRoot } from '../src/paths.js';
import { FakeDatapath } from '../test/agent/testing/fake-datapath.js';
import { deploymentFixture, serviceFixture } from '../test/apiserver/fixtures.js';
import { kubeConfigFor } from '../test/apiserver/kubeconfig.js';
import { createObject } from '../test/apiserver/object-writes.js';
import { startApiServer, type TestApiServer } from '../test/apiserver/server.js';
import { netnsPath, TestNetwork } from '../test/lib/netns.js';
import { startHttpServer, startUdpEchoServer } from '../test/lib/servers.js';
import { percentile } from './report.js';

const NAMESPACE = 'bench';
const WAKES = 200;
// Wakes before the measured ones, so JIT compilation and the scaler's
// first discovery request do not count.
const WARMUP_WAKES = 20;
// Lets the status patch and Event of one wake finish before the next
// sample starts, so samples do not queue behind each other.
const SETTLE_MS = 20;

const STARTUP_SERVICES = 5_000;
// Share of the 5,000 Services whose Deployment has a ScaleToZero.
// docs/benchmarks.md records runs with 200, 500 and all 5,000.
const STARTUP_MANAGED = Number(process.env.ZH_BENCH_MANAGED ?? 200);
// The initial list of each informer is processed synchronously, so a slow
// sync blocks the event loop, and the parent kills the child process on timeout.
const STARTUP_TIMEOUT_MS = 60_000;

const TARGET_MS = 2;
const TARGET_RSS_MB = 150;
const TARGET_READY_S = 5;

const log = pino({ level: process.env.ZH_BENCH_LOG ?? 'silent' });

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(description: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!check()) {
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${description}`);
    await sleep(1);
  }
}

async function registerCrd(kc: KubeConfig): Promise<void> {
  const crd = parseYaml(readFileSync(path.join(repoRoot, 'deploy/crds/scaletozero.yaml'), 'utf8')) as V1CustomResourceDefinition;
  await kc.makeApiClient(ApiextensionsV1Api).createCustomResourceDefinition({ body: crd });
}

// Writes objects straight into the server's store through the same create
// path its REST handler uses (defaulting, validation, resourceVersion), so
// preloading 20,000 objects takes seconds, not minutes of HTTP requests.
function preloader(server: TestApiServer) {
  let nextIp = 10;
  const context = {
    store: server.store,
    kinds: server.kinds,
    defaulting: { allocateServiceIp: () => `198.19.${nextIp >> 8}.${nextIp++ & 0xff}` },
  };
  const kinds = {
    service: server.kinds.lookup('', 'v1', 'services')!,
    deployment: server.kinds.lookup('apps', 'v1', 'deployments')!,
    slice: server.kinds.lookup('discovery.k8s.io', 'v1', 'endpointslices')!,
    scaleToZero: server.kinds.lookup('zerohold.dev', 'v1alpha1', 'scaletozeros')!,
  };

  return {
    // A Deployment with its Service, optionally opted in with a ScaleToZero.
    app(name: string, replicas: number, managed: boolean): void {
      createObject(context, kinds.deployment, NAMESPACE, deploymentFixture(name, replicas), { dryRun: false });
      createObject(context, kinds.service, NAMESPACE, serviceFixture(name), { dryRun: false });
      if (!managed) return;
      const spec = { targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name }, idleTimeout: '1h', wakeReplicas: 1 };
      createObject(context, kinds.scaleToZero, NAMESPACE, { metadata: { name }, spec }, { dryRun: false });
    },
    readySlice(name: string, index: number): void {
      createObject(context, kinds.slice, NAMESPACE, readySliceOf(name, index), { dryRun: false });
    },
  };
}

function readySliceOf(service: string, index: number) {
  return {
    metadata: { name: `${service}-1`, labels: { 'kubernetes.io/service-name': service } },
    addressType: 'IPv4',
    endpoints: [{ addresses: [`198.18.${(index >> 8) & 0xff}.${index & 0xff}`], conditions: { ready: true } }],
    ports: [{ port: 8080, protocol: 'TCP' }],
  };
}

// A FakeDatapath that timestamps each release, which is where the real
// datapath opens the gate.
class TimedDatapath extends FakeDatapath {
  readonly releasedAt = new Map<WorkloadKey, number>();

  override release(workload: WorkloadKey): Promise<ReleaseOutcome> {
    this.releasedAt.set(workload, performance.now());
    return super.release(workload);
  }
}

interface ReactionResult {
  wakeToScaleCall: number[];
  wakeToPut: number[];
  changeToRelease: number[];
  storedToRelease: number[];
}

// Wakes each workload once, one at a time, then gives its Service a Ready
// EndpointSlice, and times both reactions.
async function measureReactions(): Promise<ReactionResult> {
  const server = await startApiServer({ namespaces: [NAMESPACE] });
  const kc = kubeConfigFor(server.url);
  await registerCrd(kc);
  const preload = preloader(server);
  const names = Array.from({ length: WARMUP_WAKES + WAKES }, (_, i) => `app-${i}`);
  for (const name of names) preload.app(name, 0, true);

  // The scale PUT leaves the agent when client-node's http.request builds
  // the ClientRequest; Node publishes that on this channel.
  const putAt = new Map<string, number>();
  subscribe('http.client.request.start', (message) => {
    const { request } = message as { request: ClientRequest };
    const match = /\/deployments\/([^/]+)\/scale$/.exec(request.path);
    if (request.method === 'PUT' && match) putAt.set(match[1]!, performance.now());
  });
  // When the API server stored each EndpointSlice, before its watch event
  // goes out to the agent's informer.
  const sliceStoredAt = new Map<string, number>();
  server.store.subscribe((event) => {
    if (event.type === 'ADDED' && event.object.kind === 'EndpointSlice') sliceStoredAt.set(event.object.metadata.name!, performance.now());
  });

  const real = new KubeScaler(kc);
  const scaleCalledAt = new Map<string, number>();
  const scaler: ScalePort = {
    scaleUp: (namespace, target, replicas, known) => {
      scaleCalledAt.set(target.name, performance.now());
      return real.scaleUp(namespace, target, replicas, known);
    },
    scaleTo: (namespace, target, replicas) => real.scaleTo(namespace, target, replicas),
    readScale: (namespace, target) => real.readScale(namespace, target),
  };

  const datapath = new TimedDatapath();
  const readiness = new EndpointReadiness(kc, log);
  // Registered before the controller's own listener, which start() adds, so
  // this runs first on each informer event that changes a Ready count.
  const changedAt = new Map<WorkloadKey, number>();
  readiness.onChange((key) => {
    if (!changedAt.has(key)) changedAt.set(key, performance.now());
  });
  const controller = new Controller({
    kc,
    nodeAddresses: ['198.18.0.1'],
    datapath,
    readiness,
    scaler,
    events: new EventRecorder(kc, 'bench-node', log),
    activity: { lastActivity: () => undefined },
    isLeader: () => true,
    log,
  });

  try {
    await readiness.start();
    await controller.start();
    await until('every workload installed with its gate closed', () => names.every((n) => datapath.gateClosed.get(`${NAMESPACE}/${n}`) === true), 60_000);

    const slices = kc.makeApiClient(DiscoveryV1Api);
    const result: ReactionResult = { wakeToScaleCall: [], wakeToPut: [], changeToRelease: [], storedToRelease: [] };
    for (const [index, name] of names.entries()) {
      const key = `${NAMESPACE}/${name}`;

      const wokenAt = performance.now();
      datapath.wake(key);
      await until(`the scale PUT of ${key}`, () => putAt.has(name));
      await sleep(SETTLE_MS);

      await slices.createNamespacedEndpointSlice({ namespace: NAMESPACE, body: readySliceOf(name, index) });
      await until(`the release of ${key}`, () => datapath.releasedAt.has(key));
      await sleep(SETTLE_MS);

      if (index < WARMUP_WAKES) continue;
      const releasedAt = datapath.releasedAt.get(key)!;
      result.wakeToScaleCall.push(scaleCalledAt.get(name)! - wokenAt);
      result.wakeToPut.push(putAt.get(name)! - wokenAt);
      result.changeToRelease.push(releasedAt - changedAt.get(key)!);
      result.storedToRelease.push(releasedAt - sliceStoredAt.get(`${name}-1`)!);
    }
    return result;
  } finally {
    await controller.stop();
    await readiness.stop();
    await server.close();
  }
}

interface StartupResult {
  services: number;
  managed: number;
  preloadS: number;
  rssBeforeMb: number;
  rssAfterMb: number;
  heapDeltaMb: number;
  readyS: number;
  gc: boolean;
}

const mb = (bytes: number) => bytes / 1024 / 1024;

// Runs in a child process: preloads the server, then starts a fresh agent
// in the same process and measures its sync time and memory.
async function measureStartup(): Promise<StartupResult> {
  const collect = (globalThis as { gc?: () => void }).gc;
  const server = await startApiServer({ namespaces: [NAMESPACE] });
  const kc = kubeConfigFor(server.url);
  await registerCrd(kc);

  const preloadStart = performance.now();
  const preload = preloader(server);
  for (let i = 0; i < STARTUP_SERVICES; i++) {
    const name = `app-${i}`;
    // Managed workloads are cold, the rest run with one Ready endpoint.
    const managed = i % Math.round(STARTUP_SERVICES / STARTUP_MANAGED) === 0;
    preload.app(name, managed ? 0 : 1, managed);
    preload.readySlice(name, i);
  }
  const preloadS = (performance.now() - preloadStart) / 1000;
  const managed = server.store.list('zerohold.dev/scaletozeros').length;
  process.stderr.write(`startup: preloaded in ${preloadS.toFixed(1)} s, starting the agent\n`);

  collect?.();
  const before = process.memoryUsage();

  const datapath = new FakeDatapath();
  const readiness = new EndpointReadiness(kc, log);
  const controller = new Controller({
    kc,
    nodeAddresses: ['198.18.0.1'],
    datapath,
    readiness,
    scaler: new KubeScaler(kc),
    events: new EventRecorder(kc, 'bench-node', log),
    activity: { lastActivity: () => undefined },
    isLeader: () => true,
    log,
  });

  const startedAt = performance.now();
  await readiness.start();
  await controller.start();
  process.stderr.write(`startup: start() resolved after ${((performance.now() - startedAt) / 1000).toFixed(1)} s\n`);
  // start() resolves once every informer has listed. A workload counts as
  // tracked once its frontends are installed.
  await until('every managed workload tracked', () => datapath.frontends.size === managed, STARTUP_TIMEOUT_MS);
  const readyS = (performance.now() - startedAt) / 1000;

  collect?.();
  const after = process.memoryUsage();

  await controller.stop();
  await readiness.stop();
  await server.close();
  return {
    services: STARTUP_SERVICES,
    managed,
    preloadS,
    rssBeforeMb: mb(before.rss),
    rssAfterMb: mb(after.rss),
    heapDeltaMb: mb(after.heapUsed - before.heapUsed),
    readyS,
    gc: collect !== undefined,
  };
}

// Starts this file again as a child with --expose-gc, so the startup RSS
// has a baseline free of the reaction benchmark's garbage, and a sync that
// blocks the event loop can still be ended.
function runStartupChild(): Promise<StartupResult | { error: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url), '--startup'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), STARTUP_TIMEOUT_MS + 30_000);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      const last = output.trim().split('\n').pop();
      if (code === 0 && last) resolve(JSON.parse(last) as StartupResult);
      else resolve({ error: signal ? `killed by ${signal} after ${(STARTUP_TIMEOUT_MS + 30_000) / 1000} s` : `exited with code ${code}` });
    });
  });
}

const fixed = (value: number, digits = 3) => value.toFixed(digits);
const verdict = (value: number, target: number) => (value <= target ? 'ok' : 'over');

const PROBES = 1000;
const WARMUP_PROBES = 200;

interface ProbeResult {
  listening: number[];
  refused: number[];
  // The UDP check of an endpoint behind a routed veth, bound and unbound,
  // and of the last of BRIDGED_PODS pods behind one bridge. The first
  // attempt for that one reads every pod's addresses; later ones try the
  // namespace found before.
  udpBound: number[];
  udpUnbound: number[];
  udpBridgedFirst: number[];
  udpBridged: number[];
}

const BRIDGED_PODS = 100;

// Times connectProbe() from one namespace to a listening and to a closed
// port in another, over a veth pair, as a release probes an endpoint on
// its node, and the UDP check of endpoints on the node. Returns null
// without root, which namespaces need.
async function measureListenProbe(): Promise<ProbeResult | null> {
  if (process.getuid?.() !== 0) return null;

  const network = new TestNetwork();
  const datapath = await Datapath.open({ maxServices: 4 });
  try {
    const node = await network.addNamespace('bench-node');
    const pod = await network.addNamespace('bench-pod');
    await network.addVeth(node, 'bn0', pod, 'bp0');
    await network.exec(node, 'ip', ['addr', 'add', '198.18.220.1/24', 'dev', 'bn0']);
    await network.exec(pod, 'ip', ['addr', 'add', '198.18.220.2/24', 'dev', 'bp0']);
    await startHttpServer(network, pod, '198.18.220.2', 8080, 'up');
    await startUdpEchoServer(network, pod, '198.18.220.2', 5353);

    const result: ProbeResult = { listening: [], refused: [], udpBound: [], udpUnbound: [], udpBridgedFirst: [], udpBridged: [] };
    for (const [port, times] of [[8080, result.listening], [8081, result.refused]] as const) {
      for (let i = 0; i < WARMUP_PROBES + PROBES; i++) {
        const startedMs = performance.now();
        const outcome = await connectProbe('198.18.220.2', port, 200, netnsPath(node));
        if (outcome !== (port === 8080 ? null : 'ECONNREFUSED')) throw new Error(`probe of port ${port} returned ${outcome}`);
        if (i >= WARMUP_PROBES) times.push(performance.now() - startedMs);
      }
    }

    const bridged = await addBridgedPods(network, node, BRIDGED_PODS);
    const program = datapath.program('zh_tc_udp_bound');
    const warm = udpBoundProbe(program);
    // A new probe for each attempt has no namespace found before.
    const first: UdpBoundProbe = (...args) => udpBoundProbe(program)(...args);
    const udpCases = [
      [warm, '198.18.220.2', 5353, null, result.udpBound],
      [warm, '198.18.220.2', 5354, 'ECONNREFUSED', result.udpUnbound],
      [first, bridged, 5353, 'ECONNREFUSED', result.udpBridgedFirst],
      [warm, bridged, 5353, 'ECONNREFUSED', result.udpBridged],
    ] as const;
    for (const [udp, address, port, expected, times] of udpCases) {
      for (let i = 0; i < WARMUP_PROBES + PROBES; i++) {
        const startedMs = performance.now();
        const outcome = await udp(address, port, netnsPath(node));
        if (outcome !== expected) throw new Error(`UDP check of ${address} port ${port} returned ${outcome}`);
        if (i >= WARMUP_PROBES) times.push(performance.now() - startedMs);
      }
    }
    return result;
  } finally {
    datapath.close();
    await network.cleanup();
  }
}

// Puts count pods behind a bridge in the node namespace, as the bridge CNI
// plugin does, and returns the address of the last one.
async function addBridgedPods(network: TestNetwork, node: string, count: number): Promise<string> {
  await network.exec(node, 'ip', ['link', 'add', 'bbr0', 'type', 'bridge']);
  await network.exec(node, 'ip', ['link', 'set', 'bbr0', 'up']);
  await network.exec(node, 'ip', ['addr', 'add', '198.18.221.1/24', 'dev', 'bbr0']);
  let address = '';
  for (let i = 0; i < count; i++) {
    const pod = await network.addNamespace(`bench-br${i}`);
    address = `198.18.221.${i + 2}`;
    await network.addVeth(node, `bb${i}`, pod, 'eth0');
    await network.exec(node, 'ip', ['link', 'set', `bb${i}`, 'master', 'bbr0']);
    await network.exec(pod, 'ip', ['addr', 'add', `${address}/24`, 'dev', 'eth0']);
  }
  return address;
}

const NEW_INTERFACES = 100;

interface AttachResult {
  // Start of `ip link add` to the attacher's log line, per hook.
  tc: number[];
  xdp: number[];
  // The run of `ip link add` alone, which the figures above include.
  ipLinkAdd: number[];
}

// Times InterfaceAttacher on veth pairs created one at a time in a
// namespace of its own, as a CNI plugin creates a pod's: the time until
// the hold program is attached, with tc (tcx) and with native XDP. The
// peers' names match no pattern, as a pod's end, which the CNI plugin
// moves into the pod's namespace, matches none. Returns null without
// root.
async function measureInterfaceAttach(): Promise<AttachResult | null> {
  if (process.getuid?.() !== 0) return null;

  const network = new TestNetwork();
  const pinDir = `/sys/fs/bpf/zh-bench-attach-${process.pid}`;
  mkdirSync(pinDir, { recursive: true });
  const attachedAt = new Map<string, number>();
  const log = pino({ level: 'info' }, {
    write: (line: string) => {
      const fields = JSON.parse(line) as { msg?: string; interface?: string };
      if (fields.msg === 'attached' && fields.interface) attachedAt.set(fields.interface, performance.now());
    },
  });
  let datapath: Datapath | undefined;
  let attacher: InterfaceAttacher | undefined;
  try {
    const node = await network.addNamespace('bench-attach');
    datapath = await Datapath.open({ netns: netnsPath(node), pinDir, maxServices: 8 });
    attacher = new InterfaceAttacher({
      datapath,
      selectors: [
        { name: 'pt+', hook: 'tc', xdpMode: 'auto' },
        { name: 'px+', hook: 'xdp', xdpMode: 'native' },
      ],
      netns: netnsPath(node),
      log,
    });
    await attacher.start();

    const result: AttachResult = { tc: [], xdp: [], ipLinkAdd: [] };
    for (let i = 0; i < NEW_INTERFACES; i++) {
      for (const [prefix, times] of [['pt', result.tc], ['px', result.xdp]] as const) {
        const name = `${prefix}${i}`;
        const startedMs = performance.now();
        await network.exec(node, 'ip', ['link', 'add', name, 'type', 'veth', 'peer', 'name', `peer-${prefix}${i}`]);
        result.ipLinkAdd.push(performance.now() - startedMs);
        while (!attachedAt.has(name)) await new Promise((resolve) => setTimeout(resolve, 1));
        times.push(attachedAt.get(name)! - startedMs);
      }
    }
    return result;
  } finally {
    await attacher?.stop();
    await datapath?.close();
    rmSync(pinDir, { recursive: true, force: true });
    await network.cleanup();
  }
}

async function main(): Promise<void> {
  if (process.argv.includes('--startup')) {
    process.stdout.write(`${JSON.stringify(await measureStartup())}\n`);
    return;
  }

  const reactions = await measureReactions();
  const startup = await runStartupChild();
  const probes = await measureListenProbe();
  const attaches = await measureInterfaceAttach();

  const rows: [string, string, string, string][] = [];
  const latency = (label: string, values: number[], target?: number) => {
    const p99 = percentile(values, 99);
    rows.push([label, `${fixed(percentile(values, 50))} / ${fixed(p99)} ms`, target === undefined ? '-' : `${target} ms p99`, target === undefined ? '' : verdict(p99, target)]);
  };
  latency('wake -> scaleUp() called', reactions.wakeToScaleCall);
  latency('wake -> scale PUT sent', reactions.wakeToPut, TARGET_MS);
  latency('slice delivered -> gate open', reactions.changeToRelease, TARGET_MS);
  latency('slice stored -> gate open', reactions.storedToRelease);

  let rssDelta: number | null = null;
  let readyS: number | null = null;
  if ('error' in startup) {
    rows.push(['5k startup', `failed: ${startup.error}`, '', '']);
  } else {
    rssDelta = startup.rssAfterMb - startup.rssBeforeMb;
    readyS = startup.readyS;
    rows.push(['5k preload (not the agent)', `${fixed(startup.preloadS, 1)} s`, '-', '']);
    rows.push(['5k RSS before agent', `${fixed(startup.rssBeforeMb, 1)} MB`, '-', '']);
    rows.push(['5k RSS after ready', `${fixed(startup.rssAfterMb, 1)} MB`, '-', '']);
    rows.push(['5k agent RSS delta', `${fixed(rssDelta, 1)} MB`, `${TARGET_RSS_MB} MB`, verdict(rssDelta, TARGET_RSS_MB)]);
    rows.push(['5k agent heap delta', `${fixed(startup.heapDeltaMb, 1)} MB`, '-', '']);
    rows.push(['5k start -> ready', `${fixed(readyS, 2)} s`, `${TARGET_READY_S} s`, verdict(readyS, TARGET_READY_S)]);
  }
  if (probes === null) {
    rows.push(['listen probe', 'skipped: needs root for its namespaces', '', '']);
  } else {
    latency('listen probe, port listening', probes.listening);
    latency('listen probe, port refusing', probes.refused);
    latency('UDP check, routed pod, bound', probes.udpBound);
    latency('UDP check, routed pod, unbound', probes.udpUnbound);
    latency(`UDP check, last of ${BRIDGED_PODS} bridged pods, first`, probes.udpBridgedFirst);
    latency(`UDP check, last of ${BRIDGED_PODS} bridged pods, later`, probes.udpBridged);
  }
  if (attaches === null) {
    rows.push(['new veth -> attached', 'skipped: needs root for its namespace', '', '']);
  } else {
    latency('ip link add veth (included below)', attaches.ipLinkAdd);
    latency('ip link add -> attached, tc', attaches.tc);
    latency('ip link add -> attached, native XDP', attaches.xdp);
  }

  console.log(`zerohold agent controller, test API server in process, node ${process.version}`);
  console.log(`${WAKES} wakes after ${WARMUP_WAKES} warm-up wakes, one at a time; latencies are p50 / p99`);
  if (!('error' in startup)) {
    console.log(`startup: ${startup.services} Deployments, Services and Ready EndpointSlices, ${startup.managed} with a ScaleToZero; RSS measured after ${startup.gc ? 'global.gc()' : 'no gc (run without --expose-gc)'}`);
  }
  const widths = [0, 1, 2].map((c) => Math.max(...rows.map((r) => r[c]!.length)));
  for (const row of rows) console.log(`  ${row[0].padEnd(widths[0]!)}  ${row[1].padStart(widths[1]!)}  ${row[2].padStart(widths[2]!)}  ${row[3]}`);

  console.log(
    JSON.stringify({
      wake_to_patch_p99_ms: Number(fixed(percentile(reactions.wakeToPut, 99))),
      ready_to_gate_p99_ms: Number(fixed(percentile(reactions.changeToRelease, 99))),
      rss_mb_5k: rssDelta === null ? null : Number(fixed(rssDelta, 1)),
      ready_s_5k: readyS === null ? null : Number(fixed(readyS, 2)),
      listen_probe_p99_ms: probes === null ? null : Number(fixed(percentile(probes.listening, 99))),
      udp_check_p99_ms: probes === null ? null : Number(fixed(percentile(probes.udpBound, 99))),
      udp_check_bridged_first_p99_ms: probes === null ? null : Number(fixed(percentile(probes.udpBridgedFirst, 99))),
      attach_tc_p99_ms: attaches === null ? null : Number(fixed(percentile(attaches.tc, 99))),
    }),
  );
}

await main();
