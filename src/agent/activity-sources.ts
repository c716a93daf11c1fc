// Several activity sources as one: the datapath counters and Hubble flows
// can both see a workload's traffic, and the latest of them counts.

import type { ActivitySource, WorkloadKey } from './ports.js';

export class LatestActivity implements ActivitySource {
  constructor(private readonly sources: ActivitySource[]) {}

  lastActivity(workload: WorkloadKey): number | undefined {
    let latest: number | undefined;
    for (const source of this.sources) {
      const at = source.lastActivity(workload);
      if (at !== undefined && (latest === undefined || at > latest)) latest = at;
    }
    return latest;
  }
}
