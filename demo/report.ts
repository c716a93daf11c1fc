// Terminal output of the demo: numbered stages with their duration,
// indented detail lines, and timelines relative to their first step.
// Colors only on a terminal, and never when NO_COLOR is set.

import type { ColdStart } from './cold-start.js';

const useColor = process.stdout.isTTY === true && !process.env.NO_COLOR;

function paint(code: number, text: string): string {
  return useColor ? `\x1b[${code}m${text}\x1b[0m` : text;
}

export const bold = (text: string) => paint(1, text);
export const dim = (text: string) => paint(2, text);
export const green = (text: string) => paint(32, text);
export const red = (text: string) => paint(31, text);
export const cyan = (text: string) => paint(36, text);

export class Report {
  private stage = 0;
  private stageStartedMs = 0;

  constructor(private readonly stages: number) {}

  // Starts a numbered stage. done() prints its duration.
  begin(title: string): void {
    this.stage += 1;
    this.stageStartedMs = performance.now();
    process.stdout.write(`\n${bold(`[${this.stage}/${this.stages}]`)} ${title}\n`);
  }

  done(note = 'done'): void {
    const seconds = (performance.now() - this.stageStartedMs) / 1000;
    this.line(`${green(note)} ${dim(`(${seconds.toFixed(1)} s)`)}`);
  }

  line(text: string, indent = 1): void {
    process.stdout.write(`${'    '.repeat(indent)}${text}\n`);
  }

  block(text: string, indent = 1): void {
    for (const line of text.trimEnd().split('\n')) this.line(dim(line), indent);
  }

  timeline(coldStart: ColdStart): void {
    const origin = coldStart.steps[0]?.unixMs ?? 0;
    for (const step of coldStart.steps) {
      const offset = `+${(step.unixMs - origin).toFixed(1)} ms`.padStart(12);
      this.line(`${cyan(offset)}  ${step.label}`, 2);
    }
  }
}

// Milliseconds from a to b, or a dash when either is unknown.
export function formatGap(from: number | null, to: number | null): string {
  if (from === null || to === null) return '-';
  return `${(to - from).toFixed(1)} ms`;
}
