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
const server = net.createServer({ allowHalfOpen: true }, (client) => {
  const upstream = net.connect({ path: socketPath, allowHalfOpen: true });
  client.pipe(upstream).pipe(client);
  client.on('error', () => upstream.destroy());
  upstream.on('error', () => client.destroy());
});
server.listen(Number(port), '127.0.0.1', () => process.stdout.write('listening\\n'));
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
`;

// How long the forwarder in the namespace may take to listen.
const START_TIMEOUT_MS = 10_000;

export class ApiBridge {
  private constructor(
    private readonly server: Server,
    // The open connections on this side, closed with the bridge: a
    // server's close() alone waits for them to end.
    private readonly sockets: Set<Socket>,
    private readonly socketPath: string,
    private readonly forwarder: ChildProcess,
    // The URL that the agent in the namespace uses for the API server.
    readonly url: string,
  ) {}

  // Whether both forwarders still run. A bridge whose forwarder died is
  // replaced by a new one.
  get alive(): boolean {
    return this.server.listening && this.forwarder.exitCode === null && this.forwarder.signalCode === null;
  }

  // Starts both forwarders. apiServer is the host and port of the API
  // server on this process's loopback; port is the one to listen on in
  // the namespace.
  static async start(netns: string, apiServer: { host: string; port: number }, socketPath: string, port: number): Promise<ApiBridge> {
    rmSync(socketPath, { force: true });
    const sockets = new Set<Socket>();
    // allowHalfOpen keeps each direction open until its own end, as a
    // plain TCP path would.
    const server = createServer({ allowHalfOpen: true }, (client) => {
      const upstream = createConnection({ port: apiServer.port, host: apiServer.host, allowHalfOpen: true });
      sockets.add(client).add(upstream);
      client.pipe(upstream).pipe(client);
      client.on('error', () => upstream.destroy());
      upstream.on('error', () => client.destroy());
      client.on('close', () => sockets.delete(client));
      upstream.on('close', () => sockets.delete(upstream));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socketPath, resolve);
    });

    const forwarder = spawn('nsenter', [`--net=${netnsPath(netns)}`, process.execPath, '-e', NODE_SIDE_SCRIPT, socketPath, String(port)], { stdio: ['pipe', 'pipe', 'inherit'] });
    const bridge = new ApiBridge(server, sockets, socketPath, forwarder, `http://127.0.0.1:${port}`);
    let timer: NodeJS.Timeout | undefined;
    try {
      await new Promise<void>((resolve, reject) => {
        forwarder.once('error', reject);
        forwarder.once('exit', (code) => reject(new Error(`the API bridge in ${netns} exited with ${code} before it listened`)));
        createInterface({ input: forwarder.stdout! }).once('line', () => resolve());
        timer = setTimeout(() => reject(new Error(`the API bridge in ${netns} did not listen within ${START_TIMEOUT_MS} ms`)), START_TIMEOUT_MS);
      });
    } catch (err) {
      bridge.close();
      throw err;
    } finally {
      clearTimeout(timer);
    }
    return bridge;
  }

  close(): void {
    this.forwarder.stdin?.end();
    if (this.forwarder.exitCode === null && this.forwarder.signalCode === null) this.forwarder.kill('SIGKILL');
    for (const socket of this.sockets) socket.destroy();
    this.server.close();
    rmSync(this.socketPath, { force: true });
  }
}
