// Exponential backoff with jitter for reconnects. The jitter spreads the
// reconnects of many agents after a Relay restart, so they do not arrive
// in one burst.

export interface BackoffOptions {
  initialMs: number;
  maxMs: number;
  multiplier: number;
  // Fraction of the delay that is randomized: 0.2 gives a delay within
  // ±20% of the exponential value.
  jitter: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { initialMs: 250, maxMs: 30_000, multiplier: 2, jitter: 0.2 };

export class Backoff {
  private readonly options: BackoffOptions;
  private attempt = 0;

  // random returns a number in [0, 1), like Math.random, which tests replace.
  constructor(
    options: Partial<BackoffOptions> = {},
    private readonly random: () => number = Math.random,
  ) {
    this.options = { ...DEFAULT_BACKOFF, ...options };
    const { initialMs, maxMs, multiplier, jitter } = this.options;
    if (!(initialMs > 0) || !(maxMs >= initialMs)) {
      throw new RangeError(`invalid backoff: expected 0 < initialMs <= maxMs, got initialMs=${initialMs} maxMs=${maxMs}`);
    }
    if (!(multiplier >= 1)) throw new RangeError(`invalid backoff multiplier ${multiplier}: expected at least 1`);
    if (!(jitter >= 0 && jitter <= 1)) throw new RangeError(`invalid backoff jitter ${jitter}: expected a fraction from 0 to 1`);
  }

  // Returns the delay before the next attempt in milliseconds, at most maxMs.
  next(): number {
    const { initialMs, maxMs, multiplier, jitter } = this.options;
    const base = Math.min(maxMs, initialMs * multiplier ** this.attempt);
    this.attempt++;

    const spread = base * jitter * (2 * this.random() - 1);
    return Math.min(maxMs, Math.max(0, Math.round(base + spread)));
  }

  // Starts again from initialMs, after a connection succeeded.
  reset(): void {
    this.attempt = 0;
  }

  get attempts(): number {
    return this.attempt;
  }
}
