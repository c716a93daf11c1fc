// Reports the flow openers that the held frame store rejected because a
// bound was reached (heldFlowLimits of the workload, limits.heldFlowsTotal
// of the agent). The datapath has dropped such a packet already and the
// client retransmits it, so each one is counted in
// zerohold_held_flows_dropped_total. A SYN flood rejects tens of thousands
// a second, so the warning is logged at most once per interval for each
// workload and bound, with the count since the previous warning.

import type { Logger } from 'pino';

import type { RejectReason } from '../datapath/held-frames.js';
import type { AgentMetrics } from './metrics.js';
import type { WorkloadKey } from './ports.js';

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
  // The counter's child for these labels, so that a flood does not hash
  // the labels once per packet.
  counter: { inc(): void };
  // Rejections not logged yet.
  count: number;
  // The client of the latest rejection, read only when a warning is logged.
  lastClient: () => string;
  lastLoggedMs: number;
  timer: NodeJS.Timeout | undefined;
}

// The workload label of a flow whose service id no workload has.
export const UNKNOWN_WORKLOAD = '(unknown)';

export class HeldRejections {
  private readonly intervalMs: number;
  // By "workload|reason".
  private readonly pending = new Map<string, Pending>();
  // The entry that each service id and reason used last. A flood calls
  // record() for every packet, and this finds the entry without building
  // and hashing the string key, which was about half the cost of a call.
  private readonly recent = new Map<number, Map<RejectReason, Pending>>();

  constructor(private readonly options: HeldRejectionsOptions) {
    this.intervalMs = options.intervalMs ?? 10_000;
  }

  // Counts one rejected flow opener of serviceId. clientOf returns its
  // client address; it is called only for the warnings, so it may decode.
  record(serviceId: number, reason: RejectReason, clientOf: () => string): void {
    const workload = this.options.workloadOf(serviceId) ?? UNKNOWN_WORKLOAD;
    let entry = this.recent.get(serviceId)?.get(reason);
    // The id may have moved to another workload since.
    if (entry === undefined || entry.workload !== workload) entry = this.entryFor(serviceId, workload, reason);
    entry.counter.inc();
    entry.count += 1;
    entry.lastClient = clientOf;

    // The first rejection after a quiet interval is logged at once, and
    // the ones that follow it in a summary when the interval ends. A
    // scheduled summary covers this one too.
    if (entry.timer !== undefined) return;
    const key = `${workload}|${reason}`;
    const now = performance.now();
    if (now - entry.lastLoggedMs >= this.intervalMs) this.flush(key);
    else entry.timer = setTimeout(() => this.flush(key), entry.lastLoggedMs + this.intervalMs - now).unref();
  }

  // Returns the entry of the workload and reason, created when missing,
  // and makes it the one that serviceId uses for reason.
  private entryFor(serviceId: number, workload: string, reason: RejectReason): Pending {
    const key = `${workload}|${reason}`;
    let entry = this.pending.get(key);
    if (entry === undefined) {
      const counter = this.options.metrics.heldDropped.labels({ workload, reason });
      entry = { workload, reason, counter, count: 0, lastClient: () => '', lastLoggedMs: -Infinity, timer: undefined };
      this.pending.set(key, entry);
    }

    let byReason = this.recent.get(serviceId);
    if (byReason === undefined) this.recent.set(serviceId, (byReason = new Map()));
    byReason.set(reason, entry);
    return entry;
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
      { workload: entry.workload, reason: entry.reason, dropped: entry.count, lastClient: clientAddress(entry.lastClient) },
      `dropped flow openers over the held flow bound (${entry.reason}); the clients retransmit, and heldFlowLimits or limits.heldFlowsTotal raise the bound`,
    );
    entry.count = 0;
    entry.lastLoggedMs = performance.now();
  }
}

function clientAddress(clientOf: () => string): string {
  try {
    return clientOf();
  } catch (err) {
    return `unknown (${(err as Error).message})`;
  }
}
