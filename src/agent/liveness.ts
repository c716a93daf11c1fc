// The agent's deadline in the datapath (zh_liveness in bpf/lib/maps.h).
// Past it, the programs pass flow openers instead of holding them, because
// no agent would read them from the ring. While the agent runs it moves
// the deadline failOpenAfter ahead four times per period, or every second
// for longer periods, so only a pause of most of the period lets it pass.
// A hand-over sets it once more, to the end of the hand-over, and the
// next agent's first renewal takes over from there.

import type { Logger } from 'pino';

import { NO_DEADLINE } from '../datapath/datapath.js';

export interface LivenessTarget {
  setLivenessDeadline(deadlineNs: bigint): void;
}

const MAX_RENEW_INTERVAL_MS = 1000;
// Consecutive failed renewals between two log lines after the first.
const FAILURES_PER_LOG = 60;

export class Liveness {
  private timer: NodeJS.Timeout | undefined;
  // Consecutive failed renewals.
  private failures = 0;

  // A failOpenAfterMs of 0 sets no deadline.
  constructor(
    private readonly target: LivenessTarget,
    private readonly failOpenAfterMs: number,
    private readonly log: Logger,
  ) {}

  start(): void {
    if (this.failOpenAfterMs === 0) {
      this.target.setLivenessDeadline(NO_DEADLINE);
      return;
    }

    this.renew();
    const intervalMs = Math.min(MAX_RENEW_INTERVAL_MS, this.failOpenAfterMs / 4);
    this.timer = setInterval(() => this.renew(), intervalMs);
    this.timer.unref();
  }

  // Stops renewing and lets the programs hold for handoverMs more, for
  // the next agent to take over.
  handOver(handoverMs: number): void {
    this.stop();
    this.target.setLivenessDeadline(monotonicNs() + BigInt(handoverMs) * 1_000_000n);
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private renew(): void {
    try {
      this.target.setLivenessDeadline(monotonicNs() + BigInt(this.failOpenAfterMs) * 1_000_000n);
      if (this.failures > 0) this.log.info({ failures: this.failures }, 'renewing the datapath deadline works again');
      this.failures = 0;
    } catch (err) {
      // The next renewal tries again. If none succeeds, the deadline
      // passes and the datapath stops holding. One line per failure would
      // be up to four a second.
      this.failures += 1;
      if (this.failures === 1 || this.failures % FAILURES_PER_LOG === 0) {
        this.log.error({ err, failures: this.failures }, 'renewing the datapath deadline failed; past liveness.failOpenAfter the datapath stops holding');
      }
    }
  }
}

// process.hrtime.bigint() reads CLOCK_MONOTONIC, the clock of
// bpf_ktime_get_coarse_ns().
function monotonicNs(): bigint {
  return process.hrtime.bigint();
}
