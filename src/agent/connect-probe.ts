// One TCP connection attempt, as kubelet's tcpSocket probe makes: connect,
// then close at once. It runs on the event loop and occupies no thread
// while it waits. With a network namespace, the socket is created there
// through the native addon and connects from there, while the process
// stays in its own namespace.

import { closeSync } from 'node:fs';
import net from 'node:net';

import { loadNative } from '../datapath/native.js';

// Returns the IP family of a probe's target. Throws a TypeError for an
// address that is not a numeric IP address and a RangeError for a port
// out of range. Every listen probe checks its target with it.
export function probeFamily(address: string, port: number): 4 | 6 {
  const family = net.isIP(address);
  if (family === 0) throw new TypeError(`invalid probe address ${JSON.stringify(address)}: expected a numeric IPv4 or IPv6 address`);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new RangeError(`invalid probe port ${port}: expected an integer from 1 to 65535`);
  return family === 4 ? 4 : 6;
}

// Resolves with null once the handshake completed, else with the errno
// name that ended the attempt: ECONNREFUSED for a reset, ETIMEDOUT when
// no reply came within timeoutMs, EHOSTUNREACH and the like. Rejects
// only when the attempt cannot start: for an address that is not a
// numeric IP address, a port out of range, or a namespace that cannot be
// entered.
export function connectProbe(address: string, port: number, timeoutMs: number, netns?: string): Promise<string | null> {
  let socket: net.Socket;
  let fd: number | undefined;
  try {
    const family = probeFamily(address, port);
    if (netns !== undefined) fd = loadNative().netnsSocket(family, netns);
    socket = new net.Socket(fd === undefined ? {} : { fd });
  } catch (err) {
    if (fd !== undefined) closeSync(fd);
    return Promise.reject(err as Error);
  }

  return new Promise((resolve) => {
    const finish = (outcome: string | null) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(outcome);
    };
    const timer = setTimeout(() => finish('ETIMEDOUT'), timeoutMs);
    socket.once('connect', () => finish(null));
    socket.once('error', (err: NodeJS.ErrnoException) => finish(err.code ?? err.message));
    socket.connect({ host: address, port });
  });
}
