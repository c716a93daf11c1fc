// Privileged tests of the testbed's cluster network: real namespaces, a
// real bridge and veths, real HTTP servers inside pods and curl as client.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, test } from 'node:test';

import { run } from '../lib/netns.js';
import { startHttpServer } from '../lib/servers.js';
import { ClusterNetwork } from './cluster-network.js';

let cluster: ClusterNetwork;

before(async () => {
  cluster = await ClusterNetwork.create({ nodes: ['alpha', 'beta'], externalClients: 1 });
});

after(async () => {
  await cluster?.close();
});

function httpUrl(address: string, port: number): string {
  return address.includes(':') ? `http://[${address}]:${port}/` : `http://${address}:${port}/`;
}

async function curl(ns: string, address: string, port: number): Promise<string> {
  const { stdout } = await cluster.exec(ns, 'curl', ['-sS', '--max-time', '5', httpUrl(address, port)]);
  return stdout;
}

test('cluster network pod to pod across nodes', async () => {
  const client = await cluster.addPod('alpha', 'across-client');
  const server = await cluster.addPod('beta', 'across-server');
  await startHttpServer(cluster.testNetwork, server.netns, '::', 8080, 'across');

  assert.equal(await curl(client.netns, server.ipv4, 8080), 'across', 'IPv4');
  assert.equal(await curl(client.netns, server.ipv6, 8080), 'across', 'IPv6');
});

test('cluster network pod to pod on one node', async () => {
  const client = await cluster.addPod('alpha', 'local-client');
  const server = await cluster.addPod('alpha', 'local-server');
  await startHttpServer(cluster.testNetwork, server.netns, '::', 8080, 'local');

  assert.equal(await curl(client.netns, server.ipv4, 8080), 'local', 'IPv4');
  assert.equal(await curl(client.netns, server.ipv6, 8080), 'local', 'IPv6');
});

test('cluster network client reaches node address', async () => {
  const [client] = cluster.externalClients;
  const node = cluster.nodeAddresses('beta');
  await startHttpServer(cluster.testNetwork, cluster.nodeNetns('beta'), '::', 30080, 'node');

  assert.equal(await curl(client!, node.ipv4, 30080), 'node', 'IPv4');
  assert.equal(await curl(client!, node.ipv6, 30080), 'node', 'IPv6');
});

test('cluster network client routes Services via node', async () => {
  const [client] = cluster.externalClients;
  await cluster.routeServicesVia(client!, 'beta');

  const { stdout: v4 } = await cluster.exec(client!, 'ip', ['route', 'get', '198.19.0.10']);
  assert.match(v4, new RegExp(`via ${cluster.nodeAddresses('beta').ipv4.replaceAll('.', '\\.')} `));
  const { stdout: v6 } = await cluster.exec(client!, 'ip', ['-6', 'route', 'get', 'fd5a:19::10']);
  assert.match(v6, new RegExp(`via ${cluster.nodeAddresses('beta').ipv6} `));
});

test('cluster network host interface names', async () => {
  const podNames = ['names-a', 'names-b', 'names-c'];
  const pods = await Promise.all(podNames.map((name) => cluster.addPod('beta', name)));
  const names = pods.map((pod) => pod.hostInterface);

  assert.equal(new Set(names).size, names.length, `unique names: ${names.join(', ')}`);
  for (const name of names) assert.ok(name.length <= 15, `${name} fits IFNAMSIZ`);
  for (const [i, podName] of podNames.entries()) assert.equal(cluster.hostInterface(podName), names[i]);
  const { stdout } = await cluster.exec(cluster.nodeNetns('beta'), 'ip', ['-o', 'link', 'show']);
  for (const name of names) assert.match(stdout, new RegExp(`: ${name}@`), `${name} exists in the node`);
});

test('cluster network removePod deletes namespace and veth', async () => {
  const pod = await cluster.addPod('alpha', 'removed');
  await cluster.removePod('removed');

  assert.equal(existsSync(`/run/netns/${pod.netns}`), false, 'namespace deleted');
  const { stdout } = await cluster.exec(cluster.nodeNetns('alpha'), 'ip', ['-o', 'link', 'show']);
  assert.doesNotMatch(stdout, new RegExp(`: ${pod.hostInterface}@`), 'host veth deleted');
  assert.equal(cluster.pod('removed'), undefined, 'pod forgotten');
  await cluster.removePod('removed');
});

test('cluster network leaves root namespace alone', async () => {
  const { stdout: addresses } = await run('ip', ['-o', 'addr', 'show']);
  assert.doesNotMatch(addresses, /198\.18\.|198\.19\.|fd5a:/, 'no testbed address in the root namespace');
  for (const node of cluster.nodes) {
    const { stdout: routes } = await cluster.exec(cluster.nodeNetns(node), 'ip', ['route', 'show', 'default']);
    assert.equal(routes.trim(), '', `${node} has no default route`);
  }
});

test('cluster network close removes namespaces', async () => {
  const other = await ClusterNetwork.create({ nodes: 1, externalClients: 1, ipv6: false });
  const pod = await other.addPod('node-0', 'closing');
  const namespaces = [other.nodeNetns('node-0'), other.externalClients[0]!, other.fabricNetns(), pod.netns];
  assert.equal(pod.ipv6, '', 'no IPv6 address when ipv6 is false');

  await other.close();
  for (const ns of namespaces) assert.equal(existsSync(`/run/netns/${ns}`), false, `${ns} deleted`);
});
