// Network namespaces, veth pairs and processes for privileged tests. Every
// namespace and process created here is removed by cleanup(), which tests
// call from an after() hook; an exit handler repeats the removal so a
// crashed test leaves nothing behind. Processes are ended by PID only.

import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

let counter = 0;
const liveNetworks = new Set<TestNetwork>();

process.on('exit', () => {
  for (const network of liveNetworks) network.cleanupSync();
});

export interface RunResult {
  stdout: string;
  stderr: string;
}

export class TestNetwork {
  readonly namespaces: string[] = [];
  private readonly processes: ChildProcess[] = [];

  constructor() {
    liveNetworks.add(this);
  }

  // Creates a namespace with loopback up and returns its name. Names stay
  // short and unique per process, so parallel test files do not collide.
  async addNamespace(role: string): Promise<string> {
    const name = `zh${process.pid}-${counter++}-${role}`;
    await run('ip', ['netns', 'add', name]);
    this.namespaces.push(name);
    await this.exec(name, 'ip', ['link', 'set', 'lo', 'up']);
    return name;
  }

  // Deletes one namespace that addNamespace created, before cleanup(). It
  // ends no process, and the kernel keeps the namespace and its interfaces
  // until the last process inside it exits.
  async removeNamespace(name: string): Promise<void> {
    if (!this.namespaces.includes(name)) throw new Error(`namespace ${name} was not created by this TestNetwork`);
    await run('ip', ['netns', 'del', name]);
    // Looked up again after the await, because concurrent removals change
    // the positions.
    this.namespaces.splice(this.namespaces.indexOf(name), 1);
  }

  // Connects two namespaces with a veth pair and brings both ends up.
  async addVeth(nsA: string, ifA: string, nsB: string, ifB: string): Promise<void> {
    await run('ip', ['link', 'add', ifA, 'netns', nsA, 'type', 'veth', 'peer', 'name', ifB, 'netns', nsB]);
    await this.exec(nsA, 'ip', ['link', 'set', ifA, 'up']);
    await this.exec(nsB, 'ip', ['link', 'set', ifB, 'up']);
  }

  async exec(ns: string, command: string, args: string[], options: { timeoutMs?: number } = {}): Promise<RunResult> {
    return run('nsenter', [`--net=${netnsPath(ns)}`, command, ...args], options.timeoutMs);
  }

  // Starts a long-running process in ns; cleanup() ends it.
  spawn(ns: string, command: string, args: string[]): ChildProcess {
    const child = spawn('nsenter', [`--net=${netnsPath(ns)}`, command, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.processes.push(child);
    return child;
  }

  async cleanup(): Promise<void> {
    this.cleanupSync();
  }

  cleanupSync(): void {
    for (const child of this.processes.splice(0)) {
      if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
        try {
          process.kill(child.pid, 'SIGKILL');
        } catch {
          // Already gone.
        }
      }
    }
    for (const ns of this.namespaces.splice(0).reverse()) {
      try {
        // Deleting the namespace also deletes the veth ends inside it.
        execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
      } catch {
        // Already gone.
      }
    }
    liveNetworks.delete(this);
  }
}

export function netnsPath(ns: string): string {
  return `/run/netns/${ns}`;
}

export async function run(command: string, args: string[], timeoutMs = 30_000): Promise<RunResult> {
  try {
    const { stdout, stderr } = await execFileAsync(command, args, { timeout: timeoutMs, maxBuffer: 16 << 20 });
    return { stdout, stderr };
  } catch (err) {
    const e = err as Error & { stderr?: string; code?: unknown };
    throw new Error(`${command} ${args.join(' ')} failed (${e.code}): ${e.stderr?.trim() || e.message}`);
  }
}

// The MAC address of a device in a namespace.
export async function macOf(ns: string, device: string): Promise<string> {
  const { stdout } = await run('ip', ['-n', ns, '-j', 'link', 'show', device]);
  const [link] = JSON.parse(stdout) as { address: string }[];
  if (!link) throw new Error(`no device ${device} in namespace ${ns}`);
  return link.address;
}

// Waits until check() returns a value other than undefined, polling every
// intervalMs, and fails after timeoutMs with the description.
export async function waitFor<T>(description: string, check: () => T | undefined | Promise<T | undefined>, timeoutMs = 5000, intervalMs = 10): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${description}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
