// Reading an agent's Prometheus text, as AgentProcess.metrics() returns it.

// The value of zerohold_datapath_flow_openers_total for a workload and
// outcome, or 0 when the agent has no such series yet.
export function flowOpenerCount(metrics: string, workload: string, outcome: string): number {
  const pattern = /^zerohold_datapath_flow_openers_total\{workload="([^"]*)",outcome="([^"]*)"\} (\d+)$/gm;
  for (const [, name, found, count] of metrics.matchAll(pattern)) {
    if (name === workload && found === outcome) return Number(count);
  }
  return 0;
}
