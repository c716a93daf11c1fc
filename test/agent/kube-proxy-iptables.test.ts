// The release check for kube-proxy in iptables mode: the rule parser on
// iptables-save text, and the check against real tables in network
// namespaces, written with iptables-restore as kube-proxy writes them, on
// both iptables backends.

import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, test } from 'node:test';

import { pino } from 'pino';

import type { Frontend } from '../../src/datapath/frontends.js';
import { KubeProxyIptables } from '../../src/agent/kube-proxy-iptables-check.js';
import { IptablesFrontends } from '../../src/agent/kube-proxy-iptables-rules.js';
import { netnsPath, TestNetwork } from '../lib/netns.js';

const log = pino({ level: 'silent' });
const execFileAsync = promisify(execFile);
const WEB: Frontend = { address: '198.19.0.50', protocol: 'tcp', port: 80 };
const WEB_V6: Frontend = { address: 'fd5a::50', protocol: 'tcp', port: 80 };
const NODE_PORT: Frontend = { address: '198.18.0.1', protocol: 'tcp', port: 30080 };

// The Service shop/web as kube-proxy writes it without endpoints: the
// filter table rejects its cluster IP and node port, and the nat table has
// no jump for it.
function withoutEndpoints(clusterIp: string, prefix: number): string {
  return `*filter
:KUBE-SERVICES - [0:0]
:KUBE-EXTERNAL-SERVICES - [0:0]
-A KUBE-SERVICES -d ${clusterIp}/${prefix} -p tcp -m comment --comment "shop/web:http has no endpoints" -m tcp --dport 80 -j REJECT
-A KUBE-EXTERNAL-SERVICES -p tcp -m comment --comment "shop/web:http has no endpoints" -m addrtype --dst-type LOCAL -m tcp --dport 30080 -j REJECT
COMMIT
*nat
:KUBE-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
COMMIT
`;
}

// The same Service after kube-proxy's sync with one endpoint.
function withEndpoint(clusterIp: string, prefix: number, endpoint: string): string {
  return `*filter
:KUBE-SERVICES - [0:0]
:KUBE-EXTERNAL-SERVICES - [0:0]
COMMIT
*nat
:KUBE-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-SVC-HL5LMXD5JFHQZ6LN - [0:0]
:KUBE-EXT-HL5LMXD5JFHQZ6LN - [0:0]
:KUBE-SEP-QFIV6TRVSX3L3E4M - [0:0]
-A KUBE-SERVICES -d ${clusterIp}/${prefix} -p tcp -m comment --comment "shop/web:http cluster IP" -m tcp --dport 80 -j KUBE-SVC-HL5LMXD5JFHQZ6LN
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-NODEPORTS -p tcp -m comment --comment "shop/web:http" -m tcp --dport 30080 -j KUBE-EXT-HL5LMXD5JFHQZ6LN
-A KUBE-EXT-HL5LMXD5JFHQZ6LN -j KUBE-SVC-HL5LMXD5JFHQZ6LN
-A KUBE-SVC-HL5LMXD5JFHQZ6LN -m comment --comment "shop/web:http -> ${endpoint}" -j KUBE-SEP-QFIV6TRVSX3L3E4M
-A KUBE-SEP-QFIV6TRVSX3L3E4M -p tcp -m comment --comment "shop/web:http" -m tcp -j DNAT --to-destination ${endpoint}
COMMIT
`;
}

const network = new TestNetwork();
const checks: KubeProxyIptables[] = [];

// Writes rules into the namespace's tables with iptables-restore of the
// given family and backend, as kube-proxy does.
function restore(ns: string, command: string, rules: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('nsenter', [`--net=${netnsPath(ns)}`, command], { stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${command} failed (${code}): ${stderr}`))));
    child.stdin.end(rules);
  });
}

async function startCheck(ns: string, kubeletSearchIntervalMs?: number): Promise<KubeProxyIptables> {
  const check = new KubeProxyIptables({ netns: netnsPath(ns), log, pollIntervalMs: 20, kubeletSearchIntervalMs });
  checks.push(check);
  await check.start();
  return check;
}

// Resolves with the check's result, or "pending" if it has none yet.
async function settledWithin<T>(promise: Promise<T>, ms: number): Promise<T | 'pending'> {
  return Promise.race([promise, new Promise<'pending'>((resolve) => setTimeout(() => resolve('pending'), ms))]);
}

let nftNode: string;
let legacyNode: string;

before(async () => {
  nftNode = await network.addNamespace('ipt-nft');
  legacyNode = await network.addNamespace('ipt-legacy');
});

after(async () => {
  for (const check of checks) await check.stop();
  await network.cleanup();
});

test('parser reads kube-proxy rules', () => {
  const saved = withEndpoint('198.19.0.50', 32, '198.18.5.1:8080');
  const [, filter, nat] = saved.split(/^\*/m).map((table) => `*${table}`);
  const frontends = IptablesFrontends.parse(nat!, filter!);

  assert.equal(frontends.isProgrammed(WEB), true, 'cluster IP');
  assert.equal(frontends.isProgrammed(NODE_PORT), true, 'node port on a node address');
  assert.equal(frontends.isProgrammed({ ...WEB, port: 81 }), false, 'another port');
  assert.equal(frontends.isProgrammed({ ...WEB, protocol: 'udp' }), false, 'another protocol');
  assert.equal(frontends.isProgrammed({ ...WEB, port: 'any' }), true, 'any port of the address');
});

test('parser honors no-endpoint rejects', () => {
  const [, filter, nat] = withoutEndpoints('198.19.0.50', 32).split(/^\*/m).map((table) => `*${table}`);
  const frontends = IptablesFrontends.parse(nat!, filter!);
  assert.equal(frontends.isProgrammed(WEB), false);
  assert.equal(frontends.isProgrammed(NODE_PORT), false);

  // A stale jump beside a reject, as between the legacy backend's filter
  // and nat commits, is not programmed.
  const [, , staleNat] = withEndpoint('198.19.0.50', 32, '198.18.5.1:8080').split(/^\*/m).map((table) => `*${table}`);
  const mixed = IptablesFrontends.parse(staleNat!, filter!);
  assert.equal(mixed.isProgrammed(WEB), false);
  assert.equal(mixed.isProgrammed(NODE_PORT), false);
});

test('parser keeps firewall and XLB rules', () => {
  // With endpoints and loadBalancerSourceRanges, kube-proxy sends the load
  // balancer IP through KUBE-FW and drops in KUBE-PROXY-FIREWALL what the
  // nat table did not rewrite. Older releases sent node ports of Local
  // Services to KUBE-XLB.
  const nat = [
    '-A KUBE-SERVICES -d 198.19.0.60/32 -p tcp -m comment --comment "shop/lb:http loadbalancer IP" -m tcp --dport 443 -j KUBE-FW-ABCDEFGHIJKLMNOP',
    '-A KUBE-NODEPORTS -p tcp -m comment --comment "shop/lb:http" -m tcp --dport 30443 -j KUBE-XLB-ABCDEFGHIJKLMNOP',
  ].join('\n');
  const filter = '-A KUBE-PROXY-FIREWALL -d 198.19.0.60/32 -p tcp -m comment --comment "shop/lb:http traffic not accepted by KUBE-FW-ABCDEFGHIJKLMNOP" -m tcp --dport 443 -j DROP';
  const frontends = IptablesFrontends.parse(nat, filter);

  assert.equal(frontends.isProgrammed({ address: '198.19.0.60', protocol: 'tcp', port: 443 }), true);
  assert.equal(frontends.isProgrammed({ address: '198.18.0.1', protocol: 'tcp', port: 30443 }), true);
});

test('parser normalizes IPv6 addresses', () => {
  const [, filter, nat] = withEndpoint('fd5a:0:0:0:0:0:0:50', 128, '[fd5a::5:1]:8080').split(/^\*/m).map((table) => `*${table}`);
  const frontends = IptablesFrontends.parse(nat!, filter!);
  assert.equal(frontends.isProgrammed(WEB_V6), true);
  assert.throws(() => frontends.isProgrammed({ ...WEB_V6, address: 'web' }), /invalid address "web"/);
});

for (const [backend, family, frontend, clusterIp, prefix, endpoint] of [
  ['nft', 'iptables', WEB, '198.19.0.50', 32, '198.18.5.1:8080'],
  ['nft', 'ip6tables', WEB_V6, 'fd5a::50', 128, '[fd5a::5:1]:8080'],
  ['legacy', 'iptables', WEB, '198.19.0.50', 32, '198.18.5.1:8080'],
] as const) {
  test(`check waits for the sync, ${backend} ${family}`, async () => {
    const ns = backend === 'nft' ? nftNode : legacyNode;
    const command = `${family}-${backend}-restore`;
    await restore(ns, command, withoutEndpoints(clusterIp, prefix));
    const check = await startCheck(ns);

    const started = Date.now();
    const programmed = check.waitProgrammed([frontend], 10_000);
    assert.equal(await settledWithin(programmed, 300), 'pending', 'no release while kube-proxy rejects the Service');

    await restore(ns, command, withEndpoint(clusterIp, prefix, endpoint));
    const synced = Date.now();
    assert.equal(await programmed, true);
    assert.ok(Date.now() - synced < 1000, `resolved ${Date.now() - synced} ms after the sync`);
    // libuv may run a timer up to a millisecond early against Date.now().
    assert.ok(synced - started >= 295, `synced ${synced - started} ms after the wait began`);
  });
}

test('check settles a wait right after another', async () => {
  // nftNode has the endpoint rules from the tests above.
  const check = await startCheck(nftNode);
  assert.equal(await check.waitProgrammed([WEB], 5000), true);
  const started = Date.now();
  assert.equal(await check.waitProgrammed([WEB], 5000), true);
  assert.ok(Date.now() - started < 1000, `the second wait took ${Date.now() - started} ms`);
});

test('check times out without a sync', async () => {
  const check = await startCheck(nftNode);
  const started = Date.now();
  assert.equal(await check.waitProgrammed([{ ...WEB, port: 8443 }], 300), false);
  // libuv may run a timer up to a millisecond early against Date.now().
  assert.ok(Date.now() - started >= 295, `timed out after ${Date.now() - started} ms`);
});

test('check reports a programmed family early', async () => {
  // The IPv4 rules of nftNode have the endpoint from the test above, and
  // its IPv6 rules are reset to none.
  await restore(nftNode, 'ip6tables-nft-restore', withoutEndpoints('fd5a::50', 128));
  const check = await startCheck(nftNode);
  const early: Frontend[][] = [];
  const programmed = check.waitProgrammed([WEB, WEB_V6], 10_000, (frontends) => early.push(frontends));

  await new Promise((resolve) => setTimeout(resolve, 200));
  assert.deepEqual(early, [[WEB]]);
  await restore(nftNode, 'ip6tables-nft-restore', withEndpoint('fd5a::50', 128, '[fd5a::5:1]:8080'));
  assert.equal(await programmed, true);
});

test('check start fails without the namespace', async () => {
  const check = new KubeProxyIptables({ netns: '/run/netns/zh-missing-namespace', log });
  await assert.rejects(check.start(), /iptables-nft -t nat -S KUBE-SERVICES failed: nsenter: .*zh-missing-namespace/);
});

test('check finds no chains in an empty namespace', async () => {
  const empty = await network.addNamespace('ipt-empty');
  const check = await startCheck(empty);
  assert.equal(await check.waitProgrammed([WEB], 200), false);
  assert.deepEqual(await legacyTables(empty, 'ip_tables_names'), [], 'the check created legacy IPv4 tables');
  assert.deepEqual(await legacyTables(empty, 'ip6_tables_names'), [], 'the check created legacy IPv6 tables');
});

// The chain that kubelet creates in the mangle table of its backend.
const KUBELET_HINT = '*mangle\n:KUBE-IPTABLES-HINT - [0:0]\nCOMMIT\n';

test('check follows kubelet to the legacy backend', async () => {
  // nf_tables keeps rules of a kube-proxy that ran before the node moved
  // to legacy, and they still reject the Service.
  const ns = await network.addNamespace('ipt-moved');
  await restore(ns, 'iptables-nft-restore', withoutEndpoints('198.19.0.50', 32));
  await restore(ns, 'iptables-legacy-restore', withEndpoint('198.19.0.50', 32, '198.18.5.1:8080'));

  const unhinted = await startCheck(ns);
  assert.equal(await unhinted.waitProgrammed([WEB], 300), false, 'without a kubelet chain the check reads nf_tables first');

  await restore(ns, 'iptables-legacy-restore', KUBELET_HINT);
  const hinted = await startCheck(ns);
  assert.equal(await hinted.waitProgrammed([WEB], 2000), true);
});

test('check waits on the kubelet backend', async () => {
  // kube-proxy has not synced nf_tables yet, and the legacy backend has
  // stale rules that send the Service to an old endpoint.
  const ns = await network.addNamespace('ipt-hinted');
  await restore(ns, 'iptables-nft-restore', KUBELET_HINT);
  await restore(ns, 'iptables-legacy-restore', withEndpoint('198.19.0.50', 32, '198.18.5.9:8080'));
  const check = await startCheck(ns);

  const programmed = check.waitProgrammed([WEB], 10_000);
  assert.equal(await settledWithin(programmed, 300), 'pending', 'the stale legacy rules released the flow');

  await restore(ns, 'iptables-nft-restore', withEndpoint('198.19.0.50', 32, '198.18.5.1:8080'));
  assert.equal(await programmed, true);
});

test('check creates no legacy tables', async () => {
  // kubelet marked the legacy backend, and kube-proxy has not written
  // its tables yet.
  const ns = await network.addNamespace('ipt-legacy-empty');
  await restore(ns, 'iptables-legacy-restore', KUBELET_HINT);
  const check = await startCheck(ns);

  assert.equal(await check.waitProgrammed([WEB, WEB_V6], 300), false);
  assert.deepEqual(await legacyTables(ns, 'ip_tables_names'), ['mangle']);
  assert.deepEqual(await legacyTables(ns, 'ip6_tables_names'), []);
});

test('check finds a later kubelet chain', async () => {
  // nf_tables keeps stale rules, and kubelet marks the legacy backend
  // only after the check started.
  const ns = await network.addNamespace('ipt-late-hint');
  await restore(ns, 'iptables-nft-restore', withoutEndpoints('198.19.0.50', 32));
  await restore(ns, 'iptables-legacy-restore', withEndpoint('198.19.0.50', 32, '198.18.5.1:8080'));
  const check = await startCheck(ns, 200);

  const programmed = check.waitProgrammed([WEB], 10_000);
  assert.equal(await settledWithin(programmed, 400), 'pending', 'the stale nf_tables rules released the flow');

  await restore(ns, 'iptables-legacy-restore', KUBELET_HINT);
  assert.equal(await programmed, true);
});

test('check starts without ip6tables', async () => {
  // A PATH with the IPv4 commands only, as on a node without IPv6 tools.
  const ns = await network.addNamespace('ipt-no-ip6');
  await restore(ns, 'iptables-nft-restore', withEndpoint('198.19.0.50', 32, '198.18.5.1:8080'));
  const bin = mkdtempSync(path.join(tmpdir(), 'zh-ipv4-only-'));
  for (const command of ['iptables-nft', 'iptables-legacy', 'nsenter', 'cat']) {
    symlinkSync((await execFileAsync('sh', ['-c', `command -v ${command}`])).stdout.trim(), path.join(bin, command));
  }
  const savedPath = process.env.PATH;
  process.env.PATH = bin;
  try {
    const check = await startCheck(ns);
    assert.equal(await check.waitProgrammed([WEB], 2000), true);
  } finally {
    process.env.PATH = savedPath;
    rmSync(bin, { recursive: true, force: true });
  }
});

// Lists the legacy tables that exist in a namespace's kernel state.
async function legacyTables(ns: string, file: 'ip_tables_names' | 'ip6_tables_names'): Promise<string[]> {
  const { stdout } = await execFileAsync('nsenter', [`--net=${netnsPath(ns)}`, 'cat', `/proc/net/${file}`]);
  return stdout.split('\n').filter((name) => name !== '');
}
