// Node reports between agents whose clocks disagree, on the test API
// server: the activity a node reports keeps its age, whatever the skew
// between its clock and the reader's.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { CoordinationV1Api } from '@kubernetes/client-node';
import { pino } from 'pino';

import { NodeReports } from '../../src/agent/node-reports.js';
import { monotonicMs } from '../../src/hubble/monotonic-time.js';
import { kubeConfigFor } from '../apiserver/kubeconfig.js';
import { startApiServer, type TestApiServer } from '../apiserver/server.js';
import { waitFor } from '../lib/netns.js';

const log = pino({ level: 'silent' });
const WORKLOAD = 'shop/web';
let server: TestApiServer;
const started: NodeReports[] = [];

before(async () => {
  server = await startApiServer({ namespaces: ['zerohold-system'] });
});

after(async () => {
  for (const reports of started) await reports.stop();
  await server.close();
});

async function startReports(nodeName: string, now?: () => number): Promise<NodeReports> {
  const reports = new NodeReports(kubeConfigFor(server.url), { namespace: 'zerohold-system', nodeName, staleAfterMs: 5000, ...(now ? { now } : {}) }, log);
  await reports.start();
  started.push(reports);
  return reports;
}

for (const [name, skewMs] of [
  ['clock behind', -600_000],
  ['clock ahead', 600_000],
] as const) {
  test(`report keeps activity age, ${name}`, async () => {
    const reader = await startReports(`reader-${skewMs}`);
    const skewedNow = () => Date.now() + skewMs;
    const writer = await startReports(`writer-${skewMs}`, skewedNow);

    // Activity 2 s ago on the writer's clock.
    await writer.publish({ activity: new Map([[WORKLOAD, skewedNow() - 2000]]), gatesClosed: new Map(), heldFlows: new Map() });
    const at = await waitFor('the report', () => reader.lastActivity(WORKLOAD));

    const ageMs = monotonicMs() - at;
    assert.ok(ageMs >= 2000, `activity ${ageMs} ms old, want at least the 2000 ms it had when published`);
    assert.ok(ageMs < 4000, `activity ${ageMs} ms old, want the 2000 ms it had plus the delivery`);
  });
}

test('report Lease is owned by its Node', async () => {
  const uid = '5d0c2b7e-1b5a-4c8e-9a36-0f1e2d3c4b5a';
  const reports = new NodeReports(kubeConfigFor(server.url), { namespace: 'zerohold-system', nodeName: 'owned', nodeUid: uid, staleAfterMs: 5000 }, log);
  await reports.publish({ activity: new Map(), gatesClosed: new Map(), heldFlows: new Map() });

  const lease = await kubeConfigFor(server.url).makeApiClient(CoordinationV1Api).readNamespacedLease({ name: 'zerohold-node-owned', namespace: 'zerohold-system' });
  assert.deepEqual(
    lease.metadata?.ownerReferences?.map((owner) => ({ ...owner })),
    [{ apiVersion: 'v1', kind: 'Node', name: 'owned', uid }],
  );
});
