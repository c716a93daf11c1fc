// A long-lived nft-batch process (native/nft-batch.c) in one network
// namespace. Each apply() is one nftables transaction, as `nft -f` would
// run it, without starting nsenter and nft for each: on a KVM guest those
// two process starts take about 8 ms, which would otherwise dominate a
// kube-proxy sync.

import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import path from 'node:path';

import { repoRoot } from '../../src/paths.js';
import { netnsPath } from '../lib/netns.js';

export const NFT_BATCH_PROGRAM = path.join(repoRoot, 'build/testbed/nft-batch');

interface Request {
  resolve: () => void;
  reject: (err: Error) => void;
}

export class NftBatch {
  private child: ChildProcessWithoutNullStreams | undefined;
  // Requests sent to the current process, oldest first. Responses come in
  // the same order.
  private pending: Request[] = [];
  private received = Buffer.alloc(0);
  private stderr = '';

  constructor(private readonly ns: string) {}

  // PID of the running helper (nsenter execs it), if one runs.
  get pid(): number | undefined {
    return this.child?.pid;
  }

  // Runs the script as one transaction. Rejects with nft's error message
  // when the kernel or the parser rejected it, and nothing of it applies.
  // If the helper process has died, the next call starts a new one.
  apply(script: string): Promise<void> {
    if (script.includes('\0')) return Promise.reject(new Error('invalid nft script: it contains a NUL byte, which ends a request of nft-batch'));

    const child = this.child ?? this.spawn();
    return new Promise((resolve, reject) => {
      this.pending.push({ resolve, reject });
      child.stdin.write(`${script}\0`);
    });
  }

  // Ends the process once it has replied to the requests already sent.
  async close(): Promise<void> {
    const child = this.child;
    if (child === undefined) return;
    const exited = new Promise((resolve) => child.once('close', resolve));
    child.stdin.end();
    await exited;
  }

  private spawn(): ChildProcessWithoutNullStreams {
    const child = spawn('nsenter', [`--net=${netnsPath(this.ns)}`, NFT_BATCH_PROGRAM]);
    this.child = child;
    this.received = Buffer.alloc(0);
    this.stderr = '';

    child.stdout.on('data', (chunk: Buffer) => this.onData(chunk));
    child.stderr.on('data', (chunk: Buffer) => (this.stderr += chunk.toString()));
    // A write after the process died fails with EPIPE. The 'close'
    // handler below rejects the request.
    child.stdin.on('error', () => {});
    child.on('error', (err) => this.onExit(child, `could not start ${NFT_BATCH_PROGRAM} in ${this.ns} (${err.message}); run npm run build`));
    child.on('close', (code, signal) => this.onExit(child, `nft-batch in ${this.ns} exited (${signal ?? `code ${code}`}): ${this.stderr.trim()}`));
    return child;
  }

  private onData(chunk: Buffer): void {
    this.received = Buffer.concat([this.received, chunk]);
    for (let end = this.received.indexOf(0); end >= 0; end = this.received.indexOf(0)) {
      const response = this.received.subarray(0, end).toString();
      this.received = this.received.subarray(end + 1);

      const request = this.pending.shift();
      if (request === undefined) continue;
      if (response.startsWith('0')) request.resolve();
      else request.reject(new Error(`nft failed in ${this.ns}: ${response.slice(1).trim()}`));
    }
  }

  private onExit(child: ChildProcessWithoutNullStreams, reason: string): void {
    if (this.child !== child) return;
    this.child = undefined;
    for (const request of this.pending.splice(0)) request.reject(new Error(reason));
  }
}
