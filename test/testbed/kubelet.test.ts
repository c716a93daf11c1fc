// The kubelet with the workload and EndpointSlice controllers, running real
// nginx and Node.js servers in pod namespaces of a SimplePodNetwork.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';

import { waitFor } from '../lib/netns.js';
import type { KubeletEvent } from './kubelet.js';
import { createSampleWorkload, nginxWorkload, nodeHttpWorkload, writeWorkloadFiles } from './servers.js';
import { NAMESPACE, sliceOf, startTestCluster, type TestCluster, waitForReadyPod } from './testing/test-cluster.js';

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('kubelet', () => {
  let cluster: TestCluster;

  before(async () => {
    cluster = await startTestCluster();
  });

  after(async () => {
    await cluster?.close();
  });

  it('runs an nginx deployment and scales it to zero', async () => {
    const sample = nginxWorkload({ workDir: cluster.workDir });
    await writeWorkloadFiles(cluster.workDir, sample);
    await createSampleWorkload(cluster.kc, NAMESPACE, sample);

    const pod = await waitForReadyPod(cluster, 'nginx');
    const podName = pod.metadata!.name!;
    assert.equal(pod.status?.phase, 'Running');
    assert.match(pod.status?.podIP ?? '', /^198\.18\./);
    assert.deepEqual(
      pod.status?.podIPs?.map((entry) => entry.ip.includes(':')),
      [false, true],
    );

    const slice = await waitFor('a ready IPv4 endpoint of nginx', async () => {
      const current = await sliceOf(cluster, 'nginx', 'IPv4');
      return current?.endpoints?.[0]?.conditions?.ready ? current : undefined;
    });
    assert.deepEqual(slice.endpoints![0]!.addresses, [pod.status!.podIP]);
    assert.equal(slice.endpoints![0]!.targetRef?.name, podName);
    assert.equal(slice.ports?.[0]?.port, 80);
    const slice6 = await sliceOf(cluster, 'nginx', 'IPv6');
    assert.equal(slice6?.endpoints?.[0]?.addresses[0], pod.status!.podIPs![1]!.ip);

    const page = await cluster.network.curlFromNode(`http://${pod.status!.podIP}/`);
    assert.match(page, /Welcome to nginx/);
    const page6 = await cluster.network.curlFromNode(`http://[${pod.status!.podIPs![1]!.ip}]/`);
    assert.match(page6, /Welcome to nginx/);

    const pids = cluster.kubelet.pids(NAMESPACE, podName);
    assert.equal(pids.length, 1);
    await cluster.apps.patchNamespacedDeploymentScale(
      { name: 'nginx', namespace: NAMESPACE, body: { spec: { replicas: 0 } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );

    await waitFor('the nginx pod to be deleted', async () => {
      const pods = await cluster.core.listNamespacedPod({ namespace: NAMESPACE, labelSelector: 'app=nginx' });
      return pods.items.length === 0 ? true : undefined;
    }, 10_000, 50);
    assert.equal(isAlive(pids[0]!), false);
    assert.deepEqual(cluster.network.podNames(), []);
    const emptySlice = await waitFor('an empty nginx slice', async () => {
      const current = await sliceOf(cluster, 'nginx', 'IPv4');
      return current && (current.endpoints ?? []).length === 0 ? current : undefined;
    });
    assert.deepEqual(emptySlice.endpoints ?? [], []);

    const deployment = await cluster.apps.readNamespacedDeploymentStatus({ name: 'nginx', namespace: NAMESPACE });
    assert.equal(deployment.status?.replicas ?? 0, 0);
  });

  it('restarts a crashed container', async () => {
    const sample = nodeHttpWorkload({ workDir: cluster.workDir, name: 'crashy' });
    await createSampleWorkload(cluster.kc, NAMESPACE, sample);
    const pod = await waitForReadyPod(cluster, 'crashy');
    const podName = pod.metadata!.name!;
    const [firstPid] = cluster.kubelet.pids(NAMESPACE, podName);

    process.kill(firstPid!, 'SIGKILL');

    const restarted = await waitFor('the crashed container to restart and turn Ready', async () => {
      const current = await cluster.core.readNamespacedPod({ name: podName, namespace: NAMESPACE });
      const status = current.status?.containerStatuses?.[0];
      return status?.restartCount === 1 && status.ready ? current : undefined;
    }, 10_000, 50);
    const status = restarted.status!.containerStatuses![0]!;
    assert.equal(status.lastState?.terminated?.exitCode, 137);
    const [secondPid] = cluster.kubelet.pids(NAMESPACE, podName);
    assert.notEqual(secondPid, firstPid);
    assert.match(cluster.kubelet.logs(NAMESPACE, podName), /listening \d+/);
    assert.match(cluster.kubelet.logs(NAMESPACE, podName, { previous: true }), /listening \d+/);
  });

  it('waits for the node server startup delay', async () => {
    const delayMs = 1500;
    const events: { type: string; event: KubeletEvent }[] = [];
    for (const type of ['pod-started', 'pod-ready']) cluster.kubelet.on(type, (event: KubeletEvent) => event.pod.startsWith('slow-') && events.push({ type, event }));

    const sample = nodeHttpWorkload({ workDir: cluster.workDir, name: 'slow', startupDelayMs: delayMs });
    await createSampleWorkload(cluster.kc, NAMESPACE, sample);
    const pod = await waitForReadyPod(cluster, 'slow');

    const started = events.find((entry) => entry.type === 'pod-started')!.event;
    const ready = events.find((entry) => entry.type === 'pod-ready')!.event;
    assert.ok(ready.monotonicMs - started.monotonicMs >= delayMs, `got ${ready.monotonicMs - started.monotonicMs} ms to Ready, want at least ${delayMs}`);
    const listening = Number(/listening (\d+)/.exec(cluster.kubelet.logs(NAMESPACE, pod.metadata!.name!))?.[1]);
    assert.ok(listening - started.unixMs >= delayMs, `got listening ${listening - started.unixMs} ms after the spawn, want at least ${delayMs}`);
    const reply = await cluster.network.curlFromNode(`http://${pod.status!.podIP}:8080/`);
    assert.equal(reply, `hello from ${pod.metadata!.name}\n`);
  });
});
