// Runs several iproute2 commands in one namespace with one process, through
// `ip -batch -`, because the testbed sets up each pod with about ten of them
// and one nsenter per command would dominate pod start-up time.

import { spawn } from 'node:child_process';

import { netnsPath } from '../lib/netns.js';

// Runs each line as an `ip` command (without the leading "ip") inside ns.
// Batch lines take no options such as -6, so each line names an address
// of the family it is for (an IPv6 default route is ::/0).
// `ip -batch` stops at the first failing line and reports its number.
export async function ipBatch(ns: string, lines: string[]): Promise<void> {
  if (lines.length === 0) return;

  await new Promise<void>((resolve, reject) => {
    const child = spawn('nsenter', [`--net=${netnsPath(ns)}`, 'ip', '-batch', '-'], { stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code === 0) resolve();
      else reject(new Error(`ip -batch in ${ns} failed (exit ${code}): ${stderr.trim()}\ncommands:\n${lines.join('\n')}`));
    });
    child.stdin.end(lines.join('\n') + '\n');
  });
}
