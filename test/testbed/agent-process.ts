// One zerohold agent of the testbed, run as `node dist/src/agent/main.js`
// in the test's own process group. This class writes its YAML
// configuration to a work directory, parses and emits its pino JSON log
// lines, reads its local API over the unix socket, and stops, kills and
// restarts it by PID.
//
// Each agent pins its maps under its own pinDir below /sys/fs/bpf, so two
// testbeds or two nodes never share a gate. close() removes the pinDir,
// and so does the exit handler when a test crashes.

import { type ChildProcess, spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { rmSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

import type { HeldFlowSummary, InterfaceSummary, WorkloadSummary } from '../../src/agent/local-api.js';
import { repoRoot } from '../../src/paths.js';
import { netnsPath, waitFor } from '../lib/netns.js';
import { ApiBridge } from './api-bridge.js';

export type XdpMode = 'native' | 'generic' | 'auto';

export interface AgentProcessOptions {
  nodeName: string;
  // Name of the node's network namespace, under /run/netns.
  netns: string;
  // Entries of the agent's interfaces setting: names in that namespace,
  // or prefixes followed by "+", with the hook to attach there.
  interfaces: { name: string; hook: 'xdp' | 'tc' }[];
  // XDP attach mode of the entries with the xdp hook.
  xdpMode: XdpMode;
  kubeconfigPath: string;
  // Directory for the configuration file and the API socket. It must exist.
  workDir: string;
  // Directory under /sys/fs/bpf for the pinned maps.
  pinDir: string;
  // Go durations, as the configuration file takes them.
  reportInterval: string;
  leaseDuration: string;
  renewDeadline: string;
  retryPeriod: string;
  // ZEROHOLD_LOG_LEVEL of the agent.
  logLevel: string;
  // The agent's release.kubeProxy: which node load balancer must have
  // programmed a Service before held packets are re-injected.
  releaseCheck: 'nftables' | 'iptables' | 'none';
  // The agent's release.heldPackets: 'reinject' sends held packets on at
  // release, 'drop' discards them so that clients retransmit.
  releaseMode: 'reinject' | 'drop';
  // bpf.heldRingBytes, when set.
  heldRingBytes?: number;
  // liveness.failOpenAfter and shutdown.handover, when set.
  failOpenAfter?: string;
  handover?: string;
  // When set, the agent runs as the DaemonSet runs it: inside the node's
  // namespace from the start, with only these capabilities (such as
  // "BPF"), and without the netns setting, whose setns() would need
  // CAP_SYS_ADMIN. It reaches the API server at apiServerUrl through an
  // ApiBridge.
  capabilities?: string[];
  apiServerUrl?: string;
}

// The port of the API bridge inside a node's namespace.
const BRIDGE_PORT = 6443;

// One line of the agent's output: a pino JSON object, or for a line that
// is not JSON (a fatal error on stderr) an object with msg and stream.
export interface AgentLogLine {
  node: string;
  // Date.now() of the line: pino's time field when present, else arrival.
  unixMs: number;
  msg: string;
  fields: Record<string, unknown>;
}

export interface AgentExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

const READY_MESSAGE = 'agent ready';
const AGENT_MAIN = join(repoRoot, 'dist/src/agent/main.js');
// Kept output per agent, for failure messages.
const OUTPUT_LIMIT_CHARS = 1 << 20;

const liveAgents = new Set<AgentProcess>();
process.on('exit', () => {
  for (const agent of liveAgents) agent.killSync();
});

// Emits 'log' with an AgentLogLine for every output line and 'exit' with
// an AgentExit when the process ends.
export class AgentProcess extends EventEmitter {
  readonly node: string;
  readonly configPath: string;
  readonly socketPath: string;
  readonly pinDir: string;
  // stdout and stderr of every run since construction, cut to the last
  // OUTPUT_LIMIT_CHARS characters.
  output = '';
  // Number of processes spawned so far. restart() increments it.
  runs = 0;

  private child: ChildProcess | undefined;
  private bridge: ApiBridge | undefined;
  private exited: Promise<AgentExit> | undefined;
  private readyRun = 0;
  // Set by pause(), until resume().
  private paused = false;
  // Port of the current run's Prometheus endpoint on 127.0.0.1, from its
  // "agent ready" line.
  private metricsPort: number | undefined;

  constructor(private readonly options: AgentProcessOptions) {
    super();
    this.node = options.nodeName;
    this.configPath = join(options.workDir, `agent-${options.nodeName}.yaml`);
    this.socketPath = join(options.workDir, `agent-${options.nodeName}.sock`);
    this.pinDir = options.pinDir;
  }

  get pid(): number | undefined {
    return this.running ? this.child?.pid : undefined;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  // Writes the configuration and spawns the agent. waitForReady() waits
  // for its "agent ready" line.
  async start(): Promise<void> {
    if (this.running) throw new Error(`the agent of node ${this.node} is already running as PID ${this.child!.pid}`);
    let kubeconfigPath = this.options.kubeconfigPath;
    if (this.options.capabilities !== undefined) kubeconfigPath = await this.bridgeKubeconfig();
    await writeFile(this.configPath, this.renderConfig(kubeconfigPath));

    const [program, args] = this.command();
    const child = spawn(program, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ZEROHOLD_LOG_LEVEL: this.options.logLevel },
    });
    this.child = child;
    this.runs += 1;
    liveAgents.add(this);

    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        const exit = { code, signal };
        this.emit('exit', exit);
        resolve(exit);
      });
    });
    // A program that cannot start emits no 'exit', and its error shows in
    // waitForReady()'s message.
    child.once('error', (err) => this.onLine(`failed to start the agent: ${err.message}`));
    createInterface({ input: child.stdout! }).on('line', (line) => this.onLine(line));
    createInterface({ input: child.stderr! }).on('line', (line) => this.onLine(line));
  }

  // Waits for the "agent ready" line of the current run. Fails at once if
  // the process exits first.
  async waitForReady(timeoutMs = 20_000): Promise<void> {
    const run = this.runs;
    await waitFor(
      `the agent of node ${this.node} to log "${READY_MESSAGE}"`,
      () => {
        if (this.readyRun === run) return true;
        if (!this.running) throw new Error(`the agent of node ${this.node} exited before it was ready:\n${this.output.slice(-4000)}`);
        return undefined;
      },
      timeoutMs,
      20,
    );
  }

  // Sends the signal and waits for the process to exit.
  async kill(signal: NodeJS.Signals): Promise<AgentExit> {
    if (!this.running) throw new Error(`the agent of node ${this.node} is not running`);
    if (signal !== 'SIGKILL') this.resume();
    process.kill(this.child!.pid!, signal);
    return this.exited!;
  }

  // Stops the process with SIGSTOP until resume(), as a long stall of its
  // event loop would. The datapath keeps holding, and nothing reads the
  // rings.
  pause(): void {
    if (!this.running) throw new Error(`the agent of node ${this.node} is not running`);
    process.kill(this.child!.pid!, 'SIGSTOP');
    this.paused = true;
  }

  resume(): void {
    if (this.paused && this.running) process.kill(this.child!.pid!, 'SIGCONT');
    this.paused = false;
  }

  // Stops the agent with SIGTERM, or SIGKILL after graceMs, and waits for
  // it to exit. Does nothing when it is not running.
  async stop(graceMs = 5000): Promise<AgentExit | undefined> {
    if (!this.running) return undefined;
    const exited = this.exited!;
    this.resume();
    process.kill(this.child!.pid!, 'SIGTERM');

    const timer = setTimeout(() => {
      if (this.running) process.kill(this.child!.pid!, 'SIGKILL');
    }, graceMs);
    try {
      return await exited;
    } finally {
      clearTimeout(timer);
    }
  }

  // Stops a running agent, starts a new process with the same
  // configuration and pinDir, and waits until it is ready.
  async restart(): Promise<void> {
    await this.stop();
    await this.start();
    await this.waitForReady();
  }

  // Stops the agent and removes its configuration and pinned maps.
  async close(): Promise<void> {
    await this.stop();
    this.bridge?.close();
    this.bridge = undefined;
    liveAgents.delete(this);
    await rm(this.pinDir, { recursive: true, force: true });
    await rm(this.configPath, { force: true });
  }

  killSync(): void {
    this.bridge?.close();
    this.bridge = undefined;
    if (this.running) {
      try {
        process.kill(this.child!.pid!, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
    rmSync(this.pinDir, { recursive: true, force: true });
  }

  // Returns the workloads as this agent's local API reports them.
  async workloads(): Promise<WorkloadSummary[]> {
    const body = (await this.getJson('/v1/workloads')) as { workloads: WorkloadSummary[] };
    return body.workloads;
  }

  // Returns the interfaces with the hold program on this agent's node,
  // and those whose attach failed.
  async interfaces(): Promise<InterfaceSummary[]> {
    const body = (await this.getJson('/v1/interfaces')) as { interfaces: InterfaceSummary[] };
    return body.interfaces;
  }

  // Returns the flows held on this agent's node now.
  async heldFlows(): Promise<HeldFlowSummary[]> {
    const body = (await this.getJson('/v1/held')) as { flows: HeldFlowSummary[] };
    return body.flows;
  }

  // Returns host:port of the agent's metrics endpoint, on loopback. An
  // agent with capabilities listens in its node's namespace, where this
  // process cannot reach it.
  metricsAddress(): string {
    if (this.options.capabilities !== undefined) throw new Error(`the agent of node ${this.node} runs in its node's namespace, so its metrics endpoint is not on this loopback`);
    if (this.metricsPort === undefined || this.readyRun !== this.runs) throw new Error(`the agent of node ${this.node} is not ready, so its metrics port is unknown`);
    return `127.0.0.1:${this.metricsPort}`;
  }

  // Returns the agent's Prometheus metrics in the text format.
  async metrics(): Promise<string> {
    const response = await fetch(`http://${this.metricsAddress()}/metrics`);
    if (!response.ok) throw new Error(`GET /metrics of the agent of node ${this.node} returned ${response.status}`);
    return response.text();
  }

  private getJson(path: string): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const req = request({ socketPath: this.socketPath, path, method: 'GET', timeout: 5000 }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () => {
          if (res.statusCode !== 200) {
            reject(new Error(`GET ${path} on the agent socket of node ${this.node} returned ${res.statusCode}: ${text}`));
            return;
          }
          resolve(JSON.parse(text));
        });
      });
      req.on('timeout', () => req.destroy(new Error(`GET ${path} on the agent socket of node ${this.node} timed out`)));
      req.on('error', reject);
      req.end();
    });
  }

  private onLine(line: string): void {
    this.output = (this.output + line + '\n').slice(-OUTPUT_LIMIT_CHARS);

    const parsed = parseLogLine(this.node, line);
    if (parsed.msg === READY_MESSAGE) {
      this.readyRun = this.runs;
      this.metricsPort = typeof parsed.fields.metricsPort === 'number' ? parsed.fields.metricsPort : undefined;
    }
    this.emit('log', parsed);
  }

  // The program and arguments that start the agent: node itself, or with
  // capabilities, nsenter and setpriv around it. nsenter enters the
  // namespace as root, and setpriv then limits the bounding set, so the
  // agent keeps only the listed capabilities.
  private command(): [string, string[]] {
    const agent = [AGENT_MAIN, '--config', this.configPath];
    const { capabilities } = this.options;
    if (capabilities === undefined) return [process.execPath, agent];

    const bounding = ['-all', ...capabilities.map((name) => `+${name.toLowerCase()}`)].join(',');
    return ['nsenter', [`--net=${netnsPath(this.options.netns)}`, 'setpriv', '--inh-caps=-all', `--bounding-set=${bounding}`, '--', process.execPath, ...agent]];
  }

  // Starts the API bridge into the node's namespace once, and writes the
  // kubeconfig that points at it.
  private async bridgeKubeconfig(): Promise<string> {
    if (this.options.apiServerUrl === undefined) throw new Error('an agent with capabilities needs apiServerUrl for its API bridge');
    if (this.bridge !== undefined && !this.bridge.alive) {
      this.bridge.close();
      this.bridge = undefined;
    }
    if (this.bridge === undefined) {
      const server = new URL(this.options.apiServerUrl);
      this.bridge = await ApiBridge.start(this.options.netns, { host: server.hostname, port: Number(server.port) }, join(this.options.workDir, `api-bridge-${this.node}.sock`), BRIDGE_PORT);
    }

    // The testbed writes its kubeconfig as JSON (KubeConfig.exportConfig).
    const kubeconfig = JSON.parse(await readFile(this.options.kubeconfigPath, 'utf8')) as { clusters: { cluster: { server: string } }[] };
    for (const cluster of kubeconfig.clusters) cluster.cluster.server = this.bridge.url;
    const path = join(this.options.workDir, `kubeconfig-${this.node}`);
    await writeFile(path, JSON.stringify(kubeconfig), { mode: 0o600 });
    return path;
  }

  private renderConfig(kubeconfigPath: string): string {
    const options = this.options;
    const interfaces = options.interfaces.map(({ name, hook }) => (hook === 'xdp' ? `  - { name: "${name}", hook: xdp, xdpMode: ${options.xdpMode} }` : `  - { name: "${name}", hook: tc }`));
    return [
      `nodeName: ${options.nodeName}`,
      ...(options.capabilities === undefined ? [`netns: ${netnsPath(options.netns)}`] : []),
      'interfaces:',
      ...interfaces,
      `kubernetes: { kubeconfig: ${kubeconfigPath} }`,
      // Small maps: a testbed has a handful of Services, and every agent
      // allocates its maps at start.
      `bpf: { pinDir: ${options.pinDir}, maxServices: 256, indexBuckets: 4096${options.heldRingBytes === undefined ? '' : `, heldRingBytes: ${options.heldRingBytes}`} }`,
      'metrics: { host: 127.0.0.1, port: 0 }',
      `api: { socket: ${this.socketPath} }`,
      `hubble: { observerSocket: ${join(this.options.workDir, `hubble-${this.node}.sock`)} }`,
      `release: { kubeProxy: ${options.releaseCheck}, heldPackets: ${options.releaseMode} }`,
      `idle: { reportInterval: ${options.reportInterval} }`,
      `leaderElection: { leaseDuration: ${options.leaseDuration}, renewDeadline: ${options.renewDeadline}, retryPeriod: ${options.retryPeriod} }`,
      ...(options.failOpenAfter === undefined ? [] : [`liveness: { failOpenAfter: ${options.failOpenAfter} }`]),
      ...(options.handover === undefined ? [] : [`shutdown: { handover: ${options.handover} }`]),
      '',
    ].join('\n');
  }
}

function parseLogLine(node: string, line: string): AgentLogLine {
  let fields: Record<string, unknown> | undefined;
  try {
    const value: unknown = JSON.parse(line);
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) fields = value as Record<string, unknown>;
  } catch {
    // Not a pino line, kept as text below.
  }
  if (!fields) return { node, unixMs: Date.now(), msg: line, fields: { stream: 'text' } };

  const time = typeof fields.time === 'string' ? Date.parse(fields.time) : Number.NaN;
  return { node, unixMs: Number.isNaN(time) ? Date.now() : time, msg: typeof fields.msg === 'string' ? fields.msg : '', fields };
}
