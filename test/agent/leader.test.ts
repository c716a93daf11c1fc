import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { CoordinationV1Api } from '@kubernetes/client-node';
import { pino } from 'pino';

import { LeaderElector } from '../../src/agent/leader.js';
import { kubeConfigFor } from '../apiserver/kubeconfig.js';
import { startApiServer, type TestApiServer } from '../apiserver/server.js';

let server: TestApiServer;
const log = pino({ level: 'silent' });

before(async () => {
  server = await startApiServer({ namespaces: ['zerohold-system'] });
});

after(() => server.close());

// A candidate whose clock the test moves by hand.
function candidate(identity: string, leaseName: string, clock: { now: number }) {
  return new LeaderElector(
    kubeConfigFor(server.url),
    { namespace: 'zerohold-system', leaseName, identity, leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000, now: () => clock.now },
    log,
  );
}

async function readLease(name: string) {
  return kubeConfigFor(server.url).makeApiClient(CoordinationV1Api).readNamespacedLease({ name, namespace: 'zerohold-system' });
}

test('one of three candidates leads', async () => {
  const clock = { now: 1_000_000 };
  const candidates = ['node-a', 'node-b', 'node-c'].map((id) => candidate(id, 'race', clock));

  const won = await Promise.all(candidates.map((c) => c.tryAcquireOrRenew()));

  assert.equal(won.filter(Boolean).length, 1, `won: ${won}`);
  const holder = (await readLease('race')).spec?.holderIdentity;
  assert.equal(holder, ['node-a', 'node-b', 'node-c'][won.indexOf(true)]);
});

test('follower waits for lease expiry', async () => {
  const clock = { now: 2_000_000 };
  const a = candidate('node-a', 'expiry', clock);
  const b = candidate('node-b', 'expiry', clock);

  assert.equal(await a.tryAcquireOrRenew(), true);
  assert.equal(await b.tryAcquireOrRenew(), false);

  // node-a stops renewing, as a killed leader does.
  clock.now += 14_000;
  assert.equal(await b.tryAcquireOrRenew(), false, 'lease not yet expired');
  clock.now += 2_000;
  assert.equal(await b.tryAcquireOrRenew(), true, 'lease expired');

  const lease = await readLease('expiry');
  assert.equal(lease.spec?.holderIdentity, 'node-b');
  assert.equal(lease.spec?.leaseTransitions, 1);
  assert.equal(await a.tryAcquireOrRenew(), false, 'the old leader sees the new holder');
});

test('renewal keeps the lease', async () => {
  const clock = { now: 3_000_000 };
  const a = candidate('node-a', 'renew', clock);
  const b = candidate('node-b', 'renew', clock);

  assert.equal(await a.tryAcquireOrRenew(), true);
  assert.equal(await b.tryAcquireOrRenew(), false);
  for (let i = 0; i < 5; i++) {
    clock.now += 10_000;
    assert.equal(await a.tryAcquireOrRenew(), true, `renewal ${i}`);
    assert.equal(await b.tryAcquireOrRenew(), false, `follower round ${i}`);
  }
});

test('stop hands over at once', async () => {
  const a = candidate('node-a', 'handover', { now: Date.now() });
  const b = candidate('node-b', 'handover', { now: Date.now() });

  a.start();
  await waitUntil(() => a.isLeader);
  await a.stop();
  assert.equal(a.isLeader, false);

  assert.equal(await b.tryAcquireOrRenew(), true, 'released lease is free without waiting for expiry');
});

async function waitUntil(check: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('timed out waiting for leadership');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
