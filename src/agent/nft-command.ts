// Runs nft, the nftables command-line tool, in the agent's network
// namespace or, through nsenter, in another one. Output is JSON (`nft -j`),
// in the schema of nft 1.0.6 (Debian 12).

import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

// A kube-proxy map contains one element per Service port, so a large cluster
// prints megabytes.
const MAX_OUTPUT_BYTES = 256 << 20;

// Returns the program and arguments that run nft with args, inside the
// network namespace file netns (such as /run/netns/node1) when it is set.
export function nftCommand(netns: string | undefined, args: string[]): [string, string[]] {
  if (netns === undefined) return ['nft', args];
  return ['nsenter', [`--net=${netns}`, 'nft', ...args]];
}

// Lists one set or map with `nft -j list`. Returns the "set" or "map"
// object that nft prints, with its elements unless terse is set, or null
// when the table or the object does not exist. Rejects when nft cannot
// run, such as when it is not installed.
export async function listNftSet(netns: string | undefined, family: string, table: string, kind: 'set' | 'map', name: string, options: { timeoutMs?: number; terse?: boolean } = {}): Promise<Record<string, unknown> | null> {
  const [program, args] = nftCommand(netns, [...(options.terse ? ['-t'] : []), '-j', 'list', kind, family, table, name]);

  let stdout: string;
  try {
    ({ stdout } = await execFileAsync(program, args, { timeout: options.timeoutMs ?? 30_000, maxBuffer: MAX_OUTPUT_BYTES }));
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    // nft 1.0.6 reports a missing table, set or map as ENOENT. nsenter
    // reports a missing nft or namespace file the same way, in a line of
    // its own ("nsenter: failed to execute nft: No such file or
    // directory"), and without nsenter a missing nft fails to spawn.
    const notRun = e.code === 'ENOENT' || /^nsenter: /m.test(e.stderr ?? '');
    if (!notRun && e.stderr?.includes('No such file or directory')) return null;
    throw new Error(`nft list ${kind} ${family} ${table} ${name} failed: ${e.stderr?.trim() || e.message}`);
  }

  const document = JSON.parse(stdout) as { nftables?: Record<string, unknown>[] };
  for (const item of document.nftables ?? []) {
    const object = item[kind];
    if (object !== undefined) return object as Record<string, unknown>;
  }
  throw new Error(`nft list ${kind} ${family} ${table} ${name} printed no ${kind} object: ${stdout.slice(0, 200)}`);
}
