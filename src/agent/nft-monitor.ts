// One `nft -j monitor` process. nft 1.0.6 prints every nf_tables change of
// its network namespace as one JSON object per line and flushes each line,
// so a change reaches the agent as soon as nft reads the kernel's
// notification. Changes of one transaction come as consecutive lines: an
// element as `{"add": {"element": ...}}`, a flushed map as one
// `{"delete": {"element": ...}}` per element, and a deleted table as
// `{"delete": {"set": ...}}` per set or map, then the chains, then
// `{"delete": {"table": ...}}`, with no line per element.

import { spawn, type ChildProcess } from 'node:child_process';
import { readdir, readFile, readlink } from 'node:fs/promises';

import { nftCommand } from './nft-command.js';

// NETLINK_NETFILTER in linux/netlink.h and NFNLGRP_NFTABLES in
// linux/netfilter/nfnetlink.h: the socket protocol and multicast group
// through which the kernel announces nf_tables changes.
const NETLINK_NETFILTER = '12';
const NFNLGRP_NFTABLES = 7;

// Rule and chain lines are most of a kube-proxy sync and never change the
// maps, so they are skipped before JSON parsing.
const SKIPPED_LINE = /^\{"(add|delete)": \{"(rule|chain)"/;

const STDERR_TAIL_BYTES = 2048;

// The warnings of nft 1.0.6 on stderr when it drops an element event
// because its cache lacks the set. That happens after the last rule that
// used the set was deleted, or when the set was created between the
// monitor's listing and its subscription. nft then prints nothing more
// for that set until it restarts.
const CACHE_MISS = /Received event for an unknown set|Unable to cache set_elem/;
const KILL_GRACE_MS = 2000;

export interface MonitorExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  // Set when the process could not be started, such as ENOENT for a
  // missing nft or nsenter.
  error?: Error;
  // The last bytes nft wrote to stderr.
  stderr: string;
}

export interface NftMonitorOptions {
  // Network namespace file, such as /run/netns/node1. Unset: the agent's own.
  netns?: string;
  // Receives the parsed objects of one read from nft's stdout, in order.
  onEvents: (events: unknown[]) => void;
  // Called once, with the stderr line, when nft dropped an element event
  // because its cache lacks the set. From then on it misses that set's
  // changes, so the caller restarts it.
  onCacheMiss?: (line: string) => void;
}

export class NftMonitor {
  readonly startedAt = Date.now();
  // Resolves once the process has exited or failed to start.
  readonly exited: Promise<MonitorExit>;
  // Lines of stdout that were not JSON.
  unparsedLines = 0;

  private readonly child: ChildProcess;
  private exit: MonitorExit | undefined;
  private partialLine = '';
  private stderrTail = '';
  private partialStderrLine = '';
  private cacheMissReported = false;

  constructor(private readonly options: NftMonitorOptions) {
    const [program, args] = nftCommand(options.netns, ['-j', 'monitor']);
    this.child = spawn(program, args, { stdio: ['ignore', 'pipe', 'pipe'] });

    this.child.stdout!.setEncoding('utf8');
    this.child.stdout!.on('data', (chunk: string) => this.read(chunk));
    this.child.stderr!.setEncoding('utf8');
    this.child.stderr!.on('data', (chunk: string) => {
      this.stderrTail = (this.stderrTail + chunk).slice(-STDERR_TAIL_BYTES);
      this.readStderr(chunk);
    });

    this.exited = new Promise((resolve) => {
      this.child.on('error', (error) => {
        // A process that never started emits no 'exit'.
        if (this.child.pid === undefined) this.finish({ code: null, signal: null, error, stderr: this.stderrTail }, resolve);
      });
      this.child.on('exit', (code, signal) => this.finish({ code, signal, stderr: this.stderrTail }, resolve));
    });
  }

  // Process id of nft. nsenter execs nft in place, so it is one process.
  get pid(): number | undefined {
    return this.child.pid;
  }

  // Resolves once nft has joined the nf_tables multicast group, which
  // /proc/PID/net/netlink shows for the socket among its open files. From
  // then on, no change is missed. Rejects if the process exits first or
  // the group does not show within timeoutMs.
  async subscribed(timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.exit !== undefined) throw new Error(`nft monitor exited before it subscribed: ${describeExit(this.exit)}`);
      if (this.pid !== undefined && (await hasNftablesSubscription(this.pid))) return;
      if (Date.now() > deadline) throw new Error(`nft monitor (pid ${this.pid}) did not subscribe to nf_tables events within ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
  }

  // Ends the process by its PID with SIGTERM, or SIGKILL after a grace
  // period, and resolves once it has exited.
  async stop(): Promise<MonitorExit> {
    if (this.exit !== undefined) return this.exit;

    this.signal('SIGTERM');
    const timer = setTimeout(() => this.signal('SIGKILL'), KILL_GRACE_MS);
    const exit = await this.exited;
    clearTimeout(timer);
    return exit;
  }

  private signal(signal: NodeJS.Signals): void {
    if (this.pid === undefined || this.exit !== undefined) return;
    try {
      process.kill(this.pid, signal);
    } catch {
      // Exited in the meantime; 'exit' follows.
    }
  }

  private finish(exit: MonitorExit, resolve: (exit: MonitorExit) => void): void {
    if (this.exit !== undefined) return;
    this.exit = exit;
    resolve(exit);
  }

  private readStderr(chunk: string): void {
    const lines = (this.partialStderrLine + chunk).split('\n');
    this.partialStderrLine = lines.pop()!.slice(-STDERR_TAIL_BYTES);
    if (this.cacheMissReported) return;

    const miss = lines.find((line) => CACHE_MISS.test(line));
    if (miss === undefined) return;
    this.cacheMissReported = true;
    this.options.onCacheMiss?.(miss);
  }

  private read(chunk: string): void {
    const lines = (this.partialLine + chunk).split('\n');
    this.partialLine = lines.pop()!;

    const events: unknown[] = [];
    for (const line of lines) {
      if (line === '' || SKIPPED_LINE.test(line)) continue;
      try {
        events.push(JSON.parse(line));
      } catch {
        this.unparsedLines += 1;
      }
    }
    if (events.length > 0) this.options.onEvents(events);
  }
}

export function describeExit(exit: MonitorExit): string {
  let text = `exit code ${exit.code}`;
  if (exit.error !== undefined) text = exit.error.message;
  else if (exit.signal !== null) text = `signal ${exit.signal}`;

  const stderr = exit.stderr.trim();
  if (stderr !== '') text += `, stderr: ${stderr}`;
  return text;
}

async function hasNftablesSubscription(pid: number): Promise<boolean> {
  let socketInodes: Set<string>;
  let netlinkTable: string;
  try {
    const links = await Promise.all((await readdir(`/proc/${pid}/fd`)).map((fd) => readlink(`/proc/${pid}/fd/${fd}`).catch(() => '')));
    socketInodes = new Set(links.map((link) => /^socket:\[(\d+)\]$/.exec(link)?.[1]).filter((inode): inode is string => inode !== undefined));
    netlinkTable = await readFile(`/proc/${pid}/net/netlink`, 'utf8');
  } catch {
    // The process is starting or exiting. The caller checks its exit.
    return false;
  }

  // Columns: sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode. Groups is
  // a hex mask of the first 32 groups, bit n-1 for group n.
  for (const line of netlinkTable.split('\n').slice(1)) {
    const columns = line.trim().split(/\s+/);
    if (columns.length < 10 || columns[1] !== NETLINK_NETFILTER || !socketInodes.has(columns[9]!)) continue;
    if ((parseInt(columns[3]!, 16) & (1 << (NFNLGRP_NFTABLES - 1))) !== 0) return true;
  }
  return false;
}
