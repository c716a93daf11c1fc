// Logs what the datapath dropped without holding it: flow openers that
// found the held ring full, were over their Service's hold budget, were
// too large to hold or were first fragments, and wake signals lost to a
// full wake ring. The BPF counters count each one and the metrics export
// them. This puts them in the log too, where an operator looks first when
// clients report slow connects. Each check compares the counters with the
// previous check and logs one warning per workload and reason that grew.

import type { Logger } from 'pino';

import type { ServiceStatField } from '../datapath/layout.js';
import type { ServiceCounters } from '../datapath/services.js';
import type { WorkloadKey } from './ports.js';

export interface DatapathDropsOptions {
  log: Logger;
  // Workload to its datapath counters now.
  counters: () => Map<WorkloadKey, ServiceCounters>;
  // Time between two checks. Defaults to 10 000 ms.
  intervalMs?: number;
}

const DROPS: { field: ServiceStatField; reason: string; message: string }[] = [
  {
    field: 'ringbuf_full',
    reason: 'ring-full',
    message: 'dropped flow openers unheld because the held ring was full; TCP clients retransmit, UDP clients only if they retry, and a larger bpf.heldRingBytes makes room',
  },
  {
    field: 'held_limited',
    reason: 'over-budget',
    message:
      'dropped flow openers unheld because the held ring was more than half full and the Service had used its hold budget, its held-flow bound (heldFlowLimits.perService or limits.heldFlowsPerService) a second; TCP clients retransmit, UDP clients only if they retry',
  },
  {
    field: 'too_large',
    reason: 'too-large',
    message: 'dropped flow openers unheld because they were over 3,408 bytes, the largest frame that can be re-injected; TCP clients retransmit, UDP clients only if they retry',
  },
  {
    field: 'fragments',
    reason: 'fragment',
    message: 'dropped first fragments of flow openers unheld, because their later fragments passed and cannot be re-injected with them; a client that retries finds the workload waking',
  },
  {
    field: 'no_agent',
    reason: 'no-agent',
    message: 'passed flow openers unheld because the agent had not renewed its datapath deadline within liveness.failOpenAfter; the agent was paused or a hand-over had ended',
  },
  {
    field: 'wake_lost',
    reason: 'wake-lost',
    message: 'lost wake signals because the wake ring was full; the next flow opener signals again, and a larger bpf.wakeRingBytes makes room',
  },
];

export class DatapathDrops {
  private readonly intervalMs: number;
  private previous = new Map<WorkloadKey, ServiceCounters>();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly options: DatapathDropsOptions) {
    this.intervalMs = options.intervalMs ?? 10_000;
  }

  // Takes the counters as they are now as the baseline, so drops from
  // before this agent started are not reported as new. Flow openers that
  // passed while no agent ran are the exception: only the datapath counted
  // them, so this agent is the first that can report them.
  start(): void {
    this.previous = this.options.counters();
    for (const [workload, counters] of this.previous) {
      if (counters.no_agent === 0n) continue;
      // The pinned counters run from the workload's service id on, so a
      // count from an earlier gap is reported again at each start.
      this.options.log.info(
        { workload, reason: 'no-agent', passed: Number(counters.no_agent) },
        'flow openers passed unheld while no agent renewed the datapath deadline, counted since the workload got its service id',
      );
    }
    this.timer = setInterval(() => this.check(), this.intervalMs).unref();
  }

  // Stops the checks and reports what grew since the last one.
  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.check();
  }

  check(): void {
    let current: Map<WorkloadKey, ServiceCounters>;
    try {
      current = this.options.counters();
    } catch (err) {
      this.options.log.error({ err }, 'reading the datapath counters failed');
      return;
    }

    for (const [workload, counters] of current) {
      // A workload seen for the first time may have taken a service id
      // that kept its counters, as chained mode's ids and a restarted
      // agent's pinned ids do: they are its baseline.
      const before = this.previous.get(workload);
      if (before === undefined) continue;
      for (const { field, reason, message } of DROPS) {
        // Lower than before means the workload got a fresh service id,
        // whose counters started from zero.
        const was = before[field];
        const grew = counters[field] >= was ? counters[field] - was : counters[field];
        if (grew > 0n) this.options.log.warn({ workload, reason, dropped: Number(grew) }, message);
      }
    }
    this.previous = current;
  }
}
