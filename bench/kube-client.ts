// npm run bench:kubeclient
//
// The cost of an API call from the agent, with client-node's per-call agent
// (a plain KubeConfig) and with KeepAliveKubeConfig, against a local HTTPS
// server on loopback. The server returns a Namespace for every request,
// so the figures are the client's work, the TLS and TCP setup, and one
// loopback round trip. A cluster's network round trips come on top, and a
// new connection pays at least two more of them. The certificate is a
// throwaway one from openssl, in a temporary directory. The last line is
// one JSON object.

import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';

import { KeepAliveKubeConfig } from '../src/agent/kube-config.js';
import { formatTable, percentile } from './report.js';

const WARMUP_CALLS = 50;
const CALLS = 500;

interface Result {
  p50Ms: number;
  p99Ms: number;
  connections: number;
}

async function measure(kc: KubeConfig, server: https.Server, counter: { connections: number }, ca: Buffer): Promise<Result> {
  kc.loadFromOptions({
    clusters: [{ name: 'bench', server: `https://127.0.0.1:${(server.address() as AddressInfo).port}`, caData: ca.toString('base64') }],
    users: [{ name: 'bench', token: 'bench' }],
    contexts: [{ name: 'bench', cluster: 'bench', user: 'bench' }],
    currentContext: 'bench',
  });
  const core = kc.makeApiClient(CoreV1Api);

  for (let i = 0; i < WARMUP_CALLS; i++) await core.readNamespace({ name: 'bench' });
  counter.connections = 0;
  const times: number[] = [];
  for (let i = 0; i < CALLS; i++) {
    const startedAt = performance.now();
    await core.readNamespace({ name: 'bench' });
    times.push(performance.now() - startedAt);
  }
  return { p50Ms: percentile(times, 50), p99Ms: percentile(times, 99), connections: counter.connections };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'zh-bench-tls-'));
  try {
    const keyPath = path.join(dir, 'key.pem');
    const certPath = path.join(dir, 'cert.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyPath, '-out', certPath, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
    const cert = readFileSync(certPath);

    const counter = { connections: 0 };
    const server = https.createServer({ key: readFileSync(keyPath), cert }, (_req, res) => {
      res.setHeader('Content-Type', 'application/json');
      res.end(JSON.stringify({ kind: 'Namespace', apiVersion: 'v1', metadata: { name: 'bench' } }));
    });
    server.on('secureConnection', () => (counter.connections += 1));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));

    try {
      const perCall = await measure(new KubeConfig(), server, counter, cert);
      const keepAlive = new KeepAliveKubeConfig();
      const reused = await measure(keepAlive, server, counter, cert);
      keepAlive.destroyAgents();

      const rows = [
        ['client', 'p50 ms', 'p99 ms', 'TLS connections'],
        ['KubeConfig (an agent per call)', perCall.p50Ms.toFixed(2), perCall.p99Ms.toFixed(2), String(perCall.connections)],
        ['KeepAliveKubeConfig', reused.p50Ms.toFixed(2), reused.p99Ms.toFixed(2), String(reused.connections)],
      ];
      process.stdout.write(formatTable(rows));
      process.stdout.write(`\n${CALLS} sequential calls each; p50 ratio ${(perCall.p50Ms / reused.p50Ms).toFixed(1)}x\n`);
      process.stdout.write(
        `${JSON.stringify({
          calls: CALLS,
          per_call_agent_p50_ms: Number(perCall.p50Ms.toFixed(3)),
          per_call_agent_p99_ms: Number(perCall.p99Ms.toFixed(3)),
          per_call_agent_connections: perCall.connections,
          keep_alive_p50_ms: Number(reused.p50Ms.toFixed(3)),
          keep_alive_p99_ms: Number(reused.p99Ms.toFixed(3)),
          keep_alive_connections: reused.connections,
          p50_ratio: Number((perCall.p50Ms / reused.p50Ms).toFixed(1)),
        })}\n`,
      );
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: Error) => {
  process.stderr.write(`bench:kubeclient failed: ${err.stack ?? err.message}\n`);
  process.exit(1);
});
