// A client namespace and a node namespace joined by a veth pair. The node
// translates Service IPs with nftables DNAT, as kube-proxy would, and the
// client routes 198.19.0.0/16 and fd5a:19::/64 to the node.

import { spawn } from 'node:child_process';

import { netnsPath, TestNetwork } from './netns.js';

export const CLIENT_V4 = '198.18.1.1';
export const NODE_V4 = '198.18.1.2';
export const CLIENT_V6 = 'fd5a:18::1';
export const NODE_V6 = 'fd5a:18::2';

export interface Topology {
  network: TestNetwork;
  client: string;
  node: string;
}

// Builds the namespaces and loads nftRules (an nft -f script) in the node.
export async function buildTopology(nftRules: string): Promise<Topology> {
  const network = new TestNetwork();
  const client = await network.addNamespace('cli');
  const node = await network.addNamespace('node');
  await network.addVeth(client, 'c0', node, 'n0');

  await network.exec(client, 'ip', ['addr', 'add', `${CLIENT_V4}/24`, 'dev', 'c0']);
  await network.exec(client, 'ip', ['-6', 'addr', 'add', `${CLIENT_V6}/64`, 'dev', 'c0', 'nodad']);
  await network.exec(client, 'ip', ['route', 'add', '198.19.0.0/16', 'via', NODE_V4]);
  await network.exec(client, 'ip', ['-6', 'route', 'add', 'fd5a:19::/64', 'via', NODE_V6]);
  await network.exec(node, 'ip', ['addr', 'add', `${NODE_V4}/24`, 'dev', 'n0']);
  await network.exec(node, 'ip', ['-6', 'addr', 'add', `${NODE_V6}/64`, 'dev', 'n0', 'nodad']);
  await runNft(node, nftRules);
  return { network, client, node };
}

export async function runNft(ns: string, rules: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const child = spawn('nsenter', [`--net=${netnsPath(ns)}`, 'nft', '-f', '-'], { stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`nft failed: ${stderr}`))));
    child.stdin.end(rules);
  });
}

// Runs a client command to completion in the background and returns its
// output once it exits.
export function startClient(network: TestNetwork, ns: string, command: string, args: string[]): Promise<string> {
  const child = network.spawn(ns, command, args);
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  return new Promise((resolve, reject) => {
    child.on('exit', (code) => (code === 0 ? resolve(output) : reject(new Error(`${command} exited ${code}: ${output}`))));
  });
}
