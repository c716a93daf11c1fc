// Removal of a unix socket file that an earlier process left behind.

import { connect } from 'node:net';
import { lstat, rm } from 'node:fs/promises';

// Removes the socket file at socketPath when no process accepts
// connections on it. Rejects when the path is not a socket or a process
// listens on it, because removing either would break something else.
// endpoint names the server and setting the configuration field of the
// path in the error messages.
export async function removeStaleSocket(socketPath: string, endpoint: string, setting: string): Promise<void> {
  let isSocket: boolean;
  try {
    isSocket = (await lstat(socketPath)).isSocket();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }

  if (!isSocket) {
    throw new Error(`${endpoint} socket path ${socketPath} exists and is not a unix socket: remove it or set ${setting} to another path`);
  }
  if (await acceptsConnections(socketPath)) {
    throw new Error(`another process is listening on the ${endpoint} socket ${socketPath}: stop it (is a second agent running on this node?) or set ${setting} to another path`);
  }
  await rm(socketPath, { force: true });
}

// ECONNREFUSED, or ENOENT when the file went away meanwhile, means that
// the socket is stale.
function acceptsConnections(socketPath: string): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const socket = connect({ path: socketPath });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      socket.destroy();
      if (err.code === 'ECONNREFUSED' || err.code === 'ENOENT') resolve(false);
      else reject(err);
    });
  });
}
