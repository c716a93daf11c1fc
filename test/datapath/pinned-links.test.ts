// Links pinned in pinDir across a SIGKILLed process: a child process
// (pinned-link-agent.ts) attaches and is killed, the program stays
// attached and keeps holding, and a new Datapath takes the link over with
// its own program. Runs in a client and a node namespace joined by a veth
// pair.

import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';

import { Datapath, type AttachHook } from '../../src/datapath/datapath.js';
import { loadNative } from '../../src/datapath/native.js';
import { linkPinPath } from '../../src/datapath/pinned-links.js';
import type { HeldRecord } from '../../src/datapath/records.js';
import { netnsPath, waitFor } from '../lib/netns.js';
import { buildTopology, NODE_V4, startClient, type Topology } from '../lib/topology.js';

const SERVICE_V4 = '198.19.0.20';
const CHILD_SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'pinned-link-agent.js');

// Without a hold program the SYN would meet this DNAT rule and a closed
// port, and the client would get a RST at once.
const NFT_RULES = `
table inet zh_test {
  chain prerouting {
    type nat hook prerouting priority dstnat;
    ip daddr ${SERVICE_V4} tcp dport 80 dnat ip to ${NODE_V4}:8080
  }
}
`;

const native = loadNative();
const children = new Set<ChildProcess>();
const pinRoot = `/sys/fs/bpf/zh-test-links-${process.pid}`;
let topology: Topology;

before(async () => {
  topology = await buildTopology(NFT_RULES);
  mkdirSync(pinRoot, { recursive: true });
});

// Removing the pins detaches the links that a killed child left, because
// no process has them open any more.
after(async () => {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, 'SIGKILL');
  }
  rmSync(pinRoot, { recursive: true, force: true });
  await topology?.network.cleanup();
});

function newPinDir(label: string): string {
  const dir = path.join(pinRoot, label);
  mkdirSync(dir);
  return dir;
}

// Starts the child and returns it with the id of the program it attached.
async function startChild(pinDir: string, ifname: string, how: AttachHook): Promise<{ child: ChildProcess; progId: number }> {
  const options = { netns: netnsPath(topology.node), pinDir, ifname, how, frontend: { address: SERVICE_V4, port: 80 } };
  const child = spawn(process.execPath, [CHILD_SCRIPT, JSON.stringify(options)], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.add(child);

  const lines = createInterface({ input: child.stdout! });
  const exited = new Promise<never>((_, reject) => child.once('exit', (code) => reject(new Error(`the child exited with ${code} before it attached`))));
  const first = new Promise<string>((resolve) => lines.once('line', resolve));
  const line = await Promise.race([first, exited]);
  return { child, progId: (JSON.parse(line) as { progId: number }).progId };
}

async function killChild(child: ChildProcess): Promise<void> {
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  process.kill(child.pid!, 'SIGKILL');
  await exited;
}

// Returns the ids of the XDP programs attached to ifname in the node
// namespace, from `ip -j -d link show`.
async function xdpProgramIds(ifname: string): Promise<number[]> {
  const { stdout } = await topology.network.exec(topology.node, 'ip', ['-j', '-d', 'link', 'show', 'dev', ifname]);
  const [link] = JSON.parse(stdout) as { xdp?: { prog?: { id: number }; attached?: { prog: { id: number } }[] } }[];
  if (link?.xdp === undefined) return [];
  if (link.xdp.attached !== undefined) return link.xdp.attached.map((entry) => entry.prog.id);
  return link.xdp.prog === undefined ? [] : [link.xdp.prog.id];
}

// Returns the program ids of the clsact ingress filters on ifname.
async function clsactProgramIds(ifname: string): Promise<number[]> {
  const { stdout } = await topology.network.exec(topology.node, 'tc', ['-j', 'filter', 'show', 'dev', ifname, 'ingress']);
  const filters = JSON.parse(stdout || '[]') as { options?: { prog?: { id: number } } }[];
  return filters.flatMap((filter) => (filter.options?.prog === undefined ? [] : [filter.options.prog.id]));
}

// Returns the priorities of the clsact ingress filters on ifname, of any
// kind. tc lists a u32 filter's hash tables as entries of its own.
async function clsactFilterPriorities(ifname: string): Promise<number[]> {
  const { stdout } = await topology.network.exec(topology.node, 'tc', ['-j', 'filter', 'show', 'dev', ifname, 'ingress']);
  const filters = JSON.parse(stdout || '[]') as { pref: number }[];
  return [...new Set(filters.map((filter) => filter.pref))].sort((a, b) => a - b);
}

function pinnedLinkInfo(pinPath: string) {
  const link = native.openPinnedLink(pinPath);
  try {
    return link.info();
  } finally {
    link.close();
  }
}

// Removes the map pins that Datapath.open created and returns what is left.
function removeMapPins(pinDir: string): string[] {
  for (const name of readdirSync(pinDir).filter((entry) => entry.startsWith('zh_'))) {
    rmSync(path.join(pinDir, name));
  }
  return readdirSync(pinDir);
}

describe('pinned XDP link', () => {
  test('survives SIGKILL and is taken over', async () => {
    const pinDir = newPinDir('xdp');
    const pinPath = linkPinPath(pinDir, 'xdp', 'n0');
    const { child, progId: firstProgId } = await startChild(pinDir, 'n0', { hook: 'xdp', mode: 'native' });
    const linkId = pinnedLinkInfo(pinPath).id;

    await killChild(child);
    assert.deepEqual(await xdpProgramIds('n0'), [firstProgId], 'XDP programs on n0 after the SIGKILL');

    // The second datapath reuses the pinned maps. Until it attaches, the
    // first program holds, and its records wait in the pinned ring.
    const dp = await Datapath.open({ netns: netnsPath(topology.node), pinDir, maxServices: 8 });
    try {
      const curl = startClient(topology.network, topology.client, 'curl', ['-sS', '--max-time', '2', `http://${SERVICE_V4}/`]);
      await waitFor('the SYN to be held', () => (dp.services.readCounters(1).held_frames > 0n ? true : undefined), 5000);
      await assert.rejects(curl, /exited 28/, 'curl times out: the SYN got no RST');

      await dp.attach('n0', { hook: 'xdp', mode: 'native' });
      const secondProgId = dp.program('zh_xdp_hold').id;
      assert.notEqual(secondProgId, firstProgId);
      assert.deepEqual(await xdpProgramIds('n0'), [secondProgId], 'XDP programs on n0 after the takeover');
      assert.equal(pinnedLinkInfo(pinPath).id, linkId, 'the pinned link is the same');

      const held: HeldRecord[] = [];
      dp.on('held', (record) => held.push(record));
      dp.drain();
      assert.ok(held.length > 0, 'records from before the takeover are read');
      assert.equal(held[0]!.serviceId, 1);
      assert.equal(held[0]!.flow.destination, SERVICE_V4);
      assert.equal(held[0]!.flow.destinationPort, 80);
    } finally {
      await dp.close();
    }

    assert.deepEqual(await xdpProgramIds('n0'), [], 'XDP programs on n0 after close');
    assert.deepEqual(removeMapPins(pinDir), [], 'pins left after close');
  });

  test('mode change attaches anew', async () => {
    const pinDir = newPinDir('xdp-mode');
    const pinPath = linkPinPath(pinDir, 'xdp', 'n0');
    const { child } = await startChild(pinDir, 'n0', { hook: 'xdp', mode: 'generic' });
    const oldLinkId = pinnedLinkInfo(pinPath).id;
    await killChild(child);

    const dp = await Datapath.open({ netns: netnsPath(topology.node), pinDir, maxServices: 8 });
    try {
      await dp.attach('n0', { hook: 'xdp', mode: 'native' });
      const query = await native.queryXdp(await native.ifNameToIndex('n0', netnsPath(topology.node)), netnsPath(topology.node));

      assert.equal(query.mode, 'native', 'the generic program is detached');
      assert.equal(query.progId, dp.program('zh_xdp_hold').id);
      assert.notEqual(pinnedLinkInfo(pinPath).id, oldLinkId, 'a new link is pinned');
    } finally {
      await dp.close();
    }
    assert.deepEqual(removeMapPins(pinDir), []);
  });

  test('link of a removed device is removed', async () => {
    await topology.network.exec(topology.node, 'ip', ['link', 'add', 'zd0', 'type', 'veth', 'peer', 'name', 'zd1']);
    await topology.network.exec(topology.node, 'ip', ['link', 'set', 'zd0', 'up']);
    const pinDir = newPinDir('xdp-gone');
    const { child } = await startChild(pinDir, 'zd0', { hook: 'xdp', mode: 'generic' });
    await killChild(child);
    await topology.network.exec(topology.node, 'ip', ['link', 'del', 'zd0']);

    const dp = await Datapath.open({ netns: netnsPath(topology.node), pinDir, maxServices: 8 });
    await dp.close();

    assert.deepEqual(removeMapPins(pinDir), []);
  });
});

describe('links no longer configured', () => {
  test('unlisted interface is detached', async () => {
    await topology.network.exec(topology.node, 'ip', ['link', 'add', 'zu0', 'type', 'veth', 'peer', 'name', 'zu1']);
    await topology.network.exec(topology.node, 'ip', ['link', 'set', 'zu0', 'up']);
    try {
      const pinDir = newPinDir('xdp-unlisted');
      const { child, progId } = await startChild(pinDir, 'zu0', { hook: 'xdp', mode: 'generic' });
      await killChild(child);
      assert.deepEqual(await xdpProgramIds('zu0'), [progId], 'the killed agent left its program');

      const dp = await Datapath.open({ netns: netnsPath(topology.node), pinDir, maxServices: 8 });
      try {
        await dp.attach('n0', { hook: 'xdp', mode: 'native' });
        const removed = dp.removeUnlistedLinks();

        assert.deepEqual(removed, [linkPinPath(pinDir, 'xdp', 'zu0')]);
        assert.deepEqual(await xdpProgramIds('zu0'), [], 'XDP programs on zu0');
        assert.deepEqual(await xdpProgramIds('n0'), [dp.program('zh_xdp_hold').id], 'XDP programs on n0');
      } finally {
        await dp.close();
      }
      assert.deepEqual(removeMapPins(pinDir), []);
    } finally {
      await topology.network.exec(topology.node, 'ip', ['link', 'del', 'zu0']);
    }
  });

  test('hook change detaches the old one', async () => {
    const pinDir = newPinDir('hook-change');
    const { child } = await startChild(pinDir, 'n0', { hook: 'tc', kind: 'tcx' });
    await killChild(child);

    const dp = await Datapath.open({ netns: netnsPath(topology.node), pinDir, maxServices: 8 });
    try {
      await dp.attach('n0', { hook: 'xdp', mode: 'native' });
      assert.deepEqual(dp.removeUnlistedLinks(), [linkPinPath(pinDir, 'tcx', 'n0')]);
      assert.deepEqual(readdirSync(pinDir).filter((name) => name.startsWith('link_')), ['link_xdp_n0']);
    } finally {
      await dp.close();
    }
    assert.deepEqual(removeMapPins(pinDir), []);
  });
});

describe('clsact filters no longer configured', () => {
  test('unlisted interface filter is detached', async () => {
    await topology.network.exec(topology.node, 'ip', ['link', 'add', 'zc0', 'type', 'veth', 'peer', 'name', 'zc1']);
    await topology.network.exec(topology.node, 'ip', ['link', 'set', 'zc0', 'up']);
    try {
      const pinDir = newPinDir('clsact-unlisted');
      const { child, progId } = await startChild(pinDir, 'zc0', { hook: 'tc', kind: 'clsact' });
      await killChild(child);
      // Another owner's filter on the same qdisc, which must stay.
      await topology.network.exec(topology.node, 'tc', ['filter', 'add', 'dev', 'zc0', 'ingress', 'prio', '5', 'protocol', 'all', 'u32', 'match', 'u32', '0', '0']);
      assert.deepEqual(await clsactProgramIds('zc0'), [progId], 'the killed agent left its filter');
      assert.deepEqual(await clsactFilterPriorities('zc0'), [1, 5]);

      const dp = await Datapath.open({ netns: netnsPath(topology.node), pinDir, maxServices: 8 });
      try {
        await dp.attach('n0', { hook: 'tc', kind: 'clsact' });
        const { detached: removed, errors } = await dp.removeUnlistedClsactFilters();

        assert.deepEqual(errors, []);
        assert.equal(removed.length, 1);
        assert.equal(removed[0]!.ifname, 'zc0');
        assert.equal(removed[0]!.progId, progId);
        assert.equal(removed[0]!.progName, 'zh_tc_hold');
        assert.deepEqual(await clsactProgramIds('zc0'), [], 'BPF filters on zc0');
        assert.deepEqual(await clsactFilterPriorities('zc0'), [5], 'the other filter on zc0 stays');
        assert.deepEqual(await clsactProgramIds('n0'), [dp.program('zh_tc_hold').id], 'the listed interface keeps its filter');
      } finally {
        await dp.close();
      }
      assert.deepEqual(removeMapPins(pinDir), []);
    } finally {
      await topology.network.exec(topology.node, 'ip', ['link', 'del', 'zc0']);
    }
  });

  test('change to tcx detaches the filter', async () => {
    const pinDir = newPinDir('clsact-to-tcx');
    const { child, progId } = await startChild(pinDir, 'n0', { hook: 'tc', kind: 'clsact' });
    await killChild(child);

    const dp = await Datapath.open({ netns: netnsPath(topology.node), pinDir, maxServices: 8 });
    try {
      await dp.attach('n0', { hook: 'tc', kind: 'tcx' });
      const { detached: removed, errors } = await dp.removeUnlistedClsactFilters();

      assert.deepEqual(errors, []);
      assert.deepEqual(removed.map((filter) => [filter.ifname, filter.progId]), [['n0', progId]]);
      assert.deepEqual(await clsactProgramIds('n0'), [], 'clsact filters on n0');
      assert.equal(pinnedLinkInfo(linkPinPath(pinDir, 'tcx', 'n0')).progId, dp.program('zh_tc_hold').id, 'the tcx link runs the new program');
    } finally {
      await dp.close();
    }
    assert.deepEqual(removeMapPins(pinDir), []);
  });
});

describe('pinned tc attachment', () => {
  test('tcx link is taken over', async () => {
    const pinDir = newPinDir('tcx');
    const pinPath = linkPinPath(pinDir, 'tcx', 'n0');
    const { child, progId: firstProgId } = await startChild(pinDir, 'n0', { hook: 'tc', kind: 'tcx' });
    const first = pinnedLinkInfo(pinPath);
    assert.equal(first.progId, firstProgId);
    await killChild(child);

    const dp = await Datapath.open({ netns: netnsPath(topology.node), pinDir, maxServices: 8 });
    try {
      await dp.attach('n0', { hook: 'tc', kind: 'tcx' });
      const second = pinnedLinkInfo(pinPath);

      assert.equal(second.id, first.id, 'the pinned link is the same');
      assert.equal(second.progId, dp.program('zh_tc_hold').id);
    } finally {
      await dp.close();
    }
    assert.deepEqual(removeMapPins(pinDir), []);
  });

  test('clsact filter is replaced', async () => {
    const pinDir = newPinDir('clsact');
    const { child, progId: firstProgId } = await startChild(pinDir, 'n0', { hook: 'tc', kind: 'clsact' });
    await killChild(child);
    assert.deepEqual(await clsactProgramIds('n0'), [firstProgId], 'filters after the SIGKILL');

    const dp = await Datapath.open({ netns: netnsPath(topology.node), pinDir, maxServices: 8 });
    try {
      await dp.attach('n0', { hook: 'tc', kind: 'clsact' });
      assert.deepEqual(await clsactProgramIds('n0'), [dp.program('zh_tc_hold').id], 'filters after the restart');
    } finally {
      await dp.close();
    }

    assert.deepEqual(await clsactProgramIds('n0'), [], 'filters after close');
    assert.deepEqual(removeMapPins(pinDir), []);
  });
});
