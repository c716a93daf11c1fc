// The lifecycle of a managed workload as one agent sees it, as a pure
// transition function: the controller feeds it observations and carries
// out the actions it returns, so every transition is table-testable.
//
//   Warm ──idle for idleTimeout──▶ Idle ──leader closes gates──▶ ScalingDown
//     ▲                                                             │ all nodes closed,
//     │ Ready backend: open gate, re-inject                         ▼ scale to 0
//   Waking ◀──────────── flow opener arrives (wake) ─────────────  Cold
//
// The gate closes before replicas reach zero, so a client that arrives
// during scale-down is held instead of meeting a refused connection.

export type Phase = 'Warm' | 'Idle' | 'ScalingDown' | 'Cold' | 'Waking';

export interface PhaseState {
  phase: Phase;
  // Gate of this node's frontends: closed means flow openers are held.
  gateClosed: boolean;
  // When the current wake began (first held packet), for the wake timeout
  // and the cold-start duration.
  wakeStartedMs: number | null;
  // When the workload last became warm, for minWarmTime.
  warmSinceMs: number | null;
  // When a wake on this node interrupted a scale-down, until wakeTimeout
  // has passed. The leader's write of zero may land after this wake found
  // the old pods still up and released to them, and then the wake must
  // scale up again instead of counting as undone.
  interruptedScaleDownMs?: number | null;
}

export interface PhaseSettings {
  idleTimeoutMs: number;
  minWarmMs: number;
  wakeTimeoutMs: number;
  wakeReplicas: number;
}

export type PhaseEvent =
  // The workload's replica count and Ready endpoints as last observed.
  // replicasBefore is the count of the previous observation.
  | { type: 'observed'; replicas: number; readyEndpoints: number; nowMs: number; replicasBefore?: number }
  // The cluster-wide idle time, published by the leader.
  | { type: 'idle-check'; lastActivityMs: number; nowMs: number; leader: boolean }
  // The leader decided to scale down: every node closes its gate.
  | { type: 'scale-down-begun'; nowMs: number }
  // Every live node reported its gate closed.
  | { type: 'all-gates-closed'; nowMs: number; leader: boolean }
  // The scale-down was called off: a node did not close its gate in time,
  // or a flow opener woke the workload on another node.
  | { type: 'scale-down-aborted'; nowMs: number }
  // A flow opener arrived for a cold or closing workload.
  // client and frontend name the flow for the Woken event.
  | { type: 'flow-opener'; nowMs: number; client?: string; frontend?: string }
  | { type: 'tick'; nowMs: number };

export type PhaseAction =
  | { type: 'close-gate' }
  | { type: 'release' } // open the gate, then re-inject held frames
  | { type: 'scale'; replicas: number; mode: 'at-least' | 'exactly' }
  | { type: 'announce-scale-down' } // leader: tell every node to close its gate
  | { type: 'expire-held'; reason: string }
  | { type: 'event'; reason: string; message: string; warning?: boolean };

export interface Transition {
  state: PhaseState;
  actions: PhaseAction[];
}

// The phase of a workload that an agent starts to track. recordedPhase is
// status.phase as the cluster last wrote it, and gateWasClosed whether the
// gate that an earlier agent left in this node's datapath is closed. An
// agent restarted during a wake finds replicas but no Ready endpoint yet:
// it resumes the wake with the gate closed, so retransmitted SYNs are held
// instead of meeting a Service without a backend. A wake writes Waking
// only after its scale-up, so a recorded Cold or ScalingDown with replicas
// counts as a wake too, and so does a closed gate, for a workload whose
// first wake has written no phase yet.
export function initialPhase(replicas: number, readyEndpoints = replicas, nowMs = 0, recordedPhase?: Phase, gateWasClosed = false): PhaseState {
  if (replicas === 0) return { phase: 'Cold', gateClosed: true, wakeStartedMs: null, warmSinceMs: null };
  const waking = recordedPhase === 'Waking' || recordedPhase === 'Cold' || recordedPhase === 'ScalingDown' || gateWasClosed;
  if (readyEndpoints === 0 && waking) return { phase: 'Waking', gateClosed: true, wakeStartedMs: nowMs, warmSinceMs: null };
  return { phase: 'Warm', gateClosed: false, wakeStartedMs: null, warmSinceMs: null };
}

export function nextPhase(state: PhaseState, event: PhaseEvent, settings: PhaseSettings): Transition {
  const stay: Transition = { state, actions: [] };
  const to = (patch: Partial<PhaseState>, ...actions: PhaseAction[]): Transition => ({ state: { ...state, ...patch }, actions });

  switch (event.type) {
    case 'flow-opener':
      // Scale up from Cold, and also from a scale-down in progress: the
      // leader may already have set replicas to 0.
      if (state.phase === 'Cold' || state.phase === 'ScalingDown' || state.phase === 'Idle') {
        const interrupted = state.phase === 'Cold' ? null : event.nowMs;
        return to(
          { phase: 'Waking', gateClosed: true, wakeStartedMs: event.nowMs, interruptedScaleDownMs: interrupted },
          { type: 'close-gate' },
          { type: 'scale', replicas: settings.wakeReplicas, mode: 'at-least' },
          {
            type: 'event',
            reason: 'Woken',
            message: `flow opener from ${event.client ?? 'a client'} to ${event.frontend ?? 'a frontend'}, scaling to at least ${settings.wakeReplicas}`,
          },
        );
      }
      return stay;

    case 'observed':
      if (state.phase === 'Waking' && event.replicas === 0 && (event.replicasBefore ?? 0) > 0) {
        // The leader's scale to zero landed after this wake found the
        // replicas still up and so wrote nothing: scale up again. Checked
        // before the Ready endpoints, which the terminating pods still
        // have for a moment.
        return to({}, { type: 'scale', replicas: settings.wakeReplicas, mode: 'at-least' });
      }
      if (state.phase === 'Waking' && event.readyEndpoints > 0) {
        return to({ phase: 'Warm', gateClosed: false, warmSinceMs: event.nowMs, wakeStartedMs: null }, { type: 'release' });
      }
      if (state.phase === 'Cold' && event.replicas > 0 && event.readyEndpoints > 0) {
        // Scaled up by someone else (an HPA, a person): open the gate.
        return to({ phase: 'Warm', gateClosed: false, warmSinceMs: event.nowMs }, { type: 'release' });
      }
      if ((state.phase === 'Warm' || state.phase === 'Idle') && event.replicas === 0) {
        const interrupted = state.interruptedScaleDownMs ?? null;
        if (interrupted !== null && event.nowMs - interrupted < settings.wakeTimeoutMs) {
          // A scale-down that this node's wake interrupted reached zero
          // after all: wake again, holding new flows meanwhile.
          return to(
            { phase: 'Waking', gateClosed: true, wakeStartedMs: event.nowMs, warmSinceMs: null },
            { type: 'close-gate' },
            { type: 'scale', replicas: settings.wakeReplicas, mode: 'at-least' },
            { type: 'event', reason: 'Woken', message: `the scale to zero that a wake interrupted landed after it, scaling to at least ${settings.wakeReplicas} again` },
          );
        }
        // Scaled to zero by someone else: hold from now on.
        return to({ phase: 'Cold', gateClosed: true, warmSinceMs: null, interruptedScaleDownMs: null }, { type: 'close-gate' });
      }
      if (state.phase === 'ScalingDown' && event.replicas === 0) {
        // The leader records the ScaledToZero Event once for all nodes.
        return to({ phase: 'Cold' });
      }
      return stay;

    case 'idle-check': {
      if (state.phase !== 'Warm' && state.phase !== 'Idle') return stay;
      const idleFor = event.nowMs - event.lastActivityMs;
      const warmFor = state.warmSinceMs === null ? Infinity : event.nowMs - state.warmSinceMs;
      const idle = idleFor >= settings.idleTimeoutMs && warmFor >= settings.minWarmMs;

      if (!idle) return state.phase === 'Idle' ? to({ phase: 'Warm' }) : stay;
      if (!event.leader) return state.phase === 'Idle' ? stay : to({ phase: 'Idle' });
      return to({ phase: 'Idle' }, { type: 'announce-scale-down' });
    }

    case 'scale-down-begun':
      if (state.phase === 'Warm' || state.phase === 'Idle') {
        return to({ phase: 'ScalingDown', gateClosed: true }, { type: 'close-gate' });
      }
      return stay;

    case 'scale-down-aborted':
      if (state.phase === 'ScalingDown') {
        return to({ phase: 'Warm', gateClosed: false, warmSinceMs: event.nowMs }, { type: 'release' });
      }
      return stay;

    case 'all-gates-closed':
      if (state.phase === 'ScalingDown' && event.leader) {
        return to({}, { type: 'scale', replicas: 0, mode: 'exactly' });
      }
      return stay;

    case 'tick':
      if (state.phase === 'Waking' && state.wakeStartedMs !== null && event.nowMs - state.wakeStartedMs >= settings.wakeTimeoutMs) {
        // The next flow opener starts over from Cold. The scale-up already
        // requested stays, and a backend that turns Ready later still
        // opens the gate through the Cold observation.
        return to(
          { phase: 'Cold', wakeStartedMs: null, interruptedScaleDownMs: null },
          { type: 'expire-held', reason: 'wake-timeout' },
          {
            type: 'event',
            reason: 'WakeTimedOut',
            message: `no Ready backend within ${Math.round(settings.wakeTimeoutMs / 1000)}s, dropped the held flows`,
            warning: true,
          },
        );
      }
      return stay;
  }
}
