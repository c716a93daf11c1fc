import assert from 'node:assert/strict';
import { test } from 'node:test';

import { initialPhase, nextPhase, type Phase, type PhaseEvent, type PhaseState } from '../../src/agent/phase.js';

const SETTINGS = { idleTimeoutMs: 60_000, minWarmMs: 10_000, wakeTimeoutMs: 120_000, wakeReplicas: 2 };

function state(phase: Phase, patch: Partial<PhaseState> = {}): PhaseState {
  return { ...initialPhase(phase === 'Warm' || phase === 'Idle' ? 1 : 0), phase, ...patch };
}

interface Case {
  name: string;
  from: PhaseState;
  event: PhaseEvent;
  to: Phase;
  gateClosed?: boolean;
  actions: string[];
}

const CASES: Case[] = [
  { name: 'cold wakes on flow opener', from: state('Cold'), event: { type: 'flow-opener', nowMs: 5 }, to: 'Waking', gateClosed: true, actions: ['close-gate', 'scale:2:at-least', 'event:Woken'] },
  { name: 'scaling down wakes on opener', from: state('ScalingDown', { gateClosed: true }), event: { type: 'flow-opener', nowMs: 5 }, to: 'Waking', actions: ['close-gate', 'scale:2:at-least', 'event:Woken'] },
  { name: 'warm ignores flow opener', from: state('Warm'), event: { type: 'flow-opener', nowMs: 5 }, to: 'Warm', actions: [] },
  { name: 'waking waits for Ready', from: state('Waking', { wakeStartedMs: 0 }), event: { type: 'observed', replicas: 2, readyEndpoints: 0, nowMs: 5 }, to: 'Waking', actions: [] },
  { name: 'waking rescales after a late scale-down', from: state('Waking', { wakeStartedMs: 0 }), event: { type: 'observed', replicas: 0, replicasBefore: 1, readyEndpoints: 0, nowMs: 5 }, to: 'Waking', actions: ['scale:2:at-least'] },
  { name: 'waking rescales with pods still Ready', from: state('Waking', { wakeStartedMs: 0 }), event: { type: 'observed', replicas: 0, replicasBefore: 1, readyEndpoints: 1, nowMs: 5 }, to: 'Waking', actions: ['scale:2:at-least'] },
  { name: 'waking before its scale-up lands', from: state('Waking', { wakeStartedMs: 0 }), event: { type: 'observed', replicas: 0, replicasBefore: 0, readyEndpoints: 0, nowMs: 5 }, to: 'Waking', actions: [] },
  { name: 'waking releases on Ready', from: state('Waking', { wakeStartedMs: 0 }), event: { type: 'observed', replicas: 2, readyEndpoints: 1, nowMs: 5 }, to: 'Warm', gateClosed: false, actions: ['release'] },
  { name: 'external scale-up opens gate', from: state('Cold'), event: { type: 'observed', replicas: 1, readyEndpoints: 1, nowMs: 5 }, to: 'Warm', gateClosed: false, actions: ['release'] },
  { name: 'external scale to zero closes', from: state('Warm'), event: { type: 'observed', replicas: 0, readyEndpoints: 0, nowMs: 5 }, to: 'Cold', gateClosed: true, actions: ['close-gate'] },
  { name: 'recent activity stays warm', from: state('Warm'), event: { type: 'idle-check', lastActivityMs: 50_000, nowMs: 100_000, leader: true }, to: 'Warm', actions: [] },
  { name: 'follower marks idle only', from: state('Warm'), event: { type: 'idle-check', lastActivityMs: 0, nowMs: 100_000, leader: false }, to: 'Idle', actions: [] },
  { name: 'leader announces scale-down', from: state('Warm'), event: { type: 'idle-check', lastActivityMs: 0, nowMs: 100_000, leader: true }, to: 'Idle', actions: ['announce-scale-down'] },
  { name: 'min warm time defers idle', from: state('Warm', { warmSinceMs: 95_000 }), event: { type: 'idle-check', lastActivityMs: 0, nowMs: 100_000, leader: true }, to: 'Warm', actions: [] },
  { name: 'activity returns idle to warm', from: state('Idle'), event: { type: 'idle-check', lastActivityMs: 99_000, nowMs: 100_000, leader: true }, to: 'Warm', actions: [] },
  { name: 'scale-down closes gate first', from: state('Idle'), event: { type: 'scale-down-begun', nowMs: 5 }, to: 'ScalingDown', gateClosed: true, actions: ['close-gate'] },
  { name: 'leader scales after all closed', from: state('ScalingDown', { gateClosed: true }), event: { type: 'all-gates-closed', nowMs: 5, leader: true }, to: 'ScalingDown', actions: ['scale:0:exactly'] },
  { name: 'follower does not scale', from: state('ScalingDown', { gateClosed: true }), event: { type: 'all-gates-closed', nowMs: 5, leader: false }, to: 'ScalingDown', actions: [] },
  { name: 'zero replicas completes scale-down', from: state('ScalingDown', { gateClosed: true }), event: { type: 'observed', replicas: 0, readyEndpoints: 0, nowMs: 5 }, to: 'Cold', actions: [] },
  { name: 'idle follower closes at zero', from: state('Idle'), event: { type: 'observed', replicas: 0, readyEndpoints: 0, nowMs: 5 }, to: 'Cold', gateClosed: true, actions: ['close-gate'] },
  { name: 'interrupted scale-down wakes again', from: state('Warm', { interruptedScaleDownMs: 1_000 }), event: { type: 'observed', replicas: 0, readyEndpoints: 1, nowMs: 5_000 }, to: 'Waking', gateClosed: true, actions: ['close-gate', 'scale:2:at-least', 'event:Woken'] },
  { name: 'old interruption lets zero stand', from: state('Warm', { interruptedScaleDownMs: 1_000 }), event: { type: 'observed', replicas: 0, readyEndpoints: 0, nowMs: 121_000 }, to: 'Cold', gateClosed: true, actions: ['close-gate'] },
  { name: 'wake timeout expires held', from: state('Waking', { wakeStartedMs: 0, gateClosed: true }), event: { type: 'tick', nowMs: 120_000 }, to: 'Cold', gateClosed: true, actions: ['expire-held', 'event:WakeTimedOut'] },
  { name: 'wake within timeout waits', from: state('Waking', { wakeStartedMs: 0, gateClosed: true }), event: { type: 'tick', nowMs: 119_999 }, to: 'Waking', actions: [] },
];

function describeAction(action: { type: string; replicas?: number; mode?: string; reason?: string }): string {
  if (action.type === 'scale') return `scale:${action.replicas}:${action.mode}`;
  if (action.type === 'event') return `event:${action.reason}`;
  return action.type;
}

for (const c of CASES) {
  test(`phase: ${c.name}`, () => {
    const { state: next, actions } = nextPhase(c.from, c.event, SETTINGS);
    assert.equal(next.phase, c.to);
    if (c.gateClosed !== undefined) assert.equal(next.gateClosed, c.gateClosed);
    assert.deepEqual(actions.map(describeAction), c.actions);
  });
}

test('phase: gate closes before zero', () => {
  // Walk a scale-down: the close-gate action comes strictly before the
  // scale to zero, whatever the leader does.
  let current = state('Warm');
  const log: string[] = [];
  const events: PhaseEvent[] = [
    { type: 'idle-check', lastActivityMs: 0, nowMs: 100_000, leader: true },
    { type: 'scale-down-begun', nowMs: 100_001 },
    { type: 'all-gates-closed', nowMs: 100_002, leader: true },
    { type: 'observed', replicas: 0, readyEndpoints: 0, nowMs: 100_003 },
  ];
  for (const event of events) {
    const t = nextPhase(current, event, SETTINGS);
    current = t.state;
    log.push(...t.actions.map(describeAction));
  }
  assert.deepEqual(log, ['announce-scale-down', 'close-gate', 'scale:0:exactly']);
  assert.equal(current.phase, 'Cold');
});

test('phase: aborted scale-down reopens', () => {
  const { state: next, actions } = nextPhase(state('ScalingDown', { gateClosed: true }), { type: 'scale-down-aborted', nowMs: 9 }, SETTINGS);
  assert.equal(next.phase, 'Warm');
  assert.equal(next.gateClosed, false);
  assert.deepEqual(actions.map(describeAction), ['release']);
  assert.equal(nextPhase(state('Cold'), { type: 'scale-down-aborted', nowMs: 9 }, SETTINGS).state.phase, 'Cold');
});

test('initial phase from replicas and readiness', () => {
  assert.equal(initialPhase(0, 0, 5).phase, 'Cold');
  assert.equal(initialPhase(0, 0, 5).gateClosed, true);
  assert.equal(initialPhase(2, 1, 5).phase, 'Warm');
  assert.equal(initialPhase(2, 1, 5).gateClosed, false);
  assert.equal(initialPhase(2, 0, 5, 'Warm').phase, 'Warm', 'no Ready endpoint outside a wake stays Warm');

  // A restart in the middle of a wake: replicas, but no Ready endpoint yet.
  const waking = initialPhase(1, 0, 5, 'Waking');
  assert.equal(waking.phase, 'Waking');
  assert.equal(waking.gateClosed, true);
  assert.equal(waking.wakeStartedMs, 5);
  assert.equal(initialPhase(1, 0, 5, 'Cold').phase, 'Waking', 'killed between the scale-up and the status write');
  assert.equal(initialPhase(1, 0, 5).phase, 'Warm', 'no status yet');
  assert.equal(initialPhase(1, 0, 5, undefined, true).phase, 'Waking', 'first wake killed before its status write, gate left closed');
  assert.equal(initialPhase(1, 1, 5, undefined, true).phase, 'Warm', 'gate left closed, but a Ready endpoint');
});

test('phase: wake from scale-down marks it', () => {
  const woken = nextPhase(state('ScalingDown', { gateClosed: true }), { type: 'flow-opener', nowMs: 7 }, SETTINGS).state;
  assert.equal(woken.interruptedScaleDownMs, 7);
  assert.equal(nextPhase(state('Cold'), { type: 'flow-opener', nowMs: 7 }, SETTINGS).state.interruptedScaleDownMs, null, 'a wake from Cold interrupted nothing');

  // The wake releases to the old pods, then the leader's zero lands.
  const warm = nextPhase(woken, { type: 'observed', replicas: 1, readyEndpoints: 1, nowMs: 20 }, SETTINGS).state;
  assert.equal(warm.phase, 'Warm');
  const again = nextPhase(warm, { type: 'observed', replicas: 0, readyEndpoints: 1, nowMs: 30 }, SETTINGS);
  assert.equal(again.state.phase, 'Waking');
  assert.deepEqual(again.actions.map(describeAction), ['close-gate', 'scale:2:at-least', 'event:Woken']);
});
