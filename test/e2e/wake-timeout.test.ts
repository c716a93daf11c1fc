// A wake that never completes: the workload's pod starts but never passes
// its readiness probe, so the agent drops the held flows after the
// ScaleToZero's wakeTimeout and records a Warning Event WakeTimedOut.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { waitFor } from '../lib/netns.js';
import { describeResult } from '../testbed/client-run.js';
import { curlArgs } from '../testbed/client-commands.js';
import { nodeHttpWorkload } from '../testbed/servers.js';
import { Testbed } from '../testbed/testbed.js';

describe('wake timeout', () => {
  let testbed: Testbed;

  before(async () => {
    testbed = await Testbed.start({ nodes: 1, externalClients: 1, clientPodsPerNode: 0 });
  });

  after(async () => {
    await testbed?.close();
  });

  it('never-ready workload drops held flows', async () => {
    // The server binds its port after an hour, so its tcpSocket probe
    // fails for the whole test.
    const workload = await testbed.deploy(nodeHttpWorkload({ workDir: testbed.workloadDir, name: 'stuck', startupDelayMs: 3_600_000 }), {
      scaleToZero: { idleTimeout: '1h', wakeTimeout: '2s' },
    });
    await testbed.waitForPhase(workload.key!, 'Cold', { gateClosed: true });

    const result = await testbed.run(testbed.externalClient(), 'curl', curlArgs(workload.clusterIPv4, 80, { maxTimeSeconds: 5 }));

    assert.equal(result.ok, false, describeResult(result));
    // curl's exit code 28: the operation timed out, so no reply and no
    // rejection reached the client.
    assert.equal(result.code, 28, describeResult(result));
    const dropped = testbed.events.find((event) => event.source === 'agent' && event.type === 'dropped held flows' && event.fields.workload === workload.key);
    assert.ok(dropped, 'no "dropped held flows" line in the agent log');
    assert.ok(Number(dropped.fields.dropped) >= 1, `dropped ${String(dropped.fields.dropped)} flows, want at least 1`);
    const warning = await waitFor(
      'a WakeTimedOut Event',
      async () => {
        const events = await testbed.core.listNamespacedEvent({ namespace: workload.namespace });
        return events.items.find((event) => event.reason === 'WakeTimedOut' && event.involvedObject.name === workload.name);
      },
      5000,
      100,
    );
    assert.equal(warning.type, 'Warning');
    assert.equal(await testbed.readyPods(workload).then((pods) => pods.length), 0);
  });
});
