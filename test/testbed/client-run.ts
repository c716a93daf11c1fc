// Client commands (curl, psql, redis-cli, dig) run to completion inside a
// testbed namespace, with their exit status, output and wall-clock timing.
// Unlike run() in test/lib/netns.ts, a failing client is a result and not
// an exception, because some tests expect the client to fail.

import { performance } from 'node:perf_hooks';

import type { TestNetwork } from '../lib/netns.js';

export interface ClientRunOptions {
  // The client gets SIGKILL after this long. Defaults to 30000 ms.
  timeoutMs?: number;
}

export interface ClientResult {
  ns: string;
  command: string;
  args: string[];
  // Exit code, or null when a signal ended the client.
  code: number | null;
  signal: NodeJS.Signals | null;
  // True when the client exited with code 0.
  ok: boolean;
  timedOut: boolean;
  stdout: string;
  stderr: string;
  // Date.now() at spawn and at exit.
  startedUnixMs: number;
  endedUnixMs: number;
  durationMs: number;
}

// Runs the command in ns through the network, so that the network's
// cleanup ends it if the test stops early.
export function runClient(network: TestNetwork, ns: string, command: string, args: string[], options: ClientRunOptions = {}): Promise<ClientResult> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  const startedUnixMs = Date.now();
  const startedMs = performance.now();
  const child = network.spawn(ns, command, args);

  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));

  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    if (child.pid !== undefined && child.exitCode === null) process.kill(child.pid, 'SIGKILL');
  }, timeoutMs);

  return new Promise((resolve, reject) => {
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`starting ${command} in ${ns} failed: ${err.message}`));
    });
    // 'close' rather than 'exit', so that all output has been read.
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({
        ns,
        command,
        args,
        code,
        signal,
        ok: code === 0,
        timedOut,
        stdout,
        stderr,
        startedUnixMs,
        endedUnixMs: Date.now(),
        durationMs: performance.now() - startedMs,
      });
    });
  });
}

// Describes a result for assertion messages.
export function describeResult(result: ClientResult): string {
  let status = `exited ${result.code}`;
  if (result.signal) status = `ended by ${result.signal}`;
  if (result.timedOut) status = 'timed out';
  return `${result.command} ${result.args.join(' ')} in ${result.ns} ${status} after ${Math.round(result.durationMs)} ms; stdout: ${result.stdout.slice(0, 2000)}; stderr: ${result.stderr.slice(0, 2000)}`;
}
