// Limits a repeated log line to one per interval, and counts the
// occurrences in between so that the next line can report them.

export class RepeatLimiter {
  private lastLoggedAt = -Infinity;
  private suppressed = 0;

  constructor(
    private readonly intervalMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  // Returns the number of occurrences suppressed since the last logged one
  // when this occurrence is to be logged, or null when it is suppressed.
  record(): number | null {
    const now = this.now();
    if (now - this.lastLoggedAt < this.intervalMs) {
      this.suppressed++;
      return null;
    }

    const suppressed = this.suppressed;
    this.lastLoggedAt = now;
    this.suppressed = 0;
    return suppressed;
  }
}
