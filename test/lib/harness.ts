// Runs the hold programs on crafted frames through BPF_PROG_RUN and
// collects what each run produced: the verdict, ring buffer records and
// counter changes.

import { Datapath } from '../../src/datapath/datapath.js';
import type { HeldRecord, WakeRecord } from '../../src/datapath/records.js';
import type { ServiceCounters } from '../../src/datapath/services.js';

export type HookName = 'xdp' | 'tc';
export type Verdict = 'pass' | 'drop' | 'other';

const XDP_DROP = 1;
const XDP_PASS = 2;
const TC_ACT_SHOT = 2;
const TC_ACT_UNSPEC = -1;

export const HOLD_PROGRAMS: Record<HookName, string> = {
  xdp: 'zh_xdp_hold',
  tc: 'zh_tc_hold',
};

export function verdictOf(hook: HookName, retval: number): Verdict {
  // test_run reports the return value as a u32.
  const value = retval | 0;
  const [pass, drop] = hook === 'xdp' ? [XDP_PASS, XDP_DROP] : [TC_ACT_UNSPEC, TC_ACT_SHOT];
  if (value === pass) return 'pass';
  if (value === drop) return 'drop';
  return 'other';
}

export interface RunOutcome {
  verdict: Verdict;
  held: HeldRecord[];
  wakes: WakeRecord[];
}

// Subscribes to a datapath's records; run() returns what one frame caused.
export class FrameRunner {
  private held: HeldRecord[] = [];
  private wakes: WakeRecord[] = [];

  constructor(readonly dp: Datapath) {
    dp.on('held', (record) => this.held.push(record));
    dp.on('late-release', () => {
      throw new Error('a table test must not re-inject');
    });
    dp.on('wake', (record) => this.wakes.push(record));
    dp.on('record-error', (err) => {
      throw err;
    });
  }

  run(hook: HookName, frame: Buffer): RunOutcome {
    const { retval } = this.dp.program(HOLD_PROGRAMS[hook]).testRunSync({ data: frame });
    return { verdict: verdictOf(hook, retval), ...this.collect() };
  }

  // Drains the ring buffers and returns the records since the last call.
  collect(): { held: HeldRecord[]; wakes: WakeRecord[] } {
    this.dp.drain();
    const records = { held: this.held, wakes: this.wakes };
    this.held = [];
    this.wakes = [];
    return records;
  }
}

export function counterDelta(before: ServiceCounters, after: ServiceCounters): Partial<Record<keyof ServiceCounters, bigint>> {
  const delta: Partial<Record<keyof ServiceCounters, bigint>> = {};
  for (const key of Object.keys(after) as (keyof ServiceCounters)[]) {
    if (key === 'warm_last_seen_ns') continue;
    const d = after[key] - before[key];
    if (d !== 0n) delta[key] = d;
  }
  return delta;
}
