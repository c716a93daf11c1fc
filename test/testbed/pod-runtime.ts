// The running state of one pod on a simulated node: its network namespace,
// its container processes and their readiness probes, and the Pod status
// that follows from them.

import { EventEmitter } from 'node:events';
import { constants } from 'node:os';

import type { V1ContainerStatus, V1Pod, V1PodCondition, V1PodStatus } from '@kubernetes/client-node';

import { containerArgv, containerEnv } from './container-env.js';
import { ContainerProcess, type RestartBackoff } from './container-process.js';
import type { PodAddresses } from './pod-network.js';
import { ReadinessProbe } from './readiness-probe.js';
import type { TcpProber } from './tcp-prober.js';

export interface PodRuntimeOptions {
  probeIntervalMs: number | undefined;
  // The node's prober, which runs the tcpSocket probes.
  tcpProber: TcpProber;
  restartBackoff: RestartBackoff;
  logLimitBytes: number;
}

// Events: 'changed' whenever the Pod status may differ, 'ready-changed'
// (ready: boolean) when the Ready condition flips, and 'container-exited'
// (container name, ContainerExit) from each container.
export class PodRuntime extends EventEmitter {
  readonly containers: ContainerProcess[] = [];
  private readonly probes = new Map<string, ReadinessProbe>();
  private readonly conditionTimes = new Map<string, { status: string; time: string }>();
  private readonly startTime = metaTime(new Date());
  private podReady = false;

  constructor(
    readonly pod: V1Pod,
    readonly addresses: PodAddresses,
    private readonly options: PodRuntimeOptions,
  ) {
    super();
  }

  get ready(): boolean {
    return this.podReady;
  }

  // Spawns every container and starts its readiness probe. Throws before
  // spawning anything when a container's spec cannot be run.
  start(): void {
    const fields = { podIP: this.addresses.ipv4, podIPs: [this.addresses.ipv4, this.addresses.ipv6] };
    const securityContext = this.pod.spec?.securityContext ?? {};
    const commands = (this.pod.spec?.containers ?? []).map((container) => {
      const env = containerEnv(this.pod, container, fields);
      return {
        container,
        command: {
          name: container.name,
          argv: containerArgv(container, env),
          env,
          ...(container.workingDir ? { workingDir: container.workingDir } : {}),
          runAsUser: container.securityContext?.runAsUser ?? securityContext.runAsUser,
          runAsGroup: container.securityContext?.runAsGroup ?? securityContext.runAsGroup,
        },
      };
    });

    for (const { container, command } of commands) {
      const process = new ContainerProcess(this.addresses.netns, command, this.options.restartBackoff, this.options.logLimitBytes);
      this.containers.push(process);

      let probe: ReadinessProbe | undefined;
      if (container.readinessProbe) {
        const target = { netns: this.addresses.netns, podIP: this.addresses.ipv4, container, env: command.env, runAsUser: command.runAsUser, runAsGroup: command.runAsGroup };
        probe = new ReadinessProbe(container.readinessProbe, target, this.options.probeIntervalMs, this.options.tcpProber, () => this.updateReadiness());
        this.probes.set(container.name, probe);
      }

      // A restarted container is probed from scratch, so it turns Ready
      // only after successThreshold new successes.
      process.on('started', () => {
        probe?.stop();
        probe?.start();
        this.updateReadiness();
      });
      process.on('exited', (exit) => {
        probe?.stop();
        if (probe) probe.ready = false;
        this.updateReadiness();
        this.emit('container-exited', container.name, exit);
      });
      process.start();
    }
  }

  // Stops the probes, then the containers: SIGTERM, graceMs, SIGKILL.
  async stop(graceMs: number): Promise<void> {
    for (const probe of this.probes.values()) probe.stop();
    await Promise.all(this.containers.map((container) => container.stop(graceMs)));
  }

  killSync(): void {
    for (const probe of this.probes.values()) probe.stop();
    for (const container of this.containers) container.killSync();
  }

  container(name: string | undefined): ContainerProcess | undefined {
    if (name === undefined) return this.containers[0];
    return this.containers.find((container) => container.command.name === name);
  }

  status(): V1PodStatus {
    const containerStatuses = this.containers.map((container) => this.containerStatus(container));
    const containersReady = containerStatuses.every((status) => status.ready);
    return {
      phase: 'Running',
      podIP: this.addresses.ipv4,
      podIPs: [{ ip: this.addresses.ipv4 }, { ip: this.addresses.ipv6 }],
      startTime: this.startTime as never,
      conditions: [
        this.condition('PodScheduled', true),
        this.condition('Initialized', true),
        this.condition('ContainersReady', containersReady),
        this.condition('Ready', containersReady),
      ],
      containerStatuses,
    };
  }

  private containerReady(container: ContainerProcess): boolean {
    if (!container.running) return false;
    const probe = this.probes.get(container.command.name);
    return probe === undefined || probe.ready;
  }

  private updateReadiness(): void {
    const ready = this.containers.length > 0 && this.containers.every((container) => this.containerReady(container));
    this.emit('changed');
    if (ready === this.podReady) return;
    this.podReady = ready;
    this.emit('ready-changed', ready);
  }

  private containerStatus(container: ContainerProcess): V1ContainerStatus {
    const spec = this.pod.spec!.containers.find((candidate) => candidate.name === container.command.name)!;
    const status: V1ContainerStatus = {
      name: container.command.name,
      image: spec.image ?? '',
      imageID: '',
      ready: this.containerReady(container),
      restartCount: container.restartCount,
      started: container.running,
    };
    if (container.pid !== undefined) status.containerID = `testbed://${container.pid}`;

    const exit = container.lastExit;
    const terminated = exit && {
      exitCode: exit.code ?? 128 + signalNumber(exit.signal),
      ...(exit.signal ? { signal: signalNumber(exit.signal) } : {}),
      reason: exit.code === 0 ? 'Completed' : 'Error',
      finishedAt: metaTime(exit.finishedAt) as never,
    };
    if (container.running) {
      status.state = { running: { startedAt: metaTime(container.startedAt!) as never } };
      if (terminated) status.lastState = { terminated };
    } else if (container.waitingToRestart) {
      status.state = { waiting: { reason: 'CrashLoopBackOff', message: `container ${container.command.name} exited and waits for its restart backoff` } };
      if (terminated) status.lastState = { terminated };
    } else if (terminated) {
      status.state = { terminated };
    }
    return status;
  }

  // Returns the condition, keeping its lastTransitionTime while the status stays.
  private condition(type: string, value: boolean): V1PodCondition {
    const status = value ? 'True' : 'False';
    let entry = this.conditionTimes.get(type);
    if (entry?.status !== status) {
      entry = { status, time: metaTime(new Date()) };
      this.conditionTimes.set(type, entry);
    }
    return { type, status, lastProbeTime: null as never, lastTransitionTime: entry.time as never };
  }
}

// metav1.Time: RFC 3339 in UTC with whole seconds.
function metaTime(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function signalNumber(signal: NodeJS.Signals | null): number {
  return signal === null ? 0 : constants.signals[signal];
}
