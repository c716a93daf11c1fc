// InterfaceAttacher with a real Datapath in a namespace of the test's own.
// It attaches to the interfaces that a name or a "+" pattern selects and
// to new ones as they appear, follows renames, and detaches and unpins
// when an interface goes. The tests read pins and link info back from the
// kernel.

import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { after, before, test } from 'node:test';

import { pino } from 'pino';

import { InterfaceAttacher, type InterfaceSelector } from '../../src/agent/interface-attacher.js';
import { Datapath } from '../../src/datapath/datapath.js';
import { loadNative } from '../../src/datapath/native.js';
import { linkPinPath } from '../../src/datapath/pinned-links.js';
import { netnsPath, TestNetwork, waitFor } from '../lib/netns.js';

const native = loadNative();
const pinRoot = `/sys/fs/bpf/zh-test-attacher-${process.pid}`;
let network: TestNetwork;
let pinCount = 0;

before(() => {
  network = new TestNetwork();
  mkdirSync(pinRoot, { recursive: true });
});

after(async () => {
  rmSync(pinRoot, { recursive: true, force: true });
  await network.cleanup();
});

interface Setup {
  ns: string;
  datapath: Datapath;
  attacher: InterfaceAttacher;
  pinDir: string;
  logs: Record<string, unknown>[];
  close: () => Promise<void>;
}

// Opens a datapath for a new namespace, runs prepare() there, and starts
// an attacher with the selectors.
async function setUp(selectors: InterfaceSelector[], prepare: (ns: string) => Promise<void>, resyncIntervalMs?: number): Promise<Setup> {
  const ns = await network.addNamespace('attach');
  await prepare(ns);
  const pinDir = `${pinRoot}/${pinCount++}`;
  mkdirSync(pinDir);
  const datapath = await Datapath.open({ netns: netnsPath(ns), pinDir, maxServices: 8 });
  const logs: Record<string, unknown>[] = [];
  const log = pino({ level: 'info' }, { write: (line: string) => logs.push(JSON.parse(line) as Record<string, unknown>) });
  const attacher = new InterfaceAttacher({ datapath, selectors, netns: netnsPath(ns), log, ...(resyncIntervalMs ? { resyncIntervalMs } : {}) });
  const close = async () => {
    await attacher.stop();
    await datapath.close();
  };
  return { ns, datapath, attacher, pinDir, logs, close };
}

const veth = (ns: string, name: string, peer: string) => network.exec(ns, 'ip', ['link', 'add', name, 'type', 'veth', 'peer', 'name', peer]);
const names = (attacher: InterfaceAttacher) => [...attacher.interfaces().values()].map((iface) => iface.name).sort();

async function ifindexOf(ns: string, name: string): Promise<number> {
  const { stdout } = await network.exec(ns, 'ip', ['-o', 'link', 'show', name]);
  return Number(stdout.split(':')[0]);
}

// Reads the ifindex that the link pinned at path is attached to.
function pinnedIfindex(path: string): number {
  const link = native.openPinnedLink(path);
  try {
    return link.info().ifindex ?? 0;
  } finally {
    link.close();
  }
}

test('attacher rejects missing named interface', async () => {
  const setup = await setUp([{ name: 'uplink0', hook: 'xdp', xdpMode: 'auto' }], async () => {});
  try {
    await assert.rejects(setup.attacher.start(), /interface uplink0 not found in \/run\/netns\/.*end the name with "\+"/);
  } finally {
    await setup.close();
  }
});

test('attacher follows pattern interfaces', async () => {
  const selectors: InterfaceSelector[] = [
    { name: 'up0', hook: 'xdp', xdpMode: 'auto' },
    { name: 'pod+', hook: 'tc', xdpMode: 'auto' },
  ];
  const setup = await setUp(selectors, async (ns) => {
    await veth(ns, 'up0', 'far0');
    await veth(ns, 'pod0', 'peer0');
    // Matches the pattern, but carries no Ethernet frames.
    await network.exec(ns, 'ip', ['tuntap', 'add', 'dev', 'podtun', 'mode', 'tun']);
  });
  const { ns, attacher, pinDir, logs } = setup;
  try {
    await attacher.start();
    assert.deepEqual(names(attacher), ['pod0', 'up0']);
    assert.equal(pinnedIfindex(linkPinPath(pinDir, 'xdp', 'up0')), await ifindexOf(ns, 'up0'));
    assert.equal(pinnedIfindex(linkPinPath(pinDir, 'tcx', 'pod0')), await ifindexOf(ns, 'pod0'));
    assert.ok(logs.some((line) => line.interface === 'podtun' && /not Ethernet/.test(String(line.msg))), 'the tun device is skipped and logged');

    // A pod's veth that appears later.
    await veth(ns, 'pod1', 'peer1');
    await waitFor('pod1 attached', () => (names(attacher).includes('pod1') ? true : undefined));
    assert.equal(pinnedIfindex(linkPinPath(pinDir, 'tcx', 'pod1')), await ifindexOf(ns, 'pod1'));

    // A deleted pod's veth: detached and unpinned.
    await network.exec(ns, 'ip', ['link', 'del', 'pod1']);
    await waitFor('pod1 detached', () => (names(attacher).includes('pod1') ? undefined : true));
    assert.equal(existsSync(linkPinPath(pinDir, 'tcx', 'pod1')), false, 'pin of pod1 removed');

    // A rename within the pattern moves the pin.
    const ifindex = await ifindexOf(ns, 'pod0');
    await network.exec(ns, 'ip', ['link', 'set', 'pod0', 'name', 'pod5']);
    await waitFor('pod0 renamed', () => (names(attacher).includes('pod5') ? true : undefined));
    assert.equal(existsSync(linkPinPath(pinDir, 'tcx', 'pod0')), false, 'old pin gone');
    assert.equal(pinnedIfindex(linkPinPath(pinDir, 'tcx', 'pod5')), ifindex);

    // A rename out of every entry detaches.
    await network.exec(ns, 'ip', ['link', 'set', 'pod5', 'name', 'other5']);
    await waitFor('other5 detached', () => (names(attacher).includes('pod5') ? undefined : true));
    assert.deepEqual(names(attacher), ['up0']);
    assert.deepEqual(readdirSync(pinDir).filter((name) => name.startsWith('link_')), ['link_xdp_up0']);
  } finally {
    await setup.close();
  }
});

test('attacher retries failed attachment', async () => {
  // A bridge has no native XDP, so the attach to natbr fails on every
  // pass, while a veth that appears later attaches.
  const selectors: InterfaceSelector[] = [{ name: 'nat+', hook: 'xdp', xdpMode: 'native' }];
  const setup = await setUp(selectors, (ns) => network.exec(ns, 'ip', ['link', 'add', 'natbr', 'type', 'bridge']).then(() => undefined), 200);
  const { ns, attacher, logs } = setup;
  try {
    await attacher.start();
    assert.deepEqual(names(attacher), []);
    assert.equal(attacher.attachFailures().xdp, 1);
    const warnings = () => logs.filter((line) => line.interface === 'natbr' && /attaching the hold program failed/.test(String(line.msg)));
    assert.equal(warnings().length, 1);

    // Retried by the periodic pass, and logged once while the error stays
    // the same.
    await waitFor('a retry', () => (attacher.attachFailures().xdp >= 3 ? true : undefined));
    assert.equal(warnings().length, 1);

    await veth(ns, 'natv0', 'natp0');
    await waitFor('natv0 attached', () => (names(attacher).includes('natv0') ? true : undefined));
  } finally {
    await setup.close();
  }
});

test('attacher detaches everything on close', async () => {
  const setup = await setUp([{ name: 'pod+', hook: 'xdp', xdpMode: 'auto' }], (ns) => veth(ns, 'pod0', 'peer0').then(() => undefined));
  const { ns, attacher, pinDir } = setup;
  await attacher.start();
  assert.deepEqual(names(attacher), ['pod0']);
  await setup.close();

  assert.deepEqual(readdirSync(pinDir).filter((name) => name.startsWith('link_')), []);
  const { stdout } = await network.exec(ns, 'ip', ['-o', 'link', 'show', 'pod0']);
  assert.doesNotMatch(stdout, /xdp/, 'no XDP program left on pod0');
});
