// Whether the backends of a release accept traffic yet. A pod without a
// readiness probe turns Ready when its containers start, which can be
// seconds before its server listens. A SYN re-injected then meets no
// listener, and its client fails with "connection refused" instead of
// connecting a moment later; a UDP datagram is lost to an ICMP port
// unreachable. So before a release, the agent checks each endpoint that
// the held flows go to, and waits while one does not listen yet:
//
// - TCP: it opens a connection from this node's network namespace, as
//   kubelet's tcpSocket probe would, and waits while the endpoint replies
//   with a TCP reset (connect-probe.ts);
// - UDP: it looks for a socket bound to the port in the endpoint's
//   namespace on this node, without sending the server anything, and
//   waits while none is bound (udp-bound-probe.ts).
//
// A check that cannot tell, as when a network policy drops the TCP probe
// or a UDP endpoint runs on another node, does not hold the release up:
// the endpoint's Ready condition decides, as it does without this check.

import type { Logger } from 'pino';

import { connectProbe } from './connect-probe.js';
import type { UdpBoundProbe } from './udp-bound-probe.js';

export interface ListenTarget {
  address: string;
  port: number;
  protocol: 'tcp' | 'udp';
}

// "198.18.16.2:8080" for TCP, "[fd5a::2]:53/udp" for UDP.
export function listenTargetToString(target: ListenTarget): string {
  const endpoint = target.address.includes(':') ? `[${target.address}]:${target.port}` : `${target.address}:${target.port}`;
  return target.protocol === 'udp' ? `${endpoint}/udp` : endpoint;
}

export interface ListenOutcome {
  // Targets that listen: a TCP handshake completed, or a UDP socket is
  // bound.
  listening: ListenTarget[];
  // Targets the check could not tell about, with why: the errno name of
  // the last TCP attempt (ETIMEDOUT, EHOSTUNREACH ...), or a sentence on
  // why a UDP endpoint's namespace was not found.
  unknown: { target: ListenTarget; error: string }[];
  // Targets that still did not listen when the wait ended: a TCP reset,
  // or no UDP socket bound.
  refusing: ListenTarget[];
}

// One attempt: null when the target listens, 'ECONNREFUSED' while it does
// not, else why the attempt cannot tell. listenProbe() makes the real one.
export type ListenProbe = (target: ListenTarget, timeoutMs: number, netns?: string) => Promise<string | null>;

// Called after each attempt of a wait with its target and outcome, as a
// ListenProbe resolves.
export type AttemptObserver = (target: ListenTarget, outcome: string | null) => void;

// The agent's probe: connectProbe() for TCP targets, udpBound for UDP ones.
export function listenProbe(udpBound: UdpBoundProbe): ListenProbe {
  return (target, timeoutMs, netns) =>
    target.protocol === 'udp' ? udpBound(target.address, target.port, netns) : connectProbe(target.address, target.port, timeoutMs, netns);
}

export interface ListenCheckOptions {
  probe: ListenProbe;
  log: Logger;
  // The network namespace to check from, as in the agent's netns setting.
  netns?: string;
  // How long one TCP attempt waits for a reply. An endpoint on this node
  // replies within a millisecond, one elsewhere within a network round
  // trip, so a longer silence means that something drops the probe.
  // Defaults to 200 ms.
  probeTimeoutMs?: number;
  // How long the others may still refuse once each group of targets has
  // one that listens. Defaults to 1 s.
  graceMs?: number;
}

const DEFAULT_PROBE_TIMEOUT_MS = 200;

// Once every group of targets (same protocol, IP family and port) has
// one that listens, or cannot tell, the others get this much longer. kube-proxy
// picks any Ready endpoint, so one that keeps refusing should not hold
// the flows that the others can serve for the rest of the wake.
const DEFAULT_GRACE_MS = 1000;

// A target that refuses is tried again after a delay that grows with the
// time it has refused. A server that starts to listen is found within
// about 10 ms, and one that takes minutes is tried 5 times a second.
const RETRY_DELAYS: { untilMs: number; delayMs: number }[] = [
  { untilMs: 2000, delayMs: 10 },
  { untilMs: 10_000, delayMs: 50 },
  { untilMs: Infinity, delayMs: 200 },
];

// All waits share one budget of attempts, a token bucket of ATTEMPT_BURST
// tokens that refills at ATTEMPT_RATE_PER_S. The burst covers the first
// round of a wake with many endpoints, and the rate bounds the CPU that
// many refusing endpoints cost the agent's event loop. A TCP attempt, or a
// UDP one for an endpoint whose namespace an earlier attempt found, takes
// about 0.1 ms (bench:agent). Finding the namespace of a new UDP endpoint
// can read every pod's addresses, on a libuv pool thread.
const ATTEMPT_BURST = 64;
const ATTEMPT_RATE_PER_S = 1000;

export class ListenCheck {
  private readonly probeTimeoutMs: number;
  private readonly graceMs: number;
  private tokens = ATTEMPT_BURST;
  private tokensAtMs = performance.now();

  constructor(private readonly options: ListenCheckOptions) {
    this.probeTimeoutMs = options.probeTimeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS;
    this.graceMs = options.graceMs ?? DEFAULT_GRACE_MS;
  }

  // Probes every target until it listens or the probe cannot tell, for
  // at most timeoutMs, or until cancelled() returns true between two
  // attempts. Targets are probed in parallel. Once each group of targets
  // with the same protocol, IP family and port has one that listens or
  // cannot tell, the wait ends at most graceMs later.
  async wait(targets: ListenTarget[], timeoutMs: number, cancelled: () => boolean = () => false, onAttempt?: AttemptObserver): Promise<ListenOutcome> {
    const outcome: ListenOutcome = { listening: [], unknown: [], refusing: [] };
    const state = { deadline: performance.now() + timeoutMs };
    const groups = new Set(targets.map(groupOf));
    const served = new Set<string>();

    await Promise.all(
      targets.map(async (target) => {
        const error = await this.untilAnswered(target, state, cancelled, onAttempt);
        if (error === null) outcome.listening.push(target);
        else if (error === 'ECONNREFUSED') outcome.refusing.push(target);
        else outcome.unknown.push({ target, error });

        if (error === 'ECONNREFUSED') return;
        served.add(groupOf(target));
        if (served.size === groups.size) state.deadline = Math.min(state.deadline, performance.now() + this.graceMs);
      }),
    );
    return outcome;
  }

  // Returns the last attempt's outcome: null or an errno name other than
  // ECONNREFUSED as soon as one comes, else ECONNREFUSED at the deadline.
  private async untilAnswered(target: ListenTarget, state: { deadline: number }, cancelled: () => boolean, onAttempt?: AttemptObserver): Promise<string | null> {
    const startedMs = performance.now();
    for (;;) {
      const error = await this.attempt(target);
      onAttempt?.(target, error);
      if (error !== 'ECONNREFUSED') return error;

      const now = performance.now();
      const delayMs = RETRY_DELAYS.find((step) => now - startedMs < step.untilMs)!.delayMs;
      if (now + delayMs >= state.deadline || cancelled()) return error;
      await sleep(delayMs);
    }
  }

  private async attempt(target: ListenTarget): Promise<string | null> {
    await this.takeToken();
    try {
      return await this.options.probe(target, this.probeTimeoutMs, this.options.netns);
    } catch (err) {
      // Only a probe that cannot start rejects (a netns that went away, no
      // file descriptors left, a failed netlink request). The check cannot
      // tell, and logs why.
      this.options.log.warn({ err, endpoint: listenTargetToString(target) }, 'probing whether the backend listens failed');
      return (err as NodeJS.ErrnoException).code ?? 'EPROBE';
    }
  }

  // Waits until the shared budget has an attempt left, and takes it.
  private async takeToken(): Promise<void> {
    for (;;) {
      const now = performance.now();
      this.tokens = Math.min(ATTEMPT_BURST, this.tokens + ((now - this.tokensAtMs) * ATTEMPT_RATE_PER_S) / 1000);
      this.tokensAtMs = now;
      if (this.tokens >= 1) {
        this.tokens -= 1;
        return;
      }
      await sleep(((1 - this.tokens) * 1000) / ATTEMPT_RATE_PER_S);
    }
  }
}

function groupOf(target: ListenTarget): string {
  return `${target.protocol}|${target.address.includes(':') ? 6 : 4}|${target.port}`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

// The probing of one release: rounds of ListenCheck.wait() over the
// targets that targets() returns, each round over those not probed yet,
// until a round finds none. Endpoints that turn Ready while a release
// waits, such as those of the other IP family, are probed too.
export class ListenRounds {
  readonly outcome: ListenOutcome = { listening: [], unknown: [], refusing: [] };
  // Targets whose last attempt found them not listening, by
  // listenTargetToString(), while the rounds run.
  readonly notListening = new Map<string, ListenTarget>();
  private readonly probedTargets = new Set<string>();
  // The rounds in progress: calls of run() take turns.
  private running: Promise<void> = Promise.resolve();

  constructor(
    private readonly check: ListenCheck,
    private readonly targets: () => ListenTarget[],
    // The time left for the whole release, in milliseconds.
    private readonly remainingMs: () => number,
    private readonly cancelled: () => boolean,
  ) {}

  // The targets probed so far.
  get probed(): number {
    return this.probedTargets.size;
  }

  // Runs rounds until no target is new, the time is up or the release is
  // cancelled, after the rounds of earlier calls. Call it again to probe
  // targets that appeared since.
  run(): Promise<void> {
    this.running = this.running.catch(() => undefined).then(() => this.runRounds());
    return this.running;
  }

  private async runRounds(): Promise<void> {
    for (;;) {
      if (this.cancelled()) return;
      const fresh = this.targets().filter((target) => !this.probedTargets.has(listenTargetToString(target)));
      if (fresh.length === 0) return;

      for (const target of fresh) this.probedTargets.add(listenTargetToString(target));
      const round = await this.check.wait(fresh, Math.max(0, this.remainingMs()), this.cancelled, (target, outcome) => {
        if (outcome === 'ECONNREFUSED') this.notListening.set(listenTargetToString(target), target);
        else this.notListening.delete(listenTargetToString(target));
      });
      // The release no longer waits for these, whatever they did.
      for (const target of fresh) this.notListening.delete(listenTargetToString(target));
      this.outcome.listening.push(...round.listening);
      this.outcome.unknown.push(...round.unknown);
      this.outcome.refusing.push(...round.refusing);
    }
  }
}
