// Single cold starts of the Node.js server, measured from the server's
// listen() to the client's connection. The server prints the time its
// socket is bound, and the client prints the time connect() completed,
// both as Unix milliseconds on this machine.

import { type DeployedWorkload, Testbed } from '../../test/testbed/testbed.js';

// Connects, sends one HTTP request and prints "connected <Unix ms>" at the
// moment the TCP handshake completed, then the response's status line.
const CLIENT = `
const net = require('node:net');
const [host, port] = process.argv.slice(1);
const socket = net.connect({ host, port: Number(port) });
socket.setTimeout(30000, () => { console.error('timed out'); process.exit(2); });
socket.on('connect', () => {
  console.log('connected ' + Date.now());
  socket.write('GET / HTTP/1.1\\r\\nHost: bench\\r\\nConnection: close\\r\\n\\r\\n');
});
let response = '';
socket.on('data', (chunk) => { response += chunk; });
socket.on('end', () => { console.log(response.split('\\r\\n')[0]); });
socket.on('error', (err) => { console.error(err.message); process.exit(1); });
`;

export interface Sample {
  listeningMs: number;
  readyMs: number | null;
  // Arrival at the API server of the kubelet's Pod status write after
  // Ready, and of the EndpointSlice controller's IPv4 slice write after
  // that.
  podWrittenMs: number | null;
  sliceWrittenMs: number | null;
  programmedMs: number | null;
  releasedMs: number | null;
  // The agent's own part: from its backend check passing (for the
  // frontend, when released early) to the held packets re-injected, from
  // its log.
  agentReleaseMs: number | null;
  connectedMs: number;
}

export async function coldStart(testbed: Testbed, workload: DeployedWorkload): Promise<Sample> {
  const startedMs = Date.now();
  const client = await testbed.run(testbed.externalClient(0), process.execPath, ['-e', CLIENT, workload.clusterIPv4, '80'], { timeoutMs: 40_000 });
  const connected = /^connected (\d+)$/m.exec(client.stdout);
  if (!client.ok || !connected || !/^HTTP\/1\.1 200/m.test(client.stdout)) {
    throw new Error(`the client failed (exit ${client.code}): ${client.stdout} ${client.stderr}`);
  }

  const [pod] = await testbed.readyPods(workload);
  const logs = testbed.kubelet('node-0').logs(workload.namespace, pod!);
  const listening = /listening (\d+)/.exec(logs);
  if (!listening) throw new Error(`no "listening" line in the logs of pod ${pod}: ${logs}`);

  const events = testbed.events.since(startedMs);
  const ready = events.find((e) => e.source === 'kubelet' && e.type === 'pod-ready');
  // The client's IPv4 SYN goes out at the first of the agent's two release
  // lines: early, once the IPv4 rule exists, or with the gate's opening.
  const released = events.find((e) => e.source === 'agent' && e.node === 'node-0' && (e.type === 'released held flows early' || e.type === 'released held flows'));
  // The Service's IPv4 and IPv6 ports arrive in separate EndpointSlices and
  // syncs. The IPv4 client waits for the first sync with a port of the
  // Service, which the EndpointSlice controller writes first.
  const service = `${workload.namespace}/${workload.name}`;
  const portsAfter = (e: { fields: Record<string, unknown> }) => (e.fields.servicePorts as Record<string, number> | undefined)?.[service] ?? 0;
  const programmed = ready ? events.find((e) => e.source === 'service-proxy' && e.node === 'node-0' && e.unixMs >= ready.unixMs && portsAfter(e) > 0) : undefined;

  // Request records carry whole milliseconds, so the Pod write may share
  // the millisecond of the Ready event. The IPv4 slice exists from the
  // Service's creation on, so the ready endpoint arrives as an update.
  // NOTE: a status write sent just before Ready and served after it would
  // be taken for the Ready one. The pod writes its status at start, about
  // 40 ms before a Node.js server listens, so no sample has shown it.
  const updates = testbed.server.requests.filter((r) => (r.method === 'PATCH' || r.method === 'PUT') && r.status < 300 && ready !== undefined && r.receivedMs >= ready.unixMs);
  const pathOf = (r: { path: string }) => r.path.split('?')[0];
  const podWrite = updates.find((r) => pathOf(r) === `/api/v1/namespaces/${workload.namespace}/pods/${pod}/status`);
  const slicePath = `/apis/discovery.k8s.io/v1/namespaces/${workload.namespace}/endpointslices/${workload.name}-ipv4`;
  const sliceWrite = podWrite && updates.find((r) => r.receivedMs >= podWrite.receivedMs && pathOf(r) === slicePath);
  return {
    listeningMs: Number(listening[1]),
    readyMs: ready?.unixMs ?? null,
    podWrittenMs: podWrite?.receivedMs ?? null,
    sliceWrittenMs: sliceWrite?.receivedMs ?? null,
    programmedMs: programmed?.unixMs ?? null,
    releasedMs: released?.unixMs ?? null,
    agentReleaseMs: typeof released?.fields.releaseMs === 'number' ? released.fields.releaseMs : null,
    connectedMs: Number(connected[1]),
  };
}

// Scales the workload to zero and waits until every agent's gate is
// closed again.
export async function scaleToZero(testbed: Testbed, workload: DeployedWorkload): Promise<void> {
  await testbed.apps.patchNamespacedDeploymentScale(
    { name: workload.name, namespace: workload.namespace, body: [{ op: 'replace', path: '/spec/replicas', value: 0 }] },
  );
  await testbed.waitForPhase(workload.key!, 'Cold', { gateClosed: true, timeoutMs: 30_000 });
  const deadline = Date.now() + 30_000;
  while ((await testbed.readyPods(workload)).length > 0 || (await testbed.core.listNamespacedPod({ namespace: workload.namespace, labelSelector: `app=${workload.name}` })).items.length > 0) {
    if (Date.now() > deadline) throw new Error(`the pods of ${workload.name} did not go away`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
