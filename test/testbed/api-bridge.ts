// A path to the testbed's API server for an agent that runs inside a node's
// network namespace, where the server's 127.0.0.1 is not reachable. A
// unix socket is not bound to a network namespace, so the bridge is two
// forwarders joined by one:
//
//   agent -> 127.0.0.1:port in the node's namespace (a Node.js process
//   started there with nsenter) -> unix socket (served by this process)
//   -> the API server's TCP port on this process's 127.0.0.1.
//
// Both ends stay on loopback, inside namespaces that the testbed created.

import { type ChildProcess, spawn } from 'node:child_process';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { rmSync } from 'node:fs';
import { createInterface } from 'node:readline';

import { netnsPath } from '../lib/netns.js';

// The forwarder in the node's namespace: listens on 127.0.0.1:<port> and
// pipes each connection to the unix socket. It prints "listening" once
// bound and exits when its stdin closes, so it does not outlive the
// testbed process.
const NODE_SIDE_SCRIPT = `
const net = require('node:net');
const [socketPath, port] = process.argv.slice(1);
const server = net.createServer((client) => {
  const upstream = net.connect(socketPath);
  client.pipe(upstream).pipe(client);
  client.on('error', () => upstream.destroy());
  upstream.on('error', () => client.destroy());
});
server.listen(Number(port), '127.0.0.1', () => process.stdout.write('listening\\n'));
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
`;

export class ApiBridge {
  private constructor(
    private readonly server: Server,
    private readonly socketPath: string,
    private readonly forwarder: ChildProcess,
    // The URL that the agent in the namespace uses for the API server.
    readonly url: string,
  ) {}

  // Starts both forwarders. apiServer is the host and port of the API
  // server on this process's loopback; port is the one to listen on in
  // the namespace.
  static async start(netns: string, apiServer: { host: string; port: number }, socketPath: string, port: number): Promise<ApiBridge> {
    rmSync(socketPath, { force: true });
    const sockets = new Set<Socket>();
    const server = createServer((client) => {
      const upstream = createConnection(apiServer.port, apiServer.host);
      sockets.add(client).add(upstream);
      client.pipe(upstream).pipe(client);
      client.on('error', () => upstream.destroy());
      upstream.on('error', () => client.destroy());
      client.on('close', () => sockets.delete(client));
      upstream.on('close', () => sockets.delete(upstream));
    });
    server.on('close', () => {
      for (const socket of sockets) socket.destroy();
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socketPath, resolve);
    });

    const forwarder = spawn('nsenter', [`--net=${netnsPath(netns)}`, process.execPath, '-e', NODE_SIDE_SCRIPT, socketPath, String(port)], { stdio: ['pipe', 'pipe', 'inherit'] });
    try {
      await new Promise<void>((resolve, reject) => {
        forwarder.once('exit', (code) => reject(new Error(`the API bridge in ${netns} exited with ${code} before it listened`)));
        createInterface({ input: forwarder.stdout! }).once('line', () => resolve());
      });
    } catch (err) {
      server.close();
      throw err;
    }
    return new ApiBridge(server, socketPath, forwarder, `http://127.0.0.1:${port}`);
  }

  close(): void {
    this.forwarder.stdin?.end();
    if (this.forwarder.exitCode === null && this.forwarder.signalCode === null) this.forwarder.kill('SIGKILL');
    this.server.close();
    rmSync(this.socketPath, { force: true });
  }
}
