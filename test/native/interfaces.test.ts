// listInterfaces() and InterfaceMonitor against the kernel, in a network
// namespace of the test's own: the listing sees what `ip link` created,
// and the monitor reports creations, renames and deletions there and
// nothing from the test's own namespace.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { after, before, test } from 'node:test';

import { type InterfaceEvent, loadNative, type NativeInterfaceMonitor } from '../../src/datapath/native.js';
import { netnsPath, TestNetwork, waitFor } from '../lib/netns.js';

const native = loadNative();
const ARPHRD_ETHER = 1;
const ARPHRD_LOOPBACK = 772;
const ARPHRD_NONE = 65534;

let network: TestNetwork;
let ns: string;

before(async () => {
  network = new TestNetwork();
  ns = await network.addNamespace('ifaces');
});

after(() => network.cleanup());

// Starts a monitor of the test namespace that collects its events.
function watch(receiveBufferBytes?: number): { monitor: NativeInterfaceMonitor; events: InterfaceEvent[]; overruns: number[] } {
  const events: InterfaceEvent[] = [];
  const overruns: number[] = [];
  const monitor = new native.InterfaceMonitor(
    netnsPath(ns),
    (batch, overrun) => {
      events.push(...batch);
      if (overrun) overruns.push(events.length);
    },
    receiveBufferBytes,
  );
  monitor.start();
  return { monitor, events, overruns };
}

test('listInterfaces lists a namespace', async () => {
  await network.exec(ns, 'ip', ['link', 'add', 'zhl0', 'type', 'veth', 'peer', 'name', 'zhl1']);
  await network.exec(ns, 'ip', ['tuntap', 'add', 'dev', 'zhtun0', 'mode', 'tun']);

  const list = await native.listInterfaces(netnsPath(ns));
  const byName = new Map(list.map((iface) => [iface.name, iface]));
  assert.equal(byName.get('lo')?.linkType, ARPHRD_LOOPBACK);
  assert.equal(byName.get('zhl0')?.linkType, ARPHRD_ETHER);
  assert.equal(byName.get('zhl1')?.linkType, ARPHRD_ETHER);
  assert.equal(byName.get('zhtun0')?.linkType, ARPHRD_NONE);
  assert.equal(byName.get('zhl0')?.kind, 'veth');
  assert.equal(byName.get('zhtun0')?.kind, 'tun');
  assert.equal(byName.get('lo')?.kind, '');
  assert.equal(list.length, 4, `only the namespace's own interfaces, got ${list.map((iface) => iface.name).join(', ')}`);

  const { stdout } = await network.exec(ns, 'ip', ['-o', 'link', 'show', 'zhl0']);
  assert.equal(byName.get('zhl0')?.ifindex, Number(stdout.split(':')[0]));

  await network.exec(ns, 'ip', ['link', 'del', 'zhl0']);
  await network.exec(ns, 'ip', ['link', 'del', 'zhtun0']);
});

test('listInterfaces missing namespace', async () => {
  await assert.rejects(native.listInterfaces('/run/netns/zh-no-such-namespace'), (err: NodeJS.ErrnoException) => {
    assert.equal(err.code, 'ENOENT');
    assert.match(err.message, /zh-no-such-namespace/);
    return true;
  });
});

test('monitor reports new renamed deleted', async () => {
  const { monitor, events, overruns } = watch();
  try {
    await network.exec(ns, 'ip', ['link', 'add', 'zhm0', 'type', 'veth', 'peer', 'name', 'zhm1']);
    const created = await waitFor('the new veth', () => events.find((event) => event.type === 'new' && event.name === 'zhm0'));
    const ifindex = created.ifindex;

    await network.exec(ns, 'ip', ['link', 'set', 'zhm0', 'name', 'zhm7']);
    await waitFor('the rename', () => events.find((event) => event.type === 'new' && event.name === 'zhm7'));
    assert.equal(events.find((event) => event.name === 'zhm7')?.ifindex, ifindex, 'a rename keeps the ifindex');

    await network.exec(ns, 'ip', ['link', 'del', 'zhm7']);
    await waitFor('the deletion', () => events.find((event) => event.type === 'del' && event.ifindex === ifindex));
    assert.ok(events.some((event) => event.type === 'del' && event.name === 'zhm1'), 'deleting one end deletes its peer');
    assert.deepEqual(overruns, []);
  } finally {
    monitor.close();
  }
});

test('monitor ignores other namespaces', async () => {
  const other = await network.addNamespace('other');
  const { monitor, events } = watch();
  try {
    await network.exec(other, 'ip', ['link', 'add', 'zho0', 'type', 'veth', 'peer', 'name', 'zho1']);
    // A change in the watched namespace after it, to know that the
    // monitor has read everything before.
    await network.exec(ns, 'ip', ['tuntap', 'add', 'dev', 'zhmark', 'mode', 'tap']);
    await waitFor('the marker', () => events.find((event) => event.name === 'zhmark'));
    assert.deepEqual(
      events.filter((event) => event.name.startsWith('zho')),
      [],
    );
    await network.exec(ns, 'ip', ['link', 'del', 'zhmark']);
  } finally {
    monitor.close();
  }
});

test('monitor close stops events', async () => {
  const { monitor, events } = watch();
  monitor.close();
  monitor.close();
  await network.exec(ns, 'ip', ['tuntap', 'add', 'dev', 'zhc0', 'mode', 'tap']);
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.deepEqual(events, []);
  assert.throws(() => monitor.start(), /interface monitor is closed/);
  await network.exec(ns, 'ip', ['link', 'del', 'zhc0']);
});

test('monitor reports overrun and recovers', async () => {
  const { monitor, events, overruns } = watch(4096);
  const pairs = 100;
  try {
    // The synchronous ip call blocks the event loop while the kernel
    // queues a notification per interface, so the small queue overflows.
    const commands = Array.from({ length: pairs }, (_, i) => `link add zhov${i} type veth peer name zhow${i}`);
    execFileSync('nsenter', [`--net=${netnsPath(ns)}`, 'ip', '-batch', '-'], { input: commands.join('\n') });
    await waitFor('the overrun', () => (overruns.length > 0 ? true : undefined));
    assert.ok(events.length < 2 * pairs, `some notifications were lost, got ${events.length} of ${2 * pairs}`);

    // The monitor keeps reading after the overrun.
    await network.exec(ns, 'ip', ['tuntap', 'add', 'dev', 'zhafter', 'mode', 'tap']);
    await waitFor('a notification after the overrun', () => events.find((event) => event.name === 'zhafter'));
  } finally {
    monitor.close();
    const deletions = Array.from({ length: pairs }, (_, i) => `link del zhov${i}`);
    execFileSync('nsenter', [`--net=${netnsPath(ns)}`, 'ip', '-batch', '-'], { input: deletions.join('\n') });
    await network.exec(ns, 'ip', ['link', 'del', 'zhafter']);
  }
});

test('monitor ignores a port leaving its bridge', async () => {
  await network.exec(ns, 'ip', ['link', 'add', 'zhbr0', 'type', 'bridge']);
  await network.exec(ns, 'ip', ['link', 'add', 'zhport0', 'type', 'veth', 'peer', 'name', 'zhport1']);
  await network.exec(ns, 'ip', ['link', 'set', 'zhport0', 'master', 'zhbr0']);
  const { monitor, events } = watch();
  try {
    // The bridge sends an AF_BRIDGE RTM_DELLINK for the port, which stays.
    await network.exec(ns, 'ip', ['link', 'set', 'zhport0', 'nomaster']);
    await network.exec(ns, 'ip', ['tuntap', 'add', 'dev', 'zhmark2', 'mode', 'tap']);
    await waitFor('the marker', () => events.find((event) => event.name === 'zhmark2'));
    assert.deepEqual(
      events.filter((event) => event.type === 'del'),
      [],
    );
  } finally {
    monitor.close();
    await network.exec(ns, 'ip', ['link', 'del', 'zhport0']);
    await network.exec(ns, 'ip', ['link', 'del', 'zhbr0']);
    await network.exec(ns, 'ip', ['link', 'del', 'zhmark2']);
  }
});
