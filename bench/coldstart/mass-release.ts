// Release of many held connections at once: one client process opens
// CONNECTIONS TCP connections to a cold Service together, so that the
// agent holds every SYN, then the workload wakes and the agent re-injects
// them in one batch. The figure is the time from the pod's Ready to the
// last TCP handshake completed. A request on every connection afterwards
// checks that each one reached the server. A SYN that was not held, or a re-injected
// one that the server dropped, would only connect at its retransmission,
// a second later.

import { nodeHttpWorkload } from '../../test/testbed/servers.js';
import type { Testbed } from '../../test/testbed/testbed.js';

export const CONNECTIONS = 1000;

// Opens the connections in one event loop turn and records when each
// handshake completes. Only once every connection is established or has
// failed does it send one request on each, so that the timestamps measure
// the release and not this process catching up on responses. Prints one
// JSON line: the connect and response times (Unix ms with fractions) and
// the failures.
const CLIENT = `
const net = require('node:net');
const [host, port, count] = process.argv.slice(1);
const now = () => performance.timeOrigin + performance.now();
const connected = [], responded = [], errors = [];
const sockets = [];
let connecting = Number(count);
let pending = Number(count);
const finish = () => {
  if (--pending > 0) return;
  console.log(JSON.stringify({ connected, responded, errors }));
  process.exit(0);
};
const request = () => {
  for (const socket of sockets) socket.write('GET / HTTP/1.1\\r\\nHost: bench\\r\\nConnection: close\\r\\n\\r\\n');
};
for (let i = 0; i < Number(count); i++) {
  const socket = net.connect({ host, port: Number(port) });
  let response = '';
  let established = false;
  socket.setTimeout(30000, () => socket.destroy(new Error('timed out')));
  socket.once('connect', () => {
    connected.push(now());
    established = true;
    sockets.push(socket);
    if (--connecting === 0) request();
  });
  socket.on('data', (chunk) => { response += chunk; });
  socket.on('end', () => {
    if (response.startsWith('HTTP/1.1 200')) responded.push(now());
    else errors.push('unexpected response: ' + response.split('\\r\\n')[0]);
    finish();
  });
  socket.on('error', (err) => {
    errors.push(err.message);
    if (!established && --connecting === 0) request();
    finish();
  });
}
`;

interface ClientReport {
  connected: number[];
  responded: number[];
  errors: string[];
}

export interface MassReleaseResult {
  connections: number;
  // Flows that the agent re-injected, from its log.
  released: number;
  served: number;
  errors: string[];
  // From the pod's Ready to the last connection established and to the
  // last response, in milliseconds.
  lastConnectedMs: number;
  lastRespondedMs: number;
  // From the agent's release log line to the last connection established.
  releaseToLastConnectedMs: number;
}

export async function massRelease(testbed: Testbed): Promise<MassReleaseResult> {
  // One client address opens every connection, so the workload allows that
  // many flows per client. The backlog keeps the accept queue from
  // overflowing, which would send SYNs back to retransmission.
  const workload = await testbed.deploy(nodeHttpWorkload({ workDir: testbed.workloadDir, name: 'many', backlog: 4096 }), {
    scaleToZero: { idleTimeout: '1h', heldFlowLimits: { perClient: CONNECTIONS } },
  });
  await testbed.waitForPhase(workload.key!, 'Cold', { gateClosed: true });

  const startedMs = Date.now();
  const client = await testbed.run(testbed.externalClient(0), process.execPath, ['-e', CLIENT, workload.clusterIPv4, '80', String(CONNECTIONS)], { timeoutMs: 60_000 });
  if (!client.ok) throw new Error(`the mass release client failed (exit ${client.code}): ${client.stderr}`);
  const report = JSON.parse(client.stdout) as ClientReport;

  const readyMs = testbed.podReadyUnixMs(workload, startedMs);
  const released = testbed.events.since(startedMs).find((e) => e.source === 'agent' && e.type === 'released held flows' && e.fields.workload === workload.key);
  if (readyMs === undefined || released === undefined) throw new Error('the mass release has no pod-ready event or no release log line');

  if (report.connected.length === 0) throw new Error(`no connection of the mass release connected: ${[...new Set(report.errors)].join('; ')}`);
  const lastConnected = Math.max(...report.connected);
  return {
    connections: CONNECTIONS,
    released: Number(released.fields.released),
    served: report.responded.length,
    errors: [...new Set(report.errors)],
    lastConnectedMs: lastConnected - readyMs,
    lastRespondedMs: report.responded.length === 0 ? Number.NaN : Math.max(...report.responded) - readyMs,
    releaseToLastConnectedMs: lastConnected - released.unixMs,
  };
}
