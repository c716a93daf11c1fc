import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { CoreV1Api } from '@kubernetes/client-node';
import { pino } from 'pino';

import { EventRecorder } from '../../src/agent/events.js';
import { kubeConfigFor } from '../apiserver/kubeconfig.js';
import { startApiServer, type TestApiServer } from '../apiserver/server.js';

let server: TestApiServer;
let core: CoreV1Api;
const log = pino({ level: 'silent' });
const TARGET = { apiVersion: 'zerohold.dev/v1alpha1', kind: 'ScaleToZero', name: 'web', namespace: 'shop' };

before(async () => {
  server = await startApiServer({ namespaces: ['shop'] });
  core = kubeConfigFor(server.url).makeApiClient(CoreV1Api);
});

after(() => server.close());

async function eventsFor(reason: string) {
  const list = await core.listNamespacedEvent({ namespace: 'shop' });
  return list.items.filter((e) => e.reason === reason);
}

test('event names object and source', async () => {
  const recorder = new EventRecorder(kubeConfigFor(server.url), 'node-1', log);
  await recorder.record(TARGET, 'Normal', 'Woken', 'flow opener from 198.18.0.1:40000 to tcp/198.19.0.10:80');

  const [event, ...rest] = await eventsFor('Woken');
  assert.equal(rest.length, 0);
  assert.equal(event!.type, 'Normal');
  assert.equal(event!.involvedObject.kind, 'ScaleToZero');
  assert.equal(event!.involvedObject.name, 'web');
  assert.equal(event!.source?.component, 'zerohold-agent');
  assert.equal(event!.source?.host, 'node-1');
  assert.equal(event!.count, 1);
});

test('repeats update one event', async () => {
  let now = 1_800_000_000_000;
  const recorder = new EventRecorder(kubeConfigFor(server.url), 'node-1', log, () => now);
  for (let i = 0; i < 3; i++) {
    await recorder.record(TARGET, 'Warning', 'WakeTimedOut', 'no Ready backend within 120s');
    now += 1000;
  }

  const events = await eventsFor('WakeTimedOut');
  assert.equal(events.length, 1);
  assert.equal(events[0]!.count, 3);

  // Past the aggregation window a repeat starts a new Event.
  now += 11 * 60_000;
  await recorder.record(TARGET, 'Warning', 'WakeTimedOut', 'no Ready backend within 120s');
  assert.equal((await eventsFor('WakeTimedOut')).length, 2);
});

test('failure is logged, not thrown', async () => {
  const recorder = new EventRecorder(kubeConfigFor(server.url), 'node-1', log);
  server.faults.failNext({ method: 'POST', path: /\/events$/, status: 403 });
  await recorder.record(TARGET, 'Normal', 'ScaledToZero', 'scaled to zero after the idle timeout');
  assert.equal((await eventsFor('ScaledToZero')).length, 0);
});
