// Tables and cell values in the form that kubectl prints: upper-case
// headers, left-aligned columns separated by three spaces, and <none> for
// a missing value.

export const NONE = '<none>';
const INVALID = '<invalid>';

const COLUMN_GAP = '   ';

// Renders rows under headers, padding every column but the last to its
// widest cell. Returns the lines joined with a trailing newline.
export function renderTable(headers: string[], rows: string[][]): string {
  const widths = headers.map((header, column) => Math.max(header.length, ...rows.map((row) => (row[column] ?? '').length)));

  const lines = [headers, ...rows].map((cells) => {
    const padded = headers.map((_, column) => {
      const cell = cells[column] ?? '';
      return column === headers.length - 1 ? cell : cell.padEnd(widths[column]!);
    });
    return padded.join(COLUMN_GAP).trimEnd();
  });
  return `${lines.join('\n')}\n`;
}

// Formats a duration with two or three significant figures, as
// HumanDuration in k8s.io/apimachinery/pkg/util/duration does for kubectl's
// AGE column: "45s", "5m12s", "3h", "2d4h". Like it, a duration of up to
// one second below zero counts as clock skew and prints "0s".
export function humanDuration(ms: number): string {
  const seconds = Math.trunc(ms / 1000);
  if (Number.isNaN(seconds) || seconds < -1) return INVALID;
  if (seconds < 0) return '0s';
  if (seconds < 120) return `${seconds}s`;

  const minutes = Math.floor(seconds / 60);
  if (minutes < 10) return withRemainder(minutes, 'm', seconds % 60, 's');
  if (minutes < 180) return `${minutes}m`;

  const hours = Math.floor(minutes / 60);
  if (hours < 8) return withRemainder(hours, 'h', minutes % 60, 'm');
  if (hours < 48) return `${hours}h`;

  const days = Math.floor(hours / 24);
  if (days < 8) return withRemainder(days, 'd', hours % 24, 'h');
  if (days < 730) return `${days}d`;

  const years = Math.floor(days / 365);
  if (years < 8) return withRemainder(years, 'y', days % 365, 'd');
  return `${years}y`;
}

// Formats the time since an event as humanDuration does, followed by
// "ago": "17s ago", "3h ago".
export function formatAge(ms: number): string {
  const duration = humanDuration(ms);
  return duration === INVALID ? duration : `${duration} ago`;
}

function withRemainder(value: number, unit: string, remainder: number, remainderUnit: string): string {
  return remainder === 0 ? `${value}${unit}` : `${value}${unit}${remainder}${remainderUnit}`;
}

// Formats a short measured duration, such as a cold start, more precisely
// than humanDuration: "250ms" below one second, "4.2s" below one minute.
export function formatSeconds(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return INVALID;

  // Rounding first, so that 0.9996 prints as "1.0s" and not "1000ms".
  const ms = Math.round(seconds * 1000);
  if (ms < 1000) return `${ms}ms`;
  const tenths = Math.round(seconds * 10) / 10;
  if (tenths < 60) return `${tenths.toFixed(1)}s`;
  return humanDuration(tenths * 1000);
}

// Formats an address and port as a client would dial them, with IPv6
// addresses in brackets.
export function formatEndpoint(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}
