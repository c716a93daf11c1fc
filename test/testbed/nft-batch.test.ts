// The long-lived libnftables helper of the kube-proxy stand-in, in a
// namespace of its own: transactions, nft's errors, and a helper that died.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { run, TestNetwork } from '../lib/netns.js';
import { NftBatch } from './nft-batch.js';

let network: TestNetwork;
let ns: string;
let nft: NftBatch;

before(async () => {
  network = new TestNetwork();
  ns = await network.addNamespace('nft');
  nft = new NftBatch(ns);
});

after(async () => {
  await nft.close();
  await network.cleanup();
});

async function listTable(): Promise<string> {
  return (await run('ip', ['netns', 'exec', ns, 'nft', 'list', 'table', 'ip', 'zh_batch'])).stdout;
}

test('nft batch applies transactions', async () => {
  await nft.apply('add table ip zh_batch\nadd chain ip zh_batch c1\n');
  await nft.apply('add chain ip zh_batch c2\n');

  const table = await listTable();
  assert.match(table, /chain c1/);
  assert.match(table, /chain c2/);
});

test('nft batch rejects with the error', async () => {
  await assert.rejects(nft.apply('add chain ip zh_batch c3\nadd rule ip zh_batch nochain counter\n'), /nft failed in .*: Error: Could not process rule: No such file or directory/);
  assert.doesNotMatch(await listTable(), /chain c3/, 'a failed transaction applies nothing');

  await nft.apply('add chain ip zh_batch c4\n');
  assert.match(await listTable(), /chain c4/, 'the helper keeps running after an error');
});

test('nft batch rejects a NUL byte', async () => {
  await assert.rejects(nft.apply('add chain ip zh_batch c5\0'), /contains a NUL byte/);
});

test('nft batch restarts after its process died', async () => {
  await nft.apply('add chain ip zh_batch c6\n');
  const pid = nft.pid;
  assert.ok(pid !== undefined);

  process.kill(pid, 'SIGKILL');
  await new Promise((resolve) => setTimeout(resolve, 100));
  await nft.apply('add chain ip zh_batch c7\n');
  assert.match(await listTable(), /chain c7/);
  assert.notEqual(nft.pid, pid, 'a new helper process');
});
