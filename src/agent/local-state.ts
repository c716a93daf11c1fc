// The agent state that the local API serves: the controller's workloads,
// the flows this node's datapath holds now and, in standalone mode, the
// interfaces that carry the hold program.

import type { Controller } from './controller.js';
import type { AgentState, HeldFlowSummary, InterfacesReport, WorkloadSummary } from './local-api.js';
import type { NodeDatapath } from './node-datapath.js';

export class LocalState implements AgentState {
  constructor(
    readonly node: string,
    private readonly controller: Controller,
    private readonly datapath: NodeDatapath,
    private readonly attachedInterfaces: () => InterfacesReport = () => ({ entries: [], interfaces: [] }),
    // CLOCK_MONOTONIC nanoseconds, the clock of held frame timestamps.
    private readonly nowNs: () => bigint = () => process.hrtime.bigint(),
  ) {}

  interfaces(): InterfacesReport {
    return this.attachedInterfaces();
  }

  workloads(): WorkloadSummary[] {
    return this.controller.snapshot().map(({ key, spec, services, state, status, waitingFor }) => {
      const held = this.datapath.heldFlows(key);
      return {
        workload: key,
        source: spec.source,
        target: { kind: spec.target.kind, name: spec.target.name },
        services,
        phase: state.phase,
        gateClosed: state.gateClosed,
        heldFlows: held.length,
        heldBytes: held.reduce((sum, flow) => sum + flow.record.frame.length, 0),
        lastColdStartSeconds: status.lastColdStartSeconds ?? null,
        lastWakeTime: status.lastWakeTime ?? null,
        lastActivityTime: status.lastActivityTime ?? null,
        waitingFor,
      };
    });
  }

  heldFlows(): HeldFlowSummary[] {
    const now = this.nowNs();
    return this.controller.snapshot().flatMap(({ key }) =>
      this.datapath.heldFlows(key).map((held) => {
        const { flow, ifindex } = held.record;
        return {
          workload: key,
          protocol: flow.protocol,
          source: flow.source,
          sourcePort: flow.sourcePort,
          destination: flow.destination,
          destinationPort: flow.destinationPort,
          interface: this.datapath.interfaceName(ifindex) ?? ifindex,
          heldForSeconds: Number(now - held.firstTimestampNs) / 1e9,
          frames: held.frames,
        };
      }),
    );
  }
}
