// Small real servers started inside test namespaces. Each prints
// "listening" once its socket is bound, so a test can wait for readiness.

import type { ChildProcess } from 'node:child_process';

import { type TestNetwork, waitFor } from './netns.js';

const HTTP_SERVER = `
const http = require('node:http');
const [host, port, body] = process.argv.slice(1);
http.createServer((req, res) => res.end(body)).listen(Number(port), host, () => console.log('listening'));
`;

const UDP_ECHO_SERVER = `
const dgram = require('node:dgram');
const [host, port] = process.argv.slice(1);
const socket = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
socket.on('message', (msg, peer) => socket.send(Buffer.concat([Buffer.from('echo:'), msg]), peer.port, peer.address));
socket.bind(Number(port), host, () => console.log('listening'));
`;

const UDP_CLIENT = `
const dgram = require('node:dgram');
const [host, port, message, timeoutMs] = process.argv.slice(1);
const socket = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
const timer = setTimeout(() => { console.error('no reply'); process.exit(1); }, Number(timeoutMs));
socket.on('message', (msg) => { console.log(msg.toString()); clearTimeout(timer); socket.close(); });
socket.on('error', (err) => { console.error(err.message); process.exit(1); });
socket.send(message, Number(port), host);
`;

async function startServer(network: TestNetwork, ns: string, code: string, args: string[]): Promise<ChildProcess> {
  const child = network.spawn(ns, process.execPath, ['-e', code, ...args]);
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  await waitFor(`server ${args.join(' ')} in ${ns} to listen (output: ${output})`, () =>
    output.includes('listening') ? true : child.exitCode !== null ? Promise.reject(new Error(`server exited: ${output}`)) : undefined,
  );
  return child;
}

export function startHttpServer(network: TestNetwork, ns: string, host: string, port: number, body: string): Promise<ChildProcess> {
  return startServer(network, ns, HTTP_SERVER, [host, String(port), body]);
}

export function startUdpEchoServer(network: TestNetwork, ns: string, host: string, port: number): Promise<ChildProcess> {
  return startServer(network, ns, UDP_ECHO_SERVER, [host, String(port)]);
}

// Sends one datagram and prints the first reply; exits 1 after timeoutMs.
export function udpClientArgs(host: string, port: number, message: string, timeoutMs: number): string[] {
  return ['-e', UDP_CLIENT, host, String(port), message, String(timeoutMs)];
}
