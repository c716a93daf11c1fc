// Reports the flow openers that the held frame store rejected because a
// bound was reached (heldFlowLimits of the workload, limits.heldFlowsTotal
// of the agent). The datapath has dropped such a packet already and the
// client retransmits it, so each one is counted in
// zerohold_held_flows_dropped_total. A SYN flood rejects tens of thousands
// a second, so the warning is logged at most once per interval for each
// workload and bound, with the count since the previous warning.

import type { Logger } from 'pino';

import type { HoldOutcome } from '../datapath/held-frames.js';
import type { HeldRecord } from '../datapath/records.js';
import type { AgentMetrics } from './metrics.js';
import type { WorkloadKey } from './ports.js';

type RejectReason = Extract<HoldOutcome, { result: 'rejected' }>['reason'];

export interface HeldRejectionsOptions {
  log: Logger;
  metrics: AgentMetrics;
  workloadOf(serviceId: number): WorkloadKey | undefined;
  // Minimum time between two warnings for one workload and bound.
  // Defaults to 10 000 ms.
  intervalMs?: number;
}

interface Pending {
  workload: string;
  reason: RejectReason;
  // Rejections not logged yet.
  count: number;
  lastSource: string;
  lastLoggedMs: number;
  timer: NodeJS.Timeout | undefined;
}

const UNKNOWN_WORKLOAD = '(unknown)';

export class HeldRejections {
  private readonly intervalMs: number;
  private readonly pending = new Map<string, Pending>();

  constructor(private readonly options: HeldRejectionsOptions) {
    this.intervalMs = options.intervalMs ?? 10_000;
  }

  record(record: HeldRecord, reason: RejectReason): void {
    const workload = this.options.workloadOf(record.serviceId) ?? UNKNOWN_WORKLOAD;
    this.options.metrics.heldDropped.inc({ workload, reason });

    const key = `${workload}|${reason}`;
    let entry = this.pending.get(key);
    if (entry === undefined) {
      entry = { workload, reason, count: 0, lastSource: '', lastLoggedMs: -Infinity, timer: undefined };
      this.pending.set(key, entry);
    }
    entry.count += 1;
    entry.lastSource = record.flow.source;

    // The first rejection after a quiet interval is logged at once, and
    // the ones that follow it in a summary when the interval ends.
    const now = performance.now();
    if (now - entry.lastLoggedMs >= this.intervalMs) this.flush(key);
    else entry.timer ??= setTimeout(() => this.flush(key), entry.lastLoggedMs + this.intervalMs - now).unref();
  }

  // Logs what is still pending, for a clean stop.
  close(): void {
    for (const key of [...this.pending.keys()]) this.flush(key);
  }

  private flush(key: string): void {
    const entry = this.pending.get(key);
    if (entry === undefined) return;
    clearTimeout(entry.timer);
    entry.timer = undefined;
    if (entry.count === 0) return;

    this.options.log.warn(
      { workload: entry.workload, reason: entry.reason, dropped: entry.count, lastClient: entry.lastSource },
      `dropped flow openers over the held flow bound (${entry.reason}); the clients retransmit, and heldFlowLimits or limits.heldFlowsTotal raise the bound`,
    );
    entry.count = 0;
    entry.lastLoggedMs = performance.now();
  }
}
