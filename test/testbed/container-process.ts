// One container of a simulated pod: its command run as a real process in
// the pod's network namespace through nsenter, restarted with backoff when
// it exits (restartPolicy Always), and stopped by PID.
//
// nsenter enters only the network namespace and then execs the command, so
// the PID that spawn() returns is the container's main process. Each
// container gets its own process group (detached), so the final SIGKILL
// also reaches children that the main process left behind.

import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';

import { LogBuffer } from './log-buffer.js';

export interface ContainerCommand {
  name: string;
  // argv: the container's command followed by its args.
  argv: string[];
  env: Record<string, string>;
  workingDir?: string;
  // securityContext.runAsUser and runAsGroup, applied by nsenter.
  runAsUser?: number;
  runAsGroup?: number;
}

export interface RestartBackoff {
  initialMs: number;
  maxMs: number;
  // A container that ran this long before exiting restarts after initialMs again.
  resetAfterMs: number;
}

// The kubelet's CrashLoopBackOff: 10 s doubling up to 5 min, reset after
// 10 min of running (Kubernetes 1.31 defaults).
export const KUBELET_RESTART_BACKOFF: RestartBackoff = { initialMs: 10_000, maxMs: 300_000, resetAfterMs: 600_000 };

export interface ContainerExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  finishedAt: Date;
}

// Events: 'started' (pid: number) after each spawn, 'exited' (ContainerExit)
// after each exit, whether or not a restart follows.
export class ContainerProcess extends EventEmitter {
  // Output of the current run and of the run before the last restart, as
  // `kubectl logs` and `kubectl logs --previous` show them.
  logs: LogBuffer;
  previousLogs: LogBuffer | undefined;
  restartCount = 0;
  startedAt: Date | undefined;
  lastExit: ContainerExit | undefined;
  private child: ChildProcess | undefined;
  private restartTimer: NodeJS.Timeout | undefined;
  private nextBackoffMs: number;
  private stopping = false;

  constructor(
    readonly netns: string,
    readonly command: ContainerCommand,
    private readonly backoff: RestartBackoff,
    private readonly logLimitBytes: number,
  ) {
    super();
    this.logs = new LogBuffer(logLimitBytes);
    this.nextBackoffMs = backoff.initialMs;
  }

  get pid(): number | undefined {
    return this.running ? this.child?.pid : undefined;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  // True while a restart waits for its backoff delay.
  get waitingToRestart(): boolean {
    return this.restartTimer !== undefined;
  }

  start(): void {
    const { argv, env, workingDir, runAsUser, runAsGroup } = this.command;
    const nsenterArgs = [`--net=/run/netns/${this.netns}`];
    if (runAsGroup !== undefined) nsenterArgs.push(`--setgid=${runAsGroup}`);
    if (runAsUser !== undefined) nsenterArgs.push(`--setuid=${runAsUser}`);

    const child = spawn('nsenter', [...nsenterArgs, '--', ...argv], {
      env,
      cwd: workingDir,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    this.startedAt = new Date();

    if (this.restartCount > 0) {
      this.previousLogs = this.logs;
      this.logs = new LogBuffer(this.logLimitBytes);
    }
    const logs = this.logs;
    child.stdout!.on('data', (chunk: Buffer) => logs.append(chunk));
    child.stderr!.on('data', (chunk: Buffer) => logs.append(chunk));
    // 'exit' rather than 'close': a daemon's children may keep the pipes
    // open after the main process has gone.
    child.on('exit', (code, signal) => this.onExit(child, code, signal));
    child.on('error', (err) => {
      logs.append(Buffer.from(`testbed: failed to start nsenter for ${argv[0]}: ${err.message}\n`));
      // Without a PID no 'exit' follows, so the failure counts as the exit.
      if (child.pid === undefined) this.onExit(child, 127, null);
    });
    if (child.pid !== undefined) this.emit('started', child.pid);
  }

  // Sends SIGTERM to the main process, waits up to graceMs for the exit,
  // then sends SIGKILL to the process group. No restart follows.
  async stop(graceMs: number): Promise<void> {
    this.stopping = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = undefined;

    const child = this.child;
    if (!child || child.pid === undefined) return;
    const exited = new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve();
      else child.once('exit', () => resolve());
    });

    signal(child.pid, 'SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const graceOver = new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)));
    await Promise.race([exited, graceOver]);
    clearTimeout(timer);

    signal(-child.pid, 'SIGKILL');
    await exited;
  }

  // Sends SIGKILL to the process group at once, for exit handlers.
  killSync(): void {
    this.stopping = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    if (this.child?.pid !== undefined) signal(-this.child.pid, 'SIGKILL');
  }

  private onExit(child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (child !== this.child) return;
    const finishedAt = new Date();
    const ranMs = finishedAt.getTime() - (this.startedAt?.getTime() ?? finishedAt.getTime());
    this.lastExit = { code, signal, finishedAt };
    this.emit('exited', this.lastExit);
    if (this.stopping) return;

    if (ranMs >= this.backoff.resetAfterMs) this.nextBackoffMs = this.backoff.initialMs;
    const delayMs = this.nextBackoffMs;
    this.nextBackoffMs = Math.min(this.nextBackoffMs * 2, this.backoff.maxMs);
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      if (this.stopping) return;
      this.restartCount++;
      this.start();
    }, delayMs);
  }
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch (err) {
    // ESRCH: the process or group is already gone.
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}
