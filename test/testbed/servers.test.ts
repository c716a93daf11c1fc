// The sample workloads, run by the testbed kubelet and reached with their
// usual clients from the node namespace.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { DNS_RECORD_ADDRESS, DNS_RECORD_NAME, createSampleWorkload, dnsWorkload, postgresWorkload, redisWorkload, writeWorkloadFiles } from './servers.js';
import { NAMESPACE, startTestCluster, type TestCluster, waitForReadyPod } from './testing/test-cluster.js';

describe('sample servers', () => {
  let cluster: TestCluster;

  before(async () => {
    cluster = await startTestCluster();
  });

  after(async () => {
    await cluster?.close();
  });

  it('postgres answers select 1', async () => {
    const sample = postgresWorkload({ workDir: cluster.workDir });
    await writeWorkloadFiles(cluster.workDir, sample);
    await createSampleWorkload(cluster.kc, NAMESPACE, sample);
    const startedAt = Date.now();

    const pod = await waitForReadyPod(cluster, 'postgres', 30_000);
    assert.equal(pod.metadata?.name, 'postgres-0');
    assert.ok(Date.now() - startedAt > 1000, `got Ready after ${Date.now() - startedAt} ms, want more than 1000`);
    const output = await cluster.network.execInNode('psql', ['-h', pod.status!.podIP!, '-U', 'postgres', '-tAc', 'select 1']);
    assert.equal(output.trim(), '1');
    const output6 = await cluster.network.execInNode('psql', ['-h', pod.status!.podIPs![1]!.ip, '-U', 'postgres', '-tAc', 'select 1']);
    assert.equal(output6.trim(), '1');
  });

  it('redis answers PING', async () => {
    await createSampleWorkload(cluster.kc, NAMESPACE, redisWorkload({ workDir: cluster.workDir }));
    const pod = await waitForReadyPod(cluster, 'redis');

    const output = await cluster.network.execInNode('redis-cli', ['-h', pod.status!.podIP!, 'PING']);
    assert.equal(output.trim(), 'PONG');
    const output6 = await cluster.network.execInNode('redis-cli', ['-h', pod.status!.podIPs![1]!.ip, 'PING']);
    assert.equal(output6.trim(), 'PONG');
  });

  it('dnsmasq answers the test record', async () => {
    await createSampleWorkload(cluster.kc, NAMESPACE, dnsWorkload({ workDir: cluster.workDir }));
    const pod = await waitForReadyPod(cluster, 'dns');

    const output = await cluster.network.execInNode('dig', [`@${pod.status!.podIP}`, '+short', '+time=2', '+tries=1', DNS_RECORD_NAME]);
    assert.equal(output.trim(), DNS_RECORD_ADDRESS);
    const output6 = await cluster.network.execInNode('dig', [`@${pod.status!.podIPs![1]!.ip}`, '+short', '+time=2', '+tries=1', DNS_RECORD_NAME]);
    assert.equal(output6.trim(), DNS_RECORD_ADDRESS);
  });
});
