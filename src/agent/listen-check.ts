// Whether the backends of a release accept connections yet. A pod without
// a readiness probe turns Ready when its containers start, which can be
// seconds before its server listens. A SYN re-injected then meets no
// listener, and its client fails with "connection refused" instead of
// connecting a moment later. So before a release, the agent opens a TCP
// connection to each endpoint that the held flows go to, from this node's
// network namespace, as kubelet's tcpSocket probe would, and waits while
// an endpoint replies with a TCP reset.
//
// A probe that gets no reply at all, as when a network policy drops
// traffic from the node, cannot tell, and does not hold the release up:
// the endpoint's Ready condition decides, as it does without this check.

import type { Logger } from 'pino';

export interface ListenTarget {
  address: string;
  port: number;
}

export function listenTargetToString(target: ListenTarget): string {
  return target.address.includes(':') ? `[${target.address}]:${target.port}` : `${target.address}:${target.port}`;
}

export interface ListenOutcome {
  // Targets whose handshake completed.
  listening: ListenTarget[];
  // Targets that neither completed a handshake nor refused one, with the
  // errno name of the last attempt (ETIMEDOUT, EHOSTUNREACH ...).
  unknown: { target: ListenTarget; error: string }[];
  // Targets that still refused when the wait ended.
  refusing: ListenTarget[];
}

// One connection attempt: null when the handshake completed, else the
// errno name that ended it. connectProbe() in connect-probe.ts is the
// real one.
export type ConnectProbe = (address: string, port: number, timeoutMs: number, netns?: string) => Promise<string | null>;

export interface ListenCheckOptions {
  probe: ConnectProbe;
  log: Logger;
  // The network namespace to probe from, as in the agent's netns setting.
  netns?: string;
  // How long one attempt waits for a reply. An endpoint on this node
  // replies within a millisecond, one elsewhere within a network round
  // trip, so a longer silence means that something drops the probe.
  probeTimeoutMs?: number;
}

const DEFAULT_PROBE_TIMEOUT_MS = 200;

// Attempts while a target refuses come every FAST_RETRY_MS during the
// first FAST_PERIOD_MS, so that most servers are found within 10 ms of
// their listen(), and then every SLOW_RETRY_MS for slow starters.
const FAST_RETRY_MS = 10;
const FAST_PERIOD_MS = 2000;
const SLOW_RETRY_MS = 50;

export class ListenCheck {
  private readonly probeTimeoutMs: number;

  constructor(private readonly options: ListenCheckOptions) {
    this.probeTimeoutMs = options.probeTimeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS;
  }

  // Probes every target until it completes a handshake or cannot tell,
  // for at most timeoutMs, or until cancelled() returns true between two
  // attempts. Targets are probed in parallel.
  async wait(targets: ListenTarget[], timeoutMs: number, cancelled: () => boolean = () => false): Promise<ListenOutcome> {
    const outcome: ListenOutcome = { listening: [], unknown: [], refusing: [] };
    const deadline = performance.now() + timeoutMs;

    await Promise.all(
      targets.map(async (target) => {
        const error = await this.untilAnswered(target, deadline, cancelled);
        if (error === null) outcome.listening.push(target);
        else if (error === 'ECONNREFUSED') outcome.refusing.push(target);
        else outcome.unknown.push({ target, error });
      }),
    );
    return outcome;
  }

  // Returns the last attempt's outcome: null or an errno name other than
  // ECONNREFUSED as soon as one comes, else ECONNREFUSED at the deadline.
  private async untilAnswered(target: ListenTarget, deadline: number, cancelled: () => boolean): Promise<string | null> {
    const startedMs = performance.now();
    for (;;) {
      const error = await this.attempt(target);
      if (error !== 'ECONNREFUSED') return error;

      const now = performance.now();
      const delayMs = now - startedMs < FAST_PERIOD_MS ? FAST_RETRY_MS : SLOW_RETRY_MS;
      if (now + delayMs >= deadline || cancelled()) return error;
      await new Promise((resolve) => setTimeout(resolve, delayMs).unref());
    }
  }

  private async attempt(target: ListenTarget): Promise<string | null> {
    try {
      return await this.options.probe(target.address, target.port, this.probeTimeoutMs, this.options.netns);
    } catch (err) {
      // Only a probe that cannot start rejects (a netns that went away, no
      // file descriptors left). The check cannot tell, and logs why.
      this.options.log.warn({ err, address: target.address, port: target.port }, 'probing whether the backend listens failed');
      return (err as NodeJS.ErrnoException).code ?? 'EPROBE';
    }
  }
}
