// The process behind a tcpSocket readiness probe: one Node.js process per
// container run, inside the pod's network namespace, that attempts a TCP
// connection every period and prints one line per attempt. A prober that
// stays up pays the process start once, where spawning a process per
// attempt adds milliseconds to every probe, so a pod turns Ready within
// about one probe period of its server calling listen().
//
// Each output line is "success" or "failure <reason>". Attempts start one
// period apart, as the kubelet's probe ticker does, unless an attempt takes
// longer than the period. The process exits when its stdin closes, so it
// does not outlive a testbed process that died without killing it.

import { type ChildProcess, spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { createInterface } from 'node:readline';

// Runs under `node -e`, with host, port, period, timeout and initial delay
// (milliseconds) as arguments.
const PROBER_SCRIPT = `
const net = require('node:net');
const [host, port, periodMs, timeoutMs, initialDelayMs] = process.argv.slice(1);

function attempt() {
  const startedAt = Date.now();
  const socket = net.connect({ host, port: Number(port) });
  let done = false;
  const finish = (line) => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    socket.destroy();
    process.stdout.write(line + '\\n');
    setTimeout(attempt, Math.max(0, Number(periodMs) - (Date.now() - startedAt)));
  };
  const timer = setTimeout(() => finish('failure timed out after ' + timeoutMs + ' ms'), Number(timeoutMs));
  socket.once('connect', () => finish('success'));
  socket.once('error', (err) => finish('failure ' + (err.code || err.message)));
}

process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
process.stdout.on('error', () => process.exit(0));
setTimeout(attempt, Number(initialDelayMs));
`;

export interface TcpProberOptions {
  // Name of the pod's network namespace under /run/netns.
  netns: string;
  host: string;
  port: number;
  periodMs: number;
  // Limit of one connection attempt.
  timeoutMs: number;
  // Wait before the first attempt.
  initialDelayMs: number;
}

// Events: 'result' (succeeded: boolean, detail: string) per attempt, and
// 'exit' (code, signal, error) when the process ends without stop() or
// killSync(). A failed spawn emits 'exit' with null code and signal and
// the spawn error.
export class TcpProber extends EventEmitter {
  private readonly child: ChildProcess;
  private stopping = false;
  private readonly exited: Promise<void>;

  constructor(options: TcpProberOptions) {
    super();
    const args = [String(options.periodMs), String(options.timeoutMs), String(options.initialDelayMs)];
    this.child = spawn('nsenter', [`--net=/run/netns/${options.netns}`, process.execPath, '-e', PROBER_SCRIPT, options.host, String(options.port), ...args], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
      stdio: ['pipe', 'pipe', 'ignore'],
    });

    // nsenter execs node, so the child's PID is the prober's.
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      if (this.stopping) return;
      if (line === 'success') this.emit('result', true, line);
      else this.emit('result', false, line);
    });
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        if (!this.stopping) this.emit('exit', code, signal);
        resolve();
      });
      this.child.once('error', (err) => {
        if (this.child.pid !== undefined) return;
        if (!this.stopping) this.emit('exit', null, null, err);
        resolve();
      });
    });
    // A write to the stdin of a process that has exited raises EPIPE.
    this.child.stdin!.on('error', () => undefined);
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  // Sends SIGKILL to the prober by PID and resolves once it has exited.
  // No 'result' or 'exit' event follows.
  stop(): Promise<void> {
    this.killSync();
    return this.exited;
  }

  // Sends SIGKILL at once, for exit handlers.
  killSync(): void {
    this.stopping = true;
    const pid = this.child.pid;
    if (pid === undefined || this.child.exitCode !== null || this.child.signalCode !== null) return;
    try {
      process.kill(pid, 'SIGKILL');
    } catch (err) {
      // ESRCH: the process is already gone.
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
    }
  }
}
