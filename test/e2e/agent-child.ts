// An agent process for the e2e tests that run one without the testbed:
// `node dist/src/agent/main.js --config FILE`, with stdout and stderr
// collected in `output`.

import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';

import { repoRoot } from '../../src/paths.js';
import { waitFor } from '../lib/netns.js';

export class AgentChild {
  // Everything the agent wrote to stdout and stderr so far.
  output = '';
  readonly child: ChildProcess;
  private readonly exited: Promise<number | null>;

  private constructor(configPath: string) {
    this.child = spawn(process.execPath, [path.join(repoRoot, 'dist/src/agent/main.js'), '--config', configPath], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stdout!.on('data', (chunk: Buffer) => (this.output += chunk.toString()));
    this.child.stderr!.on('data', (chunk: Buffer) => (this.output += chunk.toString()));
    this.exited = new Promise((resolve) => this.child.once('exit', (code) => resolve(code)));
  }

  // Spawns the agent and resolves once it logs "agent ready". Rejects with
  // its output when it exits first or is not ready within timeoutMs, and
  // kills it in the second case.
  static async start(configPath: string, timeoutMs = 15_000): Promise<AgentChild> {
    const agent = new AgentChild(configPath);
    try {
      await waitFor('the agent to be ready', () => {
        if (agent.hasExited()) throw new Error(`the agent exited (code ${agent.child.exitCode}, signal ${agent.child.signalCode}) before it was ready`);
        return agent.output.includes('"agent ready"') ? true : undefined;
      }, timeoutMs);
    } catch (err) {
      agent.killSync();
      throw new Error(`${(err as Error).message}\nagent output:\n${agent.output}`);
    }
    return agent;
  }

  // Sends SIGTERM by PID unless the agent has exited, and resolves with
  // the exit code.
  terminate(): Promise<number | null> {
    if (!this.hasExited()) process.kill(this.child.pid!, 'SIGTERM');
    return this.exited;
  }

  // Resolves with the exit code once the agent exits by itself.
  exitCode(): Promise<number | null> {
    return this.exited;
  }

  // Sends SIGKILL by PID unless the agent has exited, for after() hooks.
  killSync(): void {
    if (!this.hasExited() && this.child.pid !== undefined) process.kill(this.child.pid, 'SIGKILL');
  }

  private hasExited(): boolean {
    return this.child.exitCode !== null || this.child.signalCode !== null;
  }
}
