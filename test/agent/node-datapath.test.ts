import assert from 'node:assert/strict';
import { mkdirSync, rmSync } from 'node:fs';
import { after, test } from 'node:test';

import { NodeDatapath } from '../../src/agent/node-datapath.js';
import { Datapath, type DatapathOptions } from '../../src/datapath/datapath.js';
import type { Frontend } from '../../src/datapath/frontends.js';
import { MAX_FRAME } from '../../src/datapath/layout.js';
import { FrameRunner } from '../lib/harness.js';
import { buildFrame, TCP_SYN } from '../lib/packets.js';

const pinDir = `/sys/fs/bpf/zh-test-node-${process.pid}`;
after(() => rmSync(pinDir, { recursive: true, force: true }));

const WEB: Frontend = { address: '198.19.0.10', protocol: 'tcp', port: 80 };
const WEB_TLS: Frontend = { address: '198.19.0.10', protocol: 'tcp', port: 443 };
const DB: Frontend = { address: '198.19.0.20', protocol: 'tcp', port: 5432 };

const syn = (f: Frontend) => buildFrame({ src: '198.18.0.1', dst: f.address, tcp: { srcPort: 40000, dstPort: f.port as number, flags: TCP_SYN } });

// Opens a datapath, runs the test on a NodeDatapath over it, and closes
// the datapath also when the test fails.
async function withNode(
  run: (parts: { dp: Datapath; node: NodeDatapath; runner: FrameRunner }) => Promise<void> | void,
  options: { open?: DatapathOptions; reinject?: boolean } = {},
): Promise<void> {
  const dp = await Datapath.open(options.open ?? { maxServices: 16 });
  try {
    await run({ dp, node: new NodeDatapath(dp, 0, options.reinject ?? true), runner: new FrameRunner(dp) });
  } finally {
    await dp.close();
  }
}

test('restart prunes unclaimed frontends', async () => {
  mkdirSync(pinDir, { recursive: true });
  await withNode(({ node }) => {
    node.setFrontends('shop/web', [WEB], true);
    node.setFrontends('shop/db', [DB], true);
  }, { open: { pinDir, maxServices: 16 } });

  // The next agent finds both in the pinned table, but shop/db was deleted
  // while no agent ran.
  await withNode(({ dp, node, runner }) => {
    node.setFrontends('shop/web', [WEB], true);
    const dbId = dp.frontends.get(DB)!;

    assert.deepEqual(node.pruneUnclaimed(), [DB]);
    assert.equal(dp.frontends.get(DB), null);
    assert.equal(dp.services.get(dbId).state, 'unmanaged');
    assert.equal(runner.run('xdp', syn(DB)).verdict, 'pass', 'DB passes unheld');
    assert.equal(runner.run('xdp', syn(WEB)).verdict, 'drop', 'WEB is still held for its workload');
    assert.deepEqual(node.pruneUnclaimed(), [], 'nothing left to prune');
  }, { open: { pinDir, maxServices: 16 } });
  rmSync(pinDir, { recursive: true, force: true });
});

test('frontend moves to another workload', async () => {
  await withNode(({ node, runner }) => {
    node.setFrontends('shop/service/web', [WEB, DB], true);

    // The controller installs the new owner of DB before it updates the
    // old one, as when an older ScaleToZero claims a Service.
    node.setFrontends('shop/db', [DB], false);
    node.setFrontends('shop/service/web', [WEB], true);
    assert.equal(runner.run('xdp', syn(DB)).verdict, 'pass', 'DB follows its new, warm owner');
    assert.equal(node.heldFlows('shop/db').length, 0);

    // Removing the old owner leaves DB in place too.
    node.closeGate('shop/db');
    node.removeWorkload('shop/service/web');
    assert.equal(runner.run('xdp', syn(DB)).verdict, 'drop', 'DB is still held for its owner');
    assert.equal(node.heldFlows('shop/db').length, 1);
    assert.equal(runner.run('xdp', syn(WEB)).verdict, 'pass', 'WEB left with its workload');
  });
});

test('node datapath gates per workload', async () => {
  await withNode(async ({ dp, node, runner }) => {
    node.setFrontends('default/web', [WEB, WEB_TLS], true);
    node.setFrontends('default/db', [DB], false);

    assert.equal(runner.run('xdp', syn(WEB)).verdict, 'drop');
    assert.equal(runner.run('xdp', syn(WEB_TLS)).verdict, 'drop');
    assert.equal(runner.run('xdp', syn(DB)).verdict, 'pass');
    assert.equal(node.heldFlows('default/web').length, 2);
    assert.notEqual(node.serviceIdOf('default/web'), node.serviceIdOf('default/db'));

    // Replacing the set removes the frontend that left.
    node.setFrontends('default/web', [WEB], true);
    assert.equal(runner.run('xdp', syn(WEB_TLS)).verdict, 'pass');

    node.closeGate('default/db');
    assert.equal(runner.run('xdp', syn(DB)).verdict, 'drop');

    node.removeWorkload('default/db');
    assert.equal(runner.run('xdp', syn(DB)).verdict, 'pass');
    assert.deepEqual(dp.frontends.list().map((e) => e.frontend), [WEB]);
  });
});

test('node datapath keeps ids on restart', async () => {
  mkdirSync(pinDir, { recursive: true });
  const first = await Datapath.open({ maxServices: 16, pinDir });
  const before = new NodeDatapath(first, 0);
  before.setFrontends('default/db', [DB], true);
  before.setFrontends('default/web', [WEB], true);
  const webId = before.serviceIdOf('default/web');
  await first.close();

  const second = await Datapath.open({ maxServices: 16, pinDir });
  try {
    const after = new NodeDatapath(second, 0);
    // Registered in the other order, the workloads keep their ids.
    after.setFrontends('default/web', [WEB], true);
    assert.equal(after.serviceIdOf('default/web'), webId);
    after.setFrontends('default/other', [WEB_TLS], true);
    assert.notEqual(after.serviceIdOf('default/other'), before.serviceIdOf('default/db'), 'a pinned id is not handed to another workload');
  } finally {
    await second.close();
  }
});

test('node datapath reads the gate it left pinned', async () => {
  rmSync(pinDir, { recursive: true, force: true });
  mkdirSync(pinDir, { recursive: true });
  const first = await Datapath.open({ maxServices: 16, pinDir });
  const before = new NodeDatapath(first, 0);
  before.setFrontends('default/db', [DB], true);
  before.setFrontends('default/web', [WEB], false);
  await first.close();

  const second = await Datapath.open({ maxServices: 16, pinDir });
  try {
    const after = new NodeDatapath(second, 0);

    assert.equal(after.pinnedGateClosed([DB]), true);
    assert.equal(after.pinnedGateClosed([WEB]), false);
    assert.equal(after.pinnedGateClosed([WEB_TLS]), false, 'a frontend that was never pinned');
  } finally {
    await second.close();
    rmSync(pinDir, { recursive: true, force: true });
  }
});

test('node datapath reports warm activity', async () => {
  await withNode(async ({ node, runner }) => {
    node.setFrontends('default/db', [DB], false);
    assert.equal(node.lastActivity('default/db'), undefined, 'no traffic yet');

    const before = Number(process.hrtime.bigint() / 1_000_000n);
    assert.equal(runner.run('xdp', syn(DB)).verdict, 'pass');
    const seen = node.lastActivity('default/db');

    assert.ok(seen !== undefined, 'activity recorded');
    // The coarse clock lags the precise one by up to a tick (at most 10 ms
    // at HZ=100).
    assert.ok(seen >= before - 20, `last activity ${seen} is before the test started at ${before}`);
    assert.ok(seen <= before + 1000, `last activity ${seen} is long after the test started at ${before}`);
    assert.equal(node.lastActivity('default/unknown'), undefined);
  });
});

test('node datapath resets a reused id', async () => {
  await withNode(async ({ node, runner }) => {
    node.setFrontends('default/db', [DB], false);
    runner.run('xdp', syn(DB));
    const id = node.serviceIdOf('default/db');
    assert.ok(node.lastActivity('default/db') !== undefined, 'activity recorded');
    assert.equal(node.datapathCounters().get('default/db')?.warm_packets, 1n);

    node.removeWorkload('default/db');
    node.setFrontends('default/web', [WEB], false);

    assert.equal(node.serviceIdOf('default/web'), id, 'the free id is reused');
    assert.equal(node.lastActivity('default/web'), undefined, 'the removed workload left no activity behind');
    assert.equal(node.datapathCounters().get('default/web')?.warm_packets, 0n);
    assert.deepEqual([...node.datapathCounters().keys()], ['default/web']);
  });
});

test('node datapath removal returns held flows', async () => {
  await withNode(async ({ dp, node, runner }) => {
    node.setFrontends('default/web', [WEB], true);
    assert.equal(runner.run('xdp', syn(WEB)).verdict, 'drop');
    const id = node.serviceIdOf('default/web');

    const dropped = node.removeWorkload('default/web');

    assert.deepEqual(dropped.map((flow) => flow.record.flow.destination), [WEB.address]);
    assert.equal(dp.held.list().length, 0, 'nothing left in the store');
    node.setFrontends('default/db', [DB], true);
    assert.equal(node.serviceIdOf('default/db'), id);
    assert.deepEqual(node.heldFlows('default/db'), [], 'the next workload on the id holds nothing of the old one');
    assert.deepEqual(node.removeWorkload('default/unknown'), []);
  });
});

test('node datapath counts unheld drops', async () => {
  await withNode(async ({ node, runner }) => {
    const DNS: Frontend = { address: '198.19.0.53', protocol: 'udp', port: 53 };
    node.setFrontends('default/dns', [DNS], true);

    // One byte over the largest frame that can be re-injected.
    const large = buildFrame({ src: '198.18.0.1', dst: DNS.address, udp: { srcPort: 40000, dstPort: 53 }, payload: Buffer.alloc(MAX_FRAME - 41) });
    assert.equal(runner.run('xdp', large).verdict, 'drop');
    assert.equal(node.heldFlows('default/dns').length, 0, 'not held');

    const counters = node.datapathCounters().get('default/dns');
    assert.equal(counters?.too_large, 1n);
    assert.equal(counters?.held_frames, 0n);
  });
});

test('node datapath drop mode discards held', async () => {
  await withNode(async ({ node, runner }) => {
    node.setFrontends('default/web', [WEB], true);
    assert.equal(runner.run('xdp', syn(WEB)).verdict, 'drop');
    assert.equal(node.heldFlows('default/web').length, 1);

    const outcome = await node.release('default/web');
    assert.equal(outcome.released.length, 0, 'nothing re-injected');
    assert.equal(outcome.failed.length, 0);
    assert.equal(outcome.discarded?.length, 1, 'the discarded SYN is reported for counting');
    assert.equal(node.heldFlows('default/web').length, 0, 'the held SYN is gone');
    assert.equal(runner.run('xdp', syn(WEB)).verdict, 'pass', 'the retransmitted SYN passes');
  }, { reinject: false });
});

test('node datapath applies held limits', async () => {
  await withNode(async ({ dp, node, runner }) => {
    const rejected: string[] = [];
    dp.on('rejected', (_id, reason, clientOf) => rejected.push(`${reason} from ${clientOf()}`));
    const synFrom = (source: string, port: number) => buildFrame({ src: source, dst: WEB.address, tcp: { srcPort: port, dstPort: 80, flags: TCP_SYN } });

    node.setFrontends('default/web', [WEB], true);
    node.setHeldLimits('default/web', { perService: 3, perClient: 2 });
    for (let port = 1; port <= 3; port++) assert.equal(runner.run('xdp', synFrom('198.18.0.1', port)).verdict, 'drop');
    runner.run('xdp', synFrom('198.18.0.2', 1));
    runner.run('xdp', synFrom('198.18.0.3', 1));

    assert.equal(node.heldFlows('default/web').length, 3);
    assert.deepEqual(rejected, ['source-limit from 198.18.0.1', 'service-limit from 198.18.0.3']);
    const totals = node.heldTotals().get('default/web');
    assert.equal(totals?.flows, 3);
    assert.equal(totals?.bytes, node.heldFlows('default/web').reduce((sum, flow) => sum + flow.record.frame.length, 0));
    assert.ok(totals!.bytes >= 3 * 54, `got ${totals!.bytes} bytes for three SYNs`);

    // A full service still takes a newer SYN of a flow it holds.
    const replaced: string[] = [];
    dp.on('held', (_record, outcome) => replaced.push(outcome.result));
    runner.run('xdp', synFrom('198.18.0.1', 1));
    assert.deepEqual(replaced, ['replaced']);

    // A bound left out is the agent's default again.
    node.setHeldLimits('default/web', {});
    runner.run('xdp', synFrom('198.18.0.3', 1));
    assert.equal(node.heldFlows('default/web').length, 4);
  }, { open: { maxServices: 16, heldLimits: { total: 100, perService: 50, perSource: 50 } } });
});
