// The tcpSocket readiness probes of one node: one long-lived Node.js process
// in the node's network namespace that connects to pod IPs, as the
// kubelet's probe workers do from the host. The process starts with the
// kubelet and comes back after a crash, so it is running before a pod
// starts. A prober spawned with the container could still be starting when
// a fast server already listens, which delayed Ready by tens of ms.
//
// Commands go to the process's stdin as JSON lines: {"op":"add", id, host,
// port, periodMs, timeoutMs, initialDelayMs, repeatLimit} and {"op":"remove",
// id}. Results come back as lines "<id> success" and "<id> failure
// <reason>". Attempts of a probe start one period apart, as the kubelet's
// probe ticker does, unless an attempt takes longer than the period. Of a
// run of equal results only the first repeatLimit are printed, because the
// kubelet's thresholds count no further. At a 1 ms period the rest would be
// a thousand lines a second for the testbed's event loop. The process exits
// when its stdin closes, so it does not outlive a testbed process that died
// without killing it.

import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

const PROBER_SCRIPT = `
const net = require('node:net');
const readline = require('node:readline');
const probes = new Map();

function report(probe, line) {
  const result = line.split(' ')[0];
  if (result === probe.lastResult) probe.repeats += 1;
  else {
    probe.lastResult = result;
    probe.repeats = 0;
  }
  if (probe.repeats < probe.repeatLimit) process.stdout.write(probe.id + ' ' + line + '\\n');
}

function attempt(probe) {
  const startedAt = Date.now();
  const socket = net.connect({ host: probe.host, port: probe.port });
  let done = false;
  const finish = (line) => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    socket.destroy();
    if (probes.get(probe.id) !== probe) return;
    report(probe, line);
    probe.timer = setTimeout(() => attempt(probe), Math.max(0, probe.periodMs - (Date.now() - startedAt)));
  };
  const timer = setTimeout(() => finish('failure timed out after ' + probe.timeoutMs + ' ms'), probe.timeoutMs);
  socket.once('connect', () => finish('success'));
  socket.once('error', (err) => finish('failure ' + (err.code || err.message)));
}

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const command = JSON.parse(line);
  const old = probes.get(command.id);
  if (old) clearTimeout(old.timer);
  probes.delete(command.id);
  if (command.op !== 'add') return;

  const probe = { ...command, lastResult: '', repeats: 0 };
  probes.set(probe.id, probe);
  probe.timer = setTimeout(() => attempt(probe), probe.initialDelayMs);
});
process.stdin.on('end', () => process.exit(0));
process.stdout.on('error', () => process.exit(0));
`;

// Minimum wait before a prober process that exited on its own is spawned
// again, so that a prober that cannot start does not spawn in a tight loop.
const RESTART_DELAY_MS = 1000;

export interface TcpProbeSpec {
  host: string;
  port: number;
  periodMs: number;
  // Limit of one connection attempt.
  timeoutMs: number;
  // Wait before the first attempt.
  initialDelayMs: number;
  // Number of equal results in a row that are reported. At least the
  // larger of the probe's success and failure thresholds.
  repeatLimit: number;
}

// Called with each reported attempt. A prober process that exits on its own
// counts as one failed attempt of every probe, and a new process takes the
// probes over after RESTART_DELAY_MS or the shortest probe period, if longer.
// A probe whose initial delay had not passed waits only for the rest of it.
export type ProbeResultHandler = (succeeded: boolean, detail: string) => void;

interface RegisteredProbe {
  spec: TcpProbeSpec;
  onResult: ProbeResultHandler;
  // performance.now() at add(), from which the initial delay runs.
  addedAt: number;
}

export class TcpProber {
  private readonly probes = new Map<number, RegisteredProbe>();
  private nextId = 1;
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private restartTimer: NodeJS.Timeout | undefined;
  private stopped = false;

  // netns: name of the node's network namespace under /run/netns.
  constructor(private readonly netns: string) {}

  // PID of the prober process, undefined while none runs.
  get pid(): number | undefined {
    return this.child?.pid;
  }

  // Spawns the process ahead of the first probe, so that the first pod
  // does not wait for it. add() spawns it too.
  start(): void {
    this.stopped = false;
    if (!this.child && !this.restartTimer) this.spawn();
  }

  // Starts probing and returns the probe's id for remove().
  add(spec: TcpProbeSpec, onResult: ProbeResultHandler): number {
    if (this.stopped) throw new Error(`cannot add a probe to the stopped prober of namespace ${this.netns}: call start() first`);
    const id = this.nextId++;
    const probe = { spec, onResult, addedAt: performance.now() };
    this.probes.set(id, probe);
    if (!this.child && !this.restartTimer) this.spawn();
    else this.sendAdd(id, probe);
    return id;
  }

  // Stops a probe. No result of it is reported after this call.
  remove(id: number): void {
    if (!this.probes.delete(id)) return;
    this.send({ op: 'remove', id });
  }

  // Kills the process by PID and resolves once it has exited. Results
  // still buffered are dropped.
  stop(): Promise<void> {
    this.killSync();
    return this.exited;
  }

  // Sends SIGKILL at once, for exit handlers.
  killSync(): void {
    this.stopped = true;
    this.probes.clear();
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = undefined;

    // A start() right after this spawns a new process rather than sending
    // probes to the dying one, whose output is ignored from now on.
    const child = this.child;
    this.child = undefined;
    if (child?.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
    try {
      process.kill(child.pid, 'SIGKILL');
    } catch (err) {
      // ESRCH: the process is already gone.
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
    }
  }

  private spawn(): void {
    const child = spawn('nsenter', [`--net=/run/netns/${this.netns}`, process.execPath, '-e', PROBER_SCRIPT], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
      stdio: ['pipe', 'pipe', 'ignore'],
    });
    this.child = child;
    // A write to the stdin of a process that has exited raises EPIPE.
    child.stdin!.on('error', () => undefined);

    // nsenter execs node, so the child's PID is the prober's.
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (child !== this.child) return;
      const space = line.indexOf(' ');
      const probe = this.probes.get(Number(line.slice(0, space)));
      const detail = line.slice(space + 1);
      probe?.onResult(detail === 'success', detail);
    });
    this.exited = new Promise((resolve) => {
      child.once('exit', () => {
        this.onExit(child);
        resolve();
      });
      child.once('error', () => {
        if (child.pid !== undefined) return;
        this.onExit(child);
        resolve();
      });
    });

    for (const [id, probe] of this.probes) this.sendAdd(id, probe);
  }

  private onExit(child: ChildProcess): void {
    if (child !== this.child) return;
    this.child = undefined;
    if (this.stopped) return;

    // The delay is fixed before the handlers run, because a handler may
    // remove its probe.
    const probes = [...this.probes.values()];
    const shortestPeriodMs = probes.length === 0 ? 0 : Math.min(...probes.map((probe) => probe.spec.periodMs));
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      if (!this.stopped) this.spawn();
    }, Math.max(RESTART_DELAY_MS, shortestPeriodMs));
    for (const probe of probes) probe.onResult(false, 'failure prober exited');
  }

  // Sends a probe with what is left of its initial delay, so that a new
  // process does not start the delay over.
  private sendAdd(id: number, probe: RegisteredProbe): void {
    const initialDelayMs = Math.max(0, probe.spec.initialDelayMs - (performance.now() - probe.addedAt));
    this.send({ op: 'add', id, ...probe.spec, initialDelayMs });
  }

  private send(command: object): void {
    this.child?.stdin!.write(`${JSON.stringify(command)}\n`);
  }
}
