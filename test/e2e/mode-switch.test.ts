// An agent started in signal mode on a node where a standalone agent
// left its programs attached through pinned links, as after a switch of
// mode in the ConfigMap. The signal agent detaches them at start, because
// no signal-mode agent reads what they hold.

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { Datapath } from '../../src/datapath/datapath.js';
import { TestHubbleServer } from '../hubble/test-server.js';
import { netnsPath, TestNetwork } from '../lib/netns.js';
import { AgentChild } from './agent-child.js';
import { writeSignalConfig } from './signal-config.js';
import { type ShopCluster, startShopCluster } from './shop-cluster.js';

const network = new TestNetwork();
const pinDir = `/sys/fs/bpf/zh-test-mode-switch-${process.pid}`;
let cluster: ShopCluster;
let hubble: TestHubbleServer;
let workDir: string;
let node: string;
let agent: AgentChild | undefined;

async function xdpAttached(ifname: string): Promise<boolean> {
  const { stdout } = await network.exec(node, 'ip', ['-j', '-d', 'link', 'show', 'dev', ifname]);
  return (JSON.parse(stdout) as { xdp?: unknown }[])[0]?.xdp !== undefined;
}

before(async () => {
  node = await network.addNamespace('node');
  await network.addVeth(node, 'zs0', node, 'zs1');
  mkdirSync(pinDir);
  cluster = await startShopCluster();
  workDir = mkdtempSync(path.join(tmpdir(), 'zh-mode-switch-'));
  hubble = new TestHubbleServer({ address: { kind: 'socket', path: path.join(workDir, 'cilium-hubble.sock') } });
  await hubble.start();
});

after(async () => {
  agent?.killSync();
  await hubble?.stop();
  await cluster?.close();
  rmSync(pinDir, { recursive: true, force: true });
  await network.cleanup();
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

test('signal agent detaches standalone links', async () => {
  // What a standalone agent leaves: a program attached through a pinned
  // link, as on a hand-over or after a SIGKILL.
  const standalone = await Datapath.open({ netns: netnsPath(node), pinDir, maxServices: 8 });
  await standalone.attach('zs0', { hook: 'xdp', mode: 'native' });
  await standalone.close({ keepAttached: true });
  assert.equal(await xdpAttached('zs0'), true, 'the standalone program stays attached');

  agent = await AgentChild.start(writeSignalConfig(workDir, cluster.kubeconfigFile.path, [`bpf: { pinDir: ${pinDir} }`]));

  assert.equal(await xdpAttached('zs0'), false, 'the signal agent detached it');
  assert.deepEqual(readdirSync(pinDir).filter((name) => name.startsWith('link_')), []);
  assert.match(agent.output, /"interface":"zs0","hook":"xdp".*"detached a program that an earlier configuration attached/);
});
