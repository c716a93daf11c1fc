// Conversion between flow times, which are Unix time from the clock of the
// node that observed the flow, and CLOCK_MONOTONIC, the clock of the
// agent's controller and datapath records.

// CLOCK_MONOTONIC in milliseconds: process.hrtime reads it on Linux.
export function monotonicMs(): number {
  return Number(process.hrtime.bigint() / 1_000_000n);
}

// Converts a Unix time to CLOCK_MONOTONIC by the offset between the two
// clocks now. A time in the future, which a node whose clock runs ahead
// can report through Relay, becomes now, so that it cannot postpone idle
// detection.
export function monotonicFromUnixMs(unixMs: number, monotonicNowMs: number, unixNowMs: number): number {
  return monotonicNowMs - Math.max(0, unixNowMs - unixMs);
}

// Converts a CLOCK_MONOTONIC time to Unix time by the offset between the
// two clocks now.
export function unixFromMonotonicMs(monotonicMs: number, monotonicNowMs: number, unixNowMs: number): number {
  return unixNowMs - (monotonicNowMs - monotonicMs);
}
