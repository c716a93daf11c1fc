// Durations in Go's time.ParseDuration form ("90s", "1h30m", "250ms"), the
// form Kubernetes manifests use, so one value reads the same in a
// ScaleToZero spec, an annotation and the agent's configuration.

const UNIT_MS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

const DURATION = /^(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+$/;
const PART = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g;

// Parses a Go duration into milliseconds, or returns null if text is not one.
export function parseDuration(text: string): number | null {
  if (!DURATION.test(text)) return null;

  let total = 0;
  for (const [, amount, unit] of text.matchAll(PART)) {
    total += Number(amount) * UNIT_MS[unit!]!;
  }
  return total;
}

// Formats milliseconds as a Go duration, for logs and status.
export function formatDuration(ms: number): string {
  let rest = Math.round(ms);
  if (rest < 1000) return `${rest}ms`;

  const parts: string[] = [];
  for (const [unit, size] of [['h', 3_600_000], ['m', 60_000]] as const) {
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
  }
  // Seconds keep their milliseconds as a fraction, as Go prints 1.4s, so
  // that two close durations in a message never read the same.
  if (rest > 0) parts.push(`${rest / 1000}s`);
  return parts.join('');
}
