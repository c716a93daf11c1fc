// Helpers that the benchmarks share to summarize and print their figures.

// Returns the p-th percentile of values by the nearest-rank method, so the
// result is always one of the values.
export function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

// Formats rows as a table with the first column aligned left and the
// figures right, one line per row with a trailing newline.
export function formatTable(rows: string[][]): string {
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  return rows.map((row) => `${row.map((cell, column) => (column === 0 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!))).join('   ')}\n`).join('');
}
