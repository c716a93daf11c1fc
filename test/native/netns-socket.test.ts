// netnsSocket(): the descriptor belongs to a socket of the requested family
// inside the named namespace, so a connection from it reaches a listener
// that exists only in that namespace. Errors name the bad value.

import assert from 'node:assert/strict';
import { closeSync, readlinkSync } from 'node:fs';
import net from 'node:net';
import { after, before, test } from 'node:test';

import { loadNative } from '../../src/datapath/native.js';
import { netnsPath, TestNetwork } from '../lib/netns.js';

const native = loadNative();
let network: TestNetwork;
let namespace: string;

before(async () => {
  network = new TestNetwork();
  namespace = await network.addNamespace('sock');
});

after(() => network?.cleanup());

test('descriptor is a socket', () => {
  const fd = native.netnsSocket(6, netnsPath(namespace));
  try {
    assert.match(readlinkSync(`/proc/self/fd/${fd}`), /^socket:\[\d+\]$/);
  } finally {
    closeSync(fd);
  }
});

// Connects a socket made by netnsSocket() and returns what the server sent.
function receiveFrom(family: 4 | 6, host: string, port: number): Promise<string> {
  const socket = new net.Socket({ fd: native.netnsSocket(family, netnsPath(namespace)) });
  return new Promise<string>((resolve, reject) => {
    let data = '';
    socket.on('data', (chunk: Buffer) => (data += chunk.toString()));
    socket.on('end', () => resolve(data));
    socket.on('error', reject);
    socket.connect({ host, port });
  });
}

test('sockets connect inside the namespace', async () => {
  // The listener is on the namespace's loopback, which this process's own
  // loopback does not reach.
  const server = network.spawn(namespace, process.execPath, ['-e', "require('node:net').createServer((s) => s.end('inside')).listen(7070, '::', () => console.log('listening'))"]);
  await new Promise<void>((resolve) => server.stdout!.once('data', () => resolve()));

  assert.equal(await receiveFrom(4, '127.0.0.1', 7070), 'inside');
  assert.equal(await receiveFrom(6, '::1', 7070), 'inside');
});

test('bad arguments name the value', () => {
  assert.throws(() => native.netnsSocket(5 as 4, netnsPath(namespace)), /family must be 4 or 6, got 5/);
  assert.throws(
    () => native.netnsSocket(4, '/run/netns/zh-no-such-netns'),
    (err: NodeJS.ErrnoException) => {
      assert.equal(err.code, 'ENOENT');
      assert.match(err.message, /\/run\/netns\/zh-no-such-netns/);
      return true;
    },
  );
});
