// InterfaceAttacher with a real Datapath in a namespace of the test's own.
// It attaches to the interfaces that a name or a "+" pattern selects and
// to new ones as they appear, follows renames, and detaches and unpins
// when an interface goes. The tests read pins and link info back from the
// kernel.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { after, before, test } from 'node:test';

import { pino } from 'pino';

import { type AttachPort, InterfaceAttacher, type InterfaceSelector } from '../../src/agent/interface-attacher.js';
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
  close: (options?: { keepAttached?: boolean }) => Promise<void>;
}

interface SetUpOptions {
  resyncIntervalMs?: number;
  // The namespace and pinDir of an earlier setup, as a restarted agent
  // reuses them.
  reuse?: { ns: string; pinDir: string };
  // Attaches tc as clsact filters, as on kernels before 6.6.
  clsact?: boolean;
  // Removes an earlier agent's unclaimed links after the first pass, as
  // the agent does.
  removeLeftovers?: boolean;
}

// Opens a datapath for a new namespace, runs prepare() there, and starts
// an attacher with the selectors.
async function setUp(selectors: InterfaceSelector[], prepare: (ns: string) => Promise<void>, options: SetUpOptions = {}): Promise<Setup> {
  const ns = options.reuse?.ns ?? (await network.addNamespace('attach'));
  await prepare(ns);
  const pinDir = options.reuse?.pinDir ?? `${pinRoot}/${pinCount++}`;
  mkdirSync(pinDir, { recursive: true });
  const datapath = await Datapath.open({ netns: netnsPath(ns), pinDir, maxServices: 8 });
  const logs: Record<string, unknown>[] = [];
  const log = pino({ level: 'info' }, { write: (line: string) => logs.push(JSON.parse(line) as Record<string, unknown>) });
  // The real datapath, with the clsact kind forced where asked.
  const port: AttachPort = {
    attach: (ifname, how) => datapath.attach(ifname, options.clsact && how.hook === 'tc' ? { hook: 'tc', kind: 'clsact' } : how),
    detach: (ifindex, detachOptions) => datapath.detach(ifindex, detachOptions),
    rename: (ifindex, ifname) => datapath.rename(ifindex, ifname),
    attachmentLive: (ifindex) => datapath.attachmentLive(ifindex),
  };
  const attacher = new InterfaceAttacher({
    datapath: port,
    selectors,
    netns: netnsPath(ns),
    log,
    ...(options.resyncIntervalMs ? { resyncIntervalMs: options.resyncIntervalMs } : {}),
    ...(options.removeLeftovers ? { afterFirstPass: async () => void datapath.removeUnlistedLinks() } : {}),
  });
  const close = async (options: { keepAttached?: boolean } = {}) => {
    await attacher.stop();
    await datapath.close(options);
  };
  return { ns, datapath, attacher, pinDir, logs, close };
}

// Runs ip commands in one process, so that a pass lists the interfaces
// only after all of them, as it may when changes come in a burst.
function ipBatch(ns: string, commands: string[]): void {
  execFileSync('nsenter', [`--net=${netnsPath(ns)}`, 'ip', '-batch', '-'], { input: commands.join('\n') });
}

// Reads the id of the link pinned at path.
function pinnedLinkId(path: string): number {
  const link = native.openPinnedLink(path);
  try {
    return link.id;
  } finally {
    link.close();
  }
}

// Reads the ifindex of the link pinned at path, or null without a pin.
function pinnedIfindexIfAny(path: string): number | null {
  return existsSync(path) ? pinnedIfindex(path) : null;
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
  const setup = await setUp(selectors, (ns) => network.exec(ns, 'ip', ['link', 'add', 'natbr', 'type', 'bridge']).then(() => undefined), { resyncIntervalMs: 200 });
  const { ns, attacher, logs } = setup;
  try {
    await attacher.start();
    assert.deepEqual(names(attacher), []);
    assert.equal(attacher.attachFailures().xdp, 1);
    const [failure] = attacher.report();
    assert.deepEqual({ ...failure, error: undefined }, { name: 'natbr', ifindex: await ifindexOf(ns, 'natbr'), hook: 'xdp', entry: 'nat+', state: 'failed', error: undefined });
    assert.match(failure!.error!, /natbr|EOPNOTSUPP|not supported/i);
    const warnings = () => logs.filter((line) => line.interface === 'natbr' && /attaching the hold program failed/.test(String(line.msg)));
    assert.equal(warnings().length, 1);

    // Retried by the periodic pass, and logged once while the error stays
    // the same.
    await waitFor('a retry', () => (attacher.attachFailures().xdp >= 3 ? true : undefined));
    assert.equal(warnings().length, 1);

    await veth(ns, 'natv0', 'peerv0');
    await waitFor('natv0 attached', () => (names(attacher).includes('natv0') ? true : undefined));
    assert.deepEqual(
      attacher.report().map((iface) => [iface.name, iface.state]),
      [
        ['natbr', 'failed'],
        ['natv0', 'attached'],
      ],
    );
  } finally {
    await setup.close();
  }
});

test('attacher detaches everything on close', async () => {
  const selectors: InterfaceSelector[] = [
    { name: 'pod+', hook: 'xdp', xdpMode: 'auto' },
    { name: 'cali+', hook: 'tc', xdpMode: 'auto' },
  ];
  const setup = await setUp(selectors, (ns) => veth(ns, 'pod0', 'peer0').then(() => undefined));
  const { ns, attacher, pinDir, logs } = setup;
  await attacher.start();
  assert.deepEqual(names(attacher), ['pod0']);
  assert.ok(logs.some((line) => line.entry === 'cali+' && /no interface matches the pattern yet/.test(String(line.msg))), 'the pattern without a match is logged');
  assert.ok(!logs.some((line) => line.entry === 'pod+' && /no interface matches/.test(String(line.msg))), 'a pattern with a match is not');
  await setup.close();

  assert.deepEqual(readdirSync(pinDir).filter((name) => name.startsWith('link_')), []);
  const { stdout } = await network.exec(ns, 'ip', ['-o', 'link', 'show', 'pod0']);
  assert.doesNotMatch(stdout, /xdp/, 'no XDP program left on pod0');
});

test('attacher handles a reused ifindex', async () => {
  const setup = await setUp([{ name: 'pod+', hook: 'xdp', xdpMode: 'auto' }], async (ns) => {
    await veth(ns, 'pod0', 'peer0');
    await veth(ns, 'pod1', 'peer1');
  });
  const { ns, attacher, pinDir } = setup;
  try {
    await attacher.start();
    const index0 = await ifindexOf(ns, 'pod0');
    const index1 = await ifindexOf(ns, 'pod1');

    // A new name on the old ifindex: the new interface gets the program,
    // and the old pin goes.
    ipBatch(ns, ['link del pod0', `link add pod9 index ${index0} type veth peer name peer9`]);
    await waitFor('pod9 attached', () => (attacher.interfaces().get(index0)?.name === 'pod9' ? true : undefined));
    await waitFor('the pin of pod9 on its device', () => (pinnedIfindexIfAny(linkPinPath(pinDir, 'xdp', 'pod9')) === index0 ? true : undefined));
    assert.equal(existsSync(linkPinPath(pinDir, 'xdp', 'pod0')), false, 'pin of the deleted pod0 removed');
    const { stdout } = await network.exec(ns, 'ip', ['-d', 'link', 'show', 'pod9']);
    assert.match(stdout, /prog\/xdp id/, 'pod9 runs an XDP program');

    // The same name on the old ifindex.
    ipBatch(ns, ['link del pod1', `link add pod1 index ${index1} type veth peer name peer1`]);
    await waitFor('the new pod1 attached', () => (pinnedIfindexIfAny(linkPinPath(pinDir, 'xdp', 'pod1')) === index1 ? true : undefined));
    const replaced = await network.exec(ns, 'ip', ['-d', 'link', 'show', 'pod1']);
    assert.match(replaced.stdout, /prog\/xdp id/, 'the new pod1 runs an XDP program');
    assert.deepEqual(names(attacher), ['pod1', 'pod9']);
    const warnings = setup.logs.filter((line) => line.entry === 'pod+' && /puts XDP on veths/.test(String(line.msg)));
    assert.equal(warnings.length, 1, 'XDP on veths is warned about once per entry');
  } finally {
    await setup.close();
  }
});

test('attacher swaps two pinned names', async () => {
  const setup = await setUp([{ name: 'pod+', hook: 'tc', xdpMode: 'auto' }], async (ns) => {
    await veth(ns, 'pod0', 'peer0');
    await veth(ns, 'pod1', 'peer1');
  });
  const { ns, attacher, pinDir } = setup;
  try {
    await attacher.start();
    const index0 = await ifindexOf(ns, 'pod0');
    const index1 = await ifindexOf(ns, 'pod1');

    ipBatch(ns, ['link set pod0 name podswap', 'link set pod1 name pod0', 'link set podswap name pod1']);
    await waitFor('both renames followed', () => (attacher.interfaces().get(index0)?.name === 'pod1' && attacher.interfaces().get(index1)?.name === 'pod0' ? true : undefined));
    assert.equal(pinnedIfindex(linkPinPath(pinDir, 'tcx', 'pod0')), index1, 'the pin of pod0 holds the link of the device now named pod0');
    assert.equal(pinnedIfindex(linkPinPath(pinDir, 'tcx', 'pod1')), index0, 'the pin of pod1 holds the link of the device now named pod1');
    assert.deepEqual(
      readdirSync(pinDir).filter((name) => name.includes('link_')),
      ['link_tcx_ingress_pod0', 'link_tcx_ingress_pod1'],
      'no temporary pin left',
    );
  } finally {
    await setup.close();
  }
});

test('attacher adopts XDP link renamed between agents', async () => {
  const selectors: InterfaceSelector[] = [{ name: 'pod+', hook: 'xdp', xdpMode: 'auto' }];
  const first = await setUp(selectors, (ns) => veth(ns, 'pod0', 'peer0').then(() => undefined));
  await first.attacher.start();
  const ifindex = await ifindexOf(first.ns, 'pod0');
  // A hand-over leaves the program attached, and the interface is renamed
  // while no agent runs.
  await first.close({ keepAttached: true });
  await network.exec(first.ns, 'ip', ['link', 'set', 'pod0', 'name', 'pod7']);

  const second = await setUp(selectors, async () => {}, { reuse: { ns: first.ns, pinDir: first.pinDir } });
  try {
    await second.attacher.start();
    assert.deepEqual(names(second.attacher), ['pod7']);
    assert.equal(second.attacher.attachFailures().xdp, 0, 'the attach took the pinned link over instead of failing');
    assert.equal(pinnedIfindex(linkPinPath(first.pinDir, 'xdp', 'pod7')), ifindex);
    assert.equal(existsSync(linkPinPath(first.pinDir, 'xdp', 'pod0')), false, 'the pin moved to the new name');
  } finally {
    await second.close();
  }
});

for (const hook of ['xdp', 'tc'] as const) {
  test(`attacher follows a rename chain between agents, ${hook}`, async () => {
    const pinHook = hook === 'xdp' ? 'xdp' : 'tcx';
    const selectors: InterfaceSelector[] = [{ name: 'pod+', hook, xdpMode: 'auto' }];
    const first = await setUp(selectors, async (ns) => {
      await veth(ns, 'pod0', 'peer0');
      await veth(ns, 'pod1', 'peer1');
    });
    await first.attacher.start();
    const index0 = await ifindexOf(first.ns, 'pod0');
    const index1 = await ifindexOf(first.ns, 'pod1');
    const link0 = pinnedLinkId(linkPinPath(first.pinDir, pinHook, 'pod0'));
    const link1 = pinnedLinkId(linkPinPath(first.pinDir, pinHook, 'pod1'));
    // While no agent runs, pod1 becomes pod9 and pod0 takes the name pod1.
    await first.close({ keepAttached: true });
    ipBatch(first.ns, ['link set pod1 name pod9', 'link set pod0 name pod1']);

    const second = await setUp(selectors, async () => {}, { reuse: { ns: first.ns, pinDir: first.pinDir }, removeLeftovers: true });
    try {
      await second.attacher.start();
      assert.deepEqual(names(second.attacher), ['pod1', 'pod9']);
      assert.equal(second.attacher.attachFailures()[hook], 0, 'each device took its own pinned link over');
      assert.equal(pinnedIfindex(linkPinPath(first.pinDir, pinHook, 'pod1')), index0);
      assert.equal(pinnedIfindex(linkPinPath(first.pinDir, pinHook, 'pod9')), index1);
      // The same links, taken over: no device went without the program.
      assert.equal(pinnedLinkId(linkPinPath(first.pinDir, pinHook, 'pod1')), link0);
      assert.equal(pinnedLinkId(linkPinPath(first.pinDir, pinHook, 'pod9')), link1);
      assert.deepEqual(
        readdirSync(first.pinDir).filter((name) => name.startsWith('link_') || name.startsWith('tmp_')),
        [`link_${pinHook === 'xdp' ? 'xdp' : 'tcx_ingress'}_pod1`, `link_${pinHook === 'xdp' ? 'xdp' : 'tcx_ingress'}_pod9`],
        'no pin left aside',
      );
      if (hook === 'xdp') {
        for (const name of ['pod1', 'pod9']) {
          const { stdout } = await network.exec(first.ns, 'ip', ['-d', 'link', 'show', name]);
          assert.match(stdout, /prog\/xdp id/, `${name} runs an XDP program`);
        }
      }
    } finally {
      await second.close();
    }
  });
}

test('attacher keeps clsact filters on the minute pass', async () => {
  const setup = await setUp([{ name: 'pod+', hook: 'tc', xdpMode: 'auto' }], (ns) => veth(ns, 'pod0', 'peer0').then(() => undefined), { clsact: true, resyncIntervalMs: 100 });
  const { ns, attacher, logs } = setup;
  try {
    await attacher.start();
    assert.deepEqual(names(attacher), ['pod0']);
    // Five periodic passes, each of which checks every attachment.
    await new Promise((resolve) => setTimeout(resolve, 600));
    assert.deepEqual(
      logs.filter((line) => line.msg === 'detached' || line.msg === 'attached').map((line) => line.msg),
      ['attached'],
      'attached once, never detached',
    );
    const { stdout } = await network.exec(ns, 'tc', ['filter', 'show', 'dev', 'pod0', 'ingress']);
    assert.match(stdout, /zh_tc_hold/);
  } finally {
    await setup.close();
  }
});
